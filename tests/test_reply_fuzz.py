"""Random replies from a raw-socket endpoint on loopback, through the real client, a
real store, and whole runs with the judge on.

Whatever the endpoint sends (random JSON shapes, wrong types, huge, deep or odd
Unicode, numbers past Python's digit limit, NaN, plain JSON or server-sent events),
the answer is one call recorded ``ok``, ``invalid`` or ``failed`` with its reason:
never an exception, never a row stored before it changed. The pinned cases are in
``test_replies.py``. Bounded: about 20 s on a loaded 2-core machine.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Project
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from replyserver import ReplyServer, chunks, complete_one, completion, http

from synth.llm.reply import MAX_REPLY_CHARS
from synth.runner import run
from synth.seeds import read_seeds
from synth.status import render_status, status

FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Stand-ins json.dumps cannot write, put in the text after it has: a number past
# Python's 4,300 digits and JSON nested deeper than any parser follows.
BIG, DEEP = "\x01big\x01", "\x01deep\x01"
ODD = st.sampled_from(
    ["\ud800", "a\udfffb", "\x00", "\u2028", "\ufeff", "\U0001f642", '"', "\\", "x" * 3000]
    + [BIG, DEEP]
)
TEXT = st.text(max_size=12) | ODD
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats()  # NaN and infinities included: json.dumps writes them
    | TEXT
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
FIELDS = st.sampled_from(["text", "label", "realism", "score", "rationale", "examples"]) | TEXT
ITEMS = st.lists(st.dictionaries(FIELDS, JSON | TEXT, max_size=4), max_size=3)


def _dumps(value: Any) -> str:
    text = json.dumps(value)
    for quoted in ('"\\u0001big\\u0001"', '\\"\\\\u0001big\\\\u0001\\"'):
        text = text.replace(quoted, "9" * 5000)
    for quoted in ('"\\u0001deep\\u0001"', '\\"\\\\u0001deep\\\\u0001\\"'):
        text = text.replace(quoted, "[" * 1200 + "]" * 1200)
    return text


@st.composite
def replies(draw: st.DrawFn) -> bytes:
    """One HTTP response: a chat completion whose parts are drawn (a content of any
    type, or JSON text of examples or grades with any values; any usage; any finish
    reason), or any JSON at all; sent whole or as a stream of events."""
    content = draw(
        JSON
        | ITEMS.map(lambda items: _dumps({"examples": items}))
        | st.dictionaries(FIELDS, JSON, max_size=4).map(_dumps)
        | ITEMS.map(lambda items: "Here you go:\n```json\n" + _dumps(items)[:-1])
    )
    usage = draw(
        st.none()
        | JSON
        | st.fixed_dictionaries({"prompt_tokens": SCALARS, "completion_tokens": SCALARS})
    )
    finish = draw(st.sampled_from(["stop", "length", "content_filter", None]) | JSON)
    reply: Any = completion(content, usage=usage, finish=finish)
    whole = draw(st.integers(0, 7)) != 0
    if not whole:
        reply = draw(JSON)  # not a chat completion at all
    if draw(st.booleans()):
        return http(_dumps(reply).encode())
    events = chunks(reply) if whole else [reply]
    events += draw(st.lists(JSON, max_size=2))  # stray events after the reply
    body = b"".join(b"data: " + _dumps(e).encode() + b"\n\n" for e in events)
    return http(body + b"data: [DONE]\n\n", content_type="text/event-stream")


def _rows(store: Any) -> list[tuple[Any, ...]]:
    """Every stored row of the tables a reply could touch."""
    out: list[tuple[Any, ...]] = []
    for table in ("llm_calls", "examples", "runs", "decisions"):
        out += [(table, *r) for r in store.conn.execute(f"SELECT * FROM {table} ORDER BY rowid")]
    return out


@settings(FUZZ, max_examples=150)
@given(answer=replies(), purpose=st.sampled_from(["generate", "judge"]))
def test_any_reply_is_one_recorded_call_and_nothing_else_changes(project, answer, purpose):
    settings_ = project.config().llm.model_copy(update={"retries": 0})
    with ReplyServer() as server, project.store() as store:
        run_id = store.runs.begin("{}", "0" * 64).id
        before = _rows(store)
        server.answer(answer)
        result, row = complete_one(store, run_id, settings_, server.base_url, purpose)
        after = [r for r in _rows(store) if not (r[0] == "llm_calls" and r[1] == row["id"])]
    assert after == before
    assert result.status == row["status"] and row["status"] in ("ok", "invalid", "failed")
    assert (row["reason"] is None) == (row["status"] == "ok")
    assert row["prompt_tokens"] >= 0 and row["completion_tokens"] >= 0 and row["cost_usd"] >= 0
    assert row["error"] is None or ("\n" not in row["error"] and len(row["error"]) <= 500)
    if row["response_json"] is not None:
        assert len(row["response_json"]) <= MAX_REPLY_CHARS
    if result.items is not None:
        for item in result.items:
            json.dumps(item, allow_nan=False).encode("utf-8")  # storable as it is


JUDGE = """
[[filters]]
kind = "rubric"
rubric = "prompts/rubrics/banking.toml"
"""


@settings(FUZZ, max_examples=12)
@given(
    answers=st.lists(replies(), min_size=1, max_size=4),
    every=st.integers(2, 6),
    judge_only=st.booleans(),
)
def test_random_replies_among_good_ones_never_stop_a_run(sim, answers, every, judge_only):
    """A run with the judge on against the simulator, every ``every``-th request (of
    the judge's alone, or of any) answered with one of the drawn replies instead."""
    seen = []

    def rule(request: dict[str, Any]) -> bytes | None:
        judged = bool((request.get("response_format") or {}).get("json_schema", {}).get("name"))
        if judge_only and not judged:
            return None
        seen.append(request)
        return answers[len(seen) % len(answers)] if len(seen) % every == 0 else None

    with tempfile.TemporaryDirectory() as tmp, ReplyServer(upstream=sim.base_url) as server:
        project, config = _judged_project(Path(tmp), server)
        with project.store() as store:
            seeds = _rows(store)
        server.rule = rule
        summary = run(config)
        with project.store() as store:
            assert [r for r in _rows(store) if r[0] == "examples"][: len(seeds)] == [
                r for r in seeds if r[0] == "examples"
            ]
            pending = store.conn.execute(
                "SELECT count(*) FROM llm_calls WHERE status = 'pending'"
            ).fetchone()[0]
            render_status(status(config, store))
    assert summary.status in ("finished", "stopped") and pending == 0


@pytest.mark.parametrize("parity", [0, 1])
def test_a_lone_failed_call_in_the_last_step_does_not_end_a_run(sim, parity):
    """Steps shrink to one call as cells close: one call failing there is no sign that
    nothing gets through (a bad model name), once replies have been used. Every other
    request fails, the first or the second of each pair."""
    seen = []

    def rule(request: dict[str, Any]) -> bytes | None:
        seen.append(request)
        if len(seen) % 2 == parity:
            return http(b'{"error": {"message": "busy"}}', "500 Internal Server Error")
        return None

    with tempfile.TemporaryDirectory() as tmp, ReplyServer(upstream=sim.base_url) as server:
        _, config = _judged_project(Path(tmp), server)
        server.rule = rule
        summary = run(config)
    assert summary.status in ("finished", "stopped")


def _judged_project(root: Path, server: ReplyServer) -> tuple[Project, Any]:
    """A seeded project with the judge on, sending through ``server``: no retries, so
    a scripted failure stays one, and 40 calls."""
    project = Project(root, base_url=server.base_url)
    shutil.copytree(ROOT / "prompts" / "judge", root / "prompts" / "judge")
    shutil.copytree(ROOT / "prompts" / "rubrics", root / "prompts" / "rubrics")
    project.write_config(base_url=server.base_url, extra=JUDGE)
    text = project.config_path.read_text().replace("retries = 5", "retries = 0")
    project.config_path.write_text(text.replace("max_calls = 200", "max_calls = 40"))
    config = project.config()
    with project.store() as store:
        store.examples.add_seeds(read_seeds(project.seeds, config).seeds)
    return project, config
