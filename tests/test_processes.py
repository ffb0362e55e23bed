"""synth as its users run it: `synth simulate` in one process, `synth run` in another."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def simulate() -> Iterator:
    procs = []

    def start(*flags: str) -> str:
        proc = subprocess.Popen(
            [sys.executable, "-m", "synth", "simulate", "--port", "0", *flags],
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        procs.append(proc)
        line = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/v1)", line)
        assert match, line
        return match.group(1)

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


def synth(project, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "synth", "--config", str(project.config_path), *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )


def test_run_against_a_slow_faulty_simulator_accounts_for_every_request(project, simulate):
    base_url = simulate(
        "--latency-ms", "100", "--p-429", "0.05", "--p-500", "0.05", "--retry-after-s", "0.1"
    )
    project.write_config(base_url=base_url)
    assert synth(project, "seeds", "import", str(project.seeds)).returncode == 0
    ran = synth(project, "run", "--quiet")
    assert ran.returncode == 0, ran.stderr
    assert "finished" in ran.stdout
    stats = httpx.get(base_url.removesuffix("/v1") + "/stats").json()
    with project.store() as store:
        statuses = dict(
            store.conn.execute("SELECT status, count(*) FROM llm_calls GROUP BY status").fetchall()
        )
        attempts = store.spend().attempts
    assert set(statuses) <= {"ok", "invalid", "failed"}  # nothing left pending
    assert stats["by_outcome"]["429"] + stats["by_outcome"]["500"] > 0
    assert stats["requests"] == attempts
