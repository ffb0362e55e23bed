"""The funnel per cell, from the store alone: generated -> rejected by each filter ->
accepted / pending review / surplus, with calls, tokens and cost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from synth.config import Config
from synth.plan import plan_cells
from synth.store import Spend, Store, empty_funnel_row


@dataclass(frozen=True)
class StatusReport:
    cells: list[dict[str, Any]]
    filters: list[str]  # in chain order, then any others found in the store
    spend: Spend
    runs: int
    last_run: str | None


def status(config: Config, store: Store) -> StatusReport:
    funnel = {(r["slice"], r["label"]): r for r in store.funnel()}
    targets = {(p.cell.slice, p.cell.label): p for p in plan_cells(config, store.cell_counts())}
    keys = sorted(set(funnel) | set(targets))
    cells = []
    for key in keys:
        row = dict(funnel.get(key) or empty_funnel_row(*key))
        plan = targets.get(key)
        row["target"] = plan.target if plan else None
        row["deficit"] = plan.deficit if plan else 0
        cells.append(row)
    names = [spec.kind for spec in config.filters]
    for row in cells:
        names += [f for f in row["rejected"] if f not in names]
    runs = store.runs()
    last = None
    if runs:
        r = runs[-1]
        last = f"{r.id} {r.status}" + (f" ({r.stop_reason})" if r.stop_reason else "")
    return StatusReport(cells, names, store.spend(), len(runs), last)


def render_status(report: StatusReport) -> str:
    """A plain-text table: one line per cell, then the totals."""
    reject_cols = [f"-{f}" for f in report.filters]
    header = [
        "cell",
        "target",
        "real",
        "generated",
        *reject_cols,
        "accepted",
        "sampled",
        "held",
        "surplus",
        "calls",
        "tokens",
        "deficit",
    ]
    lines = []
    totals: dict[str, int] = {}
    for c in report.cells:
        values = [
            f"{c['slice']}/{c['label']}",
            "-" if c["target"] is None else c["target"],
            c["real"],
            c["generated"],
            *[c["rejected"].get(f, 0) for f in report.filters],
            c["accepted"],
            c["sampled"],
            c["held"],
            c["surplus"],
            c["calls"],
            c["prompt_tokens"] + c["completion_tokens"],
            c["deficit"],
        ]
        lines.append([str(v) for v in values])
        for name, v in zip(header[2:], values[2:], strict=True):
            totals[name] = totals.get(name, 0) + (v if isinstance(v, int) else 0)
    total_row = ["total", "", *[str(totals.get(h, 0)) for h in header[2:]]]
    widths = [max(len(r[i]) for r in [header, *lines, total_row]) for i in range(len(header))]

    def fmt(r: list[str]) -> str:
        first = r[0].ljust(widths[0])
        return "  ".join([first, *(v.rjust(w) for v, w in zip(r[1:], widths[1:], strict=True))])

    rule = "-" * len(fmt(header))
    out = [fmt(header), rule, *(fmt(r) for r in lines), rule, fmt(total_row)]
    s = report.spend
    accepted = totals.get("accepted", 0)
    per = f", ${s.cost_usd / accepted:.5f} per accepted row" if accepted and s.cost_usd else ""
    out.append(
        f"calls {s.calls} (attempts {s.attempts}), tokens {s.prompt_tokens} in /"
        f" {s.completion_tokens} out, cost ${s.cost_usd:.4f}{per}"
    )
    if report.last_run:
        out.append(f"runs {report.runs}, last: {report.last_run}")
    return "\n".join(out)
