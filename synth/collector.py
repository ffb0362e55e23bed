"""Fewer, cheaper garbage collections while a long job decides rows.

Deciding a chunk allocates thousands of short-lived containers, so at Python's
threshold (700 allocations) the young generation is collected every few rows, and
every tenth of those collections promotes survivors until a full collection walks
every object the process holds: the imported libraries, the rows read, the filters'
indexes. On ``bench/scale.py``'s one cell those full collections took 0.13 to
0.19 ms of each candidate's CPU, more as the cell grew. What exists once a job is
set up is frozen out of the collector's walks, and the young generation is
collected every ``THRESHOLD`` allocations.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# Allocations between young-generation collections (Python's: 700).
THRESHOLD = 10_000


def collect_less() -> None:
    """Freeze what exists now out of the collector's walks, and collect the young
    generation less often, for the rest of the process (the filter process)."""
    gc.freeze()
    gc.set_threshold(THRESHOLD, *gc.get_threshold()[1:])


@contextmanager
def collecting_less() -> Iterator[None]:
    """:func:`collect_less` for the time of a ``with`` block; the thresholds are put
    back and the frozen objects let go afterwards."""
    thresholds = gc.get_threshold()
    collect_less()
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
