from __future__ import annotations

import pytest

from synth.config import load_config
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
