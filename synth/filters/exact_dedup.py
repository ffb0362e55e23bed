"""Exact dedup: the normalised text against seeds, everything kept, and the batch."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from synth.filters.base import Filter, FilterContext, FilterParams
from synth.records import Candidate, Decision, SeenItem, sha256_text
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
        self._seen: dict[tuple[str, str], str] = {}  # (scope key, text hash) -> first id

    def key(self, text: str, cell: object) -> tuple[str, str]:
        """What two rows share when one is an exact copy of the other."""
        return self.text_key(text, cell, self.params.scope)

    @staticmethod
    def text_key(text: str, cell: object, scope: str) -> tuple[str, str]:
        return str(cell) if scope == "cell" else "", sha256_text(normalize_text(text))

    def prepare(self, seen: Iterable[SeenItem]) -> None:
        for item in seen:
            self._seen.setdefault(self.key(item.text, item.cell), item.id)

    def decide(self, batch: Sequence[Candidate]) -> list[Decision]:
        return self.decide_keyed(batch, [self.key(c.text, c.cell) for c in batch])

    def decide_keyed(
        self, batch: Sequence[Candidate], keys: Sequence[tuple[str, str] | None]
    ) -> list[Decision]:
        """``decide`` with each candidate's key computed elsewhere (the Ray backend's
        groupby); None for a key no other row or stored item has."""
        in_batch: dict[tuple[str, str], str] = {}
        out = []
        for c, key in zip(batch, keys, strict=True):
            first = None if key is None else self._seen.get(key) or in_batch.get(key)
            if first is not None:
                out.append(self.reject(c, f"exact_dup: same text as {first}", score=1.0))
            else:
                if key is not None:
                    in_batch[key] = c.id
                out.append(self.keep(c, score=0.0))
        return out

    def admit(self, kept: Sequence[Candidate]) -> None:
        self.admit_keyed([c.id for c in kept], [self.key(c.text, c.cell) for c in kept])

    def admit_keyed(self, ids: Sequence[str], keys: Sequence[tuple[str, str] | None]) -> None:
        for id_, key in zip(ids, keys, strict=True):
            if key is not None:
                self._seen.setdefault(key, id_)

    @property
    def seen_keys(self) -> dict[tuple[str, str], str]:
        """Key -> the first stored item with it."""
        return self._seen
