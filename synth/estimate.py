"""What a run to quota will cost, projected from a preview of that run.

The preview is the run itself, cut short: ``synth.runner.run`` with at most a few
generation calls per cell, through the whole filter chain and the judge, recorded in
the project's store like any run. Its rows count toward the quotas and its calls are
in ``llm_calls``, so the `synth run` that follows carries on from them (the next
sample index of each cell) and pays for none of them again.

From what the preview brought, per cell:

    yield            accepted rows per candidate, with a Wilson interval
    candidates/call  what a reply holds once read (empty or unusable replies count)
    calls to quota   deficit / (yield x candidates per call)
    tokens, cost     calls to quota x the tokens and USD per call seen (judge included)

The interval on the yield is carried through to calls, tokens and cost; the total's
bounds are the sums of the cells' (an upper bound on the spread, as if every cell were
unlucky at once). A cell whose cost per accepted row is more than ``RARE_FACTOR``
times the median cell's, or that got nothing accepted, is flagged: it is where a run
spends its money, and usually wants more seeds or a looser filter first.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace

from synth.config import Config
from synth.plan import plan_cells
from synth.records import CellKey
from synth.runner import Notice, Progress, RunSummary, run
from synth.store import Store

# Generation calls per cell in a preview, unless told: enough to see a yield, few
# enough that the preview is a small part of the run.
PREVIEW_CALLS = 4
# A cell this many times dearer per accepted row than the median cell is flagged.
RARE_FACTOR = 3.0
# The yield's interval: 95 % (Wilson's score interval).
Z = 1.96


@dataclass(frozen=True)
class Interval:
    """A projection and its bounds (``high`` may be infinite: nothing seen accepted)."""

    point: float
    low: float
    high: float

    def __add__(self, other: Interval) -> Interval:
        return Interval(self.point + other.point, self.low + other.low, self.high + other.high)

    def scaled(self, factor: float) -> Interval:
        return Interval(self.point * factor, self.low * factor, self.high * factor)


ZERO = Interval(0.0, 0.0, 0.0)


def wilson(successes: int, trials: int, z: float = Z) -> Interval:
    """The share ``successes / trials`` with Wilson's score interval: unlike the normal
    approximation it stays within [0, 1] and is not of zero width at 0 or 1, which is
    where a preview of a few calls per cell often lands."""
    if trials == 0:
        return Interval(0.0, 0.0, 1.0)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class CellEstimate:
    """One cell: what its preview brought and what its quota will take beyond it."""

    cell: CellKey
    target: int
    have: int  # rows counting toward the target once the preview is done
    calls: int  # the preview's generation calls
    candidates: int
    accepted: int
    spent_usd: float  # the preview's, its judge calls included
    yield_: Interval  # accepted per candidate
    per_call: float  # candidates per call
    calls_left: Interval
    tokens_left: Interval
    usd_left: Interval
    rare: bool = False

    @property
    def deficit(self) -> int:
        return max(0, self.target - self.have)

    @property
    def usd_per_row(self) -> float:
        """What an accepted row cost in the preview (infinite: none was accepted)."""
        return self.spent_usd / self.accepted if self.accepted else math.inf


@dataclass(frozen=True)
class Estimate:
    preview: RunSummary
    spent_usd: float  # the preview's spend, all of it
    cells: list[CellEstimate]

    @property
    def calls_left(self) -> Interval:
        return sum((c.calls_left for c in self.cells), ZERO)

    @property
    def tokens_left(self) -> Interval:
        return sum((c.tokens_left for c in self.cells), ZERO)

    @property
    def usd_left(self) -> Interval:
        return sum((c.usd_left for c in self.cells), ZERO)

    @property
    def usd_total(self) -> Interval:
        """The preview's spend and the projection of the rest: the run's whole cost."""
        return self.usd_left + Interval(self.spent_usd, self.spent_usd, self.spent_usd)


def project_cell(
    cell: CellKey,
    target: int,
    have: int,
    calls: int,
    candidates: int,
    accepted: int,
    tokens: int,
    spent_usd: float,
) -> CellEstimate:
    """A cell's projection to quota from its preview figures (see the module's table)."""
    share = wilson(accepted, candidates)
    per_call = candidates / calls if calls else 0.0
    deficit = max(0, target - have)

    def calls_at(y: float) -> float:
        if deficit == 0:
            return 0.0
        rows_per_call = y * per_call
        return deficit / rows_per_call if rows_per_call > 0 else math.inf

    # A higher yield takes fewer calls: the bounds swap.
    calls_left = Interval(calls_at(share.point), calls_at(share.high), calls_at(share.low))
    per = calls or 1
    return CellEstimate(
        cell=cell,
        target=target,
        have=have,
        calls=calls,
        candidates=candidates,
        accepted=accepted,
        spent_usd=spent_usd,
        yield_=share,
        per_call=per_call,
        calls_left=calls_left,
        tokens_left=_times(calls_left, tokens / per),
        usd_left=_times(calls_left, spent_usd / per),
    )


def _times(calls: Interval, each: float) -> Interval:
    # inf x 0 is nan; a cell whose calls cost nothing costs nothing however many.
    def f(x: float) -> float:
        return 0.0 if each == 0 else x * each

    return Interval(f(calls.point), f(calls.low), f(calls.high))


def flag_rare(cells: list[CellEstimate], factor: float = RARE_FACTOR) -> list[CellEstimate]:
    """The cells, those far dearer per accepted row than the median cell (or with
    none accepted) marked ``rare``. Only cells the preview made calls for compare."""
    costs = [c.usd_per_row for c in cells if c.calls and c.accepted]
    median = statistics.median(costs) if costs else math.inf
    out = []
    for c in cells:
        rare = bool(c.calls) and (c.accepted == 0 or c.usd_per_row > factor * median)
        out.append(replace(c, rare=rare))
    return out


def estimate(
    config: Config,
    preview: int = PREVIEW_CALLS,
    *,
    progress: Progress | None = None,
    notice: Notice | None = None,
) -> Estimate:
    """Run a preview of at most ``preview`` generation calls per open cell, then
    project every cell's calls, tokens and cost to quota from what it brought."""
    summary = run(config, progress=progress, notice=notice, preview=preview)
    with Store(config.db_path) as store:
        spend = store.calls.spend_by_cell(summary.run_id)
        outcomes = store.examples.outcomes_by_cell(summary.run_id)
        plans = plan_cells(config, store.examples.cell_counts())
        spent = store.calls.spend(summary.run_id).cost_usd
    cells = []
    for p in plans:
        s = spend.get(p.cell)
        candidates, accepted = outcomes.get(p.cell, (0, 0))
        cells.append(
            project_cell(
                p.cell,
                p.target,
                p.real + p.synthetic,
                s.calls if s else 0,
                candidates,
                accepted,
                s.prompt_tokens + s.completion_tokens if s else 0,
                s.cost_usd if s else 0.0,
            )
        )
    return Estimate(summary, spent, flag_rare(cells))


def _n(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:,.0f}"


def _usd(x: float) -> str:
    return "inf" if math.isinf(x) else f"${x:,.4f}"


def report_lines(est: Estimate) -> list[str]:
    """The estimate as `synth estimate` prints it: a line per cell, the total, the
    flagged cells."""
    run_ = est.preview
    out = [
        f"preview: run {run_.run_id}, {run_.calls} calls, {run_.candidates} candidates,"
        f" {run_.accepted} accepted, {_usd(est.spent_usd)}"
    ]
    width = max((len(str(c.cell)) for c in est.cells), default=4)
    out.append(
        f"{'cell':{width}}  deficit  yield (95% CI)     cand/call  calls to quota"
        "      cost to quota                $/row"
    )
    for c in est.cells:
        y = c.yield_
        span = f"{_n(c.calls_left.point)} ({_n(c.calls_left.low)}-{_n(c.calls_left.high)})"
        cost = f"{_usd(c.usd_left.point)} ({_usd(c.usd_left.low)}-{_usd(c.usd_left.high)})"
        per_row = _usd(c.usd_per_row) if c.calls else "-"
        # A cell full before the preview had no call: nothing was seen of it.
        seen = f"{y.point:.2f} ({y.low:.2f}-{y.high:.2f})   {c.per_call:9.1f}"
        if not c.calls:
            seen = f"{'-':28}"
        out.append(
            f"{c.cell!s:{width}}  {c.deficit:7}  {seen}  {span:18}  {cost:27}  {per_row}"
            + ("  rare/expensive" if c.rare else "")
        )
    calls, tokens, usd_total = est.calls_left, est.tokens_left, est.usd_total
    out.append(
        f"to quota: {_n(calls.point)} calls ({_n(calls.low)}-{_n(calls.high)}),"
        f" {_n(tokens.point)} tokens ({_n(tokens.low)}-{_n(tokens.high)}),"
        f" {_usd(est.usd_left.point)} ({_usd(est.usd_left.low)}-{_usd(est.usd_left.high)});"
        f" whole run with the preview {_usd(usd_total.point)}"
        f" ({_usd(usd_total.low)}-{_usd(usd_total.high)})"
    )
    costs = [c.usd_per_row for c in est.cells if c.calls and c.accepted]
    median = statistics.median(costs) if costs else math.inf
    for c in est.cells:
        if c.rare:
            why = (
                "nothing accepted in the preview"
                if not c.accepted
                else f"{c.usd_per_row / median:.1f}x the median cell's cost per row"
            )
            out.append(f"rare/expensive: {c.cell} ({why})")
    return out
