"""Context awareness: the context size read from the server, judge prompts that fit
it, and a full context told apart from max_tokens, against the simulator given a
llama.cpp-sized context window."""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from test_judge import _candidate, judge_project

from synth.filters.rubric import RubricParams
from synth.generate import SeedPool
from synth.judge.grading import JudgeStage
from synth.llm.client import LLMClient
from synth.llm.context import context_from_models, probe_context
from synth.llm.limits import FIT_CHARS_PER_TOKEN, TEMPLATE_TOKENS
from synth.plan import all_labels
from synth.records import Outcome, Verdict
from synth.status import render_status, status

CANDIDATE = "my new card has still not arrived after two weeks"


def test_the_context_size_is_read_from_a_server_that_says_it(sim):
    sim.configure(n_ctx=2048)
    assert asyncio.run(probe_context(sim.base_url, "k", "sim-1")) == 2048


def test_a_server_that_does_not_say_it_leaves_it_unknown(sim):
    assert asyncio.run(probe_context(sim.base_url, "k", "sim-1")) is None
    # Nothing listens on port 9: unknown too, and no error.
    assert asyncio.run(probe_context("http://127.0.0.1:9/v1", "k", "sim-1")) is None


@pytest.mark.parametrize(
    ("models", "found"),
    [
        ({"data": [{"id": "m", "max_model_len": 4096}]}, 4096),  # vLLM
        ({"data": [{"id": "other", "max_model_len": 4096}]}, 4096),  # the only one served
        ({"data": [{"id": "a", "max_model_len": 1}, {"id": "m", "max_model_len": 8}]}, 8),
        ({"data": [{"id": "a", "max_model_len": 1}, {"id": "b", "max_model_len": 8}]}, None),
        ({"data": [{"id": "gpt-4o", "object": "model"}]}, None),  # OpenAI's
        ({"error": "nope"}, None),
        (None, None),
    ],
)
def test_context_from_vllm_models(models, found):
    assert context_from_models(models, "m") == found


def _stage(project, context, **params):
    config = project.config()
    store = project.store()
    spec = next(f for f in config.filters if isinstance(f, RubricParams))
    spec = spec.model_copy(update=params)
    ctx = config.filter_context(all_labels(config, store.examples.cell_counts()))
    stage = JudgeStage(spec, config, store, SeedPool.from_rows(store.examples.seeds()), ctx)
    stage.context_tokens = context
    return config, store, stage


def _judge(project, context, **params):
    """Judge one candidate through a client that knows the context; the outcome and
    the store."""
    config, store, stage = _stage(project, context, **params)
    run_row = store.runs.begin("{}", "test")
    outcome = Outcome(_candidate(CANDIDATE, "card_arrival", 1))

    async def go():
        settings = config.llm.model_copy(update={"context_tokens": context})
        async with LLMClient(settings, store.calls, api_key="unused") as client:
            await stage.judge(client, run_row.id, [outcome])

    asyncio.run(go())
    return outcome, store


def _judge_calls(store):
    rows = store.conn.execute(
        "SELECT template, status, reason, error, messages_json FROM llm_calls"
        " WHERE purpose = 'judge' ORDER BY rowid"
    ).fetchall()
    return [(t, st, r, e, json.loads(m)[0]["content"]) for t, st, r, e, m in rows]


def _estimate(chars: int, max_tokens: int) -> int:
    return math.ceil(chars / FIT_CHARS_PER_TOKEN) + TEMPLATE_TOKENS + max_tokens


def test_the_label_check_shows_fewer_examples_where_all_would_not_fit(sim_project, sim):
    judge_project(sim_project)
    # The label check's prompt with every example, and the context one token short
    # of what it and the reply are estimated to need.
    _, full, stage = _stage(sim_project, None)
    prompt = stage._call("label_check", _candidate(CANDIDATE, "card_arrival", 1), "sim-1", 0)
    full.close()
    chars = len(prompt["messages"][0]["content"])
    context = _estimate(chars, stage.params.max_tokens) - 1
    sim.configure(n_ctx=context)
    outcome, store = _judge(sim_project, context)
    calls = _judge_calls(store)
    assert [(st, r) for _, st, r, _, _ in calls] == [("ok", None), ("ok", None)]
    label_prompt = next(p for t, *_, p in calls if t.endswith("label.md.j2"))
    assert len(label_prompt) < chars
    assert _estimate(len(label_prompt), stage.params.max_tokens) <= context
    # Fewer examples of each label, not none: the most that fit.
    assert 0 < label_prompt.count('{"text":') < prompt["messages"][0]["content"].count('{"text":')
    assert outcome.verdict is Verdict.KEEP
    assert sim.stats()["by_outcome"]["context_full"] == 0
    store.close()


def test_a_prompt_that_cannot_fit_is_stored_as_context_full_and_not_asked_again(sim_project, sim):
    judge_project(sim_project)
    sim.configure(n_ctx=100)  # shorter than the label check without a single example
    # At temperature 0.7 an invalid reply would be asked again; a prompt too long
    # would be as long the next time.
    outcome, store = _judge(sim_project, 100, retries=2, temperature=0.7)
    calls = _judge_calls(store)
    # The label check and the rubric, each refused once.
    assert [t.rsplit("/", 1)[1] for t, *_ in calls] == ["label.md.j2", "grade.md.j2"]
    assert {(st, reason) for _, st, reason, _, _ in calls} == {("failed", "context_full")}
    _, _, _, error, prompt = calls[0]
    assert error.startswith("context full: HTTP 400: request (")
    assert "exceeds the available context size (100 tokens)" in error
    assert '{"text":' not in prompt.split("Candidate:")[0]  # no example was left to drop
    d = outcome.decisions[-1]
    assert d.verdict is Verdict.REVIEW and "context full" in d.reason
    assert sim.stats()["by_outcome"]["context_full"] == 2
    shown = render_status(status(sim_project.config(), store))
    assert "judge: 2 calls (2 invalid or failed: context_full 2)" in shown
    store.close()


def test_a_reply_that_runs_into_the_end_of_the_context_is_context_full(sim_project, sim):
    judge_project(sim_project)
    # The rubric prompt without references is about 195 simulator tokens: its reply
    # is cut a few tokens in, well short of max_tokens.
    sim.configure(n_ctx=200)
    outcome, store = _judge(sim_project, 200, label_check=False, temperature=0.7)
    ((_, st, reason, error, _),) = _judge_calls(store)
    assert (st, reason) == ("invalid", "context_full")
    assert error.startswith("finish_reason=length: the context is full (prompt ")
    assert error.endswith("tokens of a 200-token context)")
    assert outcome.decisions[-1].verdict is Verdict.REVIEW
    store.close()


def test_a_reply_cut_at_max_tokens_is_cut_off_whatever_the_context(sim_project, sim):
    judge_project(sim_project)
    sim.configure(n_ctx=4096)
    sim.script(["truncate"])
    outcome, store = _judge(sim_project, 4096, label_check=False, retries=0)
    ((_, st, reason, error, _),) = _judge_calls(store)
    assert (st, reason) == ("invalid", "cut_off")
    assert error == "finish_reason=length: the reply was cut off at max_tokens"
    store.close()
