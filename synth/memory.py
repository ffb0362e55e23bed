"""How a long job holds memory: fewer garbage collections, big buffers given back.

Deciding a chunk allocates thousands of short-lived containers, so at Python's
threshold (700 allocations) the young generation is collected every few rows, and
every tenth of those collections promotes survivors until a full collection walks
every object the process holds: the imported libraries, the rows read, the filters'
indexes. On ``bench/scale.py``'s one cell those full collections took 0.13 to
0.19 ms of each candidate's CPU, more as the cell grew. What exists once a job is
set up is frozen out of the collector's walks, and the young generation is
collected every ``THRESHOLD`` allocations.

The filters' indexes are numpy arrays that are made again as they grow (a band
index's keys, a cell's word index). glibc's malloc serves a buffer of 128 KB or more
from its own mapping, given back to the system when freed, but after the first such
free it raises that bar to the size freed (up to 32 MB), and buffers under the bar
come from the heap, where a freed one between live ones is never given back: the
one cell grown to 1,000,000 rows peaked at 2,067 MB. The bar is fixed at
``MMAP_THRESHOLD``. On that cell at 100,000 rows (two runs each): 489 and 496 MB
with the sliding bar, 470 and 480 at 4 MB for the same CPU, 456 and 457 at 128 KB
for 10 % more CPU (a fresh mapping per buffer is a fresh set of page faults).
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Iterator
from contextlib import contextmanager

# Allocations between young-generation collections (Python's: 700).
THRESHOLD = 10_000
# Bytes from which glibc maps a buffer of its own, never raised.
MMAP_THRESHOLD = 4 * 1024 * 1024
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h


def collect_less() -> None:
    """Freeze what exists now out of the collector's walks, collect the young
    generation less often, and fix glibc's mapping threshold, for the rest of the
    process (the filter process)."""
    gc.freeze()
    gc.set_threshold(THRESHOLD, *gc.get_threshold()[1:])
    _fix_mmap_threshold()


@contextmanager
def collecting_less() -> Iterator[None]:
    """:func:`collect_less` for the time of a ``with`` block; the collector's
    thresholds are put back and the frozen objects let go afterwards. The mapping
    threshold stays fixed: glibc has no way back to its sliding one, and a fixed one
    only costs a mapping per big buffer."""
    thresholds = gc.get_threshold()
    collect_less()
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _fix_mmap_threshold() -> None:
    """``mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)`` where the C library is glibc;
    nothing elsewhere (musl's, macOS's and Windows' allocators have no such bar)."""
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols, the C library's among them
        libc.gnu_get_libc_version  # noqa: B018 (glibc's alone)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
