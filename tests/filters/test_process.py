"""The filter chain in its own process decides as the chain in the run's process."""

from __future__ import annotations

import asyncio
import csv
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import DATA, ROOT

from synth.config import load_config
from synth.errors import EvalSetError, SynthError
from synth.filters import build_chain
from synth.filters.contamination import ContaminationParams, EvalSetSpec
from synth.filters.process import ChainProcess
from synth.filters.rubric import split_judge
from synth.records import Candidate, CellKey, Outcome, SeenItem, Source, Verdict


def banking77(count: int) -> list[tuple[str, str]]:
    with (DATA / "banking77" / "train.csv").open(newline="") as f:
        rows = csv.DictReader(f)
        return [(r["text"], r["category"]) for _, r in zip(range(count), rows, strict=False)]


def project_chain():
    """config.toml's chain without the judge, and its context."""
    config = load_config(ROOT / "config.toml")
    rows = banking77(1500)
    cheap, _ = split_judge(config.filters, config.source.name)
    return cheap, config.filter_context(sorted({label for _, label in rows})), rows


def candidates(rows: list[tuple[str, str]]) -> list[Candidate]:
    """Real messages, some repeated, some nearly, one with a phone number to redact."""
    texts = [(t, label) for t, label in rows]
    texts += [(t + " please", label) for t, label in rows[:60]]  # near copies
    texts += rows[100:140]  # exact copies
    texts.append(("Call me on 07700 900123 about my card payment, it was declined", rows[0][1]))
    return [
        Candidate(
            id=f"c{i}",
            run_id="r",
            cell=CellKey(slice="default", label=label),
            text=text,
            data={"text": text, "label": label},
            llm_call_id=f"call{i // 5}",
            index=i % 5,
            template="t",
            template_sha="0" * 64,
            model="m",
        )
        for i, (text, label) in enumerate(texts)
    ]


def summary(outcomes: list[Outcome]) -> list[tuple[str, str, list[tuple[str, str, str]]]]:
    return [
        (o.candidate.id, o.candidate.text, [(d.filter, d.verdict, d.reason) for d in o.decisions])
        for o in outcomes
    ]


def test_same_decisions_as_the_chain_in_process() -> None:
    specs, ctx, rows = project_chain()
    seen = [
        SeenItem(id=f"s{i}", text=t, cell=CellKey(slice="default", label=label), source=Source.REAL)
        for i, (t, label) in enumerate(rows[:1000])
    ]
    batch = candidates(rows[1000:])
    chunks = [batch[i : i + 80] for i in range(0, len(batch), 80)]

    local = build_chain(specs, ctx)
    local.prepare(seen)
    expected = []
    for chunk in chunks:
        outcomes = local.decide(chunk)
        local.admit([o.candidate for o in outcomes if o.verdict is not Verdict.REJECT])
        expected += summary(outcomes)

    process = ChainProcess(specs, ctx)
    try:
        assert process.names == local.names
        assert process.eval_items > 0  # what the contamination index holds

        async def decide_all() -> list[Outcome]:
            # All queued at once, behind the stored rows' indexing: each is decided
            # after the one before it is admitted.
            prepared = process.prepare(seen)
            futures = [process.submit(chunk) for chunk in chunks]
            await prepared
            return [o for f in futures for o in await f]

        got = summary(asyncio.run(decide_all()))
    finally:
        process.close()
    assert got == expected
    verdicts = {filters[-1][:2] for _, _, filters in got}
    # The sample exercises rejections by several filters, and the redaction is replayed.
    assert {("exact_dedup", Verdict.REJECT), ("near_dedup", Verdict.REJECT)} <= verdicts
    redacted = next(text for cid, text, _ in got if cid == batch[-1].id)
    assert "07700 900123" not in redacted


def test_an_input_error_comes_back_as_itself(tmp_path) -> None:
    specs, ctx, _ = project_chain()
    missing = tmp_path / "nowhere.jsonl"
    bad = ContaminationParams(eval_sets=[EvalSetSpec(name="gone", path=str(missing), field="text")])
    with pytest.raises(EvalSetError, match="nowhere.jsonl"):
        ChainProcess([*specs, bad], ctx)


def test_a_killed_filter_process_is_a_one_line_error() -> None:
    specs, ctx, rows = project_chain()
    process = ChainProcess(specs, ctx)
    try:
        os.kill(process._process.pid, signal.SIGKILL)

        async def decide() -> list[Outcome]:
            return await process.submit(candidates(rows[:5]))

        ended = r"^filters: the filter process ended \(exit code -9\)$"
        with pytest.raises(SynthError, match=ended):
            asyncio.run(decide())
    finally:
        process.close()


PARENT = """
import sys
sys.path.insert(0, sys.argv[1])
from synth.filters.schema import SchemaParams
from synth.filters.base import FilterContext
from synth.filters.process import ChainProcess
context = FilterContext(root=".", text_field="text", label_field="label")
chain = ChainProcess([SchemaParams()], context)
print(chain._process.pid, flush=True)
sys.stdin.read()
"""


def test_the_filter_process_ends_with_a_killed_run() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", PARENT, str(ROOT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as parent:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        assert alive(worker)
        parent.kill()  # kill -9: nothing of the parent's runs
        parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and alive(worker):
        time.sleep(0.05)
    assert not alive(worker)


def alive(pid: int) -> bool:
    """Running, not a zombie (its parent is gone: init reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
