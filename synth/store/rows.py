"""The typed rows the store reads back and the records its writers take.

Reads return plain dicts shaped by a ``TypedDict`` (a row of thousands is cheap, and a
type checker still knows every key) or a frozen dataclass where callers pass the row
on; ``*_json`` columns always arrive decoded, under the name without the suffix.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

from synth.records import Lineage


@dataclass(frozen=True)
class SeedImport:
    added: int
    duplicates: int


class PlannedCall(TypedDict):
    """A call as ``store.calls.plan`` records it before it is sent."""

    request_sha: str
    slice: str | None
    label: str | None
    sample_index: int
    template: str
    template_sha: str
    model: str
    params: dict[str, Any]
    messages: list[dict[str, Any]]
    parent_ids: list[str]


@dataclass(frozen=True)
class CallRow:
    id: str
    run_id: str | None
    request_sha: str
    slice: str | None
    label: str | None
    template: str | None
    template_sha: str | None
    model: str
    params: dict[str, Any]
    messages: list[dict[str, Any]]
    parent_ids: list[str]
    status: str
    response_json: str | None
    attempts: int
    sample_index: int | None
    purpose: str = "generate"  # or "judge", or "respond" (a preference pair's response)


@dataclass(frozen=True)
class RunRow:
    id: str
    status: str
    config_sha: str
    started_at: str
    finished_at: str | None
    stop_reason: str | None
    resumes: int
    kind: str = "generate"  # or "filter": `synth filter` over a user's file


@dataclass(frozen=True)
class Spend:
    calls: int
    attempts: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    # Attempts sent whose replies never came (a kill, a timeout, a dropped connection),
    # at most what they may have been billed for (synth.llm.unanswered); not in the above.
    unanswered_attempts: int = 0
    unanswered_tokens: int = 0
    unanswered_usd: float = 0.0
    # Of prompt_tokens and cost_usd, what the provider's prompt cache served.
    cached_tokens: int = 0
    cached_usd: float = 0.0


@dataclass(frozen=True)
class CellSpend:
    """What a run spent on one cell: its generation calls, and the tokens and cost of
    those and of the judge calls on its candidates."""

    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


@dataclass(frozen=True)
class NewReview:
    """One reviewer's verdict on one queued row, as ``store.reviews.add`` takes it."""

    example_id: str
    reviewer: str
    verdict: str  # approve | reject
    origin: str  # web | terminal | label-studio | argilla
    reason: str | None = None  # a reject's tag
    note: str | None = None
    edited_data: dict[str, Any] | None = None  # the whole row after an edit
    edited_text: str | None = None  # its text field, for the text column


class SeedRow(TypedDict):
    id: str
    slice: str
    label: str
    data: dict[str, Any]
    text: str


class ExampleRow(TypedDict):
    """A stored row with its provenance columns."""

    id: str
    source: str
    slice: str
    label: str
    data: dict[str, Any]
    text: str
    content_sha: str
    status: str
    outcome: str | None
    run_id: str | None
    llm_call_id: str | None
    template: str | None
    template_sha: str | None
    model: str | None
    parent_ids: list[str]
    origin: str | None
    created_at: str
    lineage: Lineage


class FiledRow(TypedDict):
    """A stored row of a user's file (``synth filter``), as the next run over the file
    reads it back: what the chain made of it, and why when it was not kept."""

    id: str
    data: dict[str, Any]
    status: str
    outcome: str | None  # the chain's verdict: keep | reject | review
    rejected_by: str | None
    origin: str | None
    run_id: str | None
    why: list[tuple[str, str, str]]  # (filter, verdict, reason) of each reject or review


class DatasetRow(TypedDict):
    """A row of the dataset as it stands (real, or synthetic and counted)."""

    id: str
    source: str
    slice: str
    label: str
    data: dict[str, Any]
    status: str
    run_id: str | None
    model: str | None
    template: str | None
    template_sha: str | None
    parent_ids: list[str]
    origin: str | None
    llm_call_id: str | None
    content_sha: str
    lineage: Lineage
    text: NotRequired[str]  # set by whoever knows the schema's text field


class DecisionRow(TypedDict):
    filter: str
    filter_version: str
    verdict: str
    score: float | None
    reason: str


class FilterDecision(TypedDict):
    example_id: str
    slice: str
    label: str
    verdict: str
    score: float | None
    reason: str
    filter_version: str


class JudgeScoreRow(TypedDict):
    criterion: str
    score: float | None
    rationale: str
    judge_model: str
    sample: int
    rubric: str
    rubric_sha: str
    llm_call_id: str | None


class JudgeScore(JudgeScoreRow):
    """One judge score row as the runner hands it to the store."""

    example_id: str
    run_id: str


class ReviewNote(TypedDict):
    reviewer: str
    verdict: str
    note: str | None
    created_at: str


class ListedRow(TypedDict):
    """A row as ``synth rows`` lists it: where it stands and, when the chain did not
    keep it, the first filter that said why."""

    id: str
    source: str
    slice: str
    label: str
    status: str
    text: str
    why: str | None  # "filter: reason" of the first reject or review decision


@dataclass(frozen=True)
class RowQuery:
    """Which rows ``store.reports.rows`` returns; None or empty matches any."""

    slice: str | None = None
    label: str | None = None
    statuses: tuple[str, ...] = ()
    source: str | None = None
    filter: str | None = None  # a filter that rejected the row or held it for review
    reason: str | None = None  # text in the reason of a reject or review decision
    limit: int | None = None


class ParentRow(TypedDict):
    """A seed a row was made from."""

    id: str
    source: str
    slice: str
    label: str
    text: str
    origin: str | None


class ExampleDetail(TypedDict):
    """One row with everything the store knows about it: ``synth show``."""

    id: str
    source: str
    slice: str
    label: str
    data: dict[str, Any]
    status: str
    outcome: str | None
    rejected_by: str | None
    run_id: str | None
    llm_call_id: str | None
    template: str | None
    template_sha: str | None
    model: str | None  # the model asked for
    served_model: str | None  # the model the server said it served, when it said
    origin: str | None
    created_at: str
    parent_ids: list[str]  # the seeds shown to the model when it wrote the row
    parents: list[ParentRow]  # those of them stored, in the same order
    decisions: list[DecisionRow]
    judge_scores: list[JudgeScoreRow]
    reviews: list[ReviewNote]
    # The preference pair it is in (as prompt, chosen or rejected side), if any.
    pair: dict[str, Any] | None


class FunnelRow(TypedDict):
    slice: str
    label: str
    real: int
    real_excluded: int  # real rows a filter run kept out of the dataset
    generated: int
    rejected: Counter[str]
    accepted: int
    sampled: int
    held: int
    review_rejected: int
    surplus: int
    calls: int  # generation and judge calls, judge_calls of them the judge's
    judge_calls: int
    failed_calls: int  # generation calls
    unusable: Counter[str]  # failed_calls by why (a synth.records.Unusable word)
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


def empty_funnel_row(slice_: str, label: str) -> FunnelRow:
    return {
        "slice": slice_,
        "label": label,
        "real": 0,
        "real_excluded": 0,
        "generated": 0,
        "rejected": Counter(),
        "accepted": 0,
        "sampled": 0,
        "held": 0,
        "review_rejected": 0,
        "surplus": 0,
        "calls": 0,
        "judge_calls": 0,
        "failed_calls": 0,
        "unusable": Counter(),
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost_usd": 0.0,
    }


class JudgedRow(TypedDict):
    id: str
    slice: str
    label: str
    verdict: str
    score: float | None
    reason: str
    human: str | None
    criteria: dict[str, float]


class TemplateUse(TypedDict):
    name: str
    sha: str
    calls: int


class BatchJob(TypedDict):
    id: str
    run_id: str | None
    input_file_id: str
    output_file_id: str | None
    error_file_id: str | None
    status: str
    call_ids: list[str]
    request_counts: dict[str, int] | None
    created_at: str
    finished_at: str | None


class QueueItem(TypedDict):
    example_id: str
    slice: str
    label: str
    reason: str
    reviews_needed: int
    status: str
    reviewers: list[str]


class UnqueuedRow(TypedDict):
    id: str
    slice: str
    label: str
    outcome: str | None


class ReviewRow(TypedDict):
    id: int
    example_id: str
    slice: str
    label: str
    reviewer: str
    verdict: str
    reason: str | None
    note: str | None
    origin: str | None
    edited_data: dict[str, Any] | None
    created_at: str


class ReviewedRow(TypedDict):
    """A row a human was asked to review or did review, with its latest review."""

    example_id: str
    slice: str
    label: str
    status: str
    outcome: str | None
    reviewer: str | None
    verdict: str | None
    edited: int | None


class EditRow(TypedDict):
    editor: str
    before: dict[str, Any]
    after: dict[str, Any]
    created_at: str


class VersionItem(TypedDict):
    """A row of a frozen version as it was frozen (``lineage`` as ``Lineage.as_dict``)."""

    example_id: str
    split: str
    source: str
    slice: str
    label: str
    status: str
    data: dict[str, Any]
    text: str
    content_sha: str
    lineage: dict[str, Any]


class FrozenItem(TypedDict):
    version: str
    example_id: str
    source: str
    slice: str
    label: str
    status: str
    text: str
    content_sha: str
    lineage: dict[str, Any]


class VersionRow(TypedDict):
    name: str
    sha: str
    created_at: str
    config_sha: str
    rows: int
    manifest: dict[str, Any]


class JudgeSummary(TypedDict):
    decisions: dict[str, dict[str, int]]  # filter -> reason slug -> rows
    criteria: dict[str, dict[str, float]]  # criterion -> {"mean", "scores"}
    calls: int
    cost_usd: float
    invalid_calls: int
    unusable: dict[str, int]  # invalid_calls by why (a synth.records.Unusable word)
