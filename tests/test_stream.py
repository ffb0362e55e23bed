"""Streamed replies and the clocks that cut off an attempt: the real client against the
simulator on loopback, slowed down or stuck on purpose, a real store in tmp_path."""

from __future__ import annotations

import asyncio
import json
import time

from test_run import _planned

from synth.llm.client import LLMClient
from synth.llm.stream import Reassembly
from synth.runner import Snapshot, run
from synth.seeds import read_seeds


def _configure(project, **llm: object) -> None:
    """Set [llm] keys (the test config's timeout and retries included)."""
    text = project.config_path.read_text()
    for key, value in llm.items():
        line = f"{key} = {json.dumps(value)}"
        if f"\n{key} = " in text:
            start = text.index(f"\n{key} = ") + 1
            text = text[:start] + line + text[text.index("\n", start) :]
        else:
            text = text.replace("[llm]\n", f"[llm]\n{line}\n", 1)
    project.config_path.write_text(text)


def _one_call(project, sha: str = "cd"):
    """One call through the client; its result, its stored row, the seconds it took."""
    config = project.config()

    async def go():
        with project.store() as store:
            run_row = store.runs.begin(config.as_json(), config.sha)
            [call] = store.calls.plan(run_row.id, [_planned(config, sha * 32)])
            async with LLMClient(config.llm, store.calls, api_key="unused") as client:
                started = time.monotonic()
                result = await client.complete(call)
                took = time.monotonic() - started
            row = store.conn.execute(
                "SELECT status, attempts, error, response_json FROM llm_calls WHERE id = ?",
                (call.id,),
            ).fetchone()
            return result, row, took

    return asyncio.run(go())


def test_a_slow_server_writing_tokens_is_never_cut_off(sim_project, sim):
    # Each reply takes most of a second, at 100 tokens/s after 0.3 s to the first:
    # over three times the no-progress limit and the timeout, yet every call gets
    # through on its first attempt.
    sim.configure(latency_ms=300, token_latency_ms=10)
    _configure(sim_project, timeout=0.25, idle_timeout=0.25, min_tokens_per_s=400, retries=3)
    config = sim_project.config()
    with sim_project.store() as store:
        store.examples.add_seeds(read_seeds(sim_project.seeds, config).seeds)
    snaps: list[Snapshot] = []
    summary = run(config, progress=snaps.append)
    assert summary.status == "finished", summary.stop_reason
    # The progress display heard of the calls on the wire while it waited for them.
    assert any(s.streaming for s in snaps)
    with sim_project.store() as store:
        calls = store.conn.execute(
            "SELECT attempts, latency_ms, prompt_tokens, completion_tokens, response_json"
            " FROM llm_calls"
        ).fetchall()
    stats = sim.stats()
    assert calls and {c[0] for c in calls} == {1}  # no attempt cancelled and sent again
    assert stats["requests"] == stats["streamed"] == len(calls)
    assert min(c[1] for c in calls) > 3 * 250  # ms
    # The streamed chunks were put back together into the chat.completion stored.
    assert sum(c[2] for c in calls) == stats["prompt_tokens"]
    assert sum(c[3] for c in calls) == stats["completion_tokens"]
    reply = json.loads(calls[0][4])
    assert reply["object"] == "chat.completion" and reply["choices"][0]["finish_reason"] == "stop"
    assert json.loads(reply["choices"][0]["message"]["content"])["examples"]


def test_a_stalled_reply_is_cut_off_after_the_idle_timeout_and_retried(sim_project, sim):
    # The simulator is shared: hangs left by earlier tests may still be open.
    already = sim.stats()["in_flight"]
    sim.configure(token_latency_ms=1)
    sim.script(["hang", "ok"])  # the first attempt stops halfway, the connection open
    _configure(sim_project, idle_timeout=0.3, retries=1)
    result, (status, attempts, error, body), took = _one_call(sim_project)
    assert result.status == "ok" and status == "ok" and attempts == 2 and error is None
    assert 0.3 <= took < 2.5  # the stall, cut at 0.3 s, plus a backoff of at most 0.5 s
    assert json.loads(body)["choices"][0]["finish_reason"] == "stop"
    stats = sim.stats()
    assert stats["by_outcome"]["hang"] == 1 and stats["requests"] == 2
    deadline = time.monotonic() + 3  # the cut-off request's connection was closed
    while sim.stats()["in_flight"] > already and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sim.stats()["in_flight"] <= already


def test_a_stall_on_the_last_attempt_is_recorded_as_a_timeout_saying_why(sim_project, sim):
    sim.configure(p_hang=1.0, token_latency_ms=1)
    _configure(sim_project, idle_timeout=0.3, retries=0)
    result, (status, attempts, error, _), took = _one_call(sim_project)
    assert result.status == status == "failed" and attempts == 1
    assert error == (
        f"timed out: {sim.base_url}/chat/completions: nothing received for 0.3 s (llm.idle_timeout)"
    )
    assert 0.3 <= took < 1.5


def test_a_steady_reply_longer_than_its_total_is_cut_off(sim_project, sim):
    # 20 tokens/s on a reply of about 30 tokens takes 1.5 s; the total allowed for 50
    # max_tokens is 0.2 + 50 / 100 = 0.7 s. Tokens arrive every 50 ms, so the idle
    # limit is never reached.
    sim.configure(token_latency_ms=50)
    _configure(sim_project, timeout=0.2, idle_timeout=1, min_tokens_per_s=100, retries=0)
    result, (status, _, error, _), took = _one_call(sim_project)
    assert status == "failed" and error.endswith(
        "no whole reply within 0.7 s (llm.timeout + max_tokens / llm.min_tokens_per_s)"
    )
    assert 0.7 <= took < 1.4


def test_a_plain_reply_is_stored_as_it_came_and_a_silent_one_hits_the_total(sim_project, sim):
    _configure(sim_project, stream=False, timeout=0.2, min_tokens_per_s=100, retries=0)
    result, (status, _, _, body), _ = _one_call(sim_project)
    assert result.status == status == "ok" and sim.stats()["streamed"] == 0
    assert json.loads(body)["usage"]["completion_tokens"] > 0
    # With nothing streamed, the total is the only clock: a server that never answers
    # is cut off there.
    sim.configure(p_hang=1.0)
    result, (status, _, error, _), took = _one_call(sim_project, "ef")
    assert status == "failed" and "no whole reply within 0.7 s" in error
    assert 0.7 <= took < 1.4


def _events(*chunks: dict) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)


LLAMA_CPP = (
    _events(
        {
            "choices": [{"finish_reason": None, "index": 0, "delta": {"role": "assistant"}}],
            "created": 1,
            "id": "chatcmpl-A",
            "model": "smol.gguf",
            "object": "chat.completion.chunk",
        },
        {"choices": [{"index": 0, "delta": {"content": '{"exa'}}], "model": "smol.gguf"},
        {"choices": [{"index": 0, "delta": {"content": 'mples": []}'}}], "model": "smol.gguf"},
        {"choices": [{"finish_reason": "length", "index": 0, "delta": {}}], "model": "smol.gguf"},
        {
            "choices": [],
            "model": "smol.gguf",
            "usage": {"completion_tokens": 5, "prompt_tokens": 36, "total_tokens": 41},
            "timings": {"predicted_per_second": 11.5},
        },
    )
    + b"data: [DONE]\n\n"
)


def test_chunks_are_put_back_together_however_the_bytes_are_split():
    whole = Reassembly()
    assert whole.feed(LLAMA_CPP) and whole.complete()
    reply = json.loads(whole.body())
    assert reply == {
        "created": 1,
        "id": "chatcmpl-A",
        "model": "smol.gguf",
        "usage": {"completion_tokens": 5, "prompt_tokens": 36, "total_tokens": 41},
        "timings": {"predicted_per_second": 11.5},
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": '{"examples": []}'},
                "finish_reason": "length",
            }
        ],
    }
    bytewise = Reassembly()
    crlf = LLAMA_CPP.replace(b"\n", b"\r\n")
    for i in range(len(crlf)):
        bytewise.feed(crlf[i : i + 1])
    assert bytewise.complete() and bytewise.body() == whole.body()


def test_an_unfinished_stream_or_an_error_event_is_not_a_reply():
    cut = Reassembly()
    assert not cut.feed(LLAMA_CPP[: LLAMA_CPP.index(b'data: {"choices": [{"finish')])
    assert not cut.complete()
    failed = Reassembly()
    assert failed.feed(LLAMA_CPP[:40] + b'\n\nerror: {"code": 500, "message": "slot died"}\n\n')
    assert failed.error == {"code": 500, "message": "slot died"}


def test_calls_in_flight_are_counted_waiting_then_streaming(sim_project, sim):
    # 0.4 s to the first token, then tokens every 10 ms.
    sim.configure(latency_ms=400, token_latency_ms=10)
    config = sim_project.config()
    seen: list[tuple[int, int]] = []

    async def go():
        with sim_project.store() as store:
            run_row = store.runs.begin(config.as_json(), config.sha)
            planned = [
                {
                    "request_sha": f"{i:02d}" * 32,
                    "slice": "default",
                    "label": "card_arrival",
                    "sample_index": i,
                    "template": "t",
                    "template_sha": "0" * 64,
                    "model": config.llm.model,
                    "params": {"max_tokens": 50},
                    "messages": [{"role": "user", "content": f"write 1 example ({i})"}],
                    "parent_ids": [],
                }
                for i in range(3)
            ]
            calls = store.calls.plan(run_row.id, planned)
            async with LLMClient(config.llm, store.calls, api_key="unused") as client:
                sending = asyncio.ensure_future(client.complete_all(calls))
                while not sending.done():
                    seen.append((client.in_flight.waiting, client.in_flight.streaming))
                    await asyncio.sleep(0.01)
                results = await sending
                seen.append((client.in_flight.waiting, client.in_flight.streaming))
            return results

    assert [r.status for r in asyncio.run(go())] == ["ok"] * 3
    assert (3, 0) in seen and any(w == 0 and s > 0 for w, s in seen)
    assert seen.index((3, 0)) < min(i for i, (w, s) in enumerate(seen) if s)
    assert seen[-1] == (0, 0)
