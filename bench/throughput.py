"""Throughput of synth's run path against the simulator, next to a bare openai loop.

    python bench/throughput.py [--calls 2000] [--repeats 3]

The simulator runs in its own process with 200 ms latency and N server-side slots
(ideal: N / 0.2 s calls per second). Each measurement runs in a fresh subprocess so
that its peak RSS is its own:

- reference: a bare ``AsyncOpenAI`` (default settings) + ``asyncio.Semaphore(N)``
  sending the same prompts synth sends;
- synth: ``synth run`` on a fresh store, capped at the same number of calls: it
  renders the template, sends, parses and validates the replies, runs the schema,
  PII and exact-dedup filters and stores every call, example and decision; then as
  many times with the default chain (near dedup, contamination and diversity too, no
  judge).

Prints calls/s (timed in each child after its imports; the whole process time, start-
up included, beside it), the fraction of ideal, CPU per call (process time in the
child, with its filter process's: robust to other load on the machine) and peak RSS
(the largest of the two) for each, the simulator's
CPU share (of one core, from /proc) to show it is not the bottleneck, and the
synth/reference ratio (median of the repeats), at 100 in flight, then how both scale
at 25 and 400, then a run with 10 % 429s and 2 % 500s in which every request the
simulator served must be stored once (``max_calls`` caps requests, retries included,
so the calls it leaves unsent are recorded failed, ``over_budget``). The load average
is printed first: figures taken on a busy machine are noise.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
LATENCY_MS = 200

CONFIG = """
[project]
db = "synth.db"
outside_templates = true  # the repository's own template, not a copy

[llm]
model = "sim-1"
base_url = "{base_url}"
max_concurrency = {concurrency}
timeout = 30
retries = 8

[llm.prices]
"sim-1" = {{ input = 0.15, output = 0.60 }}

[targets]
balance = "uniform"
per_label = 1000000

[generate]
template = "{template}"
per_call = 5
max_calls = {calls}

[[filters]]
kind = "schema"
min_words = 2

[[filters]]
kind = "pii"

[[filters]]
kind = "exact_dedup"
"""


# The rest of config.toml's chain (the judge left out), for ``--chain default``.
DEFAULT_CHAIN = """
[[filters]]
kind = "near_dedup"

[[filters]]
kind = "contamination"
eval_sets = [{{ name = "banking77-test", path = "eval.jsonl", field = "text", id_field = "id" }}]

[[filters]]
kind = "diversity"
"""


def start_simulator(slots: int, *flags: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "synth",
            "simulate",
            "--port",
            "0",
            "--latency-ms",
            str(LATENCY_MS),
            "--max-in-flight",
            str(slots),
            *flags,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    match = re.search(r"(http://127\.0\.0\.1:\d+/v1)", line)
    if not match:
        raise RuntimeError(f"simulator did not start: {line!r}")
    return proc, match.group(1)


def make_project(
    folder: Path, base_url: str, concurrency: int, calls: int, chain: str = "short"
) -> Path:
    seeds = []
    with (DATA / "banking77" / "train.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            seeds.append({"text": row["text"], "label": row["category"]})
    seeds = seeds[::10]  # about 1,000 rows over all 77 intents
    (folder / "seeds.jsonl").write_text("".join(json.dumps(s) + "\n" for s in seeds))
    template = ROOT / "prompts" / "generate" / "classify.md.j2"
    text = CONFIG + (DEFAULT_CHAIN if chain == "default" else "")
    config = text.format(base_url=base_url, concurrency=concurrency, calls=calls, template=template)
    (folder / "eval.jsonl").write_bytes((ROOT / "seeds" / "eval.jsonl").read_bytes())
    (folder / "config.toml").write_text(config)
    synth(folder, "seeds", "import", str(folder / "seeds.jsonl"))
    return folder / "config.toml"


def synth(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "synth", "--config", str(folder / "config.toml"), *args],
        capture_output=True,
        text=True,
        check=True,
    )


def measure(cmd: list[str]) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MB) of one child process, and what it printed."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode not in (0, 3):  # 3: stopped at the call cap, as intended
            raise RuntimeError(err.read()[-2000:])
        return wall, usage.ru_maxrss / 1024, out.read()


def run_synth(base_url: str, concurrency: int, calls: int, chain: str = "short") -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        config = make_project(Path(tmp), base_url, concurrency, calls, chain)
        wall, rss, out = measure([sys.executable, "-c", SYNTH, str(config)])
        sent, work, cpu, filters = out.split()
        prompts, attempts, unanswered = stored(Path(tmp) / "synth.db")
    return {
        "calls": int(sent),
        "attempts": attempts,
        "unanswered": unanswered,
        "work": float(work),
        "cpu": float(cpu) + float(filters),
        "filters_cpu": float(filters),
        "wall": wall,
        "rss": rss,
        "prompts": prompts,
    }


def stored(db: Path) -> tuple[list[dict], int, int]:
    """The requests a run stored (to send the reference the same), its attempts, and
    those of them whose replies never came."""
    from synth.store import Store

    with Store(db) as store:
        prompts = [
            {"messages": json.loads(m), "params": json.loads(p)}
            for m, p in store.conn.execute("SELECT messages_json, params_json FROM llm_calls")
        ]
        spend = store.calls.spend()
    return prompts, spend.attempts, spend.unanswered_attempts


# Both children time their work after their imports, from before their client is
# made, and the parent times the whole process; the ratio compares work, the process
# time is printed beside it.
# The filters run in a process of the run's own, ended and reaped when the run ends:
# its CPU is the child's RUSAGE_CHILDREN.
SYNTH = """
import resource, sys, time
from synth.config import load_config
from synth.runner import run

def children():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime

config = load_config(sys.argv[1])
started, cpu, filters = time.perf_counter(), time.process_time(), children()
summary = run(config)
took, cpu, filters = time.perf_counter() - started, time.process_time() - cpu, children() - filters
print(summary.calls, took, cpu, filters)
"""

REFERENCE = """
import asyncio, json, sys, time
import openai

async def main():
    base_url, concurrency, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    requests = json.load(open(path))
    # Timed from here, client included, as synth's run is timed with its client.
    started, cpu = time.perf_counter(), time.process_time()
    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused")
    slots = asyncio.Semaphore(concurrency)

    async def one(r):
        async with slots:
            reply = await client.chat.completions.create(
                model="sim-1", messages=r["messages"], **r["params"]
            )
            json.loads(reply.choices[0].message.content)

    await asyncio.gather(*(one(r) for r in requests))
    print(len(requests), time.perf_counter() - started, time.process_time() - cpu)
    await client.close()

asyncio.run(main())
"""


def run_reference(base_url: str, concurrency: int, prompts: list[dict]) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(prompts, f)
    try:
        wall, rss, out = measure(
            [sys.executable, "-c", REFERENCE, base_url, str(concurrency), f.name]
        )
    finally:
        os.unlink(f.name)
    sent, work, cpu = out.split()
    return {"calls": int(sent), "work": float(work), "cpu": float(cpu), "wall": wall, "rss": rss}


def row(name: str, r: dict, ideal: float) -> str:
    rate = r["calls"] / r["work"]
    per_call = r["cpu"] / r["calls"] * 1000
    cpu = f"CPU {per_call:4.2f} ms/call"
    if "filters_cpu" in r:
        cpu += f" (filter process {r['filters_cpu'] / r['calls'] * 1000:4.2f})"
    started = f"process {r['wall']:5.2f} s with start-up: {r['calls'] / r['wall']:6.1f} calls/s"
    line = (
        f"  {name:9} {r['calls']:5} calls  {rate:7.1f} calls/s  {rate / ideal:5.2f} of ideal"
        f"  {cpu}  ({started})  peak RSS {r['rss']:6.1f} MB"
    )
    if "sim_cpu" in r:
        line += f"  simulator {r['sim_cpu'] / r['work']:4.0%} of a core"
    return line


def budget(runs: list[dict], rate: float) -> str:
    """The cores the run's CPU per call (median of the repeats) asks for at ``rate``:
    the filter process is one thread and can use at most one core, and the three
    processes together at most the machine's."""

    def per_call(key: str) -> float:
        return statistics.median(r[key] / r["calls"] for r in runs)

    filters, everything = per_call("filters_cpu"), per_call("cpu") + per_call("sim_cpu")
    return (
        f" at {rate:.0f} calls/s (0.85 of ideal) this CPU per call needs"
        f" {filters * rate:.2f} cores for the filter process (it has 1) and"
        f" {everything * rate:.2f} for synth and the simulator together"
        f" (the machine has {os.cpu_count()})"
    )


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def with_sim_cpu(sim: subprocess.Popen, measure_one, *args) -> dict:
    before = cpu_seconds(sim.pid)
    r = measure_one(*args)
    r["sim_cpu"] = cpu_seconds(sim.pid) - before
    return r


def compare(slots: int, calls: int, repeats: int, chain: str = "short") -> None:
    ideal = slots / (LATENCY_MS / 1000)
    filters = "schema, pii, exact_dedup" if chain == "short" else "the default chain, no judge"
    print(f"\n{slots} in flight, {LATENCY_MS} ms latency, {filters}: ideal {ideal:.0f} calls/s")
    sim, base_url = start_simulator(slots)
    try:
        ratios, synth_rates, ref_rates = [], [], []
        runs = []
        for i in range(repeats):
            s = with_sim_cpu(sim, run_synth, base_url, slots, calls, chain)
            r = with_sim_cpu(sim, run_reference, base_url, slots, s["prompts"])
            print(f" run {i + 1}")
            print(row("synth", s, ideal))
            print(row("reference", r, ideal))
            synth_rates.append(s["calls"] / s["work"])
            ref_rates.append(r["calls"] / r["work"])
            ratios.append(synth_rates[-1] / ref_rates[-1])
            runs.append(s)
        print(
            f" median: synth {statistics.median(synth_rates):.1f} calls/s"
            f" ({statistics.median(synth_rates) / ideal:.2f} of ideal), reference"
            f" {statistics.median(ref_rates):.1f} calls/s"
            f" ({statistics.median(ref_rates) / ideal:.2f} of ideal); synth/reference ratio"
            f" {statistics.median(ratios):.2f} (at most {ideal / statistics.median(ref_rates):.2f},"
            " synth at the ideal rate)"
        )
        print(budget(runs, 0.85 * ideal))
    finally:
        sim.terminate()
        sim.wait()


def faults(calls: int) -> None:
    print("\n100 in flight with 10 % 429 (Retry-After 1 s) and 2 % 500:")
    sim, base_url = start_simulator(100, "--p-429", "0.10", "--p-500", "0.02")
    try:
        s = with_sim_cpu(sim, run_synth, base_url, 100, calls)
        import httpx

        stats = httpx.get(base_url.removesuffix("/v1") + "/stats").json()
        print(row("synth", s, 500))
        print(f"  served {stats['requests']} requests: {stats['by_outcome']}")
        # max_calls caps requests, retries included: the calls the cap leaves unsent are
        # recorded failed (over_budget). Every request served must be in the store once.
        ok = stats["by_outcome"]["ok"]
        once = s["attempts"] == stats["requests"] and s["unanswered"] == 0
        print(
            f"  every request recorded once: {'yes' if once else 'NO'} ({s['attempts']}"
            f" attempts stored, {s['unanswered']} unanswered); {ok} of {s['calls']} calls"
            f" answered, the rest not sent once max_calls = {calls} requests had been"
        )
    finally:
        sim.terminate()
        sim.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scaling", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average {load} on {os.cpu_count()} cores")
    compare(100, args.calls, args.repeats)
    compare(100, args.calls, args.repeats, chain="default")
    if args.scaling:
        for slots in (25, 400):
            compare(slots, args.calls, 1)
        faults(args.calls)


if __name__ == "__main__":
    main()
