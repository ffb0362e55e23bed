"""Several endpoints serving one model (`llm.base_urls`): attempts spread over them, a
failed endpoint put aside, and a run that outlives one of its servers."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import httpx2
import openai
import pytest
from test_client import _call
from test_processes import _banking_seeds, _env, simulator_processes, synth

from synth.config import load_config
from synth.errors import ConfigError
from synth.llm.client import LLMClient
from synth.llm.endpoints import Endpoints
from synth.plan import plan_cells
from synth.sim import SimConfig, Simulator

URLS = ["http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1/", "http://127.0.0.1:3/v1"]


def _refused() -> openai.APIConnectionError:
    return openai.APIConnectionError(request=httpx2.Request("POST", URLS[0]))


def test_attempts_go_to_the_endpoint_with_fewest_in_flight():
    endpoints = Endpoints(URLS, cooldown_s=30)
    taken = [endpoints.take() for _ in range(6)]
    assert [e.url for e in taken[:3]] == [
        "http://127.0.0.1:1/v1/chat/completions",
        "http://127.0.0.1:2/v1/chat/completions",
        "http://127.0.0.1:3/v1/chat/completions",
    ]
    assert [e.in_flight for e in endpoints.all] == [2, 2, 2]
    endpoints.give_back(taken[1], None)
    assert endpoints.take() is taken[1]


def test_an_endpoint_that_failed_is_put_aside_until_its_cool_down_ends():
    endpoints = Endpoints(URLS[:2], cooldown_s=0.2)
    first = endpoints.take()
    endpoints.give_back(first, _refused())
    assert all(endpoints.take() is not first for _ in range(5))
    assert endpoints.any_ready()
    time.sleep(0.25)
    assert first.in_flight == 0 and endpoints.take() is first


def test_with_every_endpoint_put_aside_the_one_back_soonest_is_tried():
    endpoints = Endpoints(URLS[:2], cooldown_s=30)
    a, b = endpoints.take(), endpoints.take()
    endpoints.give_back(b, _refused())
    endpoints.give_back(a, _refused())
    assert not endpoints.any_ready()
    assert endpoints.take() is b


def test_a_rate_limit_does_not_put_an_endpoint_aside():
    endpoints = Endpoints(URLS[:1], cooldown_s=30)
    one = endpoints.take()
    response = httpx2.Response(429, request=httpx2.Request("POST", URLS[0]))
    endpoints.give_back(one, openai.RateLimitError("slow down", response=response, body=None))
    assert endpoints.any_ready() and one.served == 1


def test_base_url_and_base_urls_together_are_refused(project):
    text = project.config_path.read_text()
    project.config_path.write_text(
        text.replace("timeout = 5", 'timeout = 5\nbase_urls = ["http://127.0.0.1:9/v1"]')
    )
    with pytest.raises(ConfigError, match="base_url or llm.base_urls, not both"):
        load_config(project.config_path)


def test_a_config_without_base_urls_keeps_its_sha(project):
    """Stores written before the key existed resume their runs as the same runs."""
    config = project.config()
    assert "base_urls" not in config.as_json() and "cooldown_s" not in config.as_json()


def test_a_5xx_puts_the_endpoint_aside_and_the_retry_goes_to_another(project, sim):
    """Each attempt is recorded once; the retry elsewhere is an attempt of its own."""
    config = project.config()
    with Simulator(SimConfig(seed=2)) as broken:
        broken.script(["500"])
        settings = config.llm.model_copy(
            update={"base_url": "", "base_urls": [broken.base_url, sim.base_url]}
        )

        async def go():
            with project.store() as store:
                call = _call(store, config)
                async with LLMClient(settings, store.calls, api_key="x") as client:
                    result = await client.complete(call)
                    aside = [e.failed for e in client.endpoints.all]
                [recorded] = store.calls.by_id([call.id])
                return result, recorded, aside

        result, recorded, aside = asyncio.run(go())
        assert broken.stats()["by_outcome"]["500"] == 1 and broken.stats()["requests"] == 1
    assert result.status == "ok"
    assert recorded.attempts == 2 and sim.stats()["requests"] == 1
    assert aside == [1, 0]


@pytest.fixture
def simulators() -> Iterator:
    with simulator_processes() as start:
        yield start


def _stats(base_url: str) -> dict:
    return httpx.get(base_url.removesuffix("/v1") + "/stats").json()


def test_a_run_over_three_endpoints_outlives_one_killed_mid_run(project, simulators):
    started = [simulators("--latency-ms", "80") for _ in range(3)]
    urls = [url for url, _ in started]
    project.write_config(base_url="")
    _banking_seeds(project, per_label=30)
    text = project.config_path.read_text()
    text = text.replace(
        'base_url = ""', f"base_urls = {urls!r}\ncooldown_s = 600".replace("'", '"')
    )
    text = text.replace("per_label = 6", "per_label = 80").replace("per_call = 3", "per_call = 1")
    text = text.replace("max_calls = 200", "max_calls = 2000\nmax_calls_per_batch = 40")
    text = text.replace("max_concurrency = 8", "max_concurrency = 12")
    project.config_path.write_text(text)
    assert synth(project, "seeds", "import", str(project.seeds)).returncode == 0

    run = subprocess.Popen(
        [sys.executable, "-m", "synth", "--config", str(project.config_path), "run", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    doomed_url, doomed = started[2]
    deadline = time.monotonic() + 60
    before_kill = _stats(doomed_url)
    while before_kill["requests"] < 15 and time.monotonic() < deadline:
        time.sleep(0.01)
        before_kill = _stats(doomed_url)
    assert before_kill["in_flight"] > 0, "killed while it was serving"
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    assert "finished" in out

    survivors = [_stats(url)["requests"] for url in urls[:2]]
    config = project.config()
    with project.store() as store:
        statuses = dict(
            store.conn.execute("SELECT status, count(*) FROM llm_calls GROUP BY status").fetchall()
        )
        calls, attempts, failed = store.conn.execute(
            "SELECT count(DISTINCT request_sha), sum(attempts), sum(status = 'failed')"
            " FROM llm_calls"
        ).fetchone()
        rows = store.conn.execute("SELECT count(*) FROM llm_calls").fetchone()[0]
        plans = plan_cells(config, store.examples.cell_counts())
    assert set(statuses) <= {"ok", "invalid", "failed"}  # nothing left pending
    assert rows == calls  # each call recorded once
    assert all(p.deficit == 0 for p in plans)  # the quota was met
    assert all(n > 0 for n in survivors)
    # Every attempt reached a server and was counted there, except those the kill cut
    # off (refused, or sent in the instant between the last count and the kill): each
    # of those was retried on another endpoint, or is the call's recorded failure.
    retried = attempts - calls
    unseen = attempts - sum(survivors) - before_kill["requests"]
    assert retried > 0, "the kill cut off calls in flight"
    assert 0 <= unseen <= retried + failed


def test_a_run_whose_first_endpoint_is_down_from_the_start_uses_the_others(project, sim):
    """The preflight asks every endpoint of the list; one that does not answer is left
    to the run, which puts it aside, instead of stopping the run before it starts."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    project.write_config(base_url="")
    text = project.config_path.read_text()
    text = text.replace('base_url = ""', f'base_urls = ["{closed}", "{sim.base_url}"]')
    project.config_path.write_text(text)
    assert synth(project, "seeds", "import", str(project.seeds)).returncode == 0
    ran = synth(project, "run")
    assert ran.returncode == 0, ran.stderr
    assert "the run goes on with the other endpoints" in ran.stderr
    assert "finished" in ran.stdout
