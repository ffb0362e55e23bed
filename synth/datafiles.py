"""Reading the JSONL and CSV files users hand to synth (seeds, datasets to audit,
human verdicts): one reader, so every command reports a bad line the same way."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from synth.errors import SynthError

SUFFIXES = (".jsonl", ".ndjson", ".csv", ".tsv")


def read_rows(
    path: Path, error: type[SynthError], what: str
) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, row) of a JSONL or CSV/TSV file, blank lines skipped. A row that
    cannot be parsed comes as the text of what is wrong with it, so a caller can stop
    or collect; a file that cannot be read at all raises ``error`` naming it (``what``
    names the kind of file in the message: "seed files are .jsonl or .csv")."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise error(str(path), f"{what} files are .jsonl or .csv")
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as e:
        raise error(str(path), e.strerror or str(e)) from None
    with handle:
        try:
            if suffix in (".jsonl", ".ndjson"):
                for n, text in enumerate(handle, start=1):
                    if text.strip():
                        yield n, _json_object(text)
                return
            reader = csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ",")
            if reader.fieldnames is None:
                return
            for row in reader:
                if None in row:
                    yield (
                        reader.line_num,
                        "the fields do not match the header (more fields than it names)",
                    )
                elif None in row.values():
                    yield (
                        reader.line_num,
                        "the fields do not match the header (fewer fields than it names)",
                    )
                else:
                    yield reader.line_num, dict(row)
        except UnicodeDecodeError as e:
            raise error(str(path), f"not UTF-8 text: {e.reason}") from None


def _json_object(text: str) -> dict[str, Any] | str:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        return f"invalid JSON: {e.msg} (column {e.colno})"
    if not isinstance(value, dict):
        return f"a line must be a JSON object, not {type(value).__name__}"
    return value
