"""Reading the files users hand to synth: seeds, datasets to audit or check for
contamination, human verdicts, eval sets.

One reader, so that every command parses a format the same way and names a bad row
as ``FILE:LINE`` the same way. Two families of commands grew their own words for the
same problems ("invalid JSON" for seeds, audits and verdicts; "not valid JSON" for eval
sets and contamination checks), and users and scripts read those messages, so the
reader reports what is wrong as a kind of flaw and each family keeps its wording.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, Literal

from synth.errors import SynthError

Format = Literal["jsonl", "csv", "tsv", "json"]
FormatChoice = Literal["auto", "jsonl", "csv", "tsv", "json"]  # auto: by the suffix

# The format of a file by its suffix (after ``.gz``, which any of them may have).
FORMATS: dict[str, Format] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".json": "json",
}

# What seed files, audited datasets and human verdicts may be (see ``read_rows``).
SUFFIXES = (".jsonl", ".ndjson", ".csv", ".tsv")


class Flaw(StrEnum):
    """What is wrong with one row; the rest of the file may still be read."""

    BAD_JSON = "bad_json"  # a JSONL line that does not parse
    NOT_OBJECT = "not_object"  # a JSONL line that is not an object
    ITEM_NOT_OBJECT = "item_not_object"  # an item of a JSON document that is not one
    MORE_FIELDS = "more_fields"  # a CSV row with more fields than the header
    FEWER_FIELDS = "fewer_fields"  # a CSV row with fewer fields than the header
    NOT_UTF8 = "not_utf8"  # bytes that are not UTF-8 text


# JSON nested deeper than this is refused: no row of a dataset needs it, and what
# reads a row later (json.dumps, the store, a filter walking it) recurses.
MAX_DEPTH = 64
# Python's csv module refuses fields over 128 KiB by default (a text can be longer);
# past this, a field is far more likely an unclosed quote swallowing the file.
FIELD_LIMIT = 16 * 1024 * 1024
# Undecodable bytes are read as lone surrogates U+DC80..U+DCFF (surrogateescape), so a
# bad byte spoils its row, not the whole file; no valid text holds a lone surrogate.
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Row:
    """One row of a file: where it is, and its fields or what is wrong with it."""

    where: str  # "name:line" (JSONL, CSV) or "name[i]" (an item of a JSON document)
    line: int  # the line the row starts on; 0 for an item of a JSON document
    end_line: int  # the line it ends on: a quoted CSV field can span lines
    data: dict[str, Any] = field(default_factory=dict)  # empty when flawed
    flaw: Flaw | None = None
    detail: str = ""  # the parser's words on the flaw, or the counts and types involved

    def problem(self, words: Mapping[Flaw, str]) -> str:
        """The flaw in a family's ``words``: templates with ``{}`` for the detail."""
        return words[self.flaw].format(self.detail) if self.flaw else ""


class FileFlaw(Exception):
    """The file as a whole cannot be read (raised by :func:`read_file`).

    ``kind`` is ``"unreadable"`` (missing, not gzip, not UTF-8: ``cause`` says which),
    ``"empty"`` (a CSV file without a single line and no ``columns``), ``"no_header"``
    (a CSV file whose first line, the header, is blank) or ``"malformed"`` (a CSV the
    csv module refuses, a JSON document that does not parse or has the wrong shape).
    ``line`` is where the problem is, when one line is to blame.
    """

    def __init__(
        self,
        kind: Literal["unreadable", "empty", "no_header", "malformed"],
        message: str,
        line: int | None = None,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.line = line
        self.cause = cause


def format_of(path: Path) -> Format | None:
    """The format a file's suffix names (``.gz`` looked through), or None."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return FORMATS.get(suffixes[-1]) if suffixes else None


def read_file(path: Path, name: str, fmt: Format, columns: Sequence[str] = ()) -> Iterator[Row]:
    """The rows of a JSONL, CSV/TSV or JSON file (gzipped when it ends in ``.gz``).

    Args:
        path: The file to read.
        name: How the file is named in each row's ``where`` (as the user wrote it).
        fmt: The format (see :func:`format_of` for the one a suffix names).
        columns: Column names for a CSV/TSV file without a header row.

    Blank lines and blank CSV rows are skipped. A row that cannot be read comes with
    its :class:`Flaw`, so a caller can stop at it or collect it; a JSON document is one
    value, so if it does not parse nothing of it is read.

    Raises:
        FileFlaw: the file cannot be opened or decoded, a CSV file has no header row,
            the csv module refuses it, or a JSON document is invalid or of the wrong
            shape.
    """
    try:
        with _open(path) as handle:
            if fmt == "jsonl":
                yield from _jsonl(handle, name)
            elif fmt in ("csv", "tsv"):
                yield from _csv(handle, name, "\t" if fmt == "tsv" else ",", columns)
            else:
                yield from _json(handle, name)
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as e:
        raise FileFlaw("unreadable", f"cannot read the file: {e}", cause=e) from e


def _open(path: Path) -> IO[str]:
    # utf-8-sig drops the byte-order mark Excel puts before a CSV's header.
    if path.suffix.lower() == ".gz":
        return io.TextIOWrapper(
            gzip.open(path, "rb"), encoding="utf-8-sig", errors="surrogateescape", newline=""
        )
    return path.open(encoding="utf-8-sig", errors="surrogateescape", newline="")


def _not_utf8(text: str) -> str | None:
    """Where undecodable bytes are in a line, or None when it is all text."""
    found = _SURROGATE.search(text)
    if found is None:
        return None
    code = ord(found.group())
    byte = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else "a lone surrogate"
    return f"{byte} at column {found.start() + 1}"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:20]} is too large for a float")
    return value


class BadJson(ValueError):
    """JSON that :func:`parse_json` refuses; ``line`` is where, when the parser knows."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def parse_json(text: str) -> Any:
    """JSON as a row may hold it: standard JSON only (no NaN or Infinity), numbers
    Python can hold, nested at most ``MAX_DEPTH`` deep, and no lone surrogate in a
    string. Raises BadJson saying which rule it breaks."""
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite)
    except json.JSONDecodeError as e:
        raise BadJson(f"{e.msg} (column {e.colno})", e.lineno) from None
    except RecursionError:
        raise BadJson(f"nested more than {MAX_DEPTH} deep") from None
    except ValueError as e:  # an integer past Python's 4,300 digits, NaN, a huge float
        raise BadJson(str(e).split(";")[0]) from None
    flaw = _value_flaw(value)
    if flaw:
        raise BadJson(flaw)
    return value


def _value_flaw(value: Any) -> str | None:
    """What makes a parsed value unfit to store, walked without recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"nested more than {MAX_DEPTH} deep"
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return "a string holds a lone surrogate (such as \\ud800), which is not text"
        elif isinstance(item, dict):
            stack.extend((k, depth) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return None


def _jsonl(handle: IO[str], name: str) -> Iterator[Row]:
    for number, text in enumerate(handle, 1):
        if not text.strip():
            continue
        where = f"{name}:{number}"
        bad = _not_utf8(text)
        if bad:
            yield Row(where, number, number, flaw=Flaw.NOT_UTF8, detail=bad)
            continue
        try:
            value = parse_json(text)
        except ValueError as e:
            yield Row(where, number, number, flaw=Flaw.BAD_JSON, detail=str(e))
            continue
        if isinstance(value, dict):
            yield Row(where, number, number, value)
        else:
            yield Row(where, number, number, flaw=Flaw.NOT_OBJECT, detail=type(value).__name__)


def _csv(handle: IO[str], name: str, delimiter: str, columns: Sequence[str]) -> Iterator[Row]:
    if csv.field_size_limit() < FIELD_LIMIT:
        csv.field_size_limit(FIELD_LIMIT)
    reader = csv.reader(handle, delimiter=delimiter)
    header = list(columns)
    end = 0  # the line the previous record ended on: reader.line_num is where one ends
    try:
        if not header:
            first = next(reader, None)
            if not first:
                kind: Literal["empty", "no_header"] = "empty" if first is None else "no_header"
                raise FileFlaw(kind, "empty file: no header row")
            bad = _not_utf8("".join(first))
            if bad:
                raise FileFlaw("unreadable", f"the header is not UTF-8 text ({bad})", line=1)
            header, end = first, reader.line_num
        for fields in reader:
            start, end = end + 1, reader.line_num
            if not fields:
                continue
            where = f"{name}:{start}"
            bad = next(filter(None, map(_not_utf8, fields)), None)
            if bad:
                yield Row(where, start, end, flaw=Flaw.NOT_UTF8, detail=f"{bad} of a field")
                continue
            if len(fields) == len(header):
                yield Row(where, start, end, dict(zip(header, fields, strict=True)))
                continue
            flaw = Flaw.MORE_FIELDS if len(fields) > len(header) else Flaw.FEWER_FIELDS
            detail = f"{len(header)} fields ({', '.join(header)}), got {len(fields)}"
            yield Row(where, start, end, flaw=flaw, detail=detail)
    except csv.Error as e:
        why = f"malformed CSV: {e}"
        if "field limit" in str(e):
            why += " (an unclosed quote?)"
        raise FileFlaw("malformed", why, line=reader.line_num) from e


def _json(handle: IO[str], name: str) -> Iterator[Row]:
    text = handle.read()
    bad = _not_utf8(text)
    if bad:
        line = text.count("\n", 0, _SURROGATE.search(text).start()) + 1  # type: ignore[union-attr]
        raise FileFlaw("unreadable", f"not UTF-8 text ({bad.split(' at ')[0]})", line=line)
    try:
        data = parse_json(text)
    except BadJson as e:
        raise FileFlaw("malformed", f"not valid JSON: {e}", line=e.line) from e
    if isinstance(data, dict):
        lengths = {k: len(v) for k, v in data.items() if isinstance(v, list)}
        if len(lengths) != len(data) or len(set(lengths.values())) > 1:
            raise FileFlaw("malformed", "a JSON object must map every key to a list of one length")
        count = next(iter(lengths.values()), 0)
        items: list[Any] = [{k: v[i] for k, v in data.items()} for i in range(count)]
    elif isinstance(data, list):
        items = data
    else:
        raise FileFlaw("malformed", "expected a list of objects or an object of lists")
    for i, item in enumerate(items):
        where = f"{name}[{i}]"
        if isinstance(item, dict):
            yield Row(where, 0, 0, item)
        else:
            yield Row(where, 0, 0, flaw=Flaw.ITEM_NOT_OBJECT, detail=type(item).__name__)


# --- seeds, audited datasets, human verdicts -------------------------------------

_ROW_WORDS: dict[Flaw, str] = {
    Flaw.BAD_JSON: "invalid JSON: {}",
    Flaw.NOT_OBJECT: "a line must be a JSON object, not {}",
    Flaw.NOT_UTF8: "not UTF-8 text: {}",
    Flaw.MORE_FIELDS: "the fields do not match the header (more fields than it names)",
    Flaw.FEWER_FIELDS: "the fields do not match the header (fewer fields than it names)",
}


def read_rows(
    path: Path, error: type[SynthError], what: str
) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, row) of a JSONL or CSV/TSV file, blank lines skipped. A row that
    cannot be parsed comes as the text of what is wrong with it, so a caller can stop
    or collect; a file that cannot be read at all raises ``error`` naming it (``what``
    names the kind of file in the message: "seed files are .jsonl or .csv").

    A CSV row is numbered by the line it ends on (the same as the one it starts on
    unless a quoted field spans lines), as seed origins have always been stored. An
    empty CSV file has no rows.
    """
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise error(str(path), f"{what} files are .jsonl or .csv")
    try:
        for row in read_file(path, str(path), FORMATS[suffix]):
            yield row.end_line, row.problem(_ROW_WORDS) if row.flaw else row.data
    except FileFlaw as e:
        if e.kind == "empty":
            return
        if e.kind == "no_header":
            raise error(
                f"{path}:1", "the first line is blank: a CSV file starts with its header"
            ) from None
        if isinstance(e.cause, UnicodeDecodeError):
            raise error(str(path), f"not UTF-8 text: {e.cause.reason}") from None
        if isinstance(e.cause, OSError):
            raise error(str(path), e.cause.strerror or str(e.cause)) from None
        raise error(f"{path}:{e.line}" if e.line else str(path), e.message) from None


# --- eval sets, datasets checked for contamination -------------------------------

_RECORD_WORDS: dict[Flaw, str] = {
    Flaw.BAD_JSON: "not valid JSON: {}",
    Flaw.NOT_OBJECT: "expected a JSON object, got {}",
    Flaw.ITEM_NOT_OBJECT: "expected an object, got {}",
    Flaw.MORE_FIELDS: "expected {}",
    Flaw.FEWER_FIELDS: "expected {}",
    Flaw.NOT_UTF8: "not UTF-8 text: {}",
}


def read_records(
    path: Path,
    shown: str,
    error: type[SynthError],
    fmt: FormatChoice = "auto",
    columns: Sequence[str] = (),
) -> Iterator[Row]:
    """The rows of a JSONL, CSV/TSV or JSON file (optionally gzipped), in order.

    Args:
        path: The file to read.
        shown: How the file is named in locators and errors (as the user wrote it).
        error: The error to raise, naming ``file:line`` (``file[i]`` in a JSON
            document) or the file.
        fmt: ``auto`` picks the format from the suffix (``.jsonl``, ``.ndjson``,
            ``.csv``, ``.tsv``, ``.json``, each optionally ``.gz``).
        columns: Column names for CSV/TSV without a header row.

    Raises:
        error: the file is missing or unreadable, or a row is malformed.
    """
    if not path.is_file():
        raise error(shown, f"file not found (looked for {path})")
    known = format_of(path) if fmt == "auto" else fmt
    if known is None:
        raise error(shown, "unknown file type: give format = jsonl, csv, tsv or json")
    try:
        for row in read_file(path, shown, known, columns):
            if row.flaw:
                raise error(row.where, row.problem(_RECORD_WORDS))
            yield row
    except FileFlaw as e:
        raise error(f"{shown}:{e.line}" if e.line else shown, e.message) from e.cause


# --- labelling tools' exports -----------------------------------------------------


def read_json_list(path: Path, error: type[SynthError], what: str) -> list[Any]:
    """A JSON document that must be a list, as a labelling tool exports its tasks;
    ``what`` names the kind of file in the message when it is not one."""
    try:
        value = parse_json(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise error(str(path), "no such file") from None
    except UnicodeDecodeError as e:
        raise error(str(path), f"not UTF-8 text: {e.reason} at byte {e.start}") from None
    except ValueError as e:
        raise error(str(path), f"not valid JSON: {e}") from None
    if not isinstance(value, list):
        raise error(str(path), f"not {what} (expected a JSON list)")
    return value
