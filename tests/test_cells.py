"""Cells without a label: by other fields, or one per slice."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_jsonl

from synth.config import Config, parse_config
from synth.errors import ConfigError
from synth.llm.structured import answer_shape, examples_format
from synth.plan import plan_cells
from synth.records import CellKey
from synth.seeds import read_seeds

FIELDS = {
    "instruction": {"type": "string", "min_length": 8},
    "input": {"type": "string"},
    "response": {"type": "string"},
    "task_type": {"type": "string"},
}


def _config(tmp_path: Path, **schema: object) -> Config:
    raw = {
        "schema": {"text": "instruction", "label": "", "fields": FIELDS, **schema},
        "targets": {"balance": "uniform", "per_label": 4},
        "slices": [{"name": "es", "match": {"language": "es"}, "target": 3}],
    }
    return parse_config(raw, tmp_path / "config.toml")


def test_cells_by_a_field_plan_each_value_and_a_missing_slice(tmp_path: Path) -> None:
    config = _config(tmp_path, cells=["task_type"], optional=["input"])
    rows = [
        {"instruction": "Write a haiku about rain", "response": "Rain...", "task_type": "poem"},
        {
            "instruction": "Summarise this text",
            "input": "A long text.",
            "response": "Short.",
            "task_type": "summary",
        },
    ]
    seeds = read_seeds(write_jsonl(tmp_path / "s.jsonl", rows), config).seeds
    # A seed without the optional "input" reads it as empty; the cell is the task type.
    assert [(s.label, s.data["input"]) for s in seeds] == [
        ("poem", ""),
        ("summary", "A long text."),
    ]
    counts = {CellKey(slice="default", label=s.label): (1, 0) for s in seeds}
    plans = {str(p.cell): (p.target, p.deficit) for p in plan_cells(config, counts)}
    assert plans == {
        "default/poem": (4, 3),
        "default/summary": (4, 3),
        "es/poem": (2, 2),
        "es/summary": (1, 1),
    }
    # The model writes every field but the cell's, which synth sets itself.
    shape = examples_format(config, "poem", 2)
    assert shape is not None
    item = shape["json_schema"]["schema"]["properties"]
    assert list(item["examples"]["items"]["properties"]) == ["instruction", "input", "response"]
    assert "task_type" not in answer_shape(config, "poem")


def test_without_cell_fields_each_slice_is_one_cell(tmp_path: Path) -> None:
    config = _config(tmp_path)
    rows = [
        {"instruction": "Name three colours", "input": "-", "response": "red", "task_type": "x"}
    ]
    seeds = read_seeds(write_jsonl(tmp_path / "s.jsonl", rows), config).seeds
    assert seeds[0].label == "all"
    plans = plan_cells(config, {CellKey(slice="default", label="all"): (1, 0)})
    assert [(str(p.cell), p.deficit) for p in plans] == [("default/all", 3), ("es/all", 3)]


def test_several_cell_fields_name_a_cell_by_their_values(tmp_path: Path) -> None:
    fields = {**FIELDS, "language": {"type": "string"}}
    config = _config(tmp_path, fields=fields, cells=["task_type", "language"])
    schema = config.data_schema
    assert schema.cell_of({"task_type": "poem", "language": "es"}) == "poem+es"
    assert schema.cell_values("poem+es") == {"task_type": "poem", "language": "es"}
    with pytest.raises(ValueError, match="cannot hold '\\+'"):
        schema.cell_of({"task_type": "a+b", "language": "es"})


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"cells": ["topic"]}, "cell field 'topic' is not one of fields"),
        ({"cells": ["instruction"]}, "is the text field"),
        ({"label": "task_type", "cells": ["input"]}, 'set label = ""'),
        ({"optional": ["instruction"]}, "is the text, the label or a cell field"),
        ({"optional": ["extra"]}, "optional field 'extra' is not one of fields"),
    ],
)
def test_bad_cell_settings_name_the_key(tmp_path: Path, schema: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as e:
        _config(tmp_path, **schema)
    assert str(e.value).startswith("config.toml: schema")


def test_a_classification_config_dumps_as_before(tmp_path: Path) -> None:
    """New schema keys at their defaults stay out of the stored config, so its sha,
    and with it the resume of an interrupted run, are what they were."""
    config = parse_config({}, tmp_path / "config.toml")
    dumped = config.model_dump(mode="json", by_alias=True)["schema"]
    assert set(dumped) == {"text", "label", "fields", "labels", "label_descriptions"}
    assert config.data_schema.cell_fields == ["label"]
