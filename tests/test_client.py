"""What the client puts on the wire and how it reads what comes back: a small HTTP
server on loopback records each request and answers as scripted, the real client
sends to it, a real store in tmp_path records the calls."""

from __future__ import annotations

import asyncio
import json
import re
import socket

import pytest
from conftest import Project

from synth.llm.client import IDLE_CONNECTION_S, LLMClient
from synth.store import CallRow, Store
from synth.store.rows import PlannedCall

REPLY = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": "sim-1",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": '{"examples": [{"text": "hi there"}]}'},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
}


async def _serve(answers: list[tuple[int, dict]], seen: list[dict]) -> asyncio.Server:
    """Answer each request with the next (status, JSON body); record its head and body."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:] if x)}
            body = await reader.readexactly(int(headers["content-length"]))
            seen.append(
                {
                    "line": lines[0],
                    "headers": headers,
                    "body": json.loads(body),
                    "peer": writer.get_extra_info("peername"),
                }
            )
            status, reply = answers.pop(0)
            data = json.dumps(reply).encode()
            writer.write(
                f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                f"content-length: {len(data)}\r\n\r\n".encode()
                + data
            )
            await writer.drain()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def _call(store: Store, config, sample: int = 0) -> CallRow:
    run = store.runs.begin(config.as_json(), config.sha)
    planned: PlannedCall = {
        "request_sha": f"{sample:02x}" + "ab" * 31,
        "slice": "default",
        "label": "card_arrival",
        "sample_index": sample,
        "template": "t",
        "template_sha": "0" * 64,
        "model": config.llm.model,
        "params": {"max_tokens": 50, "temperature": 0.7},
        "messages": [{"role": "user", "content": "write 1 example"}],
        "parent_ids": [],
    }
    [call] = store.calls.plan(run.id, [planned], first_attempt=True)
    return call


def _complete(project: Project, answers: list[tuple[int, dict]]):
    config = project.config()
    seen: list[dict] = []

    async def go():
        server = await _serve(answers, seen)
        port = server.sockets[0].getsockname()[1]
        try:
            with project.store() as store:
                call = _call(store, config)
                async with LLMClient(
                    config.llm,
                    store.calls,
                    api_key="sk-test",
                    base_url=f"http://127.0.0.1:{port}/v1",
                ) as client:
                    return await client.complete(call), client.fatal
        finally:
            server.close()

    result, fatal = asyncio.run(go())
    return result, fatal, seen


def test_the_request_on_the_wire_is_a_chat_completion_with_auth_and_key(project):
    result, fatal, seen = _complete(project, [(200, REPLY)])
    assert result.status == "ok" and fatal is None
    assert result.items == [{"text": "hi there"}]
    [request] = seen
    assert request["line"] == "POST /v1/chat/completions HTTP/1.1"
    headers = request["headers"]
    assert headers["authorization"] == "Bearer sk-test"
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("AsyncOpenAI/Python")
    assert headers["idempotency-key"] == "00" + "ab" * 15 + "-1"  # the attempt counted at planning
    assert request["body"] == {
        "model": "sim-1",
        "messages": [{"role": "user", "content": "write 1 example"}],
        "max_tokens": 50,
        "temperature": 0.7,
        "stream": True,  # this server ignores it, and its plain reply is read as it came
        "stream_options": {"include_usage": True},
    }


def test_a_connection_idle_for_a_while_is_not_written_to_again(project):
    """Servers close a connection idle for a few seconds (llama.cpp's, and uvicorn's,
    which vLLM runs: 5 s), and a request written onto one as the server closes it fails
    before it leaves ("Cannot write to closing transport"). The client lets go of an
    idle connection well before then: calls back to back share a connection, a call
    after a pause of IDLE_CONNECTION_S opens another."""
    config = project.config()
    seen: list[dict] = []

    async def go() -> list[str]:
        server = await _serve([(200, REPLY)] * 3, seen)
        port = server.sockets[0].getsockname()[1]
        statuses = []
        try:
            with project.store() as store:
                calls = [_call(store, config, sample) for sample in range(3)]
                async with LLMClient(
                    config.llm, store.calls, api_key="k", base_url=f"http://127.0.0.1:{port}/v1"
                ) as client:
                    for n, call in enumerate(calls):
                        if n == 2:
                            await asyncio.sleep(IDLE_CONNECTION_S + 0.5)
                        statuses.append((await client.complete(call)).status)
        finally:
            server.close()
        return statuses

    assert asyncio.run(go()) == ["ok"] * 3
    first, second, third = (request["peer"] for request in seen)
    assert first == second and third != second
    assert IDLE_CONNECTION_S < 5


@pytest.mark.parametrize(
    ("status", "message", "retried", "advice"),
    [
        # No retry can mend these: the run stops, naming the URL and what to do.
        (401, "Incorrect API key provided", False, "the endpoint refused the key"),
        (403, "Project does not have access", False, "may not use this model or endpoint"),
        (404, "Not Found", False, "check llm.base_url (it usually ends in /v1)"),
        (404, "The model `gpt-5o` does not exist", False, "does not serve llm.model"),
        (400, "nope", False, None),  # this call fails, the run goes on
        (429, "slow down", True, None),
        (503, "busy", True, None),
    ],
)
def test_error_statuses_become_the_openai_errors(project, status, message, retried, advice):
    error = {"error": {"message": message, "type": "x", "code": None}}
    answers = [(status, error), (200, REPLY)]
    result, fatal, seen = _complete(project, answers)
    assert len(seen) == (2 if retried else 1)
    if retried:
        assert result.status == "ok"
        assert seen[1]["headers"]["idempotency-key"].endswith("-2")
        return
    assert result.status == "failed"
    assert re.fullmatch(
        rf"HTTP {status} from POST http://127\.0\.0\.1:\d+/v1/chat/completions: "
        + re.escape(message),
        result.error,
    )
    if advice is None:
        assert fatal is None
    else:
        assert str(fatal).startswith(f"llm: {result.error}; ") and advice in str(fatal)


def test_a_cell_that_gets_nothing_accepted_is_stopped_after_its_idle_steps(sim_project, sim):
    # Nearly every item the simulator writes fails the schema filter: cells that get
    # nothing accepted stop after max_idle_batches of their steps, and the run stops
    # with them instead of spending its whole budget.
    from synth.plan import plan_cells
    from synth.runner import run
    from synth.seeds import read_seeds

    sim.configure(p_bad_item=1.0)
    text = sim_project.config_path.read_text()
    sim_project.config_path.write_text(
        text.replace("max_calls = 200", "max_calls = 200\nmax_idle_batches = 2")
    )
    config = sim_project.config()
    with sim_project.store() as store:
        store.examples.add_seeds(read_seeds(sim_project.seeds, config).seeds)
    summary = run(config)
    assert summary.status == "stopped"
    assert summary.stop_reason.startswith("stalled: nothing accepted in 2 batches for ")
    short = [p for p in summary.cells if p.deficit]
    assert short and all(str(p.cell) in summary.stop_reason for p in short)
    with sim_project.store() as store:
        assert 0 < store.count("llm_calls") < 200
        assert plan_cells(config, store.examples.cell_counts()) == summary.cells


def test_a_cost_cap_stops_the_run_near_the_cap_with_the_reason(sim_project, sim):
    from synth.runner import run
    from synth.seeds import read_seeds

    text = sim_project.config_path.read_text().replace("per_label = 6", "per_label = 200")
    sim_project.config_path.write_text(
        text.replace("max_calls = 200", "max_calls = 500\nmax_cost_usd = 0.02")
    )
    config = sim_project.config()
    with sim_project.store() as store:
        store.examples.add_seeds(read_seeds(sim_project.seeds, config).seeds)
    summary = run(config)
    assert (summary.status, summary.stop_reason) == (
        "stopped",
        "budget: max_cost_usd = 0.02 reached",
    )
    with sim_project.store() as store:
        spend = store.calls.spend()
        costs = [c for (c,) in store.conn.execute("SELECT cost_usd FROM llm_calls")]
        [r] = store.runs.all()
    assert r.stop_reason == summary.stop_reason
    # Past the cap by at most what was already in flight when it was reached.
    assert 0.02 * 0.8 < spend.cost_usd <= 0.02 + config.llm.max_concurrency * max(costs)
    assert spend.calls < 500


def test_a_refused_connection_says_so_and_names_the_url(project):
    """The HTTP layer reports a refused connection as a connect timeout; the call's
    error says what happened, not "Request timed out"."""
    config = project.config()
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"

    async def go():
        with project.store() as store:
            call = _call(store, config)
            settings = config.llm.model_copy(update={"retries": 1})
            async with LLMClient(settings, store.calls, api_key="x", base_url=url) as client:
                return await client.complete(call)

    result = asyncio.run(go())
    assert result.status == "failed"
    assert result.error == f"connection refused: {url}/chat/completions"
