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

    def _key(self, text: str, cell: object) -> tuple[str, str]:
        scope = str(cell) if self.params.scope == "cell" else ""
        return scope, sha256_text(normalize_text(text))

    def prepare(self, seen: Iterable[SeenItem]) -> None:
        for item in seen:
            self._seen.setdefault(self._key(item.text, item.cell), item.id)

    def decide(self, batch: Sequence[Candidate]) -> list[Decision]:
        in_batch: dict[tuple[str, str], str] = {}
        out = []
        for c in batch:
            key = self._key(c.text, c.cell)
            first = self._seen.get(key) or in_batch.get(key)
            if first is not None:
                out.append(self.reject(c, f"exact_dup: same text as {first}", score=1.0))
            else:
                in_batch[key] = c.id
                out.append(self.keep(c, score=0.0))
        return out

    def admit(self, kept: Sequence[Candidate]) -> None:
        for c in kept:
            self._seen.setdefault(self._key(c.text, c.cell), c.id)
