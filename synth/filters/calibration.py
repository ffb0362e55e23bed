"""Thresholds calibrated on the user's own real rows.

A similarity threshold is a claim: "rows this alike are copies". Whether it holds
depends on the data. Ten-word banking messages of one intent share half their word
pairs as a matter of course; two grade-school maths puzzles almost never do. A fixed
number is therefore too strict for short same-domain texts and too lax for long ones.

The seeds are the null distribution of "same domain, not a copy": real rows the user
vouches for. Each similarity filter scores every seed the way it scores a candidate
(its nearest other seed in the cell, its nearest seed of another label, its best match
in an eval set) and sets its threshold at a high quantile of those scores:

    threshold = min(cap, max(floor, quantile(seed scores, q)))

* ``floor``: the filter's configured threshold, measured on planted copies or
  unrelated text. Calibration only ever raises a threshold; where the seeds are
  unlike each other (or unlike the eval set) the floor decides, as before.
* ``q``: the share of real rows the filter lets through. At q = 0.95 about one real
  row in twenty is closer to its neighbour than the threshold, and a generated row
  as close as that is rejected: the price of catching light edits.
* A quantile, not the maximum: a few seeds that are copies themselves (a seed set
  that holds eval items, a dataset with its own duplicates) cannot drag the threshold
  up to 1.0. The ``cap`` bounds it in case they are more than a few.

The threshold, the rule that set it and the distribution it came from are kept in a
:class:`Threshold`, shown by ``synth calibrate`` and written into every decision's
reason, so a user can always see why a row was rejected at the score it was.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

import numpy as np

Rule = Literal["fixed", "floor", "seeds", "cap", "too_few"]
K = TypeVar("K", bound=Hashable)

# The quantiles a calibration table shows of each distribution.
SUMMARY_QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99)


@dataclass(frozen=True)
class Distribution:
    """A summary of the scores a threshold was calibrated on."""

    count: int
    quantiles: dict[float, float] = field(default_factory=dict)  # q -> score
    max: float | None = None

    @classmethod
    def of(cls, scores: Sequence[float]) -> Distribution:
        if not len(scores):
            return cls(0)
        values = np.asarray(scores, dtype=np.float64)
        qs = np.quantile(values, SUMMARY_QUANTILES)
        return cls(
            len(values),
            {q: round(float(v), 4) for q, v in zip(SUMMARY_QUANTILES, qs, strict=True)},
            round(float(values.max()), 4),
        )


@dataclass(frozen=True)
class Threshold:
    """One calibrated threshold: its value and why it has that value.

    ``rule`` is ``fixed`` (calibration off), ``floor`` (the seeds score below the
    configured floor), ``seeds`` (the seeds' quantile), ``cap`` (the seeds' quantile
    was above the cap) or ``too_few`` (fewer seeds than the calibration needs).
    """

    name: str  # what the threshold separates, e.g. "same cell", "gsm8k minhash"
    value: float
    rule: Rule
    floor: float
    cap: float
    quantile: float
    seeds_q: float | None  # the seeds' quantile at ``quantile``, when computed
    scores: Distribution

    def why(self) -> str:
        """A short account of the value, for decision reasons and tables."""
        q = f"q{_percent(self.quantile)}"
        n = self.scores.count
        if self.rule == "fixed":
            return "fixed"
        if self.rule == "too_few":
            return f"floor; {n} seeds, too few to calibrate"
        seen = f"{q} of {n} seeds {self.seeds_q:.2f}" if self.seeds_q is not None else ""
        if self.rule == "seeds":
            return f"{q} of {n} seeds"
        return f"{self.rule}; {seen}"

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "value": round(self.value, 4),
            "rule": self.rule,
            "why": self.why(),
            "floor": self.floor,
            "cap": self.cap,
            "quantile": self.quantile,
            "seeds_quantile": self.seeds_q,
            "scores": {
                "count": self.scores.count,
                "quantiles": {str(q): v for q, v in self.scores.quantiles.items()},
                "max": self.scores.max,
            },
        }


def _percent(q: float) -> str:
    return f"{q * 100:.2f}".rstrip("0").rstrip(".")


def fixed(name: str, value: float) -> Threshold:
    """A threshold used as configured (calibration off)."""
    return Threshold(name, value, "fixed", value, value, 1.0, None, Distribution(0))


def calibrate(
    name: str,
    scores: Sequence[float],
    *,
    floor: float,
    cap: float,
    quantile: float,
    min_seeds: int,
) -> Threshold:
    """``min(cap, max(floor, quantile(scores)))``, and the reason for it.

    Args:
        name: What the threshold separates (shown in tables).
        scores: Each seed's score under the filter's own comparison.
        floor: The configured threshold; calibration never goes below it.
        cap: Calibration never goes above it (seeds that are mostly copies).
        quantile: The share of seeds below the threshold.
        min_seeds: Fewer scores than this: the floor, as an empirical quantile of a
            handful of rows says little.
    """
    dist = Distribution.of(scores)
    if len(scores) < min_seeds:
        return Threshold(name, floor, "too_few", floor, cap, quantile, None, dist)
    q = float(np.quantile(np.asarray(scores, dtype=np.float64), quantile))
    q = round(q, 4)
    if q > cap:
        return Threshold(name, cap, "cap", floor, cap, quantile, q, dist)
    if q > floor:
        return Threshold(name, q, "seeds", floor, cap, quantile, q, dist)
    return Threshold(name, floor, "floor", floor, cap, quantile, q, dist)


def sample_positions(n: int, size: int, seed: int = 0) -> list[int]:
    """``size`` of ``range(n)`` in order, the same ones every time (all if fewer)."""
    if n <= size:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), size))


@dataclass(frozen=True)
class FilterCalibration:
    """A filter's thresholds, for ``synth calibrate`` and the audit report."""

    filter: str
    measure: str  # "word 2-gram Jaccard", "ROUGE-L F", ...
    thresholds: tuple[Threshold, ...]
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "filter": self.filter,
            "measure": self.measure,
            "thresholds": [t.as_dict() for t in self.thresholds],
            "notes": list(self.notes),
        }


def finite(values: Sequence[float]) -> list[float]:
    """The values that are numbers (NaN and infinities dropped)."""
    return [v for v in values if math.isfinite(v)]


def nearest_jaccard(
    shingles: Sequence[np.ndarray], groups: Sequence[str], queries: Sequence[int]
) -> tuple[list[float], list[float]]:
    """For each query, the exact Jaccard of its nearest other set in its own group
    and in any other group (0.0 where there is none). Sets equal to the query's are
    not its neighbours: a seed stored twice says nothing about how alike different
    rows are.

    ``shingles`` are sorted unique 64-bit hashes per text (``shingle_hashes``). The
    intersections come from one sparse matrix product per chunk of queries, so a
    sample of a few thousand seeds against all of them takes well under a second.
    Empty sets are nobody's neighbour and score 0.0.
    """
    from scipy.sparse import csr_matrix

    n = len(shingles)
    sizes = np.array([len(s) for s in shingles], dtype=np.int64)
    if n == 0 or not sizes.any():
        return [0.0] * len(queries), [0.0] * len(queries)
    _, columns = np.unique(np.concatenate([s for s in shingles if len(s)]), return_inverse=True)
    indptr = np.concatenate(([0], np.cumsum(sizes)))
    matrix = csr_matrix(
        (np.ones(len(columns), dtype=np.float32), columns.astype(np.int64), indptr),
        shape=(n, int(columns.max()) + 1),
    )
    transposed = matrix.T.tocsr()
    group_ids = {g: i for i, g in enumerate(dict.fromkeys(groups))}
    group_of = np.array([group_ids[g] for g in groups], dtype=np.int64)
    same: list[float] = []
    other: list[float] = []
    for start in range(0, len(queries), 256):
        chunk = list(queries[start : start + 256])
        inter = (matrix[chunk] @ transposed).tocsr()
        for row, q in enumerate(chunk):
            lo, hi = inter.indptr[row], inter.indptr[row + 1]
            cols, shared = inter.indices[lo:hi], inter.data[lo:hi].astype(np.float64)
            keep = (cols != q) & ~((shared == sizes[q]) & (sizes[cols] == sizes[q]))
            cols, shared = cols[keep], shared[keep]
            j = shared / (sizes[q] + sizes[cols] - shared) if len(cols) else shared
            mine = group_of[cols] == group_of[q]
            same.append(float(j[mine].max()) if mine.any() else 0.0)
            other.append(float(j[~mine].max()) if (~mine).any() else 0.0)
    return same, other


# How unlikely by chance a phrase's excess among generated rows must be for it to count
# as template phrasing: less than once in a thousand.
_CHANCE = 1e-3


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): the regularized incomplete beta function
    I_p(k, n - k + 1), which agrees with the sum of the terms from k up to 1e-10 of the
    tail and takes a microsecond where the sum took tens (it is asked for every
    frequent phrase of every batch)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    from scipy.special import betainc

    return min(1.0, float(betainc(k, n - k + 1, p)))


def overused(count: int, n: int, real: float, share: float, lift: float) -> bool:
    """Whether generated rows use a phrase so much more than the real rows do that it is
    template phrasing, not the domain's own wording.

    Three conditions: more than ``share`` of the ``n`` generated rows have it; at least
    ``lift`` times the real rows' share (``real``, see :func:`real_share`); and an
    excess
    that chance would explain less than once in a thousand (the binomial tail of
    ``count`` rows in ``n`` at the real rows' rate). The last keeps a small cell's few
    rows from making boilerplate of a phrase two of them happen to share, and lets a
    template that a seventh of a large cell's rows use count.
    """
    if n <= 0:
        return False
    q = count / n
    if q <= share or q < lift * real:
        return False
    return binomial_tail(count, n, real) < _CHANCE


def overused_many(
    counts: np.ndarray, n: int, real: np.ndarray, share: float, lift: float
) -> np.ndarray:
    """:func:`overused` over arrays of phrase counts and real rows' shares at once."""
    if n <= 0:
        return np.zeros(len(counts), dtype=bool)
    from scipy.special import betainc

    counts = np.asarray(counts, dtype=np.float64)
    q = counts / n
    out = (q > share) & (q >= lift * real)
    maybe = np.flatnonzero(out)
    if len(maybe):
        k, p = counts[maybe], np.clip(real[maybe], 0.0, 1.0)
        tail = betainc(np.maximum(k, 1.0), n - k + 1.0, p)
        tail = np.where(p <= 0.0, 0.0, np.where(p >= 1.0, 1.0, tail))
        out[maybe] = tail < _CHANCE
    return out


class PhraseCounts(Generic[K]):
    """How many rows contain each phrase (a shingle hash, a word pair)."""

    def __init__(self) -> None:
        self.counts: Counter[K] = Counter()
        self.n = 0

    def add(self, phrases: Iterable[K]) -> None:
        """One row's phrases (each counted once)."""
        distinct = set(phrases)
        if distinct:
            self.counts.update(distinct)
            self.n += 1


def real_share(phrase: K, narrow: PhraseCounts[K] | None, wide: PhraseCounts[K]) -> float:
    """The share of real rows that use a phrase, as a cell's generated rows are compared
    with: the cell's (or its label's) seeds, ``narrow``, each with one extra row at the
    rate of all seeds, ``wide``. The extra row keeps five seeds that happen to lack a
    phrase the whole domain uses from calling it never used, and lets a cell whose
    every seed says "virtual card" keep that phrase its own however rare it is
    elsewhere."""
    overall = (wide.counts[phrase] + 0.5) / (wide.n + 1)
    if narrow is None or not narrow.n:
        return overall
    return (narrow.counts[phrase] + overall) / (narrow.n + 1)


def real_shares(
    phrases: Sequence[K], narrow: PhraseCounts[K] | None, wide: PhraseCounts[K]
) -> np.ndarray:
    """:func:`real_share` of many phrases at once (the same floating-point steps, so
    the same values)."""

    def counted(counts: Counter[K]) -> np.ndarray:
        get = counts.get
        return np.fromiter((get(p, 0) for p in phrases), np.float64, len(phrases))

    overall = (counted(wide.counts) + 0.5) / (wide.n + 1)
    if narrow is None or not narrow.n:
        return overall
    return (counted(narrow.counts) + overall) / (narrow.n + 1)
