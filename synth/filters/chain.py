"""Runs filters in config order; a candidate leaves the chain at its first reject."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from synth.filters.base import Filter
from synth.messages import text_of
from synth.records import Candidate, Decision, Outcome, SeenItem, Verdict


class FilterChain:
    """Cheap filters first: the judge is never paid for a duplicate."""

    def __init__(self, filters: Sequence[Filter], text_field: str) -> None:
        self.filters = list(filters)
        self.text_field = text_field

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.filters]

    def prepare(self, seen: Iterable[SeenItem]) -> None:
        items = list(seen)
        for f in self.filters:
            f.prepare(items)

    def decide(self, batch: Sequence[Candidate]) -> list[Outcome]:
        outcomes = [Outcome(c) for c in batch]
        alive = list(outcomes)
        for f in self.filters:
            if not alive:
                break
            decisions = f.decide([o.candidate for o in alive])
            if len(decisions) != len(alive):
                raise RuntimeError(f"filter {f.name} returned {len(decisions)} decisions")
            for o, d in zip(alive, decisions, strict=True):
                record(o, d, self.text_field)
            alive = [o for o in alive if o.decisions[-1].verdict is not Verdict.REJECT]
        return outcomes

    def admit(self, kept: Sequence[Candidate]) -> None:
        for f in self.filters:
            f.admit(kept)


def record(outcome: Outcome, decision: Decision, text_field: str) -> None:
    """Add a decision to an outcome; a filter's edit (a redaction) is what the
    filters after it see."""
    outcome.decisions.append(decision)
    if decision.edited_data is not None:
        outcome.candidate = outcome.candidate.model_copy(
            update={
                "data": decision.edited_data,
                "text": text_of(decision.edited_data, text_field),
            }
        )
