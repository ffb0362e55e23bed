from __future__ import annotations

import re
import typing

import pytest
from conftest import ROOT
from pydantic import BaseModel

from synth.config import Config, load_config
from synth.errors import ConfigError


def test_default_config_file_loads():
    from conftest import ROOT

    config = load_config(ROOT / "config.toml")
    assert [f.kind for f in config.filters] == [
        "schema",
        "pii",
        "exact_dedup",
        "near_dedup",
        "contamination",
        "diversity",
        "rubric",
    ]
    assert config.review.fraction == 0.2
    assert config.slices[0].name == "urgent"


def test_toml_syntax_error_names_the_file(project):
    project.write_config("[llm\nmodel = 'x'\n")
    with pytest.raises(ConfigError, match=r"config.toml: not valid TOML"):
        project.config()


@pytest.mark.parametrize(
    ("raw", "key", "message"),
    [
        ({"llm": {"modle": "x"}}, "llm.modle", "Extra inputs are not permitted"),
        ({"llm": {"temperature": "hot"}}, "llm.temperature", "valid number"),
        ({"llm": {"max_concurrency": 0}}, "llm.max_concurrency", "greater than 0"),
        (
            {"filters": [{"kind": "schema"}, {"kind": "exact_dedup", "treshold": 1}]},
            "filters[1].treshold",
            "Extra inputs are not permitted",
        ),
        ({"filters": [{"kind": "schema", "min_words": "many"}]}, "filters[0].min_words", "integer"),
        ({"filters": [{"kind": "nope"}]}, "filters[0]", "does not match"),
        ({"slices": [{"name": "x"}]}, "slices[0].target", "Field required"),
        ({"targets": {"balance": "uniform"}}, "targets", "per_label"),
        ({"review": {"fraction": 1.5}}, "review.fraction", "less than or equal to 1"),
    ],
)
def test_bad_key_or_type_names_the_dotted_key(tmp_path, raw, key, message):
    path = tmp_path / "config.toml"
    path.write_text(_toml(raw))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"config.toml: {key}: ")
    assert message in str(e.value)


def _toml(raw: dict) -> str:
    """Enough of a TOML writer for these cases."""
    import json

    lines = []
    for section, value in raw.items():
        if isinstance(value, list):
            for item in value:
                lines.append(f"[[{section}]]")
                lines += [f"{k} = {json.dumps(v)}" for k, v in item.items()]
        else:
            lines.append(f"[{section}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in value.items()]
    return "\n".join(lines) + "\n"


def test_missing_file_says_how_to_pick_one(tmp_path):
    with pytest.raises(ConfigError, match="SYNTH_CONFIG"):
        load_config(tmp_path / "nope.toml")


def test_synth_config_env_picks_the_file(project, monkeypatch):
    monkeypatch.setenv("SYNTH_CONFIG", str(project.config_path))
    assert load_config().project.name == "test"


def test_api_key_comes_from_the_named_variable(project, monkeypatch):
    project.write_config(base_url="https://llm.example.invalid/v1")
    config = project.config()
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="llm.api_key_env: environment variable OPENAI_API_KEY"):
        config.api_key()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert config.api_key() == "sk-test"
    assert "sk-test" not in config.as_json()


def test_loopback_endpoints_need_no_key(project, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert project.config().api_key() == "unused"


# -- the bundled config.toml documents every key ---------------------------------------

KEY_LINE = re.compile(r'^\s*(#\s*)?([A-Za-z_][\w.]*|"[^"]+")\s*=\s*(\{.*\})?')


def _config_keys(text: str) -> list[tuple[int, str, bool, bool]]:
    """(line, dotted key, set (not a commented-out example), commented) for each key
    line of a config file; a [[filters]] key is named ``filters.<kind>.<key>``, and
    the keys of an inline table ``name = { a = 1 }`` are named ``name's table.*.a``."""
    out = []
    table, kind = "", ""
    lines = text.splitlines()
    for n, line in enumerate(lines, 1):
        header = re.match(r"^\[\[?([\w.]+)\]\]?", line.strip())
        if header:
            table, kind = header.group(1), ""
            continue
        m = KEY_LINE.match(line)
        if not m:
            continue
        key, is_set = m.group(2).strip('"'), m.group(1) is None
        if table == "filters" and key == "kind" and is_set:
            found = re.search(r'"(\w+)"', line)
            assert found, line
            kind = found.group(1)
        prefix = f"filters.{kind}" if table == "filters" else table
        path = f"{prefix}.{key}" if prefix else key
        # The line above, or above the table's header for a table's first key.
        above = n - 2
        while above > 0 and re.match(r"^\[", lines[above]) and "#" not in lines[above]:
            above -= 1
        before = lines[above].strip() if n > 1 else ""
        if before.startswith("["):
            before = before[before.find("#") :]
        commented = "#" in line.split("=", 1)[1].split("}")[-1] or before.startswith("#")
        out.append((n, path, is_set, commented))
        if m.group(3):  # an inline table's keys, as entries of a dict of sections
            entry = path.rsplit(".", 1)[0] + ".*"
            out += [(n, f"{entry}.{k}", is_set, True) for k in re.findall(r"(\w+)\s*=", m.group(3))]
    return out


def _model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every dotted key a section model reads, nested sections included (a dict of
    sections, such as schema.fields, as ``schema.fields.*.type``)."""
    keys = set()
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        key = f"{prefix}.{field.alias or name}" if prefix else field.alias or name
        keys.add(key)
        for sub in typing.get_args(field.annotation) or (field.annotation,):
            if isinstance(sub, type) and issubclass(sub, BaseModel):
                inner = f"{key}.*" if typing.get_origin(field.annotation) is dict else key
                keys |= _model_keys(sub, inner)
    return keys


def test_every_key_in_the_bundled_config_is_commented():
    path = ROOT / "config.toml"
    bare = [
        f"{path.name}:{n}: {key}"
        for n, key, is_set, commented in _config_keys(path.read_text())
        if is_set and not commented
    ]
    assert not bare, "keys without a comment on their line or the line above:\n" + "\n".join(bare)


def test_every_config_key_appears_in_the_bundled_config():
    """Set, or shown as a commented-out example. The filters' own settings are left to
    each filter (the README's filter table and the filter modules document them)."""
    text = (ROOT / "config.toml").read_text()
    found = set()
    for _, key, _, _ in _config_keys(text):
        parts = key.split(".")
        found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    found |= {h for h in re.findall(r"^\[\[?([\w.]+)\]\]?", text, re.M)}
    missing = sorted(
        k for k in _model_keys(Config) if not k.startswith("filters.") and k not in found
    )
    assert not missing, f"Config keys config.toml never mentions: {', '.join(missing)}"


def test_the_comment_check_catches_a_bare_key():
    keys = _config_keys('[llm]\nmode = "batch"\ntop_p = 0.9  # nucleus sampling\n')
    assert [(k, c) for _, k, _, c in keys] == [("llm.mode", False), ("llm.top_p", True)]
    keys = _config_keys('[[filters]]\nkind = "pii"  # x\n# kinds = ["email"]\n')
    assert [(k, s) for _, k, s, _ in keys] == [
        ("filters.pii.kind", True),
        ("filters.pii.kinds", False),
    ]
    keys = _config_keys('[llm.prices]\n"m" = { input = 1, output = 2 }\n')
    assert {k for _, k, _, _ in keys} == {
        "llm.prices.m",
        "llm.prices.*.input",
        "llm.prices.*.output",
    }
