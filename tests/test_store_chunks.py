"""What a run stores per call and per chunk, pinned where it is stored in few
statements: a chunk's rows and decisions together, a reply with its attempt's estimate
taken back, a reply's JSON left unwalked when its text shows nothing to mend."""

from __future__ import annotations

import json

import pytest

from synth.llm.reply import MAX_DEPTH, parse, storable
from synth.records import Candidate, CellKey, Decision, Outcome, Status, Verdict
from synth.store import Store


def _planned(sha: str) -> dict:
    return {
        "request_sha": sha * 64,
        "slice": "default",
        "label": "card_arrival",
        "sample_index": 0,
        "template": "t",
        "template_sha": "0" * 64,
        "model": "m",
        "params": {"max_tokens": 50},
        "messages": [{"role": "user", "content": "hi"}],
        "parent_ids": ["seed_1"],
    }


def _outcome(call_id: str, index: int, *verdicts: Verdict, redact: bool = False) -> Outcome:
    candidate = Candidate(
        id=f"ex_{call_id}_{index}",
        run_id="r",
        cell=CellKey(slice="default", label="card_arrival"),
        text=f"text {index}",
        data={"text": f"text {index}", "label": "card_arrival"},
        llm_call_id=call_id,
        index=index,
        template="t",
        template_sha="0" * 64,
        model="m",
        parent_ids=("seed_1",),
    )
    decisions = [
        Decision(
            example_id=candidate.id,
            filter=f"f{i}",
            filter_version="1",
            verdict=v,
            reason=f"why {i}",
            edited_data={"text": "[redacted]", "label": "card_arrival"} if redact else None,
        )
        for i, v in enumerate(verdicts)
    ]
    return Outcome(candidate, decisions)


def test_a_chunk_stores_each_row_and_its_history_once(tmp_path):
    with Store(tmp_path / "s.db") as store:
        run_id = store.runs.begin("{}", "0" * 64).id
        [call] = store.calls.plan(run_id, [_planned("a")])
        first = [
            _outcome(call.id, 0, Verdict.KEEP, Verdict.KEEP),
            _outcome(call.id, 1, Verdict.KEEP, Verdict.REJECT),
            _outcome(call.id, 2, Verdict.REVIEW, redact=True),
        ]
        statuses = [Status.ACCEPTED, Status.REJECTED, Status.REVIEW_PENDING]
        store.examples.add_outcomes(run_id, first[:2], statuses[:2], [call.id])
        # Resumed: the chunk again, one row new and one twice over.
        again = [first[0], first[1], first[2], first[2]]
        store.examples.add_outcomes(run_id, again, [*statuses, statuses[2]], [call.id])

        rows = store.conn.execute(
            "SELECT id, source, status, outcome, rejected_by, parent_ids_json FROM examples"
            " ORDER BY rowid"
        ).fetchall()
        assert rows == [
            (f"ex_{call.id}_0", "synthetic", "accepted", "keep", None, '["seed_1"]'),
            (f"ex_{call.id}_1", "synthetic", "rejected", "reject", "f1", '["seed_1"]'),
            (f"ex_{call.id}_2", "edited", "review_pending", "review", None, '["seed_1"]'),
        ]
        decisions = store.conn.execute(
            "SELECT example_id, filter, verdict FROM decisions ORDER BY id"
        ).fetchall()
        assert decisions == [
            (f"ex_{call.id}_0", "f0", "keep"),
            (f"ex_{call.id}_0", "f1", "keep"),
            (f"ex_{call.id}_1", "f0", "keep"),
            (f"ex_{call.id}_1", "f1", "reject"),
            (f"ex_{call.id}_2", "f0", "review"),
        ]
        [edit] = store.examples.edits(f"ex_{call.id}_2")
        assert edit["before"] == {"text": "text 2", "label": "card_arrival"}
        assert edit["after"] == {"text": "[redacted]", "label": "card_arrival"}
        assert store.conn.execute("SELECT processed FROM llm_calls").fetchall() == [(1,)]


def test_a_reply_takes_back_the_estimate_of_the_attempt_it_answers(tmp_path):
    with Store(tmp_path / "s.db") as store:
        run_id = store.runs.begin("{}", "0" * 64).id
        answered, unanswered = store.calls.plan(run_id, [_planned("a"), _planned("b")])
        reply = {
            "status": "ok",
            "response_json": "{}",
            "error": None,
            "prompt_tokens": 3,
            "completion_tokens": 4,
            "cost_usd": 0.5,
            "latency_ms": 1.0,
        }
        for call in (answered, unanswered):
            store.calls.attempt_sent(call.id, 60, 0.25)
            store.calls.attempt_sent(call.id, 60, 0.25)  # one attempt lost before
        store.calls.record_reply(answered.id, **reply, answered=(60, 0.25))
        store.calls.record_reply(unanswered.id, **reply)
        rows = store.conn.execute(
            "SELECT status, prompt_tokens, unanswered_attempts, unanswered_tokens,"
            " unanswered_usd FROM llm_calls ORDER BY rowid"
        ).fetchall()
        assert rows == [("ok", 3, 1, 60, 0.25), ("ok", 3, 2, 120, 0.5)]


@pytest.mark.parametrize(
    "text",
    [
        '{"a": "plain", "b": [1, 2.5, null, true]}',
        '"caf\u00e9 \U0001f600"',
        '"\\ud83d\\ude00 a pair, escaped"',
        '"\\ud800 lone"',
        '{"\\uDC00": "a lone key"}',
        '"\ud800 raw"',
        '"\\\\ud800 an escaped backslash"',
        "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1),
        "[" * MAX_DEPTH + "]" * MAX_DEPTH,
        "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),
        json.dumps({"brackets in a string": "[[[[{{{{" * 20}),
    ],
)
@pytest.mark.parametrize("in_a_list", [False, True])
def test_a_value_read_with_its_text_is_made_storable_as_without(text, in_a_list):
    def made_storable(with_text: bool) -> object:
        value = [parse(text)] if in_a_list else parse(text)
        try:
            return storable(value, text if with_text else None)
        except ValueError as e:
            return str(e)

    assert made_storable(True) == made_storable(False)
