"""Throughput of the simulator, and what a request costs it in CPU.

Starts ``synth.sim.serve`` in a subprocess (as ``synth simulate`` would run
it), reads the port from its listening line, and drives it with a bare
``openai.AsyncOpenAI`` client under an ``asyncio.Semaphore`` at each concurrency.
The server's CPU comes from ``/proc/<pid>/stat`` (utime + stime) before and after a
round, so it counts the server process only, not this one.

The client usually costs several times more CPU per request than the server: with
one process per side on a 2-core machine, requests/s is bounded by the client, and
the figures to watch are the server's CPU per request (1 / that is the most it could
serve on one core) and how busy the server was ("server busy", share of one core).

Prompts are built like synth's generation template from the bundled seeds (4 shots
of a label, 2 contrast rows, 5 examples asked, structured output), each one unique.

    python bench/simulator.py [--requests 2000] [--concurrency 100 500] [--latency 0 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import openai

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds" / "banking.jsonl"
TICKS = os.sysconf("SC_CLK_TCK")


def load_seeds() -> dict[str, list[str]]:
    by_label: dict[str, list[str]] = {}
    for line in SEEDS.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        by_label.setdefault(row["label"], []).append(row["text"])
    return by_label


def make_body(by_label: dict[str, list[str]], i: int, n: int = 5) -> dict[str, Any]:
    """One request shaped like synth's: shots, contrast, n, json_schema."""
    rng = random.Random(i)
    label = rng.choice(sorted(by_label))
    shots = rng.sample(by_label[label], min(4, len(by_label[label])))
    others = [rng.choice(by_label[o]) for o in rng.sample([x for x in by_label if x != label], 2)]
    other_labels = [o for o in by_label if o != label]
    lines = "\n".join(json.dumps({"text": t, "label": label}) for t in shots)
    contrast = "\n".join(json.dumps({"text": t, "label": rng.choice(other_labels)}) for t in others)
    prompt = (
        "You write realistic, varied examples for a text-classification dataset.\n\n"
        f"Label: {label}\n\nReal examples of this label, one JSON object per line:\n{lines}\n\n"
        "These belong to other labels. Do not write anything that could be labelled like"
        f' them:\n{contrast}\n\nWrite {n} new examples with label "{label}". Vary the'
        " wording, length, tone and details. Answer with a JSON object"
        f' {{"examples": [...]}} holding {n} objects with the fields text, label. (#{i})'
    )
    item = {
        "type": "object",
        "additionalProperties": False,
        "required": ["text", "label"],
        "properties": {"text": {"type": "string"}, "label": {"type": "string", "enum": [label]}},
    }
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["examples"],
        "properties": {"examples": {"type": "array", "minItems": n, "maxItems": n, "items": item}},
    }
    return {
        "model": "sim-1",
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 1.0,
        "max_tokens": 1024,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "examples", "strict": True, "schema": schema},
        },
    }


def start_server(latency_ms: float) -> tuple[subprocess.Popen[str], str]:
    code = f"from synth.sim import SimConfig, serve; serve(SimConfig(latency_ms={latency_ms!r}))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"listening on (http://\S+)", line)
    if not match:
        proc.kill()
        raise SystemExit(f"the simulator did not start: {line!r}")
    return proc, match.group(1)


def stop_server(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICKS  # fields 14 and 15 of the line


async def drive(url: str, bodies: list[dict[str, Any]], concurrency: int) -> tuple[float, int]:
    """Send every body with at most ``concurrency`` in flight; (seconds, errors)."""
    client = openai.AsyncOpenAI(base_url=url, api_key="sim", max_retries=0, timeout=120)
    slots = asyncio.Semaphore(concurrency)
    errors = 0

    async def one(body: dict[str, Any]) -> None:
        nonlocal errors
        async with slots:
            try:
                reply = await client.chat.completions.create(**body)
                json.loads(reply.choices[0].message.content or "")
            except (openai.APIError, ValueError):
                errors += 1

    try:
        started = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        return time.perf_counter() - started, errors
    finally:
        await client.close()


def engine_cost(bodies: list[dict[str, Any]]) -> float:
    """In-process CPU seconds per request of parsing, writing items and the reply."""
    from synth.sim.items import ItemWriter
    from synth.sim.task import read_task

    raws = [json.dumps(b).encode() for b in bodies]
    started = time.process_time()
    for i, raw in enumerate(raws):
        body = json.loads(raw)
        json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        items, _ = ItemWriter(read_task(body), random.Random(i), {}).items()
        content = json.dumps({"examples": items}, ensure_ascii=False)
        json.dumps({"choices": [{"message": {"content": content}}]}).encode()
    return (time.process_time() - started) / len(raws)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--latency", type=float, nargs="+", default=[0.0, 200.0])
    args = parser.parse_args()

    by_label = load_seeds()
    engine = engine_cost([make_body(by_label, i) for i in range(1000)])
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {args.requests} requests/row")
    print(f"engine alone (parse, items, reply JSON): {engine * 1e6:.0f} us CPU/request\n")
    columns = ("latency", "conc", "req/s", "wall s", "errors")
    columns += ("server us/req", "server busy", "client us/req")
    widths = (8, 5, 7, 7, 6, 14, 12, 14)
    header = " ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True))
    print(header)
    print("-" * len(header))
    offset = 0
    for latency in args.latency:
        proc, url = start_server(latency)
        try:
            # Warm up: imports, caches, the first connections.
            asyncio.run(drive(url, [make_body(by_label, -i - 1) for i in range(200)], 50))
            for concurrency in args.concurrency:
                bodies = [make_body(by_label, offset + i) for i in range(args.requests)]
                offset += args.requests
                server_before = cpu_seconds(proc.pid)
                client_before = time.process_time()
                elapsed, errors = asyncio.run(drive(url, bodies, concurrency))
                server_cpu = cpu_seconds(proc.pid) - server_before
                client_cpu = time.process_time() - client_before
                n = len(bodies)
                row = (
                    f"{latency:.0f}ms",
                    str(concurrency),
                    f"{n / elapsed:.0f}",
                    f"{elapsed:.2f}",
                    str(errors),
                    f"{server_cpu / n * 1e6:.0f}",
                    f"{server_cpu / elapsed:.0%}",  # of one core
                    f"{client_cpu / n * 1e6:.0f}",
                )
                print(" ".join(f"{c:>{w}}" for c, w in zip(row, widths, strict=True)))
        finally:
            stop_server(proc)


if __name__ == "__main__":
    main()
