"""Runs filters in config order; a candidate leaves the chain at its first reject."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from synth.filters.base import Filter
from synth.records import Candidate, Decision, SeenItem, Verdict


@dataclass
class Outcome:
    """What the chain made of one candidate: every decision, and the verdict."""

    candidate: Candidate  # as the last filter saw it (a redacting filter may rewrite it)
    decisions: list[Decision] = field(default_factory=list)
    original: Candidate | None = None  # as generated, when a filter rewrote it

    def __post_init__(self) -> None:
        if self.original is None:
            self.original = self.candidate

    @property
    def verdict(self) -> Verdict:
        verdicts = {d.verdict for d in self.decisions}
        if Verdict.REJECT in verdicts:
            return Verdict.REJECT
        if Verdict.REVIEW in verdicts:
            return Verdict.REVIEW
        return Verdict.KEEP

    @property
    def rejected_by(self) -> str | None:
        return next((d.filter for d in self.decisions if d.verdict is Verdict.REJECT), None)

    @property
    def edits(self) -> list[Decision]:
        """The decisions that rewrote the candidate, in order."""
        return [d for d in self.decisions if d.edited_data is not None]


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
                o.decisions.append(d)
                if d.edited_data is not None:
                    o.candidate = o.candidate.model_copy(
                        update={
                            "data": d.edited_data,
                            "text": str(d.edited_data.get(self.text_field, "")),
                        }
                    )
            alive = [o for o in alive if o.decisions[-1].verdict is not Verdict.REJECT]
        return outcomes

    def admit(self, kept: Sequence[Candidate]) -> None:
        for f in self.filters:
            f.admit(kept)
