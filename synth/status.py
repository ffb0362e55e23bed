"""The funnel per cell, from the store alone: generated -> rejected by each filter ->
accepted / pending review / surplus, with calls, tokens and cost."""

from __future__ import annotations

import textwrap
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from synth.config import Config
from synth.filters.diversity import diversity_figures
from synth.filters.rubric import decision_filters
from synth.plan import plan_cells
from synth.quota import by_reason
from synth.review.stats import flag_lines, flagged
from synth.store import Spend, Store, empty_funnel_row
from synth.store.rows import JudgeSummary


@dataclass(frozen=True)
class StatusReport:
    """``cells``: the funnel per cell, each with its ``diversity`` figures (of its
    accepted synthetic rows; None when it has fewer than two)."""

    cells: list[dict[str, Any]]
    filters: list[str]  # in chain order, then any others found in the store
    spend: Spend
    runs: int
    last_run: str | None
    # Cells flagged by their reviewers' rejections, one line each (synth review ack).
    review_flags: list[str] = field(default_factory=list)
    # The judge's decisions by reason, mean score per criterion, its calls and cost;
    # None when no judge call was ever made.
    judge: JudgeSummary | None = None
    # Of spend.cost_usd, what synth's simulator answered: no bill (the demo's, a test's).
    simulated_usd: float = 0.0


def status(config: Config, store: Store) -> StatusReport:
    funnel = {(r["slice"], r["label"]): r for r in store.reports.funnel()}
    targets = {
        (p.cell.slice, p.cell.label): p for p in plan_cells(config, store.examples.cell_counts())
    }
    keys = sorted(set(funnel) | set(targets))
    cells = []
    for key in keys:
        row: dict[str, Any] = dict(funnel.get(key) or empty_funnel_row(*key))
        plan = targets.get(key)
        row["target"] = plan.target if plan else None
        row["deficit"] = plan.deficit if plan else 0
        cells.append(row)
    texts = store.examples.texts_by_cell()
    for row in cells:
        synthetic = texts.get((row["slice"], row["label"]), {}).get("synthetic", [])
        row["diversity"] = asdict(diversity_figures(synthetic)) if len(synthetic) > 1 else None
    names = decision_filters(config.filters, bool(config.data_schema.label))
    for row in cells:
        names += [f for f in row["rejected"] if f not in names]
    runs = store.runs.all()
    last = None
    if runs:
        r = runs[-1]
        kind = " (synth filter)" if r.kind == "filter" else ""
        last = f"{r.id}{kind} {r.status}" + (f" ({r.stop_reason})" if r.stop_reason else "")
    flags = flag_lines(flagged(store, config.review), config.review)
    judge = store.reports.judge_summary()
    return StatusReport(
        cells,
        names,
        store.calls.spend(),
        len(runs),
        last,
        review_flags=flags,
        judge=judge if judge["calls"] else None,
        simulated_usd=store.calls.simulated_cost(),
    )


LEGEND = (
    "gen = rej + acc + held + surplus. rej: rejected by a filter or a reviewer (per cell:"
    " --json, synth audit); acc: counts toward the target, sampled rows included; held: sent"
    " to review by a filter, counted once approved; surplus: kept beyond the target; calls:"
    " generation and judge calls, a judge call in the cell of the row it judged"
)
# Every line of the table and the notes under it fits this many columns.
WIDTH = 100
NBSP = "\u00a0"


def render_status(report: StatusReport) -> str:
    """A plain-text table: one line per cell, then the totals. The rejections by
    filter and the rows sampled for review are summed under it (--json has them per
    cell), so that the table fits 100 columns."""
    header = ["cell", "target", "real", "gen", "rej", "acc", "held", "surplus", "calls", "deficit"]
    lines = []
    totals = [0] * (len(header) - 2)
    for c in report.cells:
        figures = [
            c["real"],
            c["generated"],
            sum(c["rejected"].values()) + c["review_rejected"],
            c["accepted"],
            c["held"],
            c["surplus"],
            c["calls"],
            c["deficit"],
        ]
        target = "-" if c["target"] is None else str(c["target"])
        lines.append([f"{c['slice']}/{c['label']}", target, *map(str, figures)])
        totals = [t + f for t, f in zip(totals, figures, strict=True)]
    total_row = ["total", "", *map(str, totals)]
    accepted = dict(zip(header[2:], totals, strict=True))["acc"]
    widths = [max(len(r[i]) for r in [header, *lines, total_row]) for i in range(len(header))]

    def fmt(r: list[str]) -> str:
        first = r[0].ljust(widths[0])
        return "  ".join([first, *(v.rjust(w) for v, w in zip(r[1:], widths[1:], strict=True))])

    rule = "-" * len(fmt(header))
    table = [fmt(header), rule, *(fmt(r) for r in lines), rule, fmt(total_row)]
    out = [_rejections(report), LEGEND]
    s = report.spend
    per = f", ${s.cost_usd / accepted:.5f} per accepted row" if accepted and s.cost_usd else ""
    out.append(
        f"calls {s.calls} (attempts {s.attempts}), tokens {_prompt_tokens(s)} in /"
        f" {s.completion_tokens} out, cost ${s.cost_usd:.4f}{per}"
    )
    if report.simulated_usd:
        out.append(simulated_note(report.simulated_usd, s.cost_usd))
    out += _lost_lines(s)
    if report.last_run:
        out.append(f"runs {report.runs}, last: {report.last_run}")
    excluded = sum(c.get("real_excluded", 0) for c in report.cells)
    if excluded:
        out.append(
            f"real rows kept out of the dataset by synth filter: {excluded}"
            " (rejected, held for review, or already in it)"
        )
    out += report.review_flags
    out += _unusable_lines(report.cells)
    out += ["", *_diversity_lines(report.cells)]
    out += _judge_lines(report.judge)
    # Notes longer than the width (a long stop reason, many criteria) go on, indented.
    notes = [
        part
        for line in out
        for part in textwrap.wrap(
            line, WIDTH, subsequent_indent=line[: len(line) - len(line.lstrip())] + "  "
        )
        or [""]
    ]
    return "\n".join(table + notes).replace(NBSP, " ")


def _prompt_tokens(s: Spend) -> str:
    """Prompt tokens, split into fresh and cached when the provider's prompt cache
    served some: "1200 (700 fresh, 500 cached at $0.0001)"."""
    if not s.cached_tokens:
        return str(s.prompt_tokens)
    fresh = s.prompt_tokens - s.cached_tokens
    return f"{s.prompt_tokens} ({fresh} fresh, {s.cached_tokens} cached at ${s.cached_usd:.4f})"


def simulated_note(simulated_usd: float, cost_usd: float) -> str:
    """Says which of the costs printed are synth's simulator's: no bill was run up."""
    what = "the" if simulated_usd >= cost_usd - 1e-9 else f"${simulated_usd:.4f} of the"
    return f"simulated: {what} cost is the simulator's token counts at [llm.prices], not a bill"


def _rejections(report: StatusReport) -> str:
    """ "rej by: schema 3, pii 0, ..., reviewers 1; acc awaiting a reviewer (sampled): 4"."""
    by: Counter[str] = Counter()
    for c in report.cells:
        by.update(c["rejected"])
    reviewers = sum(c["review_rejected"] for c in report.cells)
    # A no-break space keeps each name with its count when the line is wrapped.
    parts = [f"{f}{NBSP}{by[f]}" for f in report.filters] + [f"reviewers{NBSP}{reviewers}"]
    sampled = sum(c["sampled"] for c in report.cells)
    return f"rej by: {', '.join(parts)}; acc awaiting a reviewer (sampled): {sampled}"


def _lost_lines(s: Spend) -> list[str]:
    """Attempts sent that got no reply: what they may have cost, which no reply says."""
    if not s.unanswered_attempts:
        return []
    return [
        f"replies lost: {s.unanswered_attempts} attempts got no reply (killed, timed out or"
        " dropped), which the endpoint may have billed: up to"
        f" {s.unanswered_tokens} tokens, ${s.unanswered_usd:.4f} estimated, not in the cost above"
    ]


def _judge_lines(judge: JudgeSummary | None) -> list[str]:
    """What the judge decided and how it scored, under the funnel."""
    if not judge:
        return []
    why = f": {by_reason(judge['unusable'])}" if judge.get("unusable") else ""
    lines = [
        "",
        f"judge: {judge['calls']} calls ({judge['invalid_calls']} invalid or failed{why}),"
        f" cost ${judge['cost_usd']:.4f}",
    ]
    for name, reasons in judge["decisions"].items():
        parts = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items()))
        lines.append(f"  {name}: {parts}")
    if judge["criteria"]:
        scores = ", ".join(f"{c} {v['mean']:.2f}" for c, v in judge["criteria"].items())
        lines.append(f"  mean score per criterion: {scores}")
    return lines


def _unusable_lines(cells: list[dict[str, Any]]) -> list[str]:
    """Generation calls that brought nothing usable, per cell, by why."""
    rows = [(f"{c['slice']}/{c['label']}", c["unusable"]) for c in cells if c.get("unusable")]
    if not rows:
        return []
    width = max(len(name) for name, _ in rows)
    lines = ["unusable replies, by why:"]
    lines += [f"  {name:{width}}  {by_reason(counts)}" for name, counts in rows]
    return lines


def _diversity_lines(cells: list[dict[str, Any]]) -> list[str]:
    """How varied each cell's accepted synthetic rows are."""
    rows = [c for c in cells if c.get("diversity")]
    if not rows:
        return []
    width = max(len(f"{c['slice']}/{c['label']}") for c in rows)
    lines = [
        f"{'diversity of synthetic rows':{width}}  rows  distinct-1  distinct-2  mean-NN-ROUGE-L"
    ]
    for c in rows:
        d = c["diversity"]
        nn = "-" if d["mean_nn_rouge_l"] is None else f"{d['mean_nn_rouge_l']:.3f}"
        lines.append(
            f"{c['slice'] + '/' + c['label']:{width}}  {d['texts']:4}  {d['distinct_1']:10.3f}"
            f"  {d['distinct_2']:10.3f}  {nn:>15}"
        )
    return lines
