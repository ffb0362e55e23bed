"""What the reviews say: agreement between reviewers, reject shares, flagged cells.

**Agreement.** A row in the double-review share gets two reviews; the first and the
second review of each such row make one pair of verdicts (approve or reject, an edit
counting as approve), and Cohen's kappa over those pairs (``synth/agreement.py``) is
given per cell and overall. Reviewers vary from row to row, so this is kappa between
"first reviewer" and "second reviewer", the usual reading when pairs of reviewers
rotate. Below 0.7 the guidelines (or the reason tags) need another look.

**Flags.** A cell whose reviewers reject more than ``review.max_reject_share`` of its
reviews, once it has at least ``review.flag_min_reviews`` of them, is flagged: many
humans saying no points at the template or the seeds, which more generation would
only repeat. ``synth status`` shows it and ``synth run`` generates nothing for it
until ``synth review ack CELL``, which sets the reviews so far aside: the share is
counted again from the reviews made after it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from synth.agreement import KAPPA_WARN_BELOW, Agreement, cohen_kappa, kappa_by_group
from synth.config import ReviewSettings
from synth.records import CellKey
from synth.review import ReviewError
from synth.review.queue import enroll, progress
from synth.store import Store


@dataclass(frozen=True)
class CellReview:
    """One cell's reviews. ``since_ack`` and ``rejected_since_ack`` count the
    reviews made after the cell's last acknowledgement (all of them if none)."""

    slice: str
    label: str
    queued: int = 0
    done: int = 0
    reviews: int = 0
    approved: int = 0
    rejected: int = 0
    edited: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    agreement: Agreement = field(default_factory=lambda: cohen_kappa([]))
    since_ack: int = 0
    rejected_since_ack: int = 0
    flagged: bool = False

    @property
    def cell(self) -> str:
        return f"{self.slice}/{self.label}"

    @property
    def reject_share(self) -> float | None:
        """Rejected share of the reviews since the last acknowledgement."""
        return self.rejected_since_ack / self.since_ack if self.since_ack else None


@dataclass(frozen=True)
class ReviewStats:
    cells: list[CellReview]
    overall: Agreement
    reviewers: Counter[str]  # reviews per reviewer

    @property
    def flagged(self) -> list[CellReview]:
        return [c for c in self.cells if c.flagged]


def verdict_pairs(reviews: Sequence[Mapping[str, Any]]) -> list[tuple[tuple[str, str], str, str]]:
    """``(cell, first verdict, second verdict)`` for every row with two reviews or
    more, from ``store.reviews.all()`` (which is in the order reviews were made)."""
    by_row: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in reviews:
        by_row[r["example_id"]].append(r)
    return [
        ((rs[0]["slice"], rs[0]["label"]), rs[0]["verdict"], rs[1]["verdict"])
        for rs in by_row.values()
        if len(rs) >= 2
    ]


def review_stats(store: Store, settings: ReviewSettings) -> ReviewStats:
    """Per cell: queue and progress, verdicts, reason tags, kappa, reject share and
    whether the cell is flagged; with kappa over every pair and reviews per reviewer.
    Rows awaiting review are queued first, so the queue counts are complete."""
    enroll(store, settings)
    return _stats(store, settings)


def _stats(store: Store, settings: ReviewSettings) -> ReviewStats:
    reviews = store.reviews.all()
    acks = store.reviews.acks()
    cells: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"reasons": Counter(), "reviews": 0, "approved": 0, "rejected": 0, "edited": 0}
    )
    for p in progress(store.reviews.queue()):
        cells[(p.slice, p.label)].update(queued=p.items, done=p.done)
    since: Counter[tuple[str, str]] = Counter()
    rejected_since: Counter[tuple[str, str]] = Counter()
    for r in reviews:
        key = (r["slice"], r["label"])
        c = cells[key]
        c["reviews"] += 1
        if r["verdict"] == "approve":
            c["approved"] += 1
            c["edited"] += r["edited_data"] is not None
        else:
            c["rejected"] += 1
            c["reasons"][r["reason"] or "untagged"] += 1
        if r["id"] > acks.get(key, 0):
            since[key] += 1
            rejected_since[key] += r["verdict"] == "reject"
    pairs = verdict_pairs(reviews)
    kappas = kappa_by_group(pairs)
    out = []
    for key in sorted(cells):
        n, bad = since[key], rejected_since[key]
        flagged = n >= settings.flag_min_reviews and bad / n > settings.max_reject_share
        out.append(
            CellReview(
                slice=key[0],
                label=key[1],
                **cells[key],
                agreement=kappas.get(key, cohen_kappa([])),
                since_ack=n,
                rejected_since_ack=bad,
                flagged=flagged,
            )
        )
    overall = cohen_kappa([(a, b) for _, a, b in pairs])
    return ReviewStats(out, overall, Counter(r["reviewer"] for r in reviews))


def flagged(store: Store, settings: ReviewSettings) -> list[CellReview]:
    """The flagged cells, read from the store without writing to it."""
    return _stats(store, settings).flagged


def flagged_cells(store: Store, settings: ReviewSettings) -> set[CellKey]:
    """The cells ``synth run`` does not generate for until they are acknowledged."""
    return {CellKey(slice=c.slice, label=c.label) for c in flagged(store, settings)}


def acknowledge(store: Store, cell: str, note: str | None = None) -> int:
    """Acknowledge ``SLICE/LABEL``'s reviews so far, so it generates again; returns
    how many reviews were set aside."""
    slice_, sep, label = cell.partition("/")
    if not sep or not slice_ or not label:
        raise ReviewError(cell, "a cell is named SLICE/LABEL, e.g. default/card_arrival")
    if not any((r["slice"], r["label"]) == (slice_, label) for r in store.reviews.all()):
        raise ReviewError(cell, "no reviews for this cell")
    return store.reviews.ack_cell(slice_, label, note)


def render_stats(stats: ReviewStats, settings: ReviewSettings) -> str:
    """A plain-text table: one line per cell, then overall agreement and flags."""

    def kappa(a: Agreement) -> str:
        if a.n == 0:
            return "-"
        k = "n/a" if a.kappa is None else f"{a.kappa:.2f}"
        return f"{k} ({a.n})" + (" low" if a.low else "")

    header = ["cell", "queued", "done", "reviews", "approved", "edited", "rejected"]
    header += ["reject share", "kappa (pairs)", "reasons"]
    lines = [header]
    for c in stats.cells:
        share = "-" if c.reject_share is None else f"{c.reject_share:.2f}"
        reasons = ", ".join(f"{k} {v}" for k, v in c.reasons.most_common())
        lines.append(
            [
                c.cell + (" FLAGGED" if c.flagged else ""),
                *(str(v) for v in (c.queued, c.done, c.reviews, c.approved, c.edited)),
                str(c.rejected),
                share,
                kappa(c.agreement),
                reasons,
            ]
        )
    widths = [max(len(r[i]) for r in lines) for i in range(len(header))]
    out = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in lines]
    out.append(f"overall kappa (pairs): {kappa(stats.overall)}; warn below {KAPPA_WARN_BELOW}")
    if stats.reviewers:
        out.append("reviews: " + ", ".join(f"{k} {v}" for k, v in stats.reviewers.most_common()))
    out += flag_lines(stats.flagged, settings)
    return "\n".join(out)


def flag_lines(flagged: Sequence[CellReview], settings: ReviewSettings) -> list[str]:
    """What ``synth status`` and ``synth review stats`` say about flagged cells."""
    return [
        f"flagged: {c.cell}: reviewers rejected {c.rejected_since_ack} of {c.since_ack}"
        f" reviews (> {settings.max_reject_share:.0%}); no generation for it until"
        f" `synth review ack {c.cell}`"
        for c in flagged
    ]
