"""Agreement between two raters (judge vs human, reviewer vs reviewer).

Cohen's kappa corrects raw agreement for the agreement two raters would reach by
chance given how often each uses each category:

    kappa = (p_o - p_e) / (1 - p_e)

where ``p_o`` is the share of items on which they agree and ``p_e`` the sum, over
categories, of the product of each rater's share of that category. 1 is perfect
agreement, 0 is chance, below 0 worse than chance. 0.7 is the bar this project warns
under (a common one for "substantial" agreement on annotation tasks).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

KAPPA_WARN_BELOW = 0.7
# Below this many items one disagreement moves kappa by a tenth or more: the figure is
# printed with a caveat rather than read as a measurement.
SMALL_SAMPLE = 30


@dataclass(frozen=True)
class Agreement:
    """Agreement of two raters over ``n`` items."""

    n: int
    observed: float  # share of items both raters put in the same category
    kappa: float | None  # None when undefined: no items, or chance agreement is 1

    @property
    def low(self) -> bool:
        return self.kappa is not None and self.kappa < KAPPA_WARN_BELOW

    @property
    def small(self) -> bool:
        return 0 < self.n < SMALL_SAMPLE

    def caveat(self) -> str:
        """A note to print beside the kappa of a small sample; empty otherwise."""
        if not self.small:
            return ""
        return f" (only {self.n} rows: a rough figure, {SMALL_SAMPLE}+ make it a measure)"


def cohen_kappa(pairs: Sequence[tuple[Hashable, Hashable]]) -> Agreement:
    """Cohen's kappa of ``(rater_a, rater_b)`` category pairs, one per item.

    When both raters use a single, identical category throughout, chance agreement is
    1 and kappa is undefined: ``kappa`` is None then, and ``observed`` still says 1.0.
    """
    n = len(pairs)
    if n == 0:
        return Agreement(0, 0.0, None)
    observed = sum(1 for a, b in pairs if a == b) / n
    a_counts = Counter(a for a, _ in pairs)
    b_counts = Counter(b for _, b in pairs)
    expected = sum(a_counts[c] * b_counts.get(c, 0) for c in a_counts) / (n * n)
    if expected >= 1.0:
        return Agreement(n, observed, None)
    return Agreement(n, observed, (observed - expected) / (1 - expected))


def kappa_by_group(
    items: Iterable[tuple[Hashable, Hashable, Hashable]],
) -> dict[Hashable, Agreement]:
    """Kappa per group from ``(group, rater_a, rater_b)`` triples."""
    groups: dict[Hashable, list[tuple[Hashable, Hashable]]] = defaultdict(list)
    for group, a, b in items:
        groups[group].append((a, b))
    return {g: cohen_kappa(p) for g, p in sorted(groups.items(), key=lambda kv: str(kv[0]))}
