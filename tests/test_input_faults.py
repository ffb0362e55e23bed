"""Seed files and config files as a hostile world writes them.

Each known trap is pinned as a plain test: an Excel CSV with a byte-order mark, CRLF,
bytes that are not UTF-8, a lone surrogate escape, a 5,000-digit number, JSON nested
thousands deep, a CSV field over 128 KiB; a config, template or rubric that is not
UTF-8, a bool where a number is meant, a template outside the project. Then
hypothesis throws random files at the same readers: whatever comes in, the answer is
rows or a SynthError naming the place, never a traceback, and a refused import
changes nothing that was stored.
"""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from conftest import Project
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synth.config import Config, load_config
from synth.errors import ConfigError, SeedError, SynthError, TemplateError
from synth.prompts import load_template
from synth.seeds import read_seeds
from synth.store import Store

VALID = '{"text": "my card has not arrived", "label": "card_arrival"}\n'


def seeds_of(project: Project, name: str, content: bytes, **kw: Any) -> Any:
    path = project.root / name
    path.write_bytes(content)
    return read_seeds(path, project.config(), **kw)


def refused(project: Project, name: str, content: bytes) -> tuple[str, str]:
    """(where, message) of the error, after checking --skip-invalid skips the row."""
    kept = seeds_of(project, name, content, skip_invalid=True)
    assert len(kept.seeds) == 1 and len(kept.problems) == 1, kept.problems
    with pytest.raises(SeedError) as e:
        seeds_of(project, name, content)
    assert kept.problems[0] == f"{e.value.where}: {e.value.message}"
    return e.value.where, e.value.message


# --- seed files: the pinned cases -----------------------------------------------


def test_an_excel_csv_with_a_byte_order_mark_and_crlf_reads_its_header(project):
    content = "\ufefftext,label\r\nmy card has not arrived,card_arrival\r\n".encode()
    parsed = seeds_of(project, "excel.csv", content)
    assert [(s.text, s.label) for s in parsed.seeds] == [
        ("my card has not arrived", "card_arrival")
    ]


def test_a_jsonl_with_a_byte_order_mark_and_crlf_reads(project):
    parsed = seeds_of(project, "bom.jsonl", ("\ufeff" + VALID.replace("\n", "\r\n")).encode())
    assert parsed.seeds[0].text == "my card has not arrived"


@pytest.mark.parametrize(
    ("name", "bad", "message"),
    [
        ("bytes.jsonl", b'{"text": "caf\xe9 card", "label": "x"}\n', "not UTF-8 text: byte 0xe9"),
        ("bytes.csv", b"caf\xe9 card,card_arrival\n", "not UTF-8 text: byte 0xe9 at column 4"),
        ("surrogate.jsonl", b'{"text": "x\\ud800y z", "label": "x"}\n', "lone surrogate"),
        ("digits.jsonl", b'{"text": "a b c", "label": "x", "n": ' + b"7" * 5000 + b"}\n", "4300"),
        (
            "deep.jsonl",
            b'{"text": "a b c", "label": "x", "n": ' + b"[" * 5000 + b"]" * 5000 + b"}\n",
            "nested more than 64 deep",
        ),
        ("nan.jsonl", b'{"text": "a b c", "label": "x", "n": NaN}\n', "NaN is not a JSON number"),
        ("huge.jsonl", b'{"text": "a b c", "label": "x", "n": 1e999}\n', "too large"),
    ],
)
def test_a_bad_row_is_named_by_line_and_skipped_with_skip_invalid(project, name, bad, message):
    header = b"text,label\n" if name.endswith(".csv") else b""
    first = b"my card has not arrived,card_arrival\n" if header else VALID.encode()
    where, why = refused(project, name, header + first + bad)
    assert where == f"{project.root / name}:{3 if header else 2}"
    assert message in why, why


def test_a_csv_field_over_128_kib_is_read(project):
    text = "my card " * 20_000  # 160,000 characters
    content = f'text,label\n"{text}",card_arrival\n'.encode()
    assert seeds_of(project, "long.csv", content).seeds[0].text == text


def test_a_5000_digit_number_in_a_csv_integer_field_is_one_short_message(project):
    text = project.config_path.read_text().replace(
        'fields.label = { type = "string" }',
        'fields.label = { type = "string" }\nfields.n = { type = "integer" }',
    )
    project.config_path.write_text(text)
    content = f"text,label,n\nmy card is late,card_arrival,{'9' * 5000}\n".encode()
    with pytest.raises(SeedError) as e:
        seeds_of(project, "n.csv", content)
    assert len(e.value.message) < 200 and "4300 digits" in e.value.message


def test_the_cli_skips_bad_rows_with_skip_invalid_and_refuses_the_file_without(project):
    path = project.root / "mixed.jsonl"
    path.write_bytes(VALID.encode() + b'{"text": "\xff\xfe", "label": "x"}\n' + b"[" * 3000 + b"\n")
    cmd = [sys.executable, "-m", "synth", "--config", str(project.config_path), "seeds", "import"]
    whole = subprocess.run([*cmd, str(path)], capture_output=True, text=True, timeout=60)
    assert whole.returncode == 1 and "Traceback" not in whole.stderr
    assert whole.stderr.strip() == f"Error: {path}:2: not UTF-8 text: byte 0xff at column 11"
    assert not (project.root / "synth.db").exists()
    skip = subprocess.run(
        [*cmd, "--skip-invalid", str(path)], capture_output=True, text=True, timeout=60
    )
    assert skip.returncode == 0, skip.stderr
    assert skip.stdout.strip() == f"{path}: 1 added, 0 already stored, 2 skipped"
    assert f"skipped {path}:3: invalid JSON: nested more than 64 deep" in skip.stderr


# --- config, templates, rubrics: the pinned cases ----------------------------------


def test_a_bool_where_a_number_is_meant_is_refused(project):
    text = project.config_path.read_text().replace("target = 2", "target = false")
    project.config_path.write_text(text)
    with pytest.raises(ConfigError, match=r"slices\[0\]\.target.*valid integer"):
        project.config()


@pytest.mark.parametrize(("key", "value"), [("per_label", "true"), ("fraction", "true")])
def test_no_bool_passes_for_a_number_anywhere(project, key, value):
    text = project.config_path.read_text().replace(f"{key} = ", f"{key} = {value} #")
    project.config_path.write_text(text)
    with pytest.raises(ConfigError):
        project.config()


def test_a_config_that_is_not_utf8_names_its_line(project):
    project.config_path.write_bytes(project.config_path.read_bytes() + b"\n# caf\xe9\n")
    with pytest.raises(ConfigError) as e:
        project.config()
    lines = project.config_path.read_bytes().count(b"\n")
    assert e.value.where == f"{project.config_path}:{lines}"
    assert "not UTF-8 text (byte 0xe9)" in e.value.message


def test_a_template_that_is_not_utf8_names_its_line(tmp_path):
    path = tmp_path / "t.md.j2"
    path.write_bytes(b"line one\nline \xff two\n")
    with pytest.raises(TemplateError) as e:
        load_template(path, "t.md.j2")
    assert (e.value.where, e.value.message) == (
        "t.md.j2:2",
        "not UTF-8 text (byte 0xff): save it as UTF-8",
    )


@pytest.mark.parametrize("template", ["/proc/self/environ", "../outside.md.j2", "link.md.j2"])
def test_a_template_outside_the_project_is_refused(project, template):
    (project.root.parent / "outside.md.j2").write_text("{{ label }}")
    (project.root / "link.md.j2").symlink_to("/proc/self/environ")
    text = project.config_path.read_text().replace(
        'template = "prompts/generate/classify.md.j2"', f'template = "{template}"'
    )
    project.config_path.write_text(text)
    with pytest.raises(ConfigError) as e:
        project.config()
    assert e.value.where == "config.toml: generate.template"
    assert "outside the project folder" in e.value.message
    assert "project.outside_templates = true" in e.value.message
    project.config_path.write_text(
        text.replace('name = "test"', 'name = "test"\noutside_templates = true')
    )
    assert project.config().generate.template == template


def test_a_rubric_filter_outside_the_project_is_refused(project):
    project.write_config('\n[[filters]]\nkind = "rubric"\nrubric = "/etc/passwd"\n')
    with pytest.raises(ConfigError, match=r"filters\[2\]\.rubric.*outside the project"):
        project.config()


def test_a_config_with_huge_or_deep_values_is_one_error(project):
    for extra in [f"\n[x]\ny = {'9' * 5000}\n", "\n[x]\ny = " + "[" * 3000 + "]" * 3000 + "\n"]:
        project.config_path.write_text(project.config_path.read_text() + extra)
        with pytest.raises(ConfigError, match="not valid TOML"):
            project.config()
        project.write_config()


# --- fuzz ---------------------------------------------------------------------------

FUZZ = settings(
    max_examples=120,
    deadline=None,
    database=None,
    derandomize=True,  # the same cases on every machine: CI must not flake
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

odd_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40) | st.sampled_from(
    ["", " ", "\x00", "\u202e", "\ufeff", "e\u0301", "\U0001f600", "\r", "a,b", '"']
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | odd_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4),
    max_leaves=20,
)
row_dicts = st.fixed_dictionaries(
    {
        "text": odd_text | st.sampled_from(["my card has not arrived", "where is my new card"]),
        "label": st.sampled_from(["card_arrival", "exchange_rate", ""]) | json_values,
    },
    optional={"tone": json_values, "n": json_values},
)
special_lines = st.sampled_from(
    [
        b'{"text": "x\\ud800 y z", "label": "card_arrival"}',
        b'{"text": "a b c", "label": "card_arrival", "n": ' + b"9" * 5000 + b"}",
        b'{"text": "a b c", "label": "card_arrival", "n": ' + b"[" * 2000 + b"]" * 2000 + b"}",
        b'{"text": "a b c", "label": "card_arrival", "n": NaN}',
        b"\xff\xfe\x00garbage",
        b"",
        b"   ",
        b"[1, 2]",
        b'"just a string"',
    ]
)


def _jsonl_line(draw: Any) -> bytes:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return json.dumps(draw(row_dicts), ensure_ascii=draw(st.booleans())).encode(
            "utf-8", "surrogatepass"
        )
    if kind == 1:
        return draw(special_lines)
    if kind == 2:
        return json.dumps(draw(json_values)).encode()
    return draw(st.binary(max_size=30))


@st.composite
def seed_files(draw: Any) -> tuple[str, bytes]:
    newline = draw(st.sampled_from([b"\n", b"\r\n"]))
    bom = draw(st.sampled_from([b"", b"\xef\xbb\xbf"]))
    if draw(st.booleans()):
        lines = [_jsonl_line(draw) for _ in range(draw(st.integers(0, 6)))]
        return "fuzz.jsonl", bom + newline.join(lines) + newline
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n" if newline == b"\r\n" else "\n")
    header = draw(st.sampled_from([["text", "label"], ["label", "text", "tone"], ["text"]]))
    writer.writerow(header)
    for _ in range(draw(st.integers(0, 6))):
        n = draw(st.integers(0, len(header) + 1))
        writer.writerow([draw(odd_text | st.just("x" * 140_000)) for _ in range(n)])
    body = out.getvalue().encode("utf-8", "surrogatepass")
    if draw(st.booleans()):  # bytes dropped in somewhere
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.binary(min_size=1, max_size=8)) + body[at:]
    return "fuzz.csv", bom + body


_FUZZ_ROOT = Path(tempfile.mkdtemp(prefix="synth-fuzz-"))


def _fuzz_project() -> tuple[Config, Path]:
    project = Project(_FUZZ_ROOT)
    config = project.config()
    with Store(config.db_path) as store:
        if store.count("examples") == 0:
            store.examples.add_seeds(read_seeds(project.seeds, config).seeds)
    return config, config.db_path


def _snapshot(db: Path) -> list[tuple[Any, ...]]:
    with Store(db, readonly=True) as store:
        return store.conn.execute(
            "SELECT id, data_json, text, status, slice, label FROM examples ORDER BY id"
        ).fetchall()


@FUZZ
@given(seed_files(), st.booleans())
def test_fuzzed_seed_files_import_whole_or_are_refused_without_a_trace(file, skip_invalid):
    name, content = file
    config, db = _fuzz_project()
    path = _FUZZ_ROOT / name
    path.write_bytes(content)
    before = _snapshot(db)
    try:
        parsed = read_seeds(path, config, skip_invalid=skip_invalid)
    except SynthError as e:
        assert "\n" not in str(e)
        assert _snapshot(db) == before
        return
    with Store(db) as store:
        store.examples.add_seeds(parsed.seeds)
    after = _snapshot(db)
    assert set(before) <= set(after)  # nothing stored before was changed
    texts = {s.text for s in parsed.seeds}
    assert {r[2] for r in set(after) - set(before)} <= texts  # only rows that validated
    for seed in parsed.seeds:
        assert isinstance(seed.text, str) and seed.text.strip()
        json.dumps(seed.data)  # what the store will hold is plain JSON
    for problem in parsed.problems:
        assert problem.startswith(f"{path}:") and "\n" not in problem


toml_keys = (
    st.sampled_from(
        [
            "project",
            "llm",
            "schema",
            "targets",
            "generate",
            "review",
            "splits",
            "export",
            "slices",
            "filters",
            "name",
            "db",
            "model",
            "base_url",
            "temperature",
            "max_tokens",
            "timeout",
            "retries",
            "per_label",
            "balance",
            "counts",
            "template",
            "few_shot",
            "per_call",
            "max_calls",
            "fraction",
            "train",
            "test",
            "validation",
            "kind",
            "threshold",
            "target",
            "match",
            "labels",
            "text",
            "label",
            "fields",
            "type",
            "max_length",
            "outside_templates",
        ]
    )
    | odd_text
)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


toml_values = st.recursive(
    st.booleans()
    | st.integers()
    | st.floats()
    | odd_text
    | st.sampled_from(
        ["/proc/self/environ", "prompts/generate/classify.md.j2", "../x", "~nobody/x"]
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(toml_keys, inner, max_size=3),
    max_leaves=12,
)


@st.composite
def config_files(draw: Any) -> bytes:
    text = (_FUZZ_ROOT / "config.toml").read_text() if draw(st.booleans()) else ""
    tables = draw(
        st.dictionaries(toml_keys, st.dictionaries(toml_keys, toml_values, max_size=4), max_size=4)
    )
    for table, values in tables.items():
        text += f"\n[{json.dumps(table)}]\n"
        text += "".join(f"{json.dumps(k)} = {_toml(v)}\n" for k, v in values.items())
    body = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.binary(min_size=1, max_size=8) | special_lines) + body[at:]
    return body


@FUZZ
@given(config_files())
def test_fuzzed_config_files_load_or_are_one_error(content):
    _fuzz_project()
    path = _FUZZ_ROOT / "fuzz.toml"
    path.write_bytes(content)
    try:
        config = load_config(path)
    except SynthError as e:
        assert "\n" not in e.where
        return
    config.db_path.resolve()
    config.resolve(config.generate.template)
    config.as_json()
