"""The bundled grounded question-answering project, end to end against the simulator."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

from shapes import bundled_project, synth_cli

_WORD = re.compile(r"[^\W_]+")


def _grounded(answer: str, context: str) -> bool:
    """Every longer word and number of the answer is in the context."""
    words = {w.lower() for w in _WORD.findall(answer) if len(w) > 3 or w.isdigit()}
    return words <= {w.lower() for w in _WORD.findall(context)}


def test_qa_run_fills_a_missing_slice_to_quota_and_the_judge_rejects_ungrounded_answers(
    tmp_path: Path, sim: object
) -> None:
    config = bundled_project(tmp_path, "qa", ("qa.jsonl", "qa_eval.jsonl"), sim.base_url)  # type: ignore[attr-defined]
    synth = synth_cli(config)

    synth("seeds", "import", str(tmp_path / "seeds" / "qa.jsonl"))
    plan = synth("plan")
    assert "health/all       12     0" in plan  # no seed is about health: a missing slice
    assert "default/all      30    14" in plan
    summary = synth("run", "--quiet")
    assert "finished" in summary, summary

    db = sqlite3.connect(config.parent / "qa.db")
    # Held rows (the judge's borderline band) wait for a human and count once approved.
    counted = (
        "source = 'synthetic' AND outcome = 'keep' AND status IN ('accepted', 'review_pending')"
    )
    counts = dict(
        db.execute(f"SELECT slice, count(*) FROM examples WHERE {counted} GROUP BY slice")
    )
    assert counts == {"default": 16, "health": 12}  # one cell per slice, to its quota
    # Every candidate the cheap filters kept went to the judge, which saw its context.
    judged = db.execute("SELECT count(*) FROM llm_calls WHERE purpose = 'judge'").fetchone()[0]
    assert judged >= 28
    (prompt,) = db.execute(
        "SELECT messages_json FROM llm_calls WHERE purpose = 'judge' LIMIT 1"
    ).fetchone()
    assert '\\nContext: \\"The ' in prompt
    # The judge's grounding criterion rejected the answers the passage does not support.
    rows = db.execute(
        "SELECT e.data_json, e.status, s.score FROM examples e JOIN judge_scores s"
        " ON s.example_id = e.id WHERE s.criterion = 'grounding'"
    ).fetchall()
    ungrounded = [json.loads(d) for d, _, score in rows if score <= 2]
    assert ungrounded and all(not _grounded(d["answer"], d["context"]) for d in ungrounded)
    rejected = db.execute(
        "SELECT count(*) FROM decisions WHERE filter = 'rubric' AND verdict = 'reject'"
        " AND reason LIKE '%weakest grounding%'"
    ).fetchone()[0]
    assert rejected >= 1
    kept = [json.loads(d) for (d,) in db.execute(f"SELECT data_json FROM examples WHERE {counted}")]
    assert [d for d in kept if not _grounded(d["answer"], d["context"])] == []
    # The missing slice's rows carry its match value, as a seed of it would.
    assert {d["domain"] for d in kept if d["domain"] == "health"} == {"health"}

    status = synth("status")
    assert "health/all" in status and "rubric" in status.split("rej by:")[1]
    chat, alpaca = tmp_path / "chat.jsonl", tmp_path / "alpaca.jsonl"
    synth("export", "--out", str(chat), "--format", "chat")
    synth("export", "--out", str(alpaca), "--format", "alpaca")
    lines = [json.loads(line) for line in chat.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 14 + 28
    system, user, assistant = lines[-1]["messages"]
    assert system == {"role": "system", "content": "Answer the question from the context alone."}
    assert user["content"].startswith("Context: ") and "\n\nQuestion: " in user["content"]
    last = json.loads(alpaca.read_text(encoding="utf-8").splitlines()[-1])
    assert last["output"] == assistant["content"] and last["input"] in user["content"]
