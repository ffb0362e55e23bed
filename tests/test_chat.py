"""The bundled multi-turn chat project, end to end against the simulator, and the
rules a dialogue is held to."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import ROOT
from shapes import bundled_project, synth_cli

from synth.config import load_config
from synth.errors import SeedError
from synth.messages import check_messages, text_of
from synth.seeds import read_seeds


def test_chat_run_fills_a_missing_scenario_to_quota_and_exports_dialogues(
    tmp_path: Path, sim: object
) -> None:
    config = bundled_project(tmp_path, "chat", ("chat.jsonl",), sim.base_url)  # type: ignore[attr-defined]
    sim.configure(p_pii=0.1, p_exact_dup=0.05)  # type: ignore[attr-defined]
    synth = synth_cli(config)

    synth("seeds", "import", str(tmp_path / "seeds" / "chat.jsonl"))
    assert "default/correction      24     0" in synth("plan")
    summary = synth("run", "--quiet")
    assert "finished" in summary, summary

    db = sqlite3.connect(config.parent / "chat.db")
    counted = "source != 'real' AND outcome = 'keep' AND status IN ('accepted', 'review_pending')"
    rows = db.execute(f"SELECT label, data_json, text FROM examples WHERE {counted}").fetchall()
    counts: dict[str, int] = {}
    for label, _, _ in rows:
        counts[label] = counts.get(label, 0) + 1
    assert counts == {"correction": 24, "how_to": 14}
    for _, data_json, text in rows:
        data = json.loads(data_json)
        turns = check_messages(data["messages"], 2, 8)  # every kept dialogue is valid
        # What dedup and diversity compared: the user turns, joined.
        assert text == "\n".join(m["content"] for m in turns if m["role"] == "user")
    # Dialogues that stop on the user's turn were written, and the schema filter caught them.
    bad = db.execute(
        "SELECT count(*) FROM decisions WHERE filter = 'schema' AND reason ="
        " 'bad_dialogue: messages: the last message must be the assistant''s'"
    ).fetchone()[0]
    assert bad >= 1
    # PII planted in a user turn was found and redacted there.
    redacted = db.execute(
        "SELECT e.data_json FROM examples e JOIN decisions d ON d.example_id = e.id"
        " WHERE d.filter = 'pii' AND d.reason LIKE 'pii_redacted%'"
    ).fetchall()
    assert redacted
    for (data_json,) in redacted:
        turns = check_messages(json.loads(data_json)["messages"])
        assert any(m["role"] == "user" and "[" in m["content"] for m in turns)
    assert (
        db.execute(
            "SELECT count(*) FROM decisions WHERE filter = 'exact_dedup' AND verdict = 'reject'"
        ).fetchone()[0]
        >= 1
    )
    judged = db.execute("SELECT count(*) FROM llm_calls WHERE purpose = 'judge'").fetchone()[0]
    assert judged >= 38

    out = tmp_path / "chat.jsonl"
    synth("export", "--out", str(out), "--format", "chat")
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 10 + 38
    assert all(set(line) == {"messages"} for line in lines)
    for line in lines:
        turns = line["messages"]
        assert turns[0]["role"] == "system" and check_messages(turns, 2, 8) == turns
    # A dialogue with a system message of its own keeps it; the others get the config's.
    systems = {line["messages"][0]["content"] for line in lines}
    assert "You are a helpful assistant." in systems and len(systems) > 1


def test_a_seed_dialogue_out_of_turn_is_an_error_naming_its_line(tmp_path: Path) -> None:
    config = load_config(ROOT / "prompts" / "chat" / "config.toml")
    good = [
        {"role": "user", "content": "Hi, is the pool open?"},
        {"role": "assistant", "content": "Yes, until 9 pm."},
    ]
    seeds = tmp_path / "s.jsonl"
    lines = [
        {"scenario": "how_to", "messages": good},
        {"scenario": "how_to", "messages": [good[1], good[0]]},
    ]
    seeds.write_text("".join(json.dumps(r) + "\n" for r in lines))
    with pytest.raises(SeedError) as e:
        read_seeds(seeds, config)
    assert str(e.value) == (
        f"{seeds}:2: field 'messages': message 0 is 'assistant' where 'user' is due: after an"
        " optional system message, user and assistant alternate, starting with the user"
    )
    # A CSV cell holds the dialogue as JSON.
    csv = tmp_path / "s.csv"
    csv.write_text('scenario,messages\nhow_to,"' + json.dumps(good).replace('"', '""') + '"\n')
    (seed,) = read_seeds(csv, config).seeds
    assert seed.data["messages"] == good and seed.text == good[0]["content"]
    assert text_of({"m": good * 5}, "m").count("\n") == 4
    with pytest.raises(ValueError, match="has 10 turns, more than 8"):
        check_messages(good * 5, 2, 8)
