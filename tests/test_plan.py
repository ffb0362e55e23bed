from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from conftest import DATA

from synth.config import parse_config
from synth.plan import plan_cells
from synth.records import CellKey


def _counts(labels: Counter) -> dict[CellKey, tuple[int, int]]:
    return {CellKey(slice="default", label=k): (v, 0) for k, v in labels.items()}


def _banking_counts() -> Counter:
    with (DATA / "banking77" / "train.csv").open(newline="") as f:
        return Counter(row["category"] for row in csv.DictReader(f))


def test_match_max_on_banking77_gives_the_published_deficits():
    counts = _banking_counts()
    config = parse_config({"targets": {"balance": "match_max"}}, Path("config.toml"))
    plans = {p.cell.label: p for p in plan_cells(config, _counts(counts))}
    assert len(plans) == 77
    assert {p.target for p in plans.values()} == {187}
    assert plans["contactless_not_working"].deficit == 152
    assert plans["card_payment_fee_charged"].deficit == 0
    assert sum(p.deficit for p in plans.values()) == 77 * 187 - 10003


def test_uniform_explicit_and_synthetic_rows_count():
    counts = {
        CellKey(slice="default", label="a"): (3, 2),
        CellKey(slice="default", label="b"): (10, 0),
    }
    uniform = parse_config({"targets": {"balance": "uniform", "per_label": 8}}, Path("c.toml"))
    assert [p.deficit for p in plan_cells(uniform, counts)] == [3, 0]
    explicit = parse_config(
        {"targets": {"balance": "explicit", "counts": {"b": 12}}}, Path("c.toml")
    )
    assert [(p.cell.label, p.deficit) for p in plan_cells(explicit, counts)] == [("b", 2)]


def test_missing_label_and_missing_slice_are_planned():
    counts = {CellKey(slice="default", label="a"): (4, 0)}
    config = parse_config(
        {
            "schema": {"labels": ["a", "b"]},
            "slices": [{"name": "es", "match": {"lang": "es"}, "target": 5}],
        },
        Path("c.toml"),
    )
    plans = {str(p.cell): p for p in plan_cells(config, counts)}
    assert plans["default/b"].deficit == 4  # a label with no seeds at all
    # A slice with no real rows: its target is split over the labels, the first takes the rest.
    assert (plans["es/a"].target, plans["es/b"].target) == (3, 2)
    assert plans["es/a"].match == {"lang": "es"}


def test_clinc150_imbalanced_deficits_are_100_minus_count():
    import json

    data = json.loads((DATA / "clinc150" / "data_imbalanced.json").read_text())
    counts = Counter(intent for _, intent in data["train"])
    config = parse_config(
        {"targets": {"balance": "uniform", "per_label": 100}}, Path("config.toml")
    )
    plans = plan_cells(config, _counts(counts))
    assert all(p.deficit == 100 - counts[p.cell.label] for p in plans)
    assert sum(p.deficit for p in plans) == 150 * 100 - 10525
