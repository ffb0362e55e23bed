"""The quota loop's arithmetic, kept apart from its I/O.

How many calls a step asks for, how a short allowance is shared between cells and when
a cell has stalled decide what a run costs and when it stops (the budget caps are
``synth.spend``'s). End to end, a run only shows their sum; here each rule is a pure
function of plain numbers (or a small tracker of per-cell counters), so it can be
checked on tables of cases without a store, a client or a simulator.

Deficits themselves are ``CellPlan.deficit`` (see ``synth.plan``): one rule for the
plan, the status display and the loop.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from synth.records import CellKey

# Before a cell has history, assume this share of asked-for examples is accepted;
# PRIOR_WEIGHT is how many observed examples it is worth.
PRIOR_YIELD = 0.8
PRIOR_WEIGHT = 5
# A cell whose filters reject nearly everything would otherwise ask for an unbounded
# number of examples in one step; the stall rule stops it instead.
MIN_YIELD = 0.05
# A run whose first this many replies (or more, to the end of a step) were all
# unusable stops: at a parse rate of 30 % that happens by chance 6 % of the time, at
# 50 % under 0.4 %; a model that writes nothing readable needs a person (another
# response_format, a larger context), not more calls.
UNUSABLE_STOP = 8

K = TypeVar("K", bound=Hashable)


def observed_yield(asked: int, kept: int) -> float:
    """The share of asked-for examples the filters keep, pulled towards PRIOR_YIELD
    while there is little history, so one unlucky call does not size the next step."""
    prior_kept = kept + PRIOR_YIELD * PRIOR_WEIGHT
    return max(MIN_YIELD, prior_kept / (asked + PRIOR_WEIGHT))


def examples_needed(deficit: int, yield_: float, ahead: int) -> int:
    """Examples a cell should still ask for: enough to fill its deficit at its yield,
    less those that calls already planned for it ask for (zero or less: none)."""
    return math.ceil(deficit / yield_) - ahead


def share(wanted: Mapping[K, int], allowed: int) -> dict[K, int]:
    """``allowed`` calls shared in proportion to what each cell wants (largest
    remainders first), so the whole allowance is used and none is left for a tail
    step; cells whose share rounds to nothing are left out."""
    total = sum(wanted.values())
    exact = {c: n * allowed / total for c, n in wanted.items()}
    shares = {c: math.floor(x) for c, x in exact.items()}
    # Ties go by name, so the same wants share the same way on every run.
    by_remainder = sorted(wanted, key=lambda c: (shares[c] - exact[c], str(c)))
    for c in by_remainder[: allowed - sum(shares.values())]:
        shares[c] += 1
    return {c: n for c, n in shares.items() if n > 0}


def spread(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` sizes that differ by at most one: 7, 3 -> 3, 2, 2.
    A total smaller than ``parts`` still gives every part one."""
    each, extra = divmod(max(total, parts), parts)
    return [each + (1 if i < extra else 0) for i in range(parts)]


def call_sizes(needed: Mapping[K, int], per_call: int, allowed: int) -> dict[K, list[int]]:
    """Examples asked for by each call of a step, per cell, from the examples each cell
    still needs: calls of at most ``per_call``, spread evenly so the last call is not a
    full one that mostly ends up as surplus, and at most ``allowed`` calls in all."""
    wanting = {c: n for c, n in needed.items() if n > 0}
    n_calls = {c: max(1, math.ceil(n / per_call)) for c, n in wanting.items()}
    if sum(n_calls.values()) > allowed:
        n_calls = share(n_calls, allowed)
    return {c: spread(min(wanting[c], count * per_call), count) for c, count in n_calls.items()}


@dataclass
class CellTracker:
    """Per cell: examples asked for and kept (its yield), and the steps since it last
    got a row accepted (whether it has stalled)."""

    max_idle: int  # generate.max_idle_batches
    per_call: int  # generate.per_call
    asked: Counter[CellKey] = field(default_factory=Counter)  # examples asked for
    kept: Counter[CellKey] = field(default_factory=Counter)  # examples the filters kept
    idle: Counter[CellKey] = field(default_factory=Counter)  # steps in a row, none accepted
    asked_when_accepted: Counter[CellKey] = field(default_factory=Counter)
    stalled: set[CellKey] = field(default_factory=set)  # planned for no more

    def yield_of(self, cell: CellKey) -> float:
        return observed_yield(self.asked[cell], self.kept[cell])

    def record_step(
        self,
        cells: Iterable[CellKey],
        before: Mapping[CellKey, tuple[int, int]],
        after: Mapping[CellKey, tuple[int, int]],
    ) -> None:
        """A finished step's cells, with the (real, synthetic) counts from when it was
        planned and from now: an accept resets a cell's idle steps, none adds one."""
        # A cell near its target asks for a call or two a step: its idle steps must
        # also have asked for as many examples as `max_idle` full calls would, or a run
        # of unlucky single calls would stop a cell that is merely almost full.
        floor = self.max_idle * self.per_call
        for cell in cells:
            if after.get(cell, (0, 0))[1] > before.get(cell, (0, 0))[1]:
                self.idle[cell] = 0
                self.asked_when_accepted[cell] = self.asked[cell]
            else:
                self.idle[cell] += 1
                idle_asked = self.asked[cell] - self.asked_when_accepted[cell]
                if self.idle[cell] >= self.max_idle and idle_asked >= floor:
                    self.stalled.add(cell)


def by_reason(counts: Mapping[str, int]) -> str:
    """ "unparseable 8, cut_off 4": unusable replies by why, the commonest first."""
    return ", ".join(f"{why} {n}" for why, n in sorted(counts.items(), key=lambda x: (-x[1], x[0])))


def unusable_stop(usable: int, unusable: Mapping[CellKey, Mapping[str, int]]) -> str | None:
    """Why a run stops when none of its replies could be used and there are at least
    ``UNUSABLE_STOP`` of them (``unusable``: per cell, by why); None while it goes on."""
    reasons: Counter[str] = Counter()
    for counts in unusable.values():
        reasons.update(counts)
    total = sum(reasons.values())
    if usable or total < UNUSABLE_STOP:
        return None
    return f"{total} of {total} replies unusable ({by_reason(reasons)})"
