"""synth against a real model server: llama.cpp's C++ server serving SmolLM2-135M-
Instruct on loopback (``tests/llamacpp.py``), through the real openai client and the
bundled config's whole filter chain, the judge included.

The simulator answers as synth expects; a real small model does not. These tests
hold synth to what it must do with one anyway: read the shapes the model writes in
every ``response_format`` mode, record what it mended and why a reply was unusable,
account the tokens the server counted, and end a run at its quota or with a reason
that ``synth status`` shows.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import pytest
from llamacpp import MODEL, metrics, real_config, seeded

from synth.errors import SynthError
from synth.generate import SeedPool, build_call
from synth.llm.client import CallResult, LLMClient
from synth.plan import plan_cells
from synth.prompts import load_template
from synth.runner import run
from synth.show import render_example, show_example
from synth.status import render_status, status
from synth.store import Store

pytestmark = pytest.mark.realserver
# Share of generation replies that must yield examples, per mode (the bar).
PARSE_BAR = {"json_schema": 0.8, "json_object": 0.5, "none": 0.5}


CALLS_PER_MODE = 12


@pytest.mark.parametrize("mode", ["json_schema", "json_object", "none"])
def test_generation_replies_are_read_in_every_response_format(tmp_path, llama, mode):
    """Twelve generation requests of the bundled template, each asking for three
    examples, sent through synth's client and recorded in a store: the share of
    replies that yield examples meets the mode's bar, each unusable reply says why in
    one line, the tokens recorded are the server's, and so is the model name."""
    # Greedy decoding: the same prompts get the same replies, so the share read is
    # the model's and synth's, not a draw's (sampled at 0.7, `bench/local_model.py`
    # reads a similar share, run to run within about one reply in eight).
    config = real_config(tmp_path, llama.base_url, mode).with_llm(temperature=0.0)
    seeded(config)
    template = load_template(config.resolve(config.generate.template))
    with Store(config.db_path) as store:
        pool = SeedPool.from_rows(store.examples.seeds())
        plans = [p for p in plan_cells(config, store.examples.cell_counts()) if p.deficit]
        calls = [
            build_call(config, template, plans[i % len(plans)], pool, i, 3)
            for i in range(CALLS_PER_MODE)
        ]
        run_id = store.runs.begin(config.as_json(), config.sha).id
        rows = store.calls.plan(run_id, calls)
        before = metrics(llama)
        started = time.perf_counter()

        async def send() -> list[CallResult]:
            async with LLMClient(config.llm, store.calls, api_key="unused") as client:
                return await client.complete_all(rows)

        results = asyncio.run(send())
        elapsed = time.perf_counter() - started
        after = metrics(llama)
        recorded = store.conn.execute(
            "SELECT status, error, repairs_json, served_model, completion_tokens, model"
            " FROM llm_calls"
        ).fetchall()
    parsed = [r for r in results if r.status == "ok"]
    items = [item for r in parsed for item in r.items or []]
    tokens = sum(r[4] for r in recorded)
    repairs = Counter(x for r in recorded if r[2] for x in json.loads(r[2]))
    print(
        f"\n{mode}: {len(parsed)}/{len(results)} replies read, {len(items)} examples;"
        f" {tokens} tokens in {elapsed:.0f} s ({tokens / elapsed:.0f} tokens/s,"
        f" {len(results) / elapsed:.2f} calls/s); repairs {dict(repairs)};"
        f" unusable: {[r.error for r in results if r.status != 'ok']}"
    )
    assert len(parsed) / len(results) >= PARSE_BAR[mode]
    for status_, error, *_ in recorded:
        if status_ != "ok":
            assert error and "\n" not in error and "Traceback" not in error
    assert (
        tokens
        == after["llamacpp:tokens_predicted_total"] - before["llamacpp:tokens_predicted_total"]
    )
    assert {r[3] for r in recorded} == {str(llama.model)}  # what the server says it served
    assert {r[5] for r in recorded} == {MODEL}  # beside what was asked for
    if mode == "json_schema":
        # The schema's max_length went into the schema sent, and the server kept to it.
        limit = config.data_schema.fields["text"].max_length
        assert limit and all(len(item["text"]) <= limit for item in items)
        # The schema held the shape: the only mending is of a reply cut at max_tokens.
        assert set(repairs) <= {"cut_off", "broken_json"}
        assert repairs["broken_json"] <= repairs["cut_off"]


@pytest.mark.parametrize("mode", ["json_schema", "json_object", "none"])
def test_a_small_run_through_the_whole_chain_ends_at_quota_or_says_why(tmp_path, llama, mode):
    """``synth run`` with the bundled chain, the judge included (SmolLM2 judging
    SmolLM2: it rejects most of what it sees): the run meets its quota, or stops
    with a reason that ``synth status`` shows."""
    config = real_config(tmp_path, llama.base_url, mode)
    seeded(config)
    started = time.perf_counter()
    summary = run(config)
    elapsed = time.perf_counter() - started
    with Store(config.db_path) as store:
        calls = store.conn.execute(
            "SELECT purpose, status, error, completion_tokens FROM llm_calls"
        ).fetchall()
        report = render_status(status(config, store))
        some = store.conn.execute(
            "SELECT id FROM examples WHERE source = 'synthetic' LIMIT 1"
        ).fetchone()
        shown = render_example(show_example(store, some[0])) if some else None
    generated = [c for c in calls if c[0] == "generate" and c[1] in ("ok", "invalid")]
    judged = [c for c in calls if c[0] == "judge" and c[1] in ("ok", "invalid")]
    tokens = sum(c[3] for c in calls)
    print(
        f"\n{mode}: generation {sum(c[1] == 'ok' for c in generated)}/{len(generated)} read,"
        f" judge {sum(c[1] == 'ok' for c in judged)}/{len(judged)}; {len(calls)} calls,"
        f" {tokens} tokens in {elapsed:.0f} s; accepted {summary.accepted};"
        f" {summary.status} {summary.stop_reason or ''}"
    )
    assert generated and sum(c[1] == "ok" for c in generated) > 0
    # `synth show` names the model asked for and the one the server says served it.
    assert shown is not None and f"model {MODEL}, served as {llama.model}" in shown
    for c in calls:
        if c[1] in ("invalid", "failed"):
            assert c[2] and "\n" not in c[2] and "Traceback" not in c[2]
    if summary.status == "finished":
        assert all(p.deficit == 0 for p in summary.cells)
    else:
        assert summary.status == "stopped" and summary.stop_reason
        # status wraps its lines at 100 columns
        assert " ".join(summary.stop_reason.split()) in " ".join(report.split())


def test_batch_mode_against_a_server_without_the_batch_api_says_so(tmp_path, llama):
    config = real_config(tmp_path, llama.base_url, "json_schema")
    config = config.with_llm(mode="batch")
    seeded(config)
    with pytest.raises(SynthError) as caught:
        run(config)
    message = str(caught.value)
    assert message.startswith("llm.mode: batch mode needs the Batch API")
    assert f"HTTP 404 from POST {llama.base_url}/files" in message
    with Store(config.db_path) as store:
        [last] = store.runs.all()
    assert last.status == "failed" and last.stop_reason == message
