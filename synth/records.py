"""The records that flow between stages: seeds -> candidates -> decisions.

Records are frozen: a stage maps records to new records and never mutates what it was
given, so what a filter saw is what the store recorded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_SLICE = "default"
# The ``system_fingerprint`` of every reply synth's simulator writes: the store tells
# simulated spend (its token counts at [llm.prices], not a bill) by it.
SIMULATOR_FINGERPRINT = "fp_synth_sim"


class Source(StrEnum):
    REAL = "real"
    SYNTHETIC = "synthetic"
    EDITED = "edited"


class Verdict(StrEnum):
    KEEP = "keep"
    REJECT = "reject"
    REVIEW = "review"


class Status(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    REVIEW_PENDING = "review_pending"
    APPROVED = "approved"
    REVIEW_REJECTED = "review_rejected"
    # Kept by every filter, but its cell had reached its quota by the time it was
    # decided: stored (it was paid for) and not part of the dataset.
    SURPLUS = "surplus"
    # Another response to an accepted row's prompt, judged to make a preference pair:
    # never part of the dataset, a quota or the filters' indexes.
    ALTERNATIVE = "alternative"


class Unusable(StrEnum):
    """Why a call brought nothing usable: stored on the call (``llm_calls.reason``)
    beside its free-text ``error``, so reports count failures by a word that does not
    change when a message is reworded."""

    CUT_OFF = "cut_off"  # finish_reason=length at max_tokens, nothing whole before the cut
    CONTEXT_FULL = "context_full"  # the prompt, or prompt + reply, filled the context
    UNPARSEABLE = "unparseable"  # empty, no JSON, not a chat completion
    TOO_LARGE = "too_large"  # over synth.llm.reply.MAX_REPLY_CHARS
    SCHEMA_MISMATCH = "schema_mismatch"  # JSON, but not the shape or values asked for
    CONTENT_FILTER = "content_filter"  # the provider withheld the reply
    CONNECTION = "connection"  # refused, unreachable, timed out
    HTTP_ERROR = "http_error"  # any other error status
    NOT_SENT = "not_sent"  # the run was stopping
    OVER_BUDGET = "over_budget"  # a budget cap left no room to send it
    FAILED = "failed"  # any other failure (a batch line lost or expired ...)


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CellKey(Frozen):
    slice: str
    label: str

    def __str__(self) -> str:
        return f"{self.slice}/{self.label}"

    # A run looks a cell up in its counts, quotas and spend for every call and row:
    # pydantic's generic equality and hash (private attributes, extras, generic
    # origins) cost several times these, and a cell has none of what they look for.
    def __hash__(self) -> int:
        return hash((self.slice, self.label))

    def __eq__(self, other: object) -> bool:
        if type(other) is not CellKey:
            return super().__eq__(other)
        return self.slice == other.slice and self.label == other.label


class Seed(Frozen):
    """One real row, validated against the schema."""

    text: str
    label: str
    slice: str = DEFAULT_SLICE
    data: dict[str, Any]
    origin: str  # "seeds/tickets.jsonl:17"

    @property
    def content_sha(self) -> str:
        return content_sha(self.data)


class Example(Frozen):
    """A row as the store holds it (real or synthetic)."""

    id: str
    source: Source
    slice: str
    label: str
    text: str
    data: dict[str, Any]
    status: Status
    content_sha: str


class Candidate(Frozen):
    """A generated example on its way through the filter chain."""

    id: str
    run_id: str
    cell: CellKey
    text: str
    data: dict[str, Any]  # the fields the model wrote
    # Fields synth sets, not the model: a slice's match values, so the row matches it.
    metadata: dict[str, Any] = Field(default_factory=dict)
    llm_call_id: str
    index: int  # position in its reply
    template: str
    template_sha: str
    model: str
    parent_ids: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return self.cell.label

    @property
    def row(self) -> dict[str, Any]:
        """The example as stored and exported."""
        return {**self.data, **self.metadata}

    @property
    def content_sha(self) -> str:
        return content_sha(self.row)


class Decision(Frozen):
    """One filter's verdict on one candidate. Every decision is stored, keeps too."""

    example_id: str
    filter: str
    filter_version: str
    verdict: Verdict
    score: float | None = None
    # A stable slug, then detail after a colon: "exact_dup: same text as ex_3f2a".
    reason: str = ""
    # A filter that rewrites rather than drops (PII redaction) returns the new data
    # here; later filters see the rewritten candidate and the store keeps the original
    # out of exports.
    edited_data: dict[str, Any] | None = None


@dataclass
class Outcome:
    """What the filter chain made of one candidate: every decision, and the verdict."""

    candidate: Candidate  # as the last filter saw it (a redacting filter may rewrite it)
    decisions: list[Decision] = field(default_factory=list)
    original: Candidate | None = None  # as generated, when a filter rewrote it

    def __post_init__(self) -> None:
        if self.original is None:
            self.original = self.candidate

    @property
    def verdict(self) -> Verdict:
        # No set of verdicts: an enum member hashes in Python, and this is read for
        # every decision of every row.
        verdict = Verdict.KEEP
        for d in self.decisions:
            if d.verdict == Verdict.REJECT:
                return Verdict.REJECT
            if d.verdict == Verdict.REVIEW:
                verdict = Verdict.REVIEW
        return verdict

    @property
    def rejected_by(self) -> str | None:
        return next((d.filter for d in self.decisions if d.verdict is Verdict.REJECT), None)

    @property
    def edits(self) -> list[Decision]:
        """The decisions that rewrote the candidate, in order."""
        return [d for d in self.decisions if d.edited_data is not None]


@dataclass(frozen=True)
class Lineage:
    """Where a row came from: a real row's file and line, or the run, model, template,
    call and seeds that made a synthetic one. Exports, frozen versions and the audit
    all say it the same way."""

    source: str  # real | synthetic | edited
    # "file:line" of a row read from a file: a seed, or any row `synth filter` stored
    origin: str | None = None
    run_id: str | None = None
    model: str | None = None
    template: str | None = None
    template_sha: str | None = None
    llm_call_id: str | None = None
    parent_ids: tuple[str, ...] = ()

    @classmethod
    def of(cls, row: dict[str, Any]) -> Lineage:
        """From a stored row's columns (``parent_ids`` decoded)."""
        if row["source"] == Source.REAL:
            return cls(source=row["source"], origin=row["origin"])
        return cls(
            source=row["source"],
            origin=row.get("origin"),
            run_id=row["run_id"],
            model=row["model"],
            template=row["template"],
            template_sha=row["template_sha"],
            llm_call_id=row["llm_call_id"],
            parent_ids=tuple(row["parent_ids"] or ()),
        )

    def as_dict(self) -> dict[str, Any]:
        """The fields that apply to the row's source, as exports and versions write them."""
        if self.source == Source.REAL:
            return {"origin": self.origin}
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "model": self.model,
            "template": self.template,
            "template_sha": self.template_sha,
            "llm_call_id": self.llm_call_id,
            "parent_ids": list(self.parent_ids),
        }
        if self.origin is not None:
            # A synthetic row made elsewhere and brought in by `synth filter`: the
            # file and line are all there is to say about where it came from.
            out["origin"] = self.origin
        return out


class SeenItem(Frozen):
    """Something a new candidate is compared against: a seed or a kept synthetic row."""

    id: str
    text: str
    cell: CellKey
    source: Source


class Usage(Frozen):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class CellPlan(Frozen):
    """A cell's target and what already fills it."""

    cell: CellKey
    target: int
    real: int
    synthetic: int
    description: str = ""
    match: dict[str, Any] = Field(default_factory=dict)

    @property
    def deficit(self) -> int:
        return max(0, self.target - self.real - self.synthetic)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# One encoder for every call: ``json.dumps`` with any option builds a new one each time.
_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def canonical_json(value: Any) -> str:
    return _CANONICAL.encode(value)


def content_sha(data: dict[str, Any]) -> str:
    """The hash that identifies a row's content, independent of key order."""
    return sha256_text(canonical_json(data))
