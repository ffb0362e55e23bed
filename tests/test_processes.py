"""synth as its users run it: `synth simulate` in one process, `synth run` in another."""

from __future__ import annotations

import csv
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
from conftest import DATA, ROOT, write_jsonl

from synth.plan import plan_cells


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextmanager
def simulator_processes() -> Iterator[Callable[..., tuple[str, subprocess.Popen[str]]]]:
    """``start(*flags)``: a `synth simulate` process on a free port, its base URL and
    the process; every one started is stopped at the end."""
    procs: list[subprocess.Popen[str]] = []

    def start(*flags: str) -> tuple[str, subprocess.Popen[str]]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "synth", "simulate", "--port", "0", *flags],
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/v1)", line)
        assert match, line
        return match.group(1), proc

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.fixture
def simulate() -> Iterator:
    with simulator_processes() as start:
        yield lambda *flags: start(*flags)[0]


def _banking_seeds(project, per_label: int) -> None:
    """Real rows for the three labels of the test config, from BANKING77."""
    wanted: dict[str, list[dict[str, str]]] = {
        "card_arrival": [],
        "lost_or_stolen_card": [],
        "exchange_rate": [],
    }
    with (DATA / "banking77" / "train.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            rows = wanted.get(row["category"])
            if rows is not None and len(rows) < per_label:
                rows.append({"text": row["text"], "label": row["category"]})
    write_jsonl(project.seeds, [r for rows in wanted.values() for r in rows])


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
        "--latency-ms", "100", "--p-429", "0.15", "--p-500", "0.15", "--retry-after-s", "0.1"
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
        attempts = store.calls.spend().attempts
    assert set(statuses) <= {"ok", "invalid", "failed"}  # nothing left pending
    assert stats["by_outcome"]["429"] + stats["by_outcome"]["500"] > 0
    assert stats["requests"] == attempts


JUDGE = """
[[filters]]
kind = "rubric"
rubric = "prompts/rubrics/banking.toml"
"""


@pytest.mark.parametrize(
    ("judge", "keys"),
    [(False, "honoured"), (True, "honoured"), (False, "ignored")],
    ids=["generate", "generate+judge", "keys ignored"],
)
def test_sigkill_at_random_points_then_resume_pays_nothing_twice(project, simulate, judge, keys):
    """A ~300-call run killed with SIGKILL three times, at random points, then resumed;
    with the judge on, judge calls are in flight when the kills land too. Against an
    endpoint that ignores Idempotency-Key, the attempts re-sent after a kill are billed
    twice, and `synth status` says what they may have cost."""
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    flags = ["--ignore-idempotency-keys"] if keys == "ignored" else []
    base_url = simulate(
        "--latency-ms",
        "20",
        "--p-429",
        "0.03",
        "--p-500",
        "0.03",
        "--retry-after-s",
        "0.05",
        *flags,
    )
    if judge:
        shutil.copytree(ROOT / "prompts" / "judge", project.root / "prompts" / "judge")
        shutil.copytree(ROOT / "prompts" / "rubrics", project.root / "prompts" / "rubrics")
    project.write_config(base_url=base_url, extra=JUDGE if judge else "")
    _banking_seeds(project, per_label=30)
    text = project.config_path.read_text()
    text = text.replace("per_label = 6", "per_label = 128").replace("per_call = 3", "per_call = 1")
    text = text.replace("max_calls = 200", "max_calls = 2000\nmax_calls_per_batch = 40")
    text = text.replace("max_concurrency = 8", "max_concurrency = 16")
    project.config_path.write_text(text)
    assert synth(project, "seeds", "import", str(project.seeds)).returncode == 0

    kills = 0
    with project.store() as store:
        for point in sorted(rng.sample(range(20, 280), 3)):
            proc = subprocess.Popen(
                [sys.executable, "-m", "synth", "--config", str(project.config_path), "run"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=_env(),
            )
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline:
                # Killed only once it has taken the run over: a process killed while
                # still importing (the previous kill overshot this point) would
                # resume nothing and leave run.resumes one short of the kills.
                owner = store.conn.execute(
                    "SELECT pid FROM runs ORDER BY rowid DESC LIMIT 1"
                ).fetchone()
                answered = store.conn.execute(
                    "SELECT count(*) FROM llm_calls WHERE status != 'pending'"
                ).fetchone()[0]
                if owner and owner[0] == proc.pid and answered >= point:
                    proc.send_signal(signal.SIGKILL)
                    kills += 1
                    break
                time.sleep(0.005)
            proc.wait(timeout=30)
    assert kills >= 2, f"seed {seed}: the run ended before it could be killed"

    final = synth(project, "run", "--quiet")
    assert final.returncode == 0, final.stderr
    assert "(resumed)" in final.stdout
    stats = httpx.get(base_url.removesuffix("/v1") + "/stats").json()
    config = project.config()
    with project.store() as store:
        spend = store.calls.spend()
        attempts = spend.attempts
        stored = store.conn.execute(
            "SELECT count(*) FROM llm_calls WHERE response_json IS NOT NULL"
        ).fetchone()[0]
        dupes = store.conn.execute(
            "SELECT llm_call_id, call_index FROM examples WHERE source != 'real'"
            " GROUP BY 1, 2 HAVING count(*) > 1"
        ).fetchall()
        unfinished = store.conn.execute(
            "SELECT count(*) FROM llm_calls WHERE status = 'pending' OR"
            " (status = 'ok' AND processed = 0)"
        ).fetchone()[0]
        plans = plan_cells(config, store.examples.cell_counts())
        [run] = store.runs.all()
    if keys == "honoured":
        assert stats["requests"] == attempts, f"seed {seed}: nothing may be paid twice"
    else:
        # A reply a kill lost was billed, and its request billed again when it was
        # re-sent: the replies the endpoint wrote beyond those stored are at most the
        # attempts left unanswered, and what they cost within their estimate.
        assert stats["requests"] > attempts, f"seed {seed}: the re-sent attempts billed twice"
        lost = spend.unanswered_attempts
        written = stats["by_outcome"]["ok"]  # replies the endpoint wrote, each one billed
        assert 0 < written - stored <= lost, f"seed {seed}"
        billed = (stats["prompt_tokens"] * 1.0 + stats["completion_tokens"] * 2.0) / 1e6
        assert 0 < billed - spend.cost_usd <= spend.unanswered_usd, f"seed {seed}"
        shown = synth(project, "status")
        assert f"replies lost: {lost} attempts got no reply" in shown.stdout, shown.stdout
        assert f"${spend.unanswered_usd:.4f} estimated" in shown.stdout
    assert dupes == [] and unfinished == 0
    if judge:
        with project.store() as store:
            judged = store.conn.execute(
                "SELECT count(DISTINCT example_id) FROM judge_scores"
            ).fetchone()[0]
            unjudged = store.conn.execute(
                "SELECT count(*) FROM examples e WHERE source != 'real' AND outcome != 'reject'"
                " AND NOT EXISTS (SELECT 1 FROM judge_scores j WHERE j.example_id = e.id)"
            ).fetchone()[0]
        assert judged > 0 and unjudged == 0, f"seed {seed}: every kept row was judged"
    assert all(p.deficit == 0 and p.real + p.synthetic == p.target for p in plans)
    assert sum(p.synthetic for p in plans) == 3 * (128 - 30) + 2
    assert run.status == "finished" and run.resumes == kills


@pytest.mark.parametrize("point", [5, 120])
def test_ctrl_c_prints_what_was_kept_and_exits_130_and_the_next_run_resumes(
    project, simulate, point
):
    """SIGINT to a real `synth run` with generation and judge calls in flight."""
    base_url = simulate("--latency-ms", "20", "--p-429", "0.03", "--retry-after-s", "0.05")
    shutil.copytree(ROOT / "prompts" / "judge", project.root / "prompts" / "judge")
    shutil.copytree(ROOT / "prompts" / "rubrics", project.root / "prompts" / "rubrics")
    project.write_config(base_url=base_url, extra=JUDGE)
    _banking_seeds(project, per_label=30)
    text = project.config_path.read_text().replace("per_label = 6", "per_label = 90")
    text = text.replace("per_call = 3", "per_call = 1")
    project.config_path.write_text(text.replace("max_calls = 200", "max_calls = 2000"))
    assert synth(project, "seeds", "import", str(project.seeds)).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "synth", "--config", str(project.config_path), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    with project.store() as store:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            answered = store.conn.execute(
                "SELECT count(*) FROM llm_calls WHERE status != 'pending'"
            ).fetchone()[0]
            if answered >= point:
                proc.send_signal(signal.SIGINT)
                break
            time.sleep(0.005)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert out == ""
    preparing, ready, *progress, last = err.splitlines()
    assert preparing.startswith("preparing filters: ") and ready.startswith("filters ready in ")
    assert all(line.startswith("batch ") for line in progress), err
    assert re.fullmatch(
        r"interrupted: run run_\w+ keeps its \d+ accepted rows and \d+ answered calls;"
        r" `synth run` resumes it",
        last,
    ), err
    again = synth(project, "run", "--quiet")
    assert again.returncode == 0, again.stderr
    assert "(resumed): finished" in again.stdout
