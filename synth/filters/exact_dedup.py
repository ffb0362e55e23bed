"""Exact dedup: the normalised text against seeds, everything kept, and the batch."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from synth.filters.base import Filter, FilterContext, FilterParams
from synth.filters.digests import DigestMap, digest64
from synth.records import Candidate, Decision, SeenItem
from synth.text import normalize_text


class ExactDedupParams(FilterParams):
    """scope: "global" rejects a text seen anywhere (the same text under two labels is
    a contradiction, not a new example); "cell" only within the same slice x label."""

    kind: Literal["exact_dedup"] = "exact_dedup"
    scope: Literal["global", "cell"] = "global"


class ExactDedupFilter(Filter):
    name = "exact_dedup"
    version = "1"

    def __init__(self, params: ExactDedupParams, ctx: FilterContext) -> None:
        self.params = params
        # Key -> the first id with it, as a number into ``_ids`` (the id strings are
        # the ones the other filters hold).
        self._seen = DigestMap()
        self._ids: list[str] = []

    def key(self, text: str, cell: object) -> int:
        """What two rows share when one is an exact copy of the other."""
        return self.text_key(text, cell, self.params.scope)

    @staticmethod
    def text_key(text: str, cell: object, scope: str) -> int:
        """A 64-bit digest of the normalised text (and the cell, scoped by cell).

        A digest is 8 bytes in the filter's map, a (scope, hex digest) pair ~170 in a
        dict. Two different texts share a key once in ~10^19 pairs:
        at 1,000,000 rows, a false duplicate in one run of 40 million."""
        scope_key = str(cell) if scope == "cell" else ""
        return digest64(f"{scope_key}\x00{normalize_text(text)}".encode("utf-8", "surrogatepass"))

    def prepare(self, seen: Iterable[SeenItem]) -> None:
        for item in seen:
            self._remember(self.key(item.text, item.cell), item.id)

    def _remember(self, key: int, id_: str) -> None:
        if self._seen.setdefault(key, len(self._ids)) == len(self._ids):
            self._ids.append(id_)

    def _first(self, key: int) -> str | None:
        at = self._seen.get(key)
        return None if at is None else self._ids[at]

    def decide(self, batch: Sequence[Candidate]) -> list[Decision]:
        return self.decide_keyed(batch, [self.key(c.text, c.cell) for c in batch])

    def decide_keyed(
        self, batch: Sequence[Candidate], keys: Sequence[int | None]
    ) -> list[Decision]:
        """``decide`` with each candidate's key computed elsewhere (the Ray backend's
        groupby); None for a key no other row or stored item has."""
        in_batch: dict[int, str] = {}
        out = []
        for c, key in zip(batch, keys, strict=True):
            first = None if key is None else self._first(key) or in_batch.get(key)
            if first is not None:
                out.append(self.reject(c, f"exact_dup: same text as {first}", score=1.0))
            else:
                if key is not None:
                    in_batch[key] = c.id
                out.append(self.keep(c, score=0.0))
        return out

    def admit(self, kept: Sequence[Candidate]) -> None:
        self.admit_keyed([c.id for c in kept], [self.key(c.text, c.cell) for c in kept])

    def admit_keyed(self, ids: Sequence[str], keys: Sequence[int | None]) -> None:
        for id_, key in zip(ids, keys, strict=True):
            if key is not None:
                self._remember(key, id_)

    @property
    def seen_keys(self) -> Iterable[int]:
        """The keys of the stored items."""
        return self._seen
