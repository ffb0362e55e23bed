"""``review_items``, ``reviews`` and ``review_acks``: the human review queue.

A row joins the queue once, with why (sampled, or a filter said review) and how many
reviewers it needs; a reviewer's verdict, and any edit, is stored in one transaction
with the row's new status.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from synth.errors import StoreError
from synth.records import canonical_json, sha256_text
from synth.store._part import Part, decode, now
from synth.store.rows import NewReview, QueueItem, ReviewedRow, ReviewRow, UnqueuedRow
from synth.store.schema import COUNTED


class Reviews(Part):
    def unqueued(self) -> list[UnqueuedRow]:
        """Rows awaiting a reviewer (``review_pending``) not yet in the review queue,
        oldest first: sampled rows (outcome keep) and rows a filter sent to review."""
        return self._rows(
            "SELECT e.id, e.slice, e.label, e.outcome FROM examples e"
            " LEFT JOIN review_items q ON q.example_id = e.id"
            " WHERE e.status = 'review_pending' AND q.example_id IS NULL ORDER BY e.rowid"
        )

    def queued_per_cell(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(slice, label) -> (rows queued, of which need two reviewers)."""
        return {
            (r[0], r[1]): (r[2], r[3])
            for r in self.conn.execute(
                "SELECT e.slice, e.label, count(*), sum(q.reviews_needed > 1)"
                " FROM review_items q JOIN examples e ON e.id = q.example_id"
                " GROUP BY e.slice, e.label"
            )
        }

    def enqueue(self, items: Sequence[tuple[str, str, int]]) -> None:
        """Add ``(example_id, reason, reviews_needed)`` to the queue; queued rows stay."""
        ts = now()
        with self._tx() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO review_items (example_id, reason, reviews_needed,"
                " created_at) VALUES (?, ?, ?, ?)",
                [(i, reason, n, ts) for i, reason, n in items],
            )

    def queue(self) -> list[QueueItem]:
        """Every queued row in queue order: cell, why, reviews needed, its status and
        the reviewers who reviewed it (``reviewers``, a list)."""
        return [
            decode(r, "reviewers_json")
            for r in self._rows(
                "SELECT q.example_id, e.slice, e.label, q.reason, q.reviews_needed, e.status,"
                " (SELECT json_group_array(r.reviewer) FROM reviews r"
                "  WHERE r.example_id = q.example_id) AS reviewers_json"
                " FROM review_items q JOIN examples e ON e.id = q.example_id ORDER BY q.rowid"
            )
        ]

    def all(self, example_id: str | None = None) -> list[ReviewRow]:
        """Reviews (all, or one row's) in the order made, with the row's cell;
        ``edited_data`` decoded (None when the reviewer did not edit)."""
        where, params = ("WHERE r.example_id = ?", (example_id,)) if example_id else ("", ())
        return [
            decode(r, "edited_data_json")
            for r in self._rows(
                "SELECT r.id, r.example_id, e.slice, e.label, r.reviewer, r.verdict, r.reason,"
                " r.note, r.origin, r.edited_data_json, r.created_at"
                f" FROM reviews r JOIN examples e ON e.id = r.example_id {where}"
                " ORDER BY r.id",
                params,
            )
        ]

    def reviewed_rows(self) -> list[ReviewedRow]:
        """Rows that a human was asked to review or did review: the row's cell and
        status, and its latest review (verdict None while pending)."""
        return self._rows(
            "SELECT e.id AS example_id, e.slice, e.label, e.status, e.outcome,"
            " r.reviewer, r.verdict, r.edited_data_json IS NOT NULL AS edited"
            " FROM examples e LEFT JOIN reviews r ON r.id = (SELECT max(id) FROM reviews"
            " WHERE example_id = e.id) WHERE e.status IN ('review_pending', 'approved',"
            " 'review_rejected') OR r.id IS NOT NULL ORDER BY e.rowid"
        )

    def add(
        self,
        reviews: Sequence[NewReview],
        targets: Mapping[tuple[str, str], int] | None = None,
    ) -> tuple[int, int]:
        """Store reviews in one transaction: all of them or, on an error, none.

        A reviewer reviews a row once: a second review by the same name is skipped
        (counted as a duplicate, so importing a file twice adds nothing). An edit
        rewrites the row's data (``source = edited``), the data before it kept in
        ``edits`` under ``reviewer:<name>``. Once a row has the reviews it needs it
        is ``approved`` if every reviewer approved, else ``review_rejected``; but a
        generated row held by a filter (not counted yet) whose cell already has its
        ``targets`` quota (slice, label) becomes ``surplus``, as a row the chain kept
        beyond the target does in a run: approval never pushes a cell over its target.
        Returns (added, duplicates).
        """
        added = duplicates = 0
        ts = now()
        with self._tx() as conn:
            for rv in reviews:
                row = conn.execute(
                    "SELECT e.data_json, q.reviews_needed FROM examples e"
                    " JOIN review_items q ON q.example_id = e.id WHERE e.id = ?",
                    (rv.example_id,),
                ).fetchone()
                if row is None:
                    raise StoreError(rv.example_id, "not in the review queue")
                data_json, needed = row
                after = None if rv.edited_data is None else canonical_json(rv.edited_data)
                cur = conn.execute(
                    "INSERT OR IGNORE INTO reviews (example_id, reviewer, verdict,"
                    " edited_data_json, note, reason, origin, created_at)"
                    " VALUES (:example_id, :reviewer, :verdict, :edited_data_json, :note,"
                    " :reason, :origin, :created_at)",
                    {
                        "example_id": rv.example_id,
                        "reviewer": rv.reviewer,
                        "verdict": rv.verdict,
                        "edited_data_json": after,
                        "note": rv.note,
                        "reason": rv.reason,
                        "origin": rv.origin,
                        "created_at": ts,
                    },
                )
                if not cur.rowcount:
                    duplicates += 1
                    continue
                added += 1
                if after is not None and after != data_json:
                    conn.execute(
                        "INSERT INTO edits (example_id, editor, before_json, after_json,"
                        " created_at) VALUES (?, ?, ?, ?, ?)",
                        (rv.example_id, f"reviewer:{rv.reviewer}", data_json, after, ts),
                    )
                    conn.execute(
                        # A real row (a file's row held for review by a filter) stays
                        # real, as an edited seed does: the edit is in `edits`.
                        "UPDATE examples SET data_json = ?, text = ?, content_sha = ?,"
                        " source = CASE WHEN source = 'real' THEN 'real' ELSE 'edited' END,"
                        " updated_at = ? WHERE id = ?",
                        (after, rv.edited_text, sha256_text(after), ts, rv.example_id),
                    )
                verdicts = [
                    v
                    for (v,) in conn.execute(
                        "SELECT verdict FROM reviews WHERE example_id = ?", (rv.example_id,)
                    )
                ]
                if len(verdicts) >= needed:
                    status = "approved" if set(verdicts) == {"approve"} else "review_rejected"
                    if status == "approved" and targets is not None:
                        status = self._approved_or_surplus(conn, rv.example_id, targets)
                    conn.execute(
                        "UPDATE examples SET status = ?, updated_at = ? WHERE id = ?",
                        (status, ts, rv.example_id),
                    )
        return added, duplicates

    @staticmethod
    def _approved_or_surplus(
        conn: sqlite3.Connection, example_id: str, targets: Mapping[tuple[str, str], int]
    ) -> str:
        slice_, label, counted = conn.execute(
            f"SELECT slice, label, source != 'real' AND NOT {COUNTED} FROM examples WHERE id = ?",
            (example_id,),
        ).fetchone()
        target = targets.get((slice_, label))
        if not counted or target is None:
            return "approved"  # already counted (sampled), a real row, or no quota
        have = conn.execute(
            f"SELECT count(*) FROM examples WHERE slice = ? AND label = ? AND {COUNTED}",
            (slice_, label),
        ).fetchone()[0]
        return "approved" if have < target else "surplus"

    def last_id(self) -> int:
        """The newest review's id, 0 before any: a run compares it between steps to
        learn, at the cost of one index lookup, whether reviewers decided anything."""
        return int(self._one("SELECT coalesce(max(id), 0) FROM reviews"))

    def ack_cell(self, slice_: str, label: str, note: str | None = None) -> int:
        """Acknowledge a cell's reviews so far; returns how many were set aside."""
        with self._tx() as conn:
            last = conn.execute("SELECT coalesce(max(id), 0) FROM reviews").fetchone()[0]
            before = int(
                self._one(
                    "SELECT coalesce(max(last_review_id), 0) FROM review_acks"
                    " WHERE slice = ? AND label = ?",
                    (slice_, label),
                )
            )
            n = conn.execute(
                "SELECT count(*) FROM reviews r JOIN examples e ON e.id = r.example_id"
                " WHERE e.slice = ? AND e.label = ? AND r.id > ?",
                (slice_, label, before),
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO review_acks (slice, label, last_review_id, note, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (slice_, label, last, note, now()),
            )
        return int(n)

    def acks(self) -> dict[tuple[str, str], int]:
        """(slice, label) -> the last review id acknowledged for that cell."""
        return {
            (r[0], r[1]): r[2]
            for r in self.conn.execute(
                "SELECT slice, label, max(last_review_id) FROM review_acks GROUP BY 1, 2"
            )
        }
