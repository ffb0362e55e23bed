"""Replies as a broken or hostile endpoint writes them, each pinned: the real client
against a raw-socket server on loopback, a real store in tmp_path.

Whatever comes back (a content that is not a string, usage that is wrong, JSON a
thousand deep, 5,000-digit numbers, lone surrogates, 5 MB bodies, HTTP that is not
HTTP) is one call recorded ``ok``, ``invalid`` or ``failed`` with its reason, never an
exception; ``test_reply_fuzz.py`` throws random replies at the same paths.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, Project
from replyserver import ReplyServer, chunks, complete_one, completion, http, plain, sse

from synth.llm.reply import MAX_REPLY_CHARS, MAX_TOKENS, READ_LIMIT
from synth.runner import run
from synth.seeds import read_seeds

GOOD = '{"examples": [{"text": "my new card has still not arrived", "label": "card_arrival"}]}'
DEEP = "[" * 1000 + "]" * 1000


@pytest.fixture
def server():
    with ReplyServer() as srv:
        yield srv


def one(project: Project, server: ReplyServer, *answers: bytes, purpose="generate", retries=0):
    """The result and stored row of one call answered with ``answers`` in turn."""
    server.answer(*answers)
    settings = project.config().llm.model_copy(update={"retries": retries})
    with project.store() as store:
        run_id = store.runs.begin("{}", "0" * 64).id
        return complete_one(store, run_id, settings, server.base_url, purpose)


UNUSABLE = [
    ("content object", plain(completion({"examples": []})), "its content is a JSON object"),
    ("content number", plain(completion(7)), "its content is a JSON number"),
    ("content list", plain(completion([GOOD])), "its content is a JSON list"),
    ("body deep", http(b'{"choices": ' + DEEP.encode() + b"}"), "nested more than 64 deep"),
    ("content deep", plain(completion(DEEP)), "nested more than 64 deep"),
    (
        "body digits",
        http(b'{"choices": [], "usage": {"prompt_tokens": ' + b"9" * 5000 + b"}}"),
        "Exceeds the limit (4300 digits)",
    ),
    ("body NaN", http(b'{"choices": [], "usage": {"prompt_tokens": NaN}}'), "NaN is not a JSON"),
    ("body list", plain([completion(GOOD)]), "no choices[0].message object"),
]


@pytest.mark.parametrize("purpose", ["generate", "judge"])
@pytest.mark.parametrize(("case", "answer", "error"), UNUSABLE, ids=[c[0] for c in UNUSABLE])
def test_an_unreadable_reply_is_one_invalid_call_with_its_reason(
    project, server, purpose, case, answer, error
):
    result, row = one(project, server, answer, purpose=purpose)
    assert (result.status, row["status"], row["reason"]) == ("invalid", "invalid", "unparseable")
    assert error in row["error"] and "\n" not in row["error"]
    assert row["processed"] == 1 and row["response_json"] is not None


def test_an_item_with_a_5000_digit_number_is_left_out_and_the_others_read(project, server):
    content = GOOD[:-2] + ', {"text": "where is my card", "label": "card_arrival", "n": '
    result, row = one(project, server, plain(completion(content + "9" * 5000 + "}]}")))
    assert result.status == "ok"
    assert result.items == [{"text": "my new card has still not arrived", "label": "card_arrival"}]
    assert "broken_json" in json.loads(row["repairs_json"])


def test_content_with_only_a_5000_digit_number_says_why_it_cannot_be_read(project, server):
    content = '{"examples": [{"text": "where is my card", "n": ' + "9" * 5000 + "}]}"
    result, row = one(project, server, plain(completion(content)))
    assert (result.status, row["reason"]) == ("invalid", "unparseable")
    assert row["error"].startswith("no readable JSON in the reply: Exceeds the limit (4300")


@pytest.mark.parametrize("wire", ["plain", "sse"])
def test_a_lone_surrogate_in_an_item_is_stored_as_a_replacement_character(project, server, wire):
    content = json.dumps(
        {"examples": [{"text": "my card \ud800 never came", "label": "card_arrival"}]}
    )
    reply = completion(content, usage={"prompt_tokens": 9, "completion_tokens": 4})
    result, row = one(project, server, plain(reply) if wire == "plain" else sse(chunks(reply)))
    assert result.status == "ok"
    assert result.items == [{"text": "my card \ufffd never came", "label": "card_arrival"}]
    assert json.loads(row["repairs_json"]) == ["lone_surrogates"]
    (row["response_json"]).encode("utf-8")  # stored, and readable as UTF-8


@pytest.mark.parametrize("wire", ["plain", "sse"])
def test_a_lone_surrogate_in_the_content_itself_is_replaced(project, server, wire):
    reply = completion("\udfff" + GOOD)
    result, row = one(project, server, plain(reply) if wire == "plain" else sse(chunks(reply)))
    assert result.status == "ok" and "lone_surrogates" in json.loads(row["repairs_json"])


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": -1_000_000, "completion_tokens": -5},
        {"prompt_tokens": "12", "completion_tokens": [3]},
        {"prompt_tokens": 10**30, "completion_tokens": 10**40},
        {"prompt_tokens": True, "completion_tokens": 2.5},
        ["prompt_tokens", 9],
        "lots",
    ],
    ids=["negative", "wrong types", "huge", "bool and fraction", "a list", "a string"],
)
@pytest.mark.parametrize("wire", ["plain", "sse"])
def test_usage_that_cannot_be_believed_is_estimated_never_negative(project, server, usage, wire):
    reply = completion(GOOD, usage=usage)
    result, row = one(project, server, plain(reply) if wire == "plain" else sse(chunks(reply)))
    assert result.status == "ok"
    assert 0 < row["prompt_tokens"] < 100 and 0 < row["completion_tokens"] < 100
    assert row["cost_usd"] > 0  # a paid reply is never free, let alone a refund
    assert json.loads(row["repairs_json"]) == ["usage_estimated"]


def test_believable_usage_is_stored_as_it_came(project, server):
    usage = {"prompt_tokens": MAX_TOKENS, "completion_tokens": 0, "total_tokens": 1}
    result, row = one(project, server, plain(completion(GOOD, usage=usage)))
    assert (row["prompt_tokens"], row["completion_tokens"]) == (MAX_TOKENS, 0)
    assert row["repairs_json"] is None


@pytest.mark.parametrize(
    "answer",
    [
        plain(completion("x" * 5_000_000)),
        sse([{"choices": [{"index": 0, "delta": {"content": "y" * 100_000}}]}] * 11),
        http(b"data: " + b"z" * (READ_LIMIT + 10), content_type="text/event-stream"),
    ],
    ids=["plain", "sse many chunks", "sse one endless line"],
)
def test_a_huge_reply_is_too_large_and_stored_capped(project, server, answer):
    result, row = one(project, server, answer)
    assert (result.status, row["reason"]) == ("invalid", "too_large")
    assert row["error"].startswith("reply too large: ")
    assert len(row["response_json"]) == MAX_REPLY_CHARS
    assert row["response_chars"] > MAX_REPLY_CHARS


def test_an_error_status_with_a_huge_body_is_read_for_its_message_only(project, server):
    body = json.dumps({"error": {"message": "busy \ud800 " + "m" * 5_000_000}}).encode()
    result, row = one(project, server, http(body, "503 Busy"), plain(completion(GOOD)), retries=1)
    assert result.status == "ok" and row["attempts"] == 2
    result, row = one(project, server, http(body, "400 Bad"))
    assert (row["status"], row["reason"]) == ("failed", "http_error")
    assert len(row["error"]) <= 500 and row["error"].startswith("HTTP 400 from POST")


@pytest.mark.parametrize(
    "events",
    [
        [DEEP.encode()],
        [b"{" * 3, b"not json"],
        [b'{"choices": [{"index": 0, "delta": {"content": "1"}}], "n": ' + b"9" * 5000 + b"}"],
    ],
    ids=["deep", "not JSON", "digits"],
)
def test_a_stream_of_unreadable_events_is_one_unparseable_call(project, server, events):
    result, row = one(project, server, sse(events))
    assert (result.status, row["reason"]) == ("failed", "unparseable")
    assert "the reply's stream cannot be read" in row["error"]


def test_an_error_event_with_a_lone_surrogate_is_recorded_as_one_line(project, server):
    result, row = one(project, server, sse([{"error": {"message": "bad \ud800\nthing"}}]))
    assert row["status"] == "failed"
    assert row["error"] == "APIError: error in the reply's stream: bad \ufffd thing"


# What aiohttp refuses to read as HTTP reaches the client as its own exceptions; each
# is a connection failure, retried and recorded as one.
BROKEN_HTTP = [
    ("bad status line", b"HTTP/1.1 abc\r\n\r\n", "Bad status line"),
    ("not HTTP", b"hello\r\n\r\n", "Bad status line"),
    (
        "header over 8 KB",
        b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 9000 + b"\r\ncontent-length: 2\r\n\r\n{}",
        "Got more than 8190 bytes",
    ),
    (
        "bad chunk size",
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked"
        b"\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        "chunk size",
    ),
    (
        "chunks cut off",
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked"
        b'\r\n\r\n10\r\n{"choices": ',
        "",
    ),
    (
        "body shorter than its length",
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{}",
        "",
    ),
    ("closed at once", b"", ""),
]


@pytest.mark.parametrize(("case", "answer", "said"), BROKEN_HTTP, ids=[c[0] for c in BROKEN_HTTP])
def test_broken_http_is_a_connection_failure_retried_and_recorded(
    project, server, case, answer, said
):
    result, row = one(project, server, answer, plain(completion(GOOD)), retries=1)
    assert (result.status, row["attempts"]) == ("ok", 2)
    result, row = one(project, server, answer)
    assert (result.status, row["status"], row["reason"]) == ("failed", "failed", "connection")
    assert server.base_url + "/chat/completions" in row["error"] and said in row["error"]
    assert "\n" not in row["error"]


JUDGE = """
[[filters]]
kind = "rubric"
rubric = "prompts/rubrics/banking.toml"
"""


def _judged_project(tmp_path, base_url: str) -> Project:
    project = Project(tmp_path, base_url=base_url)
    shutil.copytree(ROOT / "prompts" / "judge", tmp_path / "prompts" / "judge")
    shutil.copytree(ROOT / "prompts" / "rubrics", tmp_path / "prompts" / "rubrics")
    project.write_config(base_url=base_url, extra=JUDGE)
    text = project.config_path.read_text().replace("retries = 5", "retries = 1")
    project.config_path.write_text(text)
    with project.store() as store:
        store.examples.add_seeds(read_seeds(project.seeds, project.config()).seeds)
    return project


# What judges have written in place of a grade or a label: each is one invalid judge
# call, asked again or sent to review, never an exception.
BAD_VERDICTS = [
    {"label": {"a": 1}, "slice": ["default"], "rationale": 5},
    {"label": "card_arrival", "slice": {"x": []}, "rationale": "\ud800"},
    {"label": None, "slice": None},
    {"realism": {"score": 10**4000, "rationale": "ok"}},
    {"realism": {"score": 3.0000001, "rationale": ["why"]}, "specificity": []},
    {"realism": "\ud800" * 3, "slice_fit": {"score": True, "rationale": {}}},
]


def _judge_kind(request: dict) -> str | None:
    fmt = request.get("response_format") or {}
    return (fmt.get("json_schema") or {}).get("name")


def test_bad_judge_replies_among_good_ones_never_stop_a_run(tmp_path, sim):
    served = []

    def rule(request: dict) -> bytes | None:
        if _judge_kind(request) is None or len(served) % 3:
            served.append(None)
            return None  # the simulator answers
        verdict = BAD_VERDICTS[len(served) // 3 % len(BAD_VERDICTS)]
        served.append(verdict)
        return plain(completion(json.dumps(verdict), usage={"prompt_tokens": -3}))

    with ReplyServer(upstream=sim.base_url) as server:
        server.rule = rule
        project = _judged_project(tmp_path, server.base_url)
        summary = run(project.config())
    assert summary.status in ("finished", "stopped")
    assert any(served)
    with project.store() as store:
        bad = store.conn.execute(
            "SELECT count(*) FROM llm_calls WHERE purpose = 'judge' AND status = 'invalid'"
            " AND reason = 'schema_mismatch'"
        ).fetchone()[0]
        negative = store.conn.execute(
            "SELECT count(*) FROM llm_calls WHERE prompt_tokens < 0 OR cost_usd < 0"
        ).fetchone()[0]
        rationales = [r for (r,) in store.conn.execute("SELECT rationale FROM judge_scores")]
    assert bad > 0 and negative == 0
    assert rationales and all(isinstance(r, str) for r in rationales)


def test_synth_run_with_bad_replies_among_good_ones_exits_cleanly(tmp_path, sim):
    """The CLI as a user runs it: every kind of bad reply once among the simulator's,
    no traceback, exit 0, every bad one recorded with its reason."""
    answers = [a for _, a, _ in UNUSABLE] + [a for _, a, _ in BROKEN_HTTP]
    with ReplyServer(upstream=sim.base_url) as server:
        server.answer(*answers)
        project = _judged_project(tmp_path, server.base_url)
        done = subprocess.run(
            [sys.executable, "-m", "synth", "--config", str(project.config_path), "run"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        status = subprocess.run(
            [sys.executable, "-m", "synth", "--config", str(project.config_path), "status"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr + status.stderr and status.returncode == 0
    assert "unparseable" in status.stdout
    with project.store() as store:
        reasons = dict(
            store.conn.execute(
                "SELECT reason, count(*) FROM llm_calls WHERE status != 'ok' GROUP BY 1"
            ).fetchall()
        )
        integrity = store.conn.execute("PRAGMA integrity_check").fetchone()[0]
    assert reasons.get("unparseable", 0) >= len(UNUSABLE) and integrity == "ok"
