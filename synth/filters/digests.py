"""A set of 64-bit digests that costs ~10 bytes an entry, not ~70.

The similarity filters remember a digest of every distinct row they counted (so a row
seen twice is counted once); a Python set of ints holds an int object and a hash-table
slot per row, 60 to 90 bytes, which at 1,000,000 rows and three such sets is 200 MB.
Here the digests are a sorted numpy array, and those added since it was last sorted a
small Python set (at most an eighth of the whole): a lookup is a set probe and a binary
search, an insert amortised O(log n).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np

_RECENT_MIN = 4096  # digests in the small set before it may be sorted into the array


class DigestSet:
    """Distinct 64-bit unsigned ints (``0 <= digest < 2**64``)."""

    def __init__(self) -> None:
        self._sorted = np.empty(0, dtype=np.uint64)
        self._recent: set[int] = set()

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def __contains__(self, digest: int) -> bool:
        return digest in self._recent or _position(self._sorted, digest) is not None

    def add(self, digest: int) -> bool:
        """Add ``digest``; whether it was new."""
        if digest in self:
            return False
        self._recent.add(digest)
        if _time_to_fold(len(self._recent), len(self._sorted)):
            recent = np.fromiter(self._recent, dtype=np.uint64, count=len(self._recent))
            self._sorted = np.sort(np.concatenate((self._sorted, recent)))
            self._recent = set()
        return True


class DigestMap:
    """64-bit unsigned digests, each with the first number given for it, at ~16 bytes
    an entry where a dict of int to int costs ~100 (a hash-table entry and a key
    object): sorted numpy arrays and a small dict of those added since, as
    :class:`DigestSet`."""

    def __init__(self) -> None:
        self._sorted = np.empty(0, dtype=np.uint64)
        self._values = np.empty(0, dtype=np.int64)
        self._recent: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def __iter__(self) -> Iterator[int]:
        """The digests, in no set order."""
        yield from self._sorted.tolist()
        yield from list(self._recent)

    def get(self, digest: int) -> int | None:
        value = self._recent.get(digest)
        if value is not None:
            return value
        at = _position(self._sorted, digest)
        return None if at is None else int(self._values[at])

    def get_many(self, digests: np.ndarray) -> np.ndarray:
        """:meth:`get` for each of ``digests`` (uint64) in one binary search; -1 for
        those not here."""
        out = np.full(len(digests), -1, dtype=np.int64)
        if len(self._sorted) and len(digests):
            at = np.minimum(self._sorted.searchsorted(digests), len(self._sorted) - 1)
            found = self._sorted[at] == digests
            out[found] = self._values[at[found]]
        if self._recent:
            recent = self._recent.get
            for k, digest in enumerate(digests.tolist()):
                value = recent(digest)
                if value is not None:
                    out[k] = value
        return out

    def setdefault(self, digest: int, value: int) -> int:
        """The number ``digest`` has, given it ``value`` if it had none."""
        known = self.get(digest)
        if known is not None:
            return known
        self._recent[digest] = value
        if _time_to_fold(len(self._recent), len(self._sorted)):
            count = len(self._recent)
            keys = np.concatenate(
                (self._sorted, np.fromiter(self._recent, dtype=np.uint64, count=count))
            )
            values = np.concatenate(
                (self._values, np.fromiter(self._recent.values(), dtype=np.int64, count=count))
            )
            order = np.argsort(keys, kind="stable")
            self._sorted, self._values = keys[order], values[order]
            self._recent = {}
        return value


def _position(values: np.ndarray, digest: int) -> int | None:
    """Where ``digest`` is in the sorted ``values``, if it is there."""
    if not len(values):
        return None
    key = np.uint64(digest)
    at = int(values.searchsorted(key))
    return at if at < len(values) and values[at] == key else None


def _time_to_fold(recent: int, folded: int) -> bool:
    """Whether the recent entries are enough to sort into the arrays: at most an eighth
    of all, so an insert costs amortised O(log n)."""
    return recent > max(_RECENT_MIN, folded >> 3)


def digest64(data: bytes) -> int:
    """A 64-bit digest (blake2b) as an int: what the filters keep of a row to tell it
    from others. Two of a million rows share one about once in 37 million runs."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")
