"""The offline demo: a bundled project (`synth init`'s) against the built-in simulator.

``task`` picks the project (``classification``, the default, or another shape); the
demo then also writes the shape's own export formats and shows one synthetic row in
each, so the shape can be seen without an API key.

No API key and no network: the simulator listens on a free loopback port, with a
realistic share of faults (rate limits, server errors, malformed replies, duplicates,
PII, bad items) so that every stage of the funnel has something to show.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from synth.audit import audit_store
from synth.config import Config, load_config
from synth.errors import SynthError
from synth.export import ExportResult, export
from synth.plan import plan_cells
from synth.report import render_html
from synth.runner import RunSummary, run
from synth.scaffold import TASKS, init_project
from synth.seeds import read_seeds
from synth.sim import SimConfig, Simulator
from synth.status import StatusReport, render_status, status
from synth.store import Store

DEMO_SIMULATOR = SimConfig(
    seed=1,
    latency_ms=30,
    latency_jitter_ms=20,
    p_429=0.04,
    p_500=0.03,
    p_malformed=0.04,
    retry_after_s=0.2,
    p_exact_dup=0.08,
    p_near_dup=0.05,
    p_pii=0.03,
    p_bad_item=0.05,
    p_off_label=0.03,
)


@dataclass(frozen=True)
class DemoResult:
    config: Config
    summary: RunSummary
    status: StatusReport
    export: ExportResult
    audit_html: Path
    shaped: tuple[ExportResult, ...] = ()  # the task's own formats, beside export.jsonl


STORE_FILES = ("synth.db", "synth.db-wal", "synth.db-shm")
_DEMO_NAMES = {"classification": "banking-support"}


def run_demo(
    workdir: str | Path,
    say: Callable[[str], None] = print,
    *,
    force: bool = False,
    task: str = "classification",
) -> DemoResult:
    """Write the bundled project of ``task`` into ``workdir`` (as `synth init` does),
    import its seeds, plan, run against the simulator, export.

    A store already in ``workdir`` may hold frozen versions and reviews: it is
    replaced only with ``force``, and otherwise nothing is touched."""
    workdir = Path(workdir)
    db = workdir / STORE_FILES[0]
    if db.exists() and not force:
        raise SynthError(
            str(db),
            "a store is already there, and the demo never replaces one it did not make:"
            " pass --force to replace it, or --workdir for another folder",
        )
    if force:
        for name in STORE_FILES:
            (workdir / name).unlink(missing_ok=True)
    if task not in TASKS:
        raise SynthError(f"--task {task}", f"unknown task; known: {', '.join(TASKS)}")
    chosen = TASKS[task]
    init_project(workdir, chosen.name, force=force, name=_DEMO_NAMES.get(task, f"{task}-demo"))
    with Simulator(DEMO_SIMULATOR) as sim:
        config = load_config(workdir / chosen.config).with_llm(base_url=sim.base_url)
        say(f"simulator on {sim.base_url}; store {config.db_path}")
        with Store(config.db_path) as store:
            # seeds/eval.jsonl is the held-out set the contamination filter checks
            # against: it must never be imported as seeds.
            path = workdir / chosen.seeds
            result = store.examples.add_seeds(read_seeds(path, config).seeds)
            say(f"imported {result.added} seeds from {path}")
            say("\nplan (deficit per cell):")
            for p in plan_cells(config, store.examples.cell_counts()):
                say(f"  {p.cell!s:40} target {p.target:3}  real {p.real:3}  deficit {p.deficit}")
        summary = run(config, notice=say)
        say(
            f"\nrun {summary.run_id}: {summary.status}, {summary.calls} calls,"
            f" {summary.candidates} candidates, {summary.accepted} accepted,"
            f" {summary.review_marked} sampled for review"
        )
        with Store(config.db_path) as store:
            report = status(config, store)
            say("\n" + render_status(report))
            exported = export(store, config, workdir / "export.jsonl")
            shaped = tuple(
                export(store, config, workdir / f"export.{fmt}.jsonl", fmt)  # type: ignore[arg-type]
                for fmt in chosen.formats
            )
            audit_html = workdir / "audit.html"
            audit_html.write_text(render_html(audit_store(config, store)), encoding="utf-8")
        say(
            f"\nexported {exported.rows} rows ({exported.real} real, {exported.synthetic}"
            f" synthetic) to {exported.path}; audit report: {audit_html}"
        )
        for fmt, written in zip(chosen.formats, shaped, strict=True):
            say(f"\n{fmt}: {written.path}; its last line, a synthetic row:")
            say("  " + written.path.read_text(encoding="utf-8").splitlines()[-1])
        stats = sim.stats()
        say(f"simulator served {stats['requests']} requests: {stats['by_outcome']}")
        say(
            f"\n{workdir / chosen.config} names this store, so every command works on it"
            f" from {workdir}:\n"
            "  synth status | synth show ID | synth review serve | synth audit\n"
            "  synth freeze v1 && synth export --version v1 --out data.jsonl"
        )
    return DemoResult(config, summary, report, exported, audit_html, shaped)
