"""The one reader of users' files: formats, line numbers, flaws and each family's words."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from synth.datafiles import (
    FIELD_LIMIT,
    FileFlaw,
    Flaw,
    Format,
    FormatChoice,
    format_of,
    read_file,
    read_records,
    read_rows,
)
from synth.errors import EvalSetError, SeedError


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.jsonl", "jsonl"),
        ("a.ndjson", "jsonl"),
        ("a.JSONL", "jsonl"),
        ("a.csv", "csv"),
        ("a.tsv", "tsv"),
        ("a.json", "json"),
        ("a.jsonl.gz", "jsonl"),
        ("a.csv.GZ", "csv"),
        ("a.txt", None),
        ("a.gz", None),
        ("noext", None),
    ],
)
def test_format_of(name: str, fmt: str | None) -> None:
    assert format_of(Path(name)) == fmt


@pytest.mark.parametrize(
    ("name", "content", "fmt", "rows"),
    [
        # where, line, end_line, data
        (
            "a.jsonl",
            '{"q": "one"}\n\n  \n{"q": 2}\n',
            "jsonl",
            [("a.jsonl:1", 1, 1, {"q": "one"}), ("a.jsonl:4", 4, 4, {"q": 2})],
        ),
        (
            "b.jsonl.gz",
            gzip.compress('{"q": "é"}\n'.encode()),
            "jsonl",
            [("b.jsonl.gz:1", 1, 1, {"q": "é"})],
        ),
        (
            "c.csv",
            'q,a\n"first\nline",x\n\nsecond,y\n',
            "csv",
            [
                ("c.csv:2", 2, 3, {"q": "first\nline", "a": "x"}),
                ("c.csv:5", 5, 5, {"q": "second", "a": "y"}),
            ],
        ),
        (
            "d.tsv",
            "q\tr\nhello, there\tx\n",
            "tsv",
            [("d.tsv:2", 2, 2, {"q": "hello, there", "r": "x"})],
        ),
        ("e.csv", "q,a\r\none,x\r\n", "csv", [("e.csv:2", 2, 2, {"q": "one", "a": "x"})]),
        (
            "f.json",
            json.dumps([{"q": "one"}, {"q": "two"}]),
            "json",
            [("f.json[0]", 0, 0, {"q": "one"}), ("f.json[1]", 0, 0, {"q": "two"})],
        ),
        (
            "g.json.gz",
            gzip.compress(json.dumps({"q": ["one", "two"], "id": ["x", "y"]}).encode()),
            "json",
            [
                ("g.json.gz[0]", 0, 0, {"q": "one", "id": "x"}),
                ("g.json.gz[1]", 0, 0, {"q": "two", "id": "y"}),
            ],
        ),
        ("h.data", '{"q": 1}\n', "jsonl", [("h.data:1", 1, 1, {"q": 1})]),
        ("i.json", "[]", "json", []),
        ("j.jsonl", "", "jsonl", []),
    ],
)
def test_rows_name_their_file_and_lines(
    tmp_path: Path, name: str, content: str | bytes, fmt: Format, rows: list[tuple[Any, ...]]
) -> None:
    path = write(tmp_path, name, content)
    got = [(r.where, r.line, r.end_line, r.data) for r in read_file(path, name, fmt)]
    assert got == rows


def test_a_csv_without_a_header_takes_the_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "m.csv", "What is 2+2?,3,4\n")
    [row] = read_file(path, "m.csv", "csv", ("question", "A", "B"))
    assert (row.where, row.data) == ("m.csv:1", {"question": "What is 2+2?", "A": "3", "B": "4"})


@pytest.mark.parametrize(
    ("name", "content", "where", "flaw", "detail"),
    [
        ("a.jsonl", '{"q": }\n', "a.jsonl:1", Flaw.BAD_JSON, "Expecting value (column 7)"),
        ("a.jsonl", "[1]\n", "a.jsonl:1", Flaw.NOT_OBJECT, "list"),
        ("a.json", '[{"q": 1}, "x"]', "a.json[1]", Flaw.ITEM_NOT_OBJECT, "str"),
        ("a.csv", "q,a\none,two,three\n", "a.csv:2", Flaw.MORE_FIELDS, "2 fields (q, a), got 3"),
        ("a.csv", "q,a\none\n", "a.csv:2", Flaw.FEWER_FIELDS, "2 fields (q, a), got 1"),
    ],
)
def test_a_flawed_row_comes_with_its_flaw_and_the_rest_is_read(
    tmp_path: Path, name: str, content: str, where: str, flaw: Flaw, detail: str
) -> None:
    fmt = format_of(Path(name))
    assert fmt is not None
    jsonl = fmt == "jsonl"
    path = write(tmp_path, name, content + ('{"q": 9}\n' if jsonl else ""))
    rows = list(read_file(path, name, fmt))
    bad = next(r for r in rows if r.flaw)
    assert (bad.where, bad.flaw, bad.detail, bad.data) == (where, flaw, detail, {})
    if jsonl:  # the line after a bad one is read
        assert rows[-1].data == {"q": 9}


@pytest.mark.parametrize(
    ("name", "content", "kind", "line", "message"),
    [
        ("a.csv", "", "empty", None, "empty file: no header row"),
        ("a.csv", "\nq\nx\n", "no_header", None, "empty file: no header row"),
        ("a.jsonl.gz", b"not gzip at all", "unreadable", None, "cannot read the file"),
        ("a.json", b'[{"q": 1},\n{"q": "\xff"}]', "unreadable", 2, "not UTF-8 text (byte 0xff)"),
        ("a.csv", "q\n" + "x" * (FIELD_LIMIT + 1) + "\n", "malformed", 2, "an unclosed quote?"),
        ("a.json", '[{"q": 1},\n oops]', "malformed", 2, "not valid JSON"),
        ("a.json", '{"q": [1], "r": [1, 2]}', "malformed", None, "a list of one length"),
        ("a.json", '"text"', "malformed", None, "a list of objects or an object of lists"),
    ],
)
def test_a_file_that_cannot_be_read_raises_a_file_flaw(
    tmp_path: Path, name: str, content: str | bytes, kind: str, line: int | None, message: str
) -> None:
    fmt = format_of(Path(name))
    assert fmt is not None
    path = write(tmp_path, name, content)
    with pytest.raises(FileFlaw) as e:
        list(read_file(path, name, fmt))
    assert (e.value.kind, e.value.line) == (kind, line)
    assert message in e.value.message


# --- the two families of messages ---------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "rows"),
    [
        (
            "a.jsonl",
            '{"q": 1}\n{"q": }\n\n[1]\n',
            [
                (1, {"q": 1}),
                (2, "invalid JSON: Expecting value (column 7)"),
                (4, "a line must be a JSON object, not list"),
            ],
        ),
        (
            "a.csv",
            "q,a\none\n1,2,3\n",
            [
                (2, "the fields do not match the header (fewer fields than it names)"),
                (3, "the fields do not match the header (more fields than it names)"),
            ],
        ),
        # Seeds are numbered by the line a CSV record ends on, as stored origins are.
        ("a.csv", 'q,a\n"two\nlines",x\n', [(3, {"q": "two\nlines", "a": "x"})]),
        ("a.csv", "", []),
    ],
)
def test_read_rows_words(
    tmp_path: Path, name: str, content: str, rows: list[tuple[Any, ...]]
) -> None:
    path = write(tmp_path, name, content)
    assert list(read_rows(path, SeedError, "seed")) == rows


@pytest.mark.parametrize(
    ("name", "content", "where", "message"),
    [
        ("a.parquet", "PAR1", "a.parquet", "seed files are .jsonl or .csv"),
        ("a.jsonl.gz", "x", "a.jsonl.gz", "seed files are .jsonl or .csv"),
        ("a.csv", b"q\xff\nx\n", "a.csv:1", "the header is not UTF-8 text (byte 0xff at column 2)"),
        ("a.csv", "\nq\nx\n", "a.csv:1", "the first line is blank"),
    ],
)
def test_read_rows_refuses_a_file_naming_it(
    tmp_path: Path, name: str, content: str | bytes, where: str, message: str
) -> None:
    path = write(tmp_path, name, content)
    with pytest.raises(SeedError) as e:
        list(read_rows(path, SeedError, "seed"))
    assert e.value.where == str(tmp_path / where)
    assert message in e.value.message


def test_read_rows_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SeedError) as e:
        list(read_rows(tmp_path / "gone.jsonl", SeedError, "seed"))
    assert (e.value.where, e.value.message) == (
        str(tmp_path / "gone.jsonl"),
        "No such file or directory",
    )


@pytest.mark.parametrize(
    ("name", "content", "fmt", "where", "message"),
    [
        ("a.jsonl", '{"q": }\n', "auto", "a.jsonl:1", "not valid JSON: Expecting value (column 7)"),
        ("a.jsonl", "[1]\n", "auto", "a.jsonl:1", "expected a JSON object, got list"),
        ("a.json", '[{"q": 1}, "x"]', "auto", "a.json[1]", "expected an object, got str"),
        ("a.csv", "q,a\none\n", "auto", "a.csv:2", "expected 2 fields (q, a), got 1"),
        ("a.csv", "", "auto", "a.csv", "empty file: no header row"),
        ("a.json", '[{"q": 1},\n oops]', "auto", "a.json:2", "not valid JSON: Expecting value"),
        ("a.txt", "x", "auto", "a.txt", "unknown file type: give format = jsonl, csv, tsv or json"),
        ("a.txt", "q\nx,y\n", "csv", "a.txt:2", "expected 1 fields (q), got 2"),
        ("a.jsonl.gz", b"nope", "auto", "a.jsonl.gz", "cannot read the file: Not a gzipped file"),
    ],
)
def test_read_records_words(
    tmp_path: Path, name: str, content: str | bytes, fmt: FormatChoice, where: str, message: str
) -> None:
    path = write(tmp_path, name, content)
    with pytest.raises(EvalSetError) as e:
        list(read_records(path, name, EvalSetError, fmt))
    assert e.value.where == where
    assert e.value.message.startswith(message)


def test_read_records_names_a_missing_file_as_the_user_wrote_it(tmp_path: Path) -> None:
    with pytest.raises(EvalSetError) as e:
        list(read_records(tmp_path / "evals" / "gone.jsonl", "evals/gone.jsonl", EvalSetError))
    assert e.value.where == "evals/gone.jsonl"
    assert e.value.message.startswith("file not found (looked for ")
