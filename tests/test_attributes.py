"""The attribute grid: each call draws a combination, shown in its prompt and stored on
every row it makes, cycled so that combinations spread evenly."""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from shapes import bundled_project, synth_cli

from synth.config import load_config
from synth.errors import ConfigError
from synth.generate import attributes_for
from synth.records import CellKey

PERSONAS = ["a nurse", "a student", "a retired engineer"]
LEVELS = ["easy", "hard"]
GRID = (
    f"\n[generate.attributes]\npersona = {json.dumps(PERSONAS)}"
    f"\ndifficulty = {json.dumps(LEVELS)}\n"
)


SEEDS = ("instruction.jsonl", "instruction_eval.jsonl")


def _project(tmp_path: Path, base_url: str, extra: str = GRID) -> Path:
    """The bundled instruction project, pointed at ``base_url``, with ``extra`` added
    to its config."""
    config = bundled_project(tmp_path, "instruction", SEEDS, base_url)
    text = config.read_text(encoding="utf-8")
    text = text.replace("\n[[filters]]", extra + "\n[[filters]]", 1)
    config.write_text(text, encoding="utf-8")
    return config


def test_a_cell_cycles_through_every_combination_before_repeating_one(tmp_path: Path) -> None:
    config = load_config(_project(tmp_path, "http://127.0.0.1:9/v1"))
    cell = CellKey(slice="default", label="generation")
    first = [tuple(attributes_for(config, cell, i).items()) for i in range(6)]
    assert len(set(first)) == 6  # all 3 x 2 combinations in the first six calls
    again = [tuple(attributes_for(config, cell, i).items()) for i in range(6, 12)]
    assert again == first
    other = CellKey(slice="default", label="classification")
    assert {tuple(attributes_for(config, other, i).items()) for i in range(6)} == set(first)


def test_an_attribute_that_is_a_field_or_has_no_values_is_refused(tmp_path: Path) -> None:
    path = _project(tmp_path, "http://127.0.0.1:9/v1", '\n[generate.attributes]\ninput = ["x"]\n')
    with pytest.raises(ConfigError, match=r"generate.attributes.input: 'input' is a field"):
        load_config(path)
    path.write_text(path.read_text().replace('input = ["x"]', "persona = []"), encoding="utf-8")
    with pytest.raises(
        ConfigError, match=r"generate.attributes.persona: List should have at least 1"
    ):
        load_config(path)


def test_without_a_grid_the_config_and_its_prompts_are_as_before(tmp_path: Path) -> None:
    plain = load_config(_project(tmp_path, "http://127.0.0.1:9/v1", ""))
    assert "attributes" not in json.loads(plain.as_json())["generate"]
    assert attributes_for(plain, CellKey(slice="default", label="generation"), 0) == {}


def test_a_run_spreads_rows_over_the_grid_and_stores_each_rows_combination(
    tmp_path: Path, sim: object
) -> None:
    config = _project(tmp_path, sim.base_url)  # type: ignore[attr-defined]

    synth = synth_cli(config)

    synth("seeds", "import", str(tmp_path / "seeds" / "instruction.jsonl"))
    assert "finished" in synth("run", "--quiet")
    db = sqlite3.connect(config.parent / "instruction.db")

    # Each generation call's prompt names one combination; per cell, the calls cover
    # the grid evenly (no combination has two calls more than another).
    shown: dict[str, tuple[str, str]] = {}
    per_cell: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    for call_id, label, messages in db.execute(
        "SELECT id, label, messages_json FROM llm_calls WHERE purpose = 'generate'"
    ):
        prompt = json.loads(messages)[-1]["content"]
        persona = re.findall(r"^- persona: (.+)$", prompt, re.M)
        level = re.findall(r"^- difficulty: (.+)$", prompt, re.M)
        assert len(persona) == len(level) == 1, prompt
        shown[call_id] = (persona[0], level[0])
        per_cell[label][shown[call_id]] += 1
    grid = [(p, d) for p in PERSONAS for d in LEVELS]
    assert sum(per_cell["classification"].values()) >= 2 * len(grid)
    for label, counts in per_cell.items():
        spread = [counts[combo] for combo in grid]
        assert max(spread) - min(spread) <= 1, (label, counts)

    # Every generated row carries its call's combination; the accepted rows of the
    # missing cell spread over the grid too, and the quotas are exact as ever.
    accepted: Counter[tuple[str, str]] = Counter()
    rows = db.execute(
        "SELECT llm_call_id, label, status, data_json FROM examples WHERE source != 'real'"
    ).fetchall()
    assert rows
    for call_id, label, status, data in rows:
        row = json.loads(data)
        assert (row["persona"], row["difficulty"]) == shown[call_id]
        if label == "classification" and status in ("accepted", "review_pending"):
            accepted[row["persona"], row["difficulty"]] += 1
    assert sum(accepted.values()) == 48
    assert len(accepted) == 6 and min(accepted.values()) >= 4, accepted
    # The model is never asked to write an attribute.
    fmt = json.loads(db.execute("SELECT params_json FROM llm_calls LIMIT 1").fetchone()[0])
    assert "persona" not in json.dumps(fmt["response_format"])
