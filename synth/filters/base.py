"""The filter contract.

A filter looks at a batch of candidates and returns one decision per candidate:
keep, reject or review, a score where it has one, and a reason slug. Stateful filters
(dedup, diversity) build their index in ``prepare`` from what is already kept (seeds
and kept synthetic rows, read back from the store) and grow it in ``admit`` with what
the whole chain kept, so a resumed run decides exactly as a continuous one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from synth.filters.calibration import FilterCalibration
from synth.records import Candidate, Decision, SeenItem, Verdict


class FilterParams(BaseModel):
    """Settings of one filter, one ``[[filters]]`` table in config.toml.

    Subclasses narrow ``kind`` to ``Literal["<name>"]`` and add their own settings.
    """

    # strict, as config.toml's other sections: no bool where a number is meant. A
    # tuple field says strict=False, since TOML gives it a list.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    kind: str


@dataclass(frozen=True)
class FilterContext:
    """What a filter may need from the project besides its own settings."""

    root: Path  # the folder config.toml is in; relative paths resolve against it
    text_field: str
    label_field: str
    fields: dict[str, Any] = field(default_factory=dict)  # name -> FieldSpec
    labels: tuple[str, ...] = ()
    optional: frozenset[str] = frozenset()  # fields a row may leave out


class Decides:
    """Decisions under a filter's name and version: what every filter, and the judge,
    stores for each candidate."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"

    def keep(
        self,
        candidate: Candidate,
        score: float | None = None,
        reason: str = "",
        edited_data: dict[str, Any] | None = None,
    ) -> Decision:
        """Keep; a filter that rewrites the candidate (redaction) passes the new data."""
        return self._decision(candidate, Verdict.KEEP, score, reason, edited_data)

    def reject(self, candidate: Candidate, reason: str, score: float | None = None) -> Decision:
        return self._decision(candidate, Verdict.REJECT, score, reason)

    def review(self, candidate: Candidate, reason: str, score: float | None = None) -> Decision:
        return self._decision(candidate, Verdict.REVIEW, score, reason)

    def _decision(
        self,
        candidate: Candidate,
        verdict: Verdict,
        score: float | None,
        reason: str,
        edited_data: dict[str, Any] | None = None,
    ) -> Decision:
        return Decision(
            example_id=candidate.id,
            filter=self.name,
            filter_version=self.version,
            verdict=verdict,
            score=score,
            reason=reason,
            edited_data=edited_data,
        )


class Filter(Decides, ABC):
    """One step of the chain. ``name`` and ``version`` go on every decision."""

    def prepare(self, seen: Iterable[SeenItem]) -> None:  # noqa: B027 - optional hook
        """Build state from the seeds and the synthetic rows already kept."""

    @abstractmethod
    def decide(self, batch: Sequence[Candidate]) -> list[Decision]:
        """One decision per candidate, in order. Must also compare within the batch."""

    def admit(self, kept: Sequence[Candidate]) -> None:  # noqa: B027 - optional hook
        """Candidates the whole chain kept: stateful filters add them to their index."""

    def calibration_table(self) -> FilterCalibration | None:
        """The thresholds in use and the seed scores they come from (similarity
        filters); None for a filter without one."""
        return None
