"""The command line: each command parses, calls the library once, and prints."""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path
from typing import Any

import click

from synth.config import Config, load_config
from synth.errors import SeedError, SynthError
from synth.scaffold import TASKS


class SynthGroup(click.Group):
    """Turns synth's errors into one clear line, in one place."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SeedError as e:
            for problem in e.problems:
                click.echo(problem, err=True)
            raise click.ClickException(str(e)) from None
        except SynthError as e:
            raise click.ClickException(str(e)) from None
        except KeyboardInterrupt as e:
            # Ctrl-C: one line (a run says what it kept), the shell's status for it.
            click.echo(str(e) or "interrupted", err=True)
            sys.exit(130)


@click.group(cls=SynthGroup)
@click.option(
    "--config",
    "config_file",
    envvar="SYNTH_CONFIG",
    default="config.toml",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The project's config file (or SYNTH_CONFIG).",
)
@click.version_option(package_name="synth")
@click.pass_context
def cli(ctx: click.Context, config_file: Path) -> None:
    """synth: quota-driven synthetic data with a provenance store."""
    ctx.obj = {"config_file": config_file}


def _config(ctx: click.Context) -> Config:
    return load_config(ctx.obj["config_file"])


@cli.group()
def seeds() -> None:
    """Real rows: the examples generation starts from."""


@seeds.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--skip-invalid", is_flag=True, help="Import the good rows, list the bad ones.")
@click.pass_context
def seeds_import(ctx: click.Context, file: Path, skip_invalid: bool) -> None:
    """Import a JSONL or CSV seed file (re-importing a row adds nothing)."""
    from synth.seeds import read_seeds
    from synth.store import Store

    config = _config(ctx)
    parsed = read_seeds(file, config, skip_invalid=skip_invalid)
    with Store(config.db_path) as store:
        result = store.examples.add_seeds(parsed.seeds)
    for problem in parsed.problems:
        click.echo(f"skipped {problem}", err=True)
    click.echo(
        f"{file}: {result.added} added, {result.duplicates} already stored,"
        f" {len(parsed.problems)} skipped"
    )


@cli.command()
@click.pass_context
def plan(ctx: click.Context) -> None:
    """Print the deficit of every cell (slice x label); calls no LLM."""
    from synth.plan import plan_cells
    from synth.store import Store

    config = _config(ctx)
    with Store(config.db_path) as store:
        plans = plan_cells(config, store.examples.cell_counts())
    width = max((len(str(p.cell)) for p in plans), default=4)
    click.echo(f"{'cell':{width}}  target  real  synthetic  deficit")
    for p in plans:
        click.echo(f"{p.cell!s:{width}}  {p.target:6}  {p.real:4}  {p.synthetic:9}  {p.deficit:7}")
    click.echo(f"total deficit: {sum(p.deficit for p in plans)}")


@cli.command("run")
@click.option("--quiet", is_flag=True, help="No progress display.")
@click.pass_context
def run_cmd(ctx: click.Context, quiet: bool) -> None:
    """Generate until every cell's quota of accepted rows is met (or a cap is hit).

    Run it again after an interruption: it resumes where it stopped. A terminal gets
    a live panel (calls/s, tokens, cost, accepted per cell, ETA); a pipe gets one line
    per batch on stderr. Both first say what the run prepares and where it calls.
    """
    from synth.progress import LiveProgress, step_lines
    from synth.runner import run

    config = _config(ctx)
    if quiet:
        summary = run(config)
    elif sys.stderr.isatty():
        with LiveProgress() as live:
            summary = run(config, progress=live, notice=live.note)
    else:
        say = partial(click.echo, err=True)
        summary = run(config, progress=step_lines(say), notice=say)
    resumed = " (resumed)" if summary.resumed else ""
    click.echo(
        f"run {summary.run_id}{resumed}: {summary.status}"
        + (f" ({summary.stop_reason})" if summary.stop_reason else "")
        + f"; {summary.calls} calls, {summary.candidates} candidates,"
        f" {summary.accepted} accepted, {summary.review_marked} sampled for review"
    )
    if config.pairs.responses:
        click.echo(
            f"preference pairs: {summary.alternatives} more responses judged,"
            f" {summary.pairs} pairs made"
        )
    if summary.status == "stopped":
        sys.exit(3)


@cli.command()
@click.option(
    "--preview",
    default=4,
    show_default=True,
    type=click.IntRange(min=1),
    help="Generation calls per cell in the preview.",
)
@click.pass_context
def estimate(ctx: click.Context, preview: int) -> None:
    """Project the calls, tokens and cost to quota from a short preview of the run.

    The preview is the run's first calls per cell, through the filters and the judge,
    stored like any run: `synth run` afterwards builds on them and pays for none again.
    Cells far dearer per accepted row than the median are flagged rare/expensive.
    """
    from synth.estimate import estimate as estimate_run
    from synth.estimate import report_lines

    config = _config(ctx)
    say = partial(click.echo, err=True)
    for line in report_lines(estimate_run(config, preview, notice=say)):
        click.echo(line)


@cli.command("filter")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--against",
    type=click.Choice(["store", "file"]),
    default="store",
    show_default=True,
    help="Compare the rows with the store's seeds and kept rows, or with each other only.",
)
@click.option(
    "--source",
    type=click.Choice(["real", "synthetic"]),
    default="real",
    show_default=True,
    help="Your own data (kept rows become seeds), or a synthetic set made elsewhere.",
)
@click.option("--judge", is_flag=True, help="Also run the chain's LLM judge (paid calls).")
@click.option(
    "--kept", type=click.Path(dir_okay=False, path_type=Path), help="Write the kept rows (JSONL)."
)
@click.option(
    "--rejected",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the rejected rows, each with its filter and reason (JSONL).",
)
@click.option(
    "--review",
    "review_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the rows held for a reviewer, with their reasons (JSONL).",
)
@click.option("--skip-invalid", is_flag=True, help="Filter the good rows, list the bad ones.")
@click.option(
    "--ray",
    "use_ray",
    is_flag=True,
    help="Decide on Ray Data: the cluster at [ray] address, else a local Ray (synth[ray]).",
)
@click.option("--quiet", is_flag=True, help="No progress display.")
@click.pass_context
def filter_cmd(
    ctx: click.Context,
    file: Path,
    against: str,
    source: str,
    judge: bool,
    kept: Path | None,
    rejected: Path | None,
    review_out: Path | None,
    skip_invalid: bool,
    use_ray: bool,
    quiet: bool,
) -> None:
    """Run the filter chain over a JSONL or CSV file you already have.

    Every decision is stored with its reason under a filter run; kept rows join the
    dataset (as seeds, or with --source synthetic as synthetic rows), rejected ones
    never do. Running it again adds nothing, and continues an interrupted run.
    """
    from synth.filtering import filter_file, render_report
    from synth.progress import FilterBar, filter_lines
    from synth.store import Store

    config = _config(ctx)
    options: dict[str, Any] = {
        "against": against,
        "source": source,
        "judge": judge,
        "kept": kept,
        "rejected": rejected,
        "review": review_out,
        "skip_invalid": skip_invalid,
        "ray": use_ray,
    }
    with Store(config.db_path) as store:
        if quiet:
            report = filter_file(config, store, file, **options)
        elif sys.stderr.isatty():
            with FilterBar() as bar:
                report = filter_file(config, store, file, progress=bar, **options)
        else:
            show = filter_lines(lambda line: click.echo(line, err=True))
            report = filter_file(config, store, file, progress=show, **options)
    for problem in report.skipped:
        click.echo(f"skipped {problem}", err=True)
    click.echo(render_report(report))
    if report.status == "stopped":
        sys.exit(3)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """The funnel per cell: generated, rejected by each filter, accepted, review."""
    from synth.status import render_status
    from synth.status import status as status_report
    from synth.store import Store

    config = _config(ctx)
    with Store(config.db_path, readonly=True) as store:
        report = status_report(config, store)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "cells": report.cells,
                    "filters": report.filters,
                    "spend": report.spend.__dict__,
                    "last_run": report.last_run,
                    "review_flags": report.review_flags,
                    "judge": report.judge,
                    "simulated_cost_usd": report.simulated_usd,
                },
                indent=2,
            )
        )
    else:
        click.echo(render_status(report))


@cli.command("export")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "chat", "alpaca", "csv", "dpo"]),
    default="jsonl",
)
@click.option("--version", "version_name", help="Export this frozen version (see synth freeze).")
@click.option(
    "--split",
    type=click.Choice(["train", "validation", "test"]),
    help="Only this split of the version.",
)
@click.pass_context
def export_cmd(
    ctx: click.Context, out: Path, fmt: str, version_name: str | None, split: str | None
) -> None:
    """Write real and accepted synthetic rows: jsonl with provenance, chat, alpaca or
    csv; or the preference pairs of the accepted rows' prompts, as dpo.

    With --version, the rows of that frozen version as they were frozen, and its
    manifest beside the file (data.jsonl -> data.jsonl.manifest.json): byte-identical every
    time, whatever changed in the store since.
    """
    from synth.export import export, export_version
    from synth.store import Store

    config = _config(ctx)
    if split and not version_name:
        raise click.UsageError("--split needs --version: splits are assigned at the freeze")
    if fmt == "dpo" and version_name:
        raise click.UsageError("--format dpo exports the store's pairs; a version holds rows")
    with Store(config.db_path, readonly=True) as store:
        if fmt == "dpo":
            from synth.pairs import export_pairs

            pairs = export_pairs(store, config, out)
            click.echo(
                f"{pairs.path}: {pairs.rows} preference pairs (score gap >="
                f" {config.pairs.min_gap:g})"
            )
            return
        if version_name:
            result = export_version(store, config, version_name, out, fmt, split)  # type: ignore[arg-type]
        else:
            result = export(store, config, out, fmt)  # type: ignore[arg-type]
    click.echo(
        f"{result.path}: {result.rows} rows ({result.real} real, {result.synthetic} synthetic)"
        + (f"; manifest {result.manifest}" if result.manifest else "")
    )


class Misconfigured(click.ClickException):
    """A command that cannot check what it was asked to: exit status 2, apart from the
    1 that means "found something"."""

    exit_code = 2


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--field", help="The field holding the text (default: the schema's text field).")
@click.option(
    "--reference",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A seed file whose rows calibrate the thresholds"
    " (default: the store's seeds, else FILE's own rows).",
)
@click.pass_context
def contamination(
    ctx: click.Context, file: Path, field: str | None, reference: Path | None
) -> None:
    """Check any dataset file against the eval sets of the contamination filter.

    Prints one line per hit (row, eval set, item, signal, score, reject or review) and
    a summary with the thresholds used. Exit status: 0 when no row would be rejected
    (rows in the review band are listed for a human), 1 when a row would be rejected,
    2 when the check cannot run (no contamination filter, an eval set or field
    missing), so a pipeline can tell "contaminated" from "misconfigured".
    """
    from synth.audit import seed_file_rows, stored_seeds
    from synth.filters.contamination import ContaminationParams, check_file

    try:
        config = _config(ctx)
        params = next((f for f in config.filters if isinstance(f, ContaminationParams)), None)
        if params is None:
            raise Misconfigured(
                f'{config.source.name}: filters: no [[filters]] kind = "contamination" names'
                " the eval sets to check against"
            )
        if reference is not None:
            seeds = seed_file_rows(config, reference)
            name = f"the {len(seeds)} rows of {reference}"
        else:
            stored = stored_seeds(config)
            seeds = stored or []
            name = f"the {len(seeds)} seeds of {config.db_path}"
        check = check_file(
            file.absolute(),
            field or config.data_schema.text,
            params,
            config.filter_context(),
            reference=[s.text for s in seeds] if seeds else None,
            reference_name=name if seeds else "",
        )
    except SynthError as e:
        raise Misconfigured(str(e)) from None
    for h in check.hits:
        click.echo(
            f"{h.row}\t{h.eval_set}\t{h.item_id}\t{h.signal}\t{h.score:.3f}\t{h.verdict}"
            f"\t{h.threshold:g}"
        )
    sets = ", ".join(sorted({h.eval_set for h in check.hits})) or "none"
    click.echo(
        f"{file}: {len(check.rejected_rows)} of {check.rows} rows hit eval items,"
        f" {len(check.review_rows)} more in the review band ({len(check.hits)} signals fired;"
        f" sets: {sets}); thresholds calibrated on {check.reference}",
        err=True,
    )
    for t in check.calibration.thresholds:
        click.echo(f"  {t.name}: {t.value:g} ({t.why()})", err=True)
    if check.rejected_rows:
        sys.exit(1)


@cli.command()
@click.argument(
    "file", required=False, type=click.Path(dir_okay=False, exists=True, path_type=Path)
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--html",
    "html_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the audit as one self-contained HTML report with plots.",
)
@click.pass_context
def audit(ctx: click.Context, file: Path | None, as_json: bool, html_out: Path | None) -> None:
    """Audit the store, or with FILE a dataset file (JSONL or CSV) made elsewhere.

    The store: per slice x label, real / synthetic / edited counts and shares, the
    filter funnel with rejection reasons, review coverage and outcomes, judge-human
    agreement, contamination hits, diversity, tokens and cost per accepted row, and
    the class balance before and after against target. FILE: every row tagged real,
    synthetic, edited or unknown (matched by content hash, then near-duplicate
    search), with its provenance, and the tags summed per slice and label.
    """
    from synth.audit import audit_file, audit_store, render_audit, render_file_audit
    from synth.store import Store

    config = _config(ctx)
    if file is not None and html_out is not None:
        raise click.UsageError("--html reports on the store; audit FILE prints or --json")
    with Store(config.db_path, readonly=True) as store:
        report = audit_file(config, store, file) if file else audit_store(config, store)
    if html_out is not None:
        from synth.outfiles import write_text
        from synth.report import render_html

        write_text(html_out, render_html(report))
        click.echo(f"{html_out}: audit report of {report['totals']['rows']} rows")
    elif as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        click.echo(render_file_audit(report) if file else render_audit(report))


@cli.command()
@click.argument("name")
@click.pass_context
def freeze(ctx: click.Context, name: str) -> None:
    """Freeze the dataset as it stands as version NAME, with train/validation/test
    splits and a manifest; later edits never change it."""
    from synth.store import Store
    from synth.versions import freeze as freeze_version

    config = _config(ctx)
    with Store(config.db_path) as store:
        v = freeze_version(store, config, name)
    splits = ", ".join(f"{k} {n}" for k, n in sorted(v.splits.items()))
    click.echo(f"version {v.name}: {v.rows} rows ({splits}), sha {v.sha}")
    leaks = len(v.leakage.near_pairs) + len(v.leakage.lineage)
    click.echo("leakage check: " + ("clean" if not leaks else f"{leaks} crossings"))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def versions(ctx: click.Context, as_json: bool) -> None:
    """List the frozen versions: name, sha, rows per source and split."""
    from dataclasses import asdict

    from synth.store import Store
    from synth.versions import list_versions

    config = _config(ctx)
    with Store(config.db_path, readonly=True) as store:
        found = list_versions(store)
    if as_json:
        click.echo(json.dumps([asdict(v) for v in found], indent=2))
        return
    for v in found:
        sources = ", ".join(f"{k} {n}" for k, n in v.sources.items())
        splits = ", ".join(f"{k} {n}" for k, n in v.splits.items())
        click.echo(f"{v.name}\t{v.sha[:12]}\t{v.created_at}\t{v.rows} rows ({sources}; {splits})")
    if not found:
        click.echo("no version frozen yet (synth freeze NAME)")


@cli.command()
@click.argument("a")
@click.argument("b")
@click.pass_context
def diff(ctx: click.Context, a: str, b: str) -> None:
    """What changed from version A to version B: rows added, removed, changed (old and
    new text), moved split; each with its cell and text."""
    from synth.store import Store
    from synth.versions import diff_versions, render_diff

    config = _config(ctx)
    with Store(config.db_path, readonly=True) as store:
        click.echo(render_diff(diff_versions(store, a, b)))


@cli.command()
@click.argument("name")
@click.pass_context
def leakage(ctx: click.Context, name: str) -> None:
    """Check version NAME for near-duplicate pairs across splits, and for rows derived
    from a seed held out further than they are; exits 1 if any."""
    from synth.store import Store
    from synth.versions import version_leakage

    config = _config(ctx)
    with Store(config.db_path, readonly=True) as store:
        report = version_leakage(store, config, name)
    for x, y, sx, sy, j in report.near_pairs:
        click.echo(f"near\t{x} ({sx})\t{y} ({sy})\tj={j:.2f}")
    for child, parent, sc, sp in report.lineage:
        click.echo(f"lineage\t{child} ({sc})\tfrom {parent} ({sp})")
    click.echo(
        f"{name}: {len(report.near_pairs)} cross-split near-duplicate pairs,"
        f" {len(report.lineage)} lineage crossings"
    )
    if not report.clean:
        sys.exit(1)


@cli.command()
@click.option("--port", default=0, show_default=True, help="0 picks a free port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option("--seed", default=0, show_default=True, help="The same seed, the same replies.")
@click.option(
    "--latency-ms", default=0.0, show_default=True, help="Delay before a reply (its first token)."
)
@click.option(
    "--latency-jitter-ms", default=0.0, show_default=True, help="Delay varies by up to +- this."
)
@click.option(
    "--token-latency-ms", default=0.0, show_default=True, help="Per completion token (streamed)."
)
@click.option("--max-in-flight", type=int, default=None, help="Server-side slots; more wait.")
@click.option("--p-429", default=0.0, show_default=True, help="Share of requests answered 429.")
@click.option("--p-500", default=0.0, show_default=True, help="Share of requests answered 500.")
@click.option("--p-hang", default=0.0, show_default=True, help="Share of requests never answered.")
@click.option(
    "--p-truncate", default=0.0, show_default=True, help="Share of replies cut mid-JSON (length)."
)
@click.option(
    "--p-malformed",
    default=0.0,
    show_default=True,
    help="Share of replies with broken JSON that can be mended.",
)
@click.option(
    "--p-garbled", default=0.0, show_default=True, help="Share of replies with prose, no JSON."
)
@click.option(
    "--p-empty", default=0.0, show_default=True, help='Share of replies of {"examples": []}.'
)
@click.option(
    "--p-quota", default=0.0, show_default=True, help="Share of 429s saying the quota is spent."
)
@click.option(
    "--retry-after-s", default=1.0, show_default=True, help="Retry-After sent with each 429."
)
@click.option(
    "--p-exact-dup", default=0.0, show_default=True, help="Share of examples copying a seed."
)
@click.option(
    "--p-near-dup", default=0.0, show_default=True, help="Share of examples near-copying a seed."
)
@click.option(
    "--p-off-label", default=0.0, show_default=True, help="Share of examples of another label."
)
@click.option(
    "--p-pii", default=0.0, show_default=True, help="Share of examples carrying an email etc."
)
@click.option(
    "--p-bad-item", default=0.0, show_default=True, help="Share of examples failing the schema."
)
@click.option(
    "--p-batch-line-fail", default=0.0, show_default=True, help="Share of batch lines that fail."
)
@click.option(
    "--batch-delay-s", default=0.2, show_default=True, help="Time a batch takes to complete."
)
@click.option("--n-ctx", type=int, default=None, help="Context size in tokens, said at /props.")
@click.option(
    "--ignore-idempotency-keys",
    is_flag=True,
    help="Bill a request sent again under the same Idempotency-Key twice, as most providers do.",
)
@click.option("--require-key", default=None, help="Refuse requests without this API key (401).")
@click.option(
    "--models",
    multiple=True,
    help="Serve only these models (repeatable); another gets a 404. Default: any name.",
)
@click.option(
    "--refuse-format",
    "refuse_formats",
    multiple=True,
    type=click.Choice(["json_schema", "json_object"]),
    help="Refuse this response_format type with a 400 (repeatable).",
)
def simulate(host: str, port: int, models: tuple[str, ...], **settings: Any) -> None:
    """Serve synth's OpenAI-compatible simulator (for tests, demos and benchmarks)."""
    from synth.sim import SimConfig, serve

    serve(SimConfig(models=models or None, **settings), host=host, port=port)


@cli.command()
@click.option(
    "--workdir",
    default="demo",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
)
@click.option("--force", is_flag=True, help="Replace a store (and files) already in WORKDIR.")
@click.option(
    "--task",
    type=click.Choice(sorted(TASKS)),
    default="classification",
    show_default=True,
    help="Which bundled project, by the shape of one example.",
)
def demo(workdir: Path, force: bool, task: str) -> None:
    """The offline demo: bundled seeds, the simulator, plan, run, funnel, export.

    It writes the bundled project into WORKDIR and never replaces a store already
    there unless --force.
    """
    from synth.demo import run_demo

    run_demo(workdir, say=click.echo, force=force, task=task)


@cli.command()
@click.argument("folder", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--task",
    type=click.Choice(sorted(TASKS)),
    default="classification",
    show_default=True,
    help="The shape of one example (classification: a text and its label; instruction:"
    " an instruction, an optional input and the response).",
)
@click.option("--force", is_flag=True, help="Replace files that exist already.")
def init(folder: Path, task: str, force: bool) -> None:
    """Start a project in FOLDER: a commented config.toml, templates, a rubric, seeds.

    Existing files are never replaced unless --force.
    """
    from synth.scaffold import init_project

    made = init_project(folder, task, force=force)
    for path in made.written:
        click.echo(f"wrote {path}")
    where = "" if folder == Path(".") else f"cd {folder} && "
    click.echo(
        f"next: {where}synth seeds import {made.task.seeds} && synth plan;"
        " set [llm] in config.toml (or run `synth simulate` and OPENAI_BASE_URL), then synth run"
    )


@cli.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Preflight the endpoints: reachable, key taken, model served, which
    response_format works, one tiny generation read as a run reads it.

    Exits 1 when something a run needs is off; its requests are not recorded in the
    store."""
    from synth.check import check as run_check

    report = run_check(_config(ctx))
    for verdict in report.verdicts:
        click.echo(verdict.line())
    click.echo(
        f"{report.requests} requests, {report.tokens} tokens, ${report.cost_usd:.4f} at"
        " [llm.prices] (not recorded in the store)"
    )
    if not report.ok:
        failed = [v.what for v in report.verdicts if v.status == "fail"]
        raise click.ClickException(f"check failed: {', '.join(failed)}")


@cli.command()
@click.argument("example_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def show(ctx: click.Context, example_id: str, as_json: bool) -> None:
    """Everything the store knows about one row: data, provenance, every filter
    decision, the judge's score and rationale per criterion, reviews."""
    from synth.show import render_example, show_example
    from synth.store import Store

    config = _config(ctx)
    with Store(config.db_path, readonly=True) as store:
        row = show_example(store, example_id)
    click.echo(json.dumps(row, indent=2, ensure_ascii=False) if as_json else render_example(row))


@cli.group()
def judge() -> None:
    """The LLM judge: calibration against human verdicts."""


@judge.command("agreement")
@click.option(
    "--humans",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help='JSONL of {"example_id", "verdict": approve|reject}; default: the reviews table.',
)
@click.pass_context
def judge_agreement_cmd(ctx: click.Context, humans: Path | None) -> None:
    """Cohen's kappa between the judge's verdicts and human verdicts: overall, per
    criterion, per cell; warns below 0.7 and suggests the pass threshold that agrees
    best with the humans."""
    from synth.judge.calibration import judge_agreement, render_calibration

    click.echo(render_calibration(judge_agreement(_config(ctx), humans)))


@cli.group()
def review() -> None:
    """Human review: the page, the terminal, agreement, Label Studio and Argilla."""


@review.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=0, show_default=True, help="0 picks a free port.")
@click.option(
    "--allow-remote", is_flag=True, help="Serve a host that is not loopback (other machines)."
)
@click.option("--reviewer", help="A default reviewer name for visitors who give none.")
@click.pass_context
def review_serve(
    ctx: click.Context, host: str, port: int, allow_remote: bool, reviewer: str | None
) -> None:
    """Serve the review page; the printed URL carries its access token."""
    from synth.review.app import serve

    serve(
        _config(ctx),
        host=host,
        port=port,
        allow_remote=allow_remote,
        reviewer=reviewer,
        say=lambda line: click.echo(line),
    )


@review.command("next")
@click.option("--reviewer", required=True, help="Your name, stored with every decision.")
@click.option("--limit", type=int, default=None, help="Stop after this many decisions.")
@click.pass_context
def review_next(ctx: click.Context, reviewer: str, limit: int | None) -> None:
    """Review in the terminal: approve, reject with a reason, edit, skip."""
    from synth.review.terminal import ask_prefilled, review_in_terminal
    from synth.store import Store

    config = _config(ctx)
    with Store(config.db_path) as store:
        made = review_in_terminal(
            store,
            config,
            reviewer,
            ask=lambda text, default: click.prompt(text, default=default, show_default=False),
            say=click.echo,
            limit=limit,
            edit=ask_prefilled if sys.stdin.isatty() else None,
        )
    click.echo(f"{made} decisions recorded")


@review.command("stats")
@click.pass_context
def review_stats_cmd(ctx: click.Context) -> None:
    """Per cell: reviews, reject share and tags, reviewer agreement (kappa), flags."""
    from synth.review.stats import render_stats, review_stats
    from synth.store import Store

    config = _config(ctx)
    with Store(config.db_path) as store:
        click.echo(render_stats(review_stats(store, config.review), config.review))


@review.command("export")
@click.option("--format", "fmt", type=click.Choice(["label-studio", "argilla"]), required=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def review_export(ctx: click.Context, fmt: str, out: Path) -> None:
    """Write the open review queue as Label Studio tasks or Argilla records."""
    from synth.review.interchange import export_argilla, export_label_studio
    from synth.store import Store

    config = _config(ctx)
    with Store(config.db_path) as store:
        result = (export_label_studio if fmt == "label-studio" else export_argilla)(
            store, config, out
        )
    click.echo(f"{result.path}: {result.items} rows to review")
    if result.labeling_config:
        click.echo(f"{result.labeling_config}: the labeling config for the project")


@review.command("import")
@click.option("--format", "fmt", type=click.Choice(["label-studio", "argilla"]), required=True)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def review_import(ctx: click.Context, fmt: str, file: Path) -> None:
    """Store the decisions of a Label Studio export or Argilla records file."""
    from synth.review.interchange import import_argilla, import_label_studio
    from synth.store import Store

    config = _config(ctx)
    with Store(config.db_path) as store:
        result = (import_label_studio if fmt == "label-studio" else import_argilla)(
            store, config, file
        )
    click.echo(f"{file}: {result.added} reviews added, {result.duplicates} already stored")


@review.command("ack")
@click.argument("cell")
@click.option("--note", help="What was done about it (a template or seed fix).")
@click.pass_context
def review_ack(ctx: click.Context, cell: str, note: str | None) -> None:
    """Acknowledge a flagged cell (SLICE/LABEL) so `synth run` generates for it again."""
    from synth.review.stats import acknowledge
    from synth.store import Store

    config = _config(ctx)
    with Store(config.db_path) as store:
        n = acknowledge(store, cell, note)
    click.echo(f"{cell}: {n} reviews acknowledged; its reject share counts afresh")


@cli.command("calibrate")
@click.option(
    "--seeds",
    "seeds_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Calibrate on this seed file instead of the store's seeds.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def calibrate_cmd(ctx: click.Context, seeds_file: Path | None, as_json: bool) -> None:
    """Show each similarity filter's thresholds and why: the seeds' scores among
    themselves and against each eval set, the quantile each threshold is set at, and
    the floor or cap that bounds it."""
    from synth.audit import calibration, render_calibration, seed_file_rows, stored_seeds

    config = _config(ctx)
    seeds = seed_file_rows(config, seeds_file) if seeds_file else stored_seeds(config) or []
    report = calibration(config, seeds)
    click.echo(json.dumps(report, indent=2) if as_json else render_calibration(report))
    if report["error"]:
        sys.exit(2)


@cli.command("rows")
@click.option("--cell", help="SLICE/LABEL, e.g. default/card_arrival.")
@click.option("--slice", "slice_", help="Rows of this slice.")
@click.option("--label", help="Rows of this label.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    help="accepted, rejected, review_pending, approved, review_rejected or surplus"
    " (repeat for several).",
)
@click.option("--source", help="real, synthetic or edited.")
@click.option("--filter", "filter_name", help="Rows this filter rejected or held for review.")
@click.option("--reason", help="Rows with a reject or review reason containing this text.")
@click.option("--limit", type=int, default=50, show_default=True, help="At most this many rows.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def rows_cmd(
    ctx: click.Context,
    cell: str | None,
    slice_: str | None,
    label: str | None,
    statuses: tuple[str, ...],
    source: str | None,
    filter_name: str | None,
    reason: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List stored rows, oldest first: id, source, status, cell, text (and why a filter
    did not keep it); `synth show ID` tells the rest."""
    from synth.rows import list_rows, render_rows, row_query
    from synth.store import Store

    query = row_query(
        cell=cell,
        slice_=slice_,
        label=label,
        statuses=statuses,
        source=source,
        filter_name=filter_name,
        reason=reason,
        limit=limit,
    )
    config = _config(ctx)
    with Store(config.db_path, readonly=True) as store:
        found = list_rows(store, query)
    if as_json:
        click.echo(json.dumps({"rows": found.rows, "total": found.total}, ensure_ascii=False))
    else:
        click.echo(render_rows(found))


def main() -> None:
    cli(prog_name="synth")
