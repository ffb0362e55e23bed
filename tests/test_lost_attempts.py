"""Attempts whose replies never came: each leaves its estimated cost on its call
(``synth.llm.unanswered``), and ``synth status`` adds them up. The real client against
the simulator and a raw-socket server on loopback, a real store in tmp_path. The kill
of a real ``synth run`` is in ``test_processes.py``."""

from __future__ import annotations

import socket

import pytest
from conftest import Project
from replyserver import MESSAGES, ReplyServer, complete_one, completion, http, plain

from synth.llm.limits import estimate_tokens
from synth.status import render_status, status

GOOD = '{"examples": [{"text": "my new card has still not arrived", "label": "card_arrival"}]}'
# What one attempt of the call complete_one sends may cost: its prompt, max_tokens 50.
PROMPT = estimate_tokens(MESSAGES, 0)
ESTIMATE = PROMPT + 50
USD = (PROMPT * 1.0 + 50 * 2.0) / 1e6  # the test config's prices, per million


def _one(project: Project, base_url: str, **llm: object) -> dict:
    settings = project.config().llm.model_copy(update={"retries": 0, **llm})
    with project.store() as store:
        run_id = store.runs.begin("{}", "0" * 64).id
        return complete_one(store, run_id, settings, base_url)[1]


def _lost(row: dict) -> tuple[int, int, float]:
    return row["unanswered_attempts"], row["unanswered_tokens"], row["unanswered_usd"]


@pytest.mark.parametrize(
    "answers",
    [
        [plain(completion(GOOD))],
        [http(b'{"error": {"message": "busy"}}', "503 Busy"), plain(completion(GOOD))],
        [http(b'{"error": {"message": "no"}}', "400 Bad")],
        [plain(completion({"not": "text"}))],
    ],
    ids=["reply", "error status then reply", "error status", "unreadable reply"],
)
def test_an_answered_attempt_takes_its_estimate_back(project, answers):
    with ReplyServer() as server:
        server.answer(*answers)
        row = _one(project, server.base_url, retries=len(answers) - 1)
    assert row["attempts"] == len(answers) and _lost(row) == (0, 0, 0.0)


def test_a_reply_cut_off_by_a_timeout_keeps_its_estimate(project, sim):
    sim.configure(token_latency_ms=1)
    sim.script(["hang", "hang"])  # each reply stops halfway, the connection held open
    row = _one(project, sim.base_url, idle_timeout=0.2, retries=1)
    assert (row["status"], row["attempts"]) == ("failed", 2)
    assert _lost(row) == (2, 2 * ESTIMATE, pytest.approx(2 * USD))


def test_a_dropped_connection_keeps_its_estimate_but_a_refused_one_does_not(project):
    with ReplyServer() as server:
        server.answer(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{")
        row = _one(project, server.base_url)
    assert row["reason"] == "connection" and _lost(row) == (1, ESTIMATE, pytest.approx(USD))
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    row = _one(project, f"http://127.0.0.1:{port}/v1")
    assert row["reason"] == "connection" and _lost(row) == (0, 0, 0.0)


def test_status_shows_the_estimated_spend_of_lost_replies(project):
    with ReplyServer() as server:
        server.answer(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{", plain(completion(GOOD)))
        _one(project, server.base_url)
        _one(project, server.base_url)
    with project.store() as store:
        spend = store.calls.spend()
        text = render_status(status(project.config(), store))
    assert (spend.unanswered_attempts, spend.unanswered_tokens) == (1, ESTIMATE)
    assert (
        f"replies lost: 1 attempts got no reply (killed, timed out or dropped), which the"
        f" endpoint may have billed: up to {ESTIMATE} tokens, ${USD:.4f} estimated, not in"
        " the cost above"
    ) in " ".join(text.split())  # the line is wrapped at 100 columns
