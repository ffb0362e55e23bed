"""An LSH index of MinHash signatures by band: rows that agree on every value of some
band are proposed as a pair, as in datasketch's ``MinHashLSH``, held in numpy arrays.

Why not ``MinHashLSH``: it keeps a Python set per band bucket and a bytes key per band
per row, about 13 KB per indexed row with 42 bands, and spends ~80 us on an insert
(byte-swapping each band). A cell of 100,000 kept rows then holds 1.3 GB of index, and
re-signing it when its template boilerplate moves takes seconds. Here each row costs
8 bytes per band (a 32-bit key, a 32-bit slot) in a sorted array; new rows go into a
second, small sorted array that is merged into the first once it holds 65,536 keys
(an insert copies at most that, a merge happens once per ~1,500 rows), and a removed
row is a cleared flag until the dead outnumber the living.

A query may also ask for a floor on the Jaccard that the two signatures estimate (the
share of their values that agree, kept as their low 8 bits: one byte per value per
row; two different values agree there once in 256, which lifts a Jaccard estimate by
under 0.004). Rows that share a band by chance, far below the Jaccard the bands are
tuned for, then never reach the caller's exact check: in a cell of 100,000 similar
rows they are most of what a band proposes, and their number grows with the cell.

A band's key is its values and the band's number hashed to 32 bits. Two bands that
collide only propose one more pair (at 1,000,000 rows, about one per query, which
the floor then drops); every proposal is checked exactly by the caller, so a
collision can cost time, never a wrong decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX = np.uint64(0xBF58476D1CE4E5B9)
_MERGE_AT = 1 << 16  # band keys in the small array before it is merged into the big one


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit value per band, ``(len(signatures), bands)``: the band's ``rows``
    values packed exactly when they fit in 64 bits, else combined by a polynomial
    hash."""
    sigs = np.atleast_2d(signatures)[:, : bands * rows]
    values = sigs.reshape(len(sigs), bands, rows).astype(np.uint64)
    multiplier = np.uint64(1 << 32) if rows <= 2 else _GOLDEN
    keys = values[:, :, 0].copy()
    with np.errstate(over="ignore"):
        for j in range(1, rows):
            keys *= multiplier
            keys ^= values[:, :, j]
    return keys


def low_bits(signatures: np.ndarray, width: int) -> np.ndarray:
    """The low 8 bits of the first ``width`` values of each signature: what the floor
    compares."""
    low: np.ndarray = np.asarray(signatures)[..., :width].astype(np.uint8)
    return low


def agreeing(low: np.ndarray, other: np.ndarray, floor: float) -> np.ndarray:
    """Whether each row of ``low`` agrees with ``other`` (one row, or as many) in at
    least ``floor`` of its values (:func:`low_bits`): the floor every path applies."""
    agree: np.ndarray = np.count_nonzero(low == other, axis=-1) >= floor * low.shape[-1]
    return agree


class BandIndex:
    """Ids indexed by the band keys of their MinHash signatures."""

    def __init__(self, bands: int, rows: int) -> None:
        self.bands = bands
        self.rows = rows
        self._salt = (np.arange(bands, dtype=np.uint64) + np.uint64(1)) * _MIX
        # Two sorted levels of (key, slot): the big one, and the small one new rows join.
        self._keys = np.empty(0, dtype=np.uint32)
        self._slots = np.empty(0, dtype=np.int32)
        self._new_keys = np.empty(0, dtype=np.uint32)
        self._new_slots = np.empty(0, dtype=np.int32)
        self._sigs = np.empty((0, bands * rows), dtype=np.uint8)  # slot -> low bits
        self._ids: list[str | None] = []  # slot -> id; None once removed
        self._slot: dict[str, int] = {}
        self._dead = 0

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, id_: str) -> bool:
        return id_ in self._slot

    def add(self, ids: Sequence[str], signatures: np.ndarray) -> None:
        """Index rows (an id already present is re-indexed with its new signature)."""
        if not len(ids):
            return
        self.remove([i for i in ids if i in self._slot])
        keys = self._mixed(band_keys(signatures, self.bands, self.rows))
        start = len(self._ids)
        for k, id_ in enumerate(ids):
            self._slot[id_] = start + k
        self._ids.extend(ids)
        self._keep_signatures(start, signatures)
        slots = np.repeat(np.arange(start, start + len(ids), dtype=np.int32), self.bands)
        self._new_keys, self._new_slots = _merged(
            self._new_keys, self._new_slots, keys.ravel(), slots
        )
        if len(self._new_keys) > _MERGE_AT:
            self._merge()

    def remove(self, ids: Iterable[str]) -> None:
        for id_ in ids:
            slot = self._slot.pop(id_, None)
            if slot is not None:
                self._ids[slot] = None
                self._dead += 1
        if self._dead > max(1024, len(self._slot)):
            self._compact()

    def query(self, signature: np.ndarray, floor: float = 0.0) -> list[str]:
        """Ids that share at least one band with ``signature``, in slot order; with a
        ``floor``, only those whose signature agrees with it in at least that share of
        its values (the MinHash estimate of their Jaccard)."""
        keys = self._mixed(band_keys(signature, self.bands, self.rows))[0]
        parts = []
        for sorted_keys, slots in ((self._keys, self._slots), (self._new_keys, self._new_slots)):
            if not len(sorted_keys):
                continue
            lo = np.searchsorted(sorted_keys, keys, "left")
            sizes = np.searchsorted(sorted_keys, keys, "right") - lo
            total = int(sizes.sum())
            if total:
                # Every [lo, lo + size) range at once: each position's offset in its run.
                runs = np.repeat(lo - (np.cumsum(sizes) - sizes), sizes)
                parts.append(slots[runs + np.arange(total)])
        if not parts:
            return []
        found = np.concatenate(parts) if len(parts) > 1 else parts[0]
        ids = self._ids
        slots = np.unique(found)
        if floor > 0.0:
            mine = low_bits(signature, self.bands * self.rows)
            slots = slots[agreeing(self._sigs[slots], mine, floor)]
        return [i for i in (ids[s] for s in slots.tolist()) if i is not None]

    def _keep_signatures(self, start: int, signatures: np.ndarray) -> None:
        sigs = low_bits(np.atleast_2d(signatures), self.bands * self.rows)
        end = start + len(sigs)
        if end > len(self._sigs):  # grown by half again: amortised copies
            grown = np.empty((max(end, len(self._sigs) * 3 // 2, 1024), sigs.shape[1]), np.uint8)
            grown[: len(self._sigs)] = self._sigs
            self._sigs = grown
        self._sigs[start:end] = sigs

    def _mixed(self, keys: np.ndarray) -> np.ndarray:
        """Band values made distinct per band and hashed to 32 bits (the high half of a
        multiplicative hash), so one sorted array holds every band."""
        with np.errstate(over="ignore"):
            mixed: np.ndarray = ((keys ^ self._salt) * _GOLDEN >> np.uint64(32)).astype(np.uint32)
        return mixed

    def _merge(self) -> None:
        self._keys, self._slots = _merged(self._keys, self._slots, self._new_keys, self._new_slots)
        self._new_keys = np.empty(0, dtype=np.uint32)
        self._new_slots = np.empty(0, dtype=np.int32)

    def _compact(self) -> None:
        """Drop removed rows' keys and renumber the living rows' slots."""
        self._merge()
        alive = np.array([i is not None for i in self._ids], dtype=bool)
        renumber = np.cumsum(alive, dtype=np.int64) - 1
        keep = alive[self._slots]
        self._keys = self._keys[keep]
        self._slots = renumber[self._slots[keep]].astype(np.int32)
        self._sigs = self._sigs[: len(alive)][alive]
        self._ids = [i for i in self._ids if i is not None]
        self._slot = {id_: s for s, id_ in enumerate(self._ids) if id_ is not None}
        self._dead = 0


def _merged(
    keys: np.ndarray, slots: np.ndarray, new_keys: np.ndarray, new_slots: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (key, slot) arrays with unsorted new pairs merged in."""
    order = np.argsort(new_keys, kind="stable")
    new_keys, new_slots = new_keys[order], new_slots[order]
    at = np.searchsorted(keys, new_keys, "right")
    return np.insert(keys, at, new_keys), np.insert(slots, at, new_slots)
