"""The bundled instruction -> response project, end to end against the simulator."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from shapes import bundled_project, synth_cli


def test_instruction_run_fills_a_missing_task_type_to_quota_and_exports(
    tmp_path: Path, sim: object
) -> None:
    seeds = ("instruction.jsonl", "instruction_eval.jsonl")
    config = bundled_project(tmp_path, "instruction", seeds, sim.base_url)  # type: ignore[attr-defined]
    synth = synth_cli(config)

    synth("seeds", "import", str(tmp_path / "seeds" / "instruction.jsonl"))
    plan = synth("plan")
    assert "default/classification      48     0" in plan  # no seed of this task type
    summary = synth("run", "--quiet")
    assert "finished" in summary, summary

    db = sqlite3.connect(config.parent / "instruction.db")
    counts = dict(
        db.execute(
            "SELECT label, count(*) FROM examples WHERE source = 'synthetic'"
            " AND status IN ('accepted', 'review_pending') GROUP BY label"
        ).fetchall()
    )
    assert counts == {"classification": 48, "generation": 8}  # exact quotas
    # Every candidate the chain kept went through the judge; no label check ran.
    filters = {r[0] for r in db.execute("SELECT DISTINCT filter FROM decisions")}
    assert {"rubric", "contamination", "near_dedup", "diversity"} <= filters
    assert "label_check" not in filters
    judged = db.execute("SELECT count(*) FROM llm_calls WHERE purpose = 'judge'").fetchone()[0]
    assert judged >= 56
    # New tasks, not copies of the seeds: the dedup filters reject a few, not most.
    generated = db.execute("SELECT count(*) FROM examples WHERE source = 'synthetic'").fetchone()
    assert generated[0] < 2 * 56

    status = synth("status")
    assert "default/classification" in status and "label_check" not in status
    audit = json.loads(synth("audit", "--json"))
    cells = {(c["slice"], c["label"]): c for c in audit["cells"]}
    assert cells["default", "classification"]["synthetic"] == 48

    alpaca, chat = tmp_path / "alpaca.jsonl", tmp_path / "chat.jsonl"
    synth("export", "--out", str(alpaca), "--format", "alpaca")
    synth("export", "--out", str(chat), "--format", "chat")
    rows = [json.loads(line) for line in alpaca.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 40 + 56
    assert all(set(r) == {"instruction", "input", "output"} and r["output"] for r in rows)
    turns = [json.loads(line)["messages"] for line in chat.read_text(encoding="utf-8").splitlines()]
    assert [m["role"] for m in turns[0]] == ["system", "user", "assistant"]
    # An instruction without input is the user turn alone, with no blank lines after it.
    no_input = next(r for r in rows if not r["input"])
    user = next(t[1]["content"] for t in turns if t[2]["content"] == no_input["output"])
    assert user == no_input["instruction"]
    # The task type is synth's to set: every synthetic row carries its cell's.
    for (data,) in db.execute("SELECT data_json FROM examples WHERE source = 'synthetic'"):
        assert json.loads(data)["task_type"] in ("classification", "generation")
