"""The review queue: what waits for a reviewer, who sees what next, and recording
what they decided.

A row enters the queue when it is ``review_pending``: sampled from a run's accepted
rows (``sample.py``), or sent to review by a filter (a borderline score, a PII kind
set to review). ``enroll`` queues them and picks, per cell, the ``double_review``
share that two reviewers see. ``next_item`` hands a reviewer the next row they have
not reviewed, from the cell with the least review done so far, so every cell's
numbers fill in together. ``decide`` records a verdict (``store.reviews.add``
moves the row's status once it has its reviews).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from synth.config import Config, ReviewSettings
from synth.plan import plan_cells
from synth.review import ReviewError
from synth.review.sample import rank_key, round_half_up
from synth.store import NewReview, Store
from synth.store.rows import UnqueuedRow

Action = Literal["approve", "reject", "edit"]
ORIGINS = ("web", "terminal", "label-studio", "argilla")


def enroll(store: Store, settings: ReviewSettings) -> int:
    """Queue every ``review_pending`` row not queued yet; returns how many.

    In each cell, ``double_review`` of all its queued rows (rounded half up) need two
    reviewers; which ones is decided by a hash of ``review.seed`` and the row id, so
    the choice is the same whatever order rows arrive in.
    """
    new = store.reviews.unqueued()
    if not new:
        return 0
    queued = store.reviews.queued_per_cell()
    by_cell: dict[tuple[str, str], list[UnqueuedRow]] = defaultdict(list)
    for r in new:
        by_cell[(r["slice"], r["label"])].append(r)
    items: list[tuple[str, str, int]] = []
    for cell, rows in sorted(by_cell.items()):
        total, doubles = queued.get(cell, (0, 0))
        want = round_half_up(settings.double_review * (total + len(rows))) - doubles
        ranked = sorted(rows, key=lambda r: rank_key(settings.seed, r["id"]))
        double = {r["id"] for r in ranked[: max(0, want)]}
        for r in rows:
            why = "filter" if r["outcome"] == "review" else "sampled"
            items.append((r["id"], why, 2 if r["id"] in double else 1))
    store.reviews.enqueue(items)
    return len(items)


@dataclass(frozen=True)
class CellProgress:
    """A cell's review so far: ``done`` of ``items`` queued rows have every review
    they need."""

    slice: str
    label: str
    items: int
    done: int

    @property
    def cell(self) -> str:
        return f"{self.slice}/{self.label}"

    @property
    def share(self) -> float:
        return self.done / self.items if self.items else 1.0


def progress(queue: Sequence[Mapping[str, Any]]) -> list[CellProgress]:
    """Per cell, how many queued rows are fully reviewed (from ``store.reviews.queue``)."""
    items: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for q in queue:
        counts = items[(q["slice"], q["label"])]
        counts[0] += 1
        counts[1] += len(q["reviewers"]) >= q["reviews_needed"]
    return [CellProgress(s, lab, n, d) for (s, lab), (n, d) in sorted(items.items())]


def next_item(
    store: Store, settings: ReviewSettings, reviewer: str, skip: Sequence[str] = ()
) -> str | None:
    """The id of the next row for ``reviewer``, or None when nothing is left for them.

    A row is open to a reviewer while it has fewer reviews than it needs and they
    have not reviewed it. Among open rows, the cell with the smallest share of its
    rows done comes first, then queue order; ``skip`` leaves rows out (skipped ones).
    """
    enroll(store, settings)
    queue = store.reviews.queue()
    done = {(p.slice, p.label): p.share for p in progress(queue)}
    open_rows = [
        (done[(q["slice"], q["label"])], i, q["example_id"])
        for i, q in enumerate(queue)
        if len(q["reviewers"]) < q["reviews_needed"]
        and reviewer not in q["reviewers"]
        and q["example_id"] not in skip
    ]
    return min(open_rows)[2] if open_rows else None


def item_view(store: Store, example_id: str) -> dict[str, Any]:
    """Everything a reviewer sees of one row: the row, the seeds it was made from,
    its template, every filter decision, the judge's scores and rationales (empty
    when no judge graded it), earlier edits and reviews, and why it is queued."""
    rows = store.examples.by_id([example_id])
    if not rows:
        raise ReviewError(example_id, "no such example")
    example = rows[0]
    entry = next((q for q in store.reviews.queue() if q["example_id"] == example_id), None)
    return {
        "example": example,
        "seeds": store.examples.by_id(example["parent_ids"]),
        "decisions": store.reports.decisions_for(example_id),
        "judge": store.reports.judge_scores_for(example_id),
        "edits": store.examples.edits(example_id),
        "reviews": store.reviews.all(example_id),
        "queue": entry,
    }


def decide(
    store: Store,
    config: Config,
    example_id: str,
    reviewer: str,
    action: Action,
    *,
    reason: str | None = None,
    note: str | None = None,
    text: str | None = None,
    origin: str = "web",
) -> bool:
    """Record one reviewer's decision on a queued row; False if they had already
    reviewed it (nothing changes then).

    ``approve`` keeps the row; ``reject`` needs a ``reason`` from ``review.reasons``;
    ``edit`` replaces the row's text field with ``text`` and approves it (the row
    becomes ``source = edited``, the original kept in ``edits``). A held row approved
    into a cell already at its target is stored as ``surplus`` (see
    ``store.reviews.add``).
    """
    review = build_review(config, store, example_id, reviewer, action, reason, note, text, origin)
    added, _ = store.reviews.add([review], quota_targets(config, store))
    return added == 1


def quota_targets(config: Config, store: Store) -> dict[tuple[str, str], int]:
    """(slice, label) -> target: what an approval may fill a cell up to, no further."""
    return {
        (p.cell.slice, p.cell.label): p.target
        for p in plan_cells(config, store.examples.cell_counts())
    }


def build_review(
    config: Config,
    store: Store,
    example_id: str,
    reviewer: str,
    action: str,
    reason: str | None,
    note: str | None,
    text: str | None,
    origin: str,
    where: str | None = None,
) -> NewReview:
    """Check a decision and turn it into a ``NewReview``; errors name ``where`` (the
    row id by default)."""
    where = where or example_id
    reviewer = reviewer.strip()
    if not reviewer:
        raise ReviewError(where, "a review needs the reviewer's name")
    if origin not in ORIGINS:
        raise ReviewError(where, f"origin {origin!r} is not one of {', '.join(ORIGINS)}")
    note = (note or "").strip() or None
    if action == "approve":
        return NewReview(example_id, reviewer, "approve", origin, note=note)
    if action == "reject":
        reasons = config.review.reasons
        if reason not in reasons:
            listed = ", ".join(reasons)
            raise ReviewError(where, f"reject reason {reason!r} is not in review.reasons: {listed}")
        return NewReview(example_id, reviewer, "reject", origin, reason=reason, note=note)
    if action == "edit":
        if not (text or "").strip():
            raise ReviewError(where, "an edit needs the new text")
        rows = store.examples.by_id([example_id])
        if not rows:
            raise ReviewError(where, "no such example")
        text = (text or "").strip()
        data = {**rows[0]["data"], config.data_schema.text: text}
        if data == rows[0]["data"]:  # saved unchanged: a plain approval
            return NewReview(example_id, reviewer, "approve", origin, note=note)
        _check_edit(config, rows[0], data, text, where)
        return NewReview(
            example_id, reviewer, "approve", origin, note=note, edited_data=data, edited_text=text
        )
    raise ReviewError(where, f"unknown action {action!r} (approve, reject or edit)")


def _check_edit(
    config: Config, row: Mapping[str, Any], data: dict[str, Any], text: str, where: str
) -> None:
    """An edited row goes into the dataset as it is: it must still pass the chain's
    checks that need no history (the schema, and PII), or the edit is refused with
    the filter's reason. Dedup and the judge are not asked again: a person's
    rewording is the point of an edit."""
    from synth.filters import build_chain
    from synth.filters.pii import PiiParams
    from synth.filters.schema import SchemaParams
    from synth.records import Candidate, CellKey, Verdict

    specs = [f for f in config.filters if isinstance(f, SchemaParams | PiiParams)]
    if not specs:
        return
    # A stored row carries its slice's match values (and a seed its extra columns)
    # beside the schema's fields. The schema judges its own fields only, as when the
    # row was generated or filtered: split by the schema, not by the slice, so a match
    # field the schema also declares stays a field.
    fields = config.data_schema.fields
    candidate = Candidate(
        id=row["id"],
        run_id=row["run_id"] or "",
        cell=CellKey(slice=row["slice"], label=row["label"]),
        text=text,
        data={k: v for k, v in data.items() if k in fields},
        metadata={k: v for k, v in data.items() if k not in fields},
        llm_call_id=row["llm_call_id"] or "",
        index=0,
        template=row["template"] or "",
        template_sha=row["template_sha"] or "",
        model=row["model"] or "",
    )
    [outcome] = build_chain(specs, config.filter_context()).decide([candidate])
    for d in outcome.decisions:
        if d.verdict is not Verdict.KEEP or d.edited_data is not None:
            raise ReviewError(where, f"the edited text fails the {d.filter} filter: {d.reason}")
