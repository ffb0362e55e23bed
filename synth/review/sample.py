"""Stratified sampling of accepted synthetic rows for human review."""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Sequence


def sample_for_review(
    rows: Sequence[tuple[str, str, str]],
    fraction: float,
    min_per_cell: int = 1,
    seed: int = 0,
) -> list[str]:
    """Ids of a stratified sample of ``(id, slice, label)`` rows.

    Each cell gives ``round(fraction * size)`` rows, at least ``min_per_cell`` (never
    more than it has). Rows are ranked by a hash of the seed and their id, so the
    sample is the same for the same rows and seed, whatever their order.
    """
    cells: dict[tuple[str, str], list[str]] = defaultdict(list)
    for example_id, slice_, label in rows:
        cells[(slice_, label)].append(example_id)
    chosen: list[str] = []
    for key in sorted(cells):
        ids = cells[key]
        want = max(min_per_cell, round_half_up(fraction * len(ids))) if fraction > 0 else 0
        ranked = sorted(ids, key=lambda i: rank_key(seed, i))
        chosen += ranked[: min(want, len(ids))]
    return chosen


def rank_key(seed: int, example_id: str) -> str:
    """The order a seeded sample takes rows in: a hash, so it ignores row order."""
    return hashlib.sha256(f"{seed}:{example_id}".encode()).hexdigest()


def round_half_up(x: float) -> int:
    """0.5 -> 1, 2.5 -> 3: Python's round() would give 0 and 2."""
    return math.floor(x + 0.5)
