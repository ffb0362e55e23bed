"""Read-only figures over every table: the funnel, filter and judge summaries, one
row's whole story. What `synth status`, `synth show` and the audit print comes from
here, from the store alone."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from synth.records import Source, Status, Unusable, Verdict
from synth.store._part import Part, decode, in_chunks
from synth.store.pairs import Pairs
from synth.store.rows import (
    DecisionRow,
    ExampleDetail,
    FilterDecision,
    FunnelRow,
    JudgedRow,
    JudgeScoreRow,
    JudgeSummary,
    ListedRow,
    ParentRow,
    RowQuery,
    TemplateUse,
    empty_funnel_row,
)


class Reports(Part):
    def funnel(self) -> list[FunnelRow]:
        """Per cell, where every generated row stands. They add up:

            generated = sum(rejected by each filter) + accepted + held
                        + review_rejected + surplus

        ``accepted`` counts toward the quota (approved rows and rows sampled for
        review included); ``sampled`` is the part of it awaiting a reviewer; ``held``
        are rows a filter sent to review, counted only once approved. ``real`` counts
        the real rows of the dataset; ``real_excluded`` the real rows `synth filter`
        kept out of it (rejected, held for review, or already there).

        ``calls``, tokens and cost are every call's, each in the cell it was made for:
        a judge call in the cell of the row it judged (``judge_calls`` counts those),
        so the cells add up to the store's totals. ``failed_calls`` and ``unusable``
        are generation calls that brought nothing usable.
        """
        cells: dict[tuple[str, str], FunnelRow] = {}

        def cell(slice_: str, label: str) -> FunnelRow:
            return cells.setdefault((slice_, label), empty_funnel_row(slice_, label))

        for slice_, label, source, status, outcome, rejected_by, n in self.conn.execute(
            "SELECT slice, label, source, status, outcome, rejected_by, count(*) FROM examples"
            " GROUP BY slice, label, source, status, outcome, rejected_by"
        ):
            row = cell(slice_, label)
            if source == Source.REAL:
                counted = status in (Status.ACCEPTED, Status.APPROVED) or (
                    status == Status.REVIEW_PENDING and outcome == Verdict.KEEP
                )
                row["real" if counted else "real_excluded"] += n
                continue
            if status == Status.ALTERNATIVE:
                continue  # a preference pair's response, not a candidate row
            row["generated"] += n
            if status == Status.REJECTED:
                row["rejected"][rejected_by or "?"] += n
            elif status in (Status.ACCEPTED, Status.APPROVED):
                row["accepted"] += n
            elif status == Status.REVIEW_PENDING and outcome == Verdict.KEEP:
                row["accepted"] += n
                row["sampled"] += n
            elif status == Status.REVIEW_PENDING:
                row["held"] += n
            elif status == Status.REVIEW_REJECTED:
                row["review_rejected"] += n
            else:
                row["surplus"] += n
        for slice_, label, purpose, status, reason, n, pt, ct, cost in self.conn.execute(
            "SELECT coalesce(slice, ''), coalesce(label, ''), purpose, status, reason,"
            " count(*), sum(prompt_tokens), sum(completion_tokens), sum(cost_usd)"
            " FROM llm_calls GROUP BY 1, 2, purpose, status, reason"
        ):
            row = cell(slice_, label)
            row["calls"] += n
            if purpose == "judge":
                row["judge_calls"] += n
            elif status in ("failed", "invalid"):
                row["failed_calls"] += n
                row["unusable"][reason or Unusable.FAILED] += n
            row["prompt_tokens"] += pt or 0
            row["completion_tokens"] += ct or 0
            row["cost_usd"] += cost or 0.0
        return [cells[k] for k in sorted(cells)]

    def filter_verdicts(self) -> dict[str, Counter[str]]:
        """filter -> verdict -> count, over every stored decision."""
        out: dict[str, Counter[str]] = defaultdict(Counter)
        for f, v, n in self.conn.execute(
            "SELECT filter, verdict, count(*) FROM decisions GROUP BY filter, verdict"
        ):
            out[f][v] = n
        return dict(out)

    def rejection_reasons(self) -> list[tuple[str, str, str, str, int]]:
        """(slice, label, filter, reason slug, count) of every reject decision of a
        generated row: the funnel's rejections (real rows have no place in it)."""
        return [
            (r[0], r[1], r[2], r[3], r[4])
            for r in self.conn.execute(
                "SELECT e.slice, e.label, d.filter,"
                " trim(substr(d.reason, 1, instr(d.reason || ':', ':') - 1)), count(*)"
                " FROM decisions d JOIN examples e ON e.id = d.example_id"
                " WHERE d.verdict = 'reject' AND e.source != 'real'"
                " AND e.status != 'alternative'"
                " GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
            )
        ]

    def filter_decisions(self, filter_name: str) -> list[FilterDecision]:
        """Every decision of one filter, with the row's cell, in order."""
        return self._rows(
            "SELECT d.example_id, e.slice, e.label, d.verdict, d.score, d.reason,"
            " d.filter_version FROM decisions d JOIN examples e ON e.id = d.example_id"
            " WHERE d.filter = ? ORDER BY d.id",
            (filter_name,),
        )

    def filter_versions(self) -> list[tuple[str, str, int]]:
        """(filter, version, decisions) for every filter that decided anything."""
        return [
            (r[0], r[1], r[2])
            for r in self.conn.execute(
                "SELECT filter, filter_version, count(*) FROM decisions"
                " GROUP BY filter, filter_version ORDER BY filter, filter_version"
            )
        ]

    def templates_used(self) -> list[TemplateUse]:
        """The templates stored, with how many generation calls used each."""
        return self._rows(
            "SELECT t.name, t.sha, (SELECT count(*) FROM llm_calls c"
            " WHERE c.template_sha = t.sha) AS calls FROM templates t ORDER BY t.name, t.sha"
        )

    def decisions_for(self, example_id: str) -> list[DecisionRow]:
        return self._rows(
            "SELECT filter, filter_version, verdict, score, reason FROM decisions"
            " WHERE example_id = ? ORDER BY id",
            (example_id,),
        )

    def judge_scores_for(self, example_id: str) -> list[JudgeScoreRow]:
        """The judge's per-criterion scores and rationales for one row, in order."""
        return self._rows(
            "SELECT criterion, score, rationale, judge_model, sample, rubric, rubric_sha,"
            " llm_call_id FROM judge_scores WHERE example_id = ? ORDER BY id",
            (example_id,),
        )

    def judged_examples(self) -> list[JudgedRow]:
        """Every row the rubric judge decided, with its verdict, weighted score and
        reason, its mean score per criterion, and the last human verdict on it (from
        ``reviews``; None if nobody reviewed it), oldest first."""
        rows: list[JudgedRow] = self._rows(
            "SELECT e.id, e.slice, e.label, d.verdict, d.score, d.reason,"
            " (SELECT r.verdict FROM reviews r WHERE r.example_id = e.id"
            "  ORDER BY r.id DESC LIMIT 1) AS human"
            " FROM decisions d JOIN examples e ON e.id = d.example_id"
            " WHERE d.filter = 'rubric' ORDER BY e.rowid"
        )
        criteria: dict[str, dict[str, float]] = defaultdict(dict)
        for example_id, criterion, score in self.conn.execute(
            "SELECT example_id, criterion, avg(score) FROM judge_scores"
            " WHERE criterion NOT IN ('label', 'slice') GROUP BY example_id, criterion"
        ):
            criteria[example_id][criterion] = score
        for r in rows:
            r["criteria"] = criteria.get(r["id"], {})
        return rows

    def judge_summary(self) -> JudgeSummary:
        """For ``synth status``: the judge's decisions by filter and reason slug, and
        each criterion's mean score and count of scores."""
        reasons: dict[str, Counter[str]] = defaultdict(Counter)
        for f, reason, n in self.conn.execute(
            "SELECT filter, substr(reason, 1, instr(reason || ':', ':') - 1), count(*)"
            " FROM decisions WHERE filter IN ('label_check', 'rubric') GROUP BY 1, 2"
        ):
            reasons[f][reason] = n
        criteria = {
            c: {"mean": m, "scores": n}
            for c, m, n in self.conn.execute(
                "SELECT criterion, avg(score), count(*) FROM judge_scores"
                " WHERE criterion NOT IN ('label', 'slice') GROUP BY criterion ORDER BY min(id)"
            )
        }
        calls = self.conn.execute(
            "SELECT count(*), coalesce(sum(cost_usd), 0),"
            " coalesce(sum(status IN ('invalid', 'failed')), 0)"
            " FROM llm_calls WHERE purpose = 'judge'"
        ).fetchone()
        unusable = dict(
            self.conn.execute(
                "SELECT coalesce(reason, 'failed'), count(*) FROM llm_calls"
                " WHERE purpose = 'judge' AND status IN ('invalid', 'failed') GROUP BY 1"
            ).fetchall()
        )
        return {
            "decisions": {f: dict(c) for f, c in reasons.items()},
            "criteria": criteria,
            "calls": calls[0],
            "cost_usd": calls[1],
            "invalid_calls": calls[2],
            "unusable": unusable,
        }

    def rows(self, q: RowQuery) -> tuple[list[ListedRow], int]:
        """The rows ``q`` matches, oldest first, at most ``q.limit`` of them; and how
        many match in all."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("slice", q.slice), ("label", q.label), ("source", q.source)):
            if value is not None:
                where.append(f"e.{column} = ?")
                params.append(value)
        if q.statuses:
            where.append(f"e.status IN ({','.join('?' * len(q.statuses))})")
            params += q.statuses
        if q.filter is not None or q.reason is not None:
            cond = ["d.example_id = e.id", "d.verdict != 'keep'"]
            if q.filter is not None:
                cond.append("d.filter = ?")
                params.append(q.filter)
            if q.reason is not None:
                cond.append("instr(lower(d.reason), lower(?)) > 0")
                params.append(q.reason)
            where.append(f"EXISTS (SELECT 1 FROM decisions d WHERE {' AND '.join(cond)})")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        total = self._one(f"SELECT count(*) FROM examples e{clause}", params)
        limit = "" if q.limit is None else f" LIMIT {int(q.limit)}"
        rows: list[ListedRow] = self._rows(
            "SELECT e.id, e.source, e.slice, e.label, e.status, e.text,"
            " (SELECT d.filter || ': ' || d.reason FROM decisions d WHERE d.example_id = e.id"
            "  AND d.verdict != 'keep' ORDER BY d.id LIMIT 1) AS why"
            f" FROM examples e{clause} ORDER BY e.rowid{limit}",
            params,
        )
        return rows, int(total)

    def parents(self, ids: list[str]) -> list[ParentRow]:
        """The stored rows of ``ids``, in that order (an id not stored is left out)."""
        found: dict[str, ParentRow] = {}
        for chunk, marks in in_chunks(ids):
            for r in self._rows(
                "SELECT id, source, slice, label, text, origin FROM examples"
                f" WHERE id IN ({marks})",
                chunk,
            ):
                found[r["id"]] = r
        return [found[i] for i in ids if i in found]

    def example(self, example_id: str) -> ExampleDetail | None:
        """One row with its provenance, decisions, judge scores and reviews."""
        rows = self._rows(
            "SELECT e.id, e.source, e.slice, e.label, e.data_json, e.status, e.outcome,"
            " e.rejected_by, e.run_id, e.llm_call_id, e.template, e.template_sha, e.model,"
            " c.served_model, e.origin, e.created_at, e.parent_ids_json"
            " FROM examples e LEFT JOIN llm_calls c ON c.id = e.llm_call_id WHERE e.id = ?",
            (example_id,),
        )
        if not rows:
            return None
        row = decode(rows[0], "data_json", "parent_ids_json")
        row["parent_ids"] = row["parent_ids"] or []
        row["parents"] = self.parents(row["parent_ids"])
        row["decisions"] = self.decisions_for(example_id)
        row["judge_scores"] = self.judge_scores_for(example_id)
        row["reviews"] = self._rows(
            "SELECT reviewer, verdict, note, created_at FROM reviews WHERE example_id = ?"
            " ORDER BY id",
            (example_id,),
        )
        row["pair"] = Pairs(self.db, self.path).of(example_id)
        detail: ExampleDetail = row
        return detail
