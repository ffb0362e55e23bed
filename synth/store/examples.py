"""``examples``, ``decisions``, ``edits`` and ``judge_scores``: every row and why it is
where it is.

Seeds come in as ``real`` rows; a chunk of filtered candidates is stored with every
decision (keeps too), every edit a filter made and the judge's scores in one
transaction, together with marking its calls processed, so a crash leaves all of it
or none.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from synth.errors import StoreError
from synth.records import (
    CellKey,
    Lineage,
    Outcome,
    Seed,
    SeenItem,
    Source,
    Status,
    canonical_json,
    sha256_text,
)
from synth.store._part import Part, decode, in_chunks, now
from synth.store.rows import (
    DatasetRow,
    EditRow,
    ExampleRow,
    FiledRow,
    JudgeScore,
    SeedImport,
    SeedRow,
)
from synth.store.schema import COUNTED, LIVE

_EXAMPLE_COLUMNS = (
    "id, source, slice, label, data_json, text, content_sha, status, outcome, run_id,"
    " llm_call_id, template, template_sha, model, parent_ids_json, origin, created_at"
)


def seed_id(content_sha: str) -> str:
    """A seed's id, from its content: the same seed file gives the same ids, and so the
    same few-shot lineage and splits, in any store. The dataset holds one live real row
    per content, so the content names it; stores made before keep their random ids."""
    return "seed_" + sha256_text(f"real:{content_sha}")[:16]


class Examples(Part):
    # -- seeds ---------------------------------------------------------------------

    def add_seeds(self, seeds: Sequence[Seed]) -> SeedImport:
        """Store real rows; a row whose content a real row of the dataset (or one
        waiting for review) already has is skipped."""
        added = 0
        ts = now()
        with self._tx() as conn:
            for seed in seeds:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO examples (id, source, slice, label, data_json, text,"
                    " content_sha, status, origin, created_at, updated_at)"
                    " VALUES (:id, 'real', :slice, :label, :data_json, :text, :content_sha,"
                    " 'accepted', :origin, :ts, :ts)",
                    {
                        "id": seed_id(seed.content_sha),
                        "slice": seed.slice,
                        "label": seed.label,
                        "data_json": canonical_json(seed.data),
                        "text": seed.text,
                        "content_sha": seed.content_sha,
                        "origin": seed.origin,
                        "ts": ts,
                    },
                )
                added += cur.rowcount
        return SeedImport(added=added, duplicates=len(seeds) - added)

    def seeds(self) -> list[SeedRow]:
        """Real rows of the dataset, oldest first: the few-shot pool. A real row a
        filter run rejected (or holds for review) is no example to learn from."""
        return [
            decode(r, "data_json")
            for r in self._rows(
                "SELECT id, slice, label, data_json, text FROM examples"
                f" WHERE source = 'real' AND {COUNTED} ORDER BY rowid"
            )
        ]

    # -- what fills the cells ------------------------------------------------------

    def cell_counts(self) -> dict[CellKey, tuple[int, int]]:
        """(real, synthetic) rows counting toward each cell's target."""
        out: dict[CellKey, list[int]] = defaultdict(lambda: [0, 0])
        for slice_, label, source, n in self.conn.execute(
            f"SELECT slice, label, source, count(*) FROM examples WHERE {COUNTED}"
            " GROUP BY slice, label, source"
        ):
            out[CellKey(slice=slice_, label=label)][0 if source == "real" else 1] += n
        return {k: (v[0], v[1]) for k, v in out.items()}

    def seen_items(self, ids: Collection[str] | None = None) -> list[SeenItem]:
        """Seeds and every row the filter chain did not reject, in order; with ``ids``,
        only those of them."""
        return [
            SeenItem(
                id=r[0],
                text=r[1],
                cell=CellKey(slice=r[2], label=r[3]),
                source=Source(r[4]),
            )
            for r in self.conn.execute(
                "SELECT id, text, slice, label, source FROM examples"
                f" WHERE (source = 'real' AND {COUNTED})"
                # An alternative repeats its row's prompt on purpose: no index holds it.
                " OR (outcome IN ('keep', 'review') AND status != 'alternative')"
                " ORDER BY rowid"
            )
            if ids is None or r[0] in ids
        ]

    def ids_of_run(self, run_id: str) -> set[str]:
        """The ids of every row a run stored."""
        return {
            r[0] for r in self.conn.execute("SELECT id FROM examples WHERE run_id = ?", (run_id,))
        }

    # -- candidates and decisions --------------------------------------------------

    def add_outcomes(
        self,
        run_id: str,
        outcomes: Sequence[Outcome],
        statuses: Sequence[Status],
        processed_call_ids: Iterable[str],
        scores: Sequence[JudgeScore] = (),
    ) -> None:
        """Store a chunk of candidates with every decision, edit and judge score, and
        mark their calls processed: one transaction, so a crash leaves all of it or
        none. A candidate stored before (a resumed run) is not stored again, nor are
        its decisions or scores."""
        ts = now()
        with self._tx() as conn:
            # Found under the write lock, so the chunk's rows and their decisions go in
            # one statement each rather than one insert per row to learn whether it
            # was new.
            stored = self.stored_ids([o.candidate.id for o in outcomes])
            seen = set(stored)
            new: list[tuple[Outcome, Status]] = []
            for outcome, status in zip(outcomes, statuses, strict=True):
                if outcome.candidate.id not in seen:
                    seen.add(outcome.candidate.id)
                    new.append((outcome, status))
            conn.executemany(
                "INSERT INTO examples (id, source, slice, label, data_json, text,"
                " content_sha, status, outcome, rejected_by, run_id, llm_call_id, call_index,"
                " template, template_sha, model, parent_ids_json, created_at, updated_at)"
                " VALUES (:id, :source, :slice, :label, :data_json, :text, :content_sha,"
                " :status, :outcome, :rejected_by, :run_id, :llm_call_id, :call_index,"
                " :template, :template_sha, :model, :parent_ids_json, :ts, :ts)",
                [_generated_columns(outcome, status, run_id, ts) for outcome, status in new],
            )
            self._add_histories(conn, run_id, [outcome for outcome, _ in new], ts)
            conn.executemany(
                "UPDATE llm_calls SET processed = 1 WHERE id = ?",
                [(i,) for i in processed_call_ids],
            )
            if scores:
                self._add_scores(conn, scores, ts, stored)

    @staticmethod
    def _add_scores(
        conn: sqlite3.Connection, scores: Sequence[JudgeScore], ts: str, stored: set[str]
    ) -> None:
        """Judge scores, but not those of rows ``stored`` before (a resumed run)."""
        conn.executemany(
            "INSERT INTO judge_scores (example_id, criterion, score, rationale,"
            " judge_model, sample, rubric, rubric_sha, llm_call_id, run_id, created_at)"
            " VALUES (:example_id, :criterion, :score, :rationale, :judge_model, :sample,"
            " :rubric, :rubric_sha, :llm_call_id, :run_id, :created_at)",
            [{**s, "created_at": ts} for s in scores if s["example_id"] not in stored],
        )
        # A judge call is processed once its scores are stored, as a generation
        # call is once its rows are: nothing of it is left to do after a crash.
        conn.executemany(
            "UPDATE llm_calls SET processed = 1 WHERE id = ?",
            [(i,) for i in {s["llm_call_id"] for s in scores if s["llm_call_id"]}],
        )

    @classmethod
    def _add_histories(
        cls, conn: sqlite3.Connection, run_id: str, outcomes: Sequence[Outcome], ts: str
    ) -> None:
        """Stored rows' decisions, and the edits filters made to them."""
        conn.executemany(
            "INSERT INTO decisions (example_id, filter, filter_version, verdict, score, reason,"
            " run_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    d.example_id,
                    d.filter,
                    d.filter_version,
                    d.verdict.value,
                    d.score,
                    d.reason,
                    run_id,
                    ts,
                )
                for outcome in outcomes
                for d in outcome.decisions
            ],
        )
        for outcome in outcomes:
            edits = outcome.edits
            if not edits:
                continue
            c = outcome.candidate
            # The data as generated is kept here, out of exports: a redacting filter's
            # edit is provenance like any other.
            before = outcome.original.row if outcome.original else c.row
            for d in edits:
                after = {**(d.edited_data or {}), **c.metadata}
                cls._add_edit(conn, c.id, f"filter:{d.filter}", before, after, ts)
                before = after

    @staticmethod
    def _add_edit(
        conn: sqlite3.Connection,
        example_id: str,
        editor: str,
        before: dict[str, Any] | str,
        after: dict[str, Any] | str,
        ts: str,
    ) -> None:
        conn.execute(
            "INSERT INTO edits (example_id, editor, before_json, after_json, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                example_id,
                editor,
                before if isinstance(before, str) else canonical_json(before),
                after if isinstance(after, str) else canonical_json(after),
                ts,
            ),
        )

    # -- rows of a user's file (synth filter) ----------------------------------------

    def add_file_rows(
        self,
        run_id: str,
        outcomes: Sequence[Outcome],
        statuses: Sequence[Status],
        origins: Sequence[str],
        source: Source,
        scores: Sequence[JudgeScore] = (),
    ) -> None:
        """Store a chunk of a file's rows with every decision, edit and judge score, in
        one transaction, so a crash leaves all of it or none.

        A row keeps the ``source`` it was given: a real row a filter redacted stays
        real (the data before is in ``edits``), as an edited seed does; a synthetic
        one becomes ``edited``, as a generated row does. It has no call, template or
        model, only its ``origin`` (``FILE:LINE``). The caller has checked that no id
        is stored yet: a row is stored once, and an id stored since is an error.
        """
        ts = now()
        with self._tx() as conn:
            for outcome, status, origin in zip(outcomes, statuses, origins, strict=True):
                c = outcome.candidate
                kind = source
                if outcome.edits and source is Source.SYNTHETIC:
                    kind = Source.EDITED
                try:
                    conn.execute(
                        "INSERT INTO examples (id, source, slice, label, data_json, text,"
                        " content_sha, status, outcome, rejected_by, run_id, origin,"
                        " created_at, updated_at) VALUES (:id, :source, :slice, :label,"
                        " :data_json, :text, :content_sha, :status, :outcome, :rejected_by,"
                        " :run_id, :origin, :ts, :ts)",
                        {
                            **_row_columns(outcome, status, run_id, ts),
                            "source": kind.value,
                            "origin": origin,
                        },
                    )
                except sqlite3.IntegrityError as e:
                    raise StoreError(
                        origin, f"cannot store {c.id} (another process changed the store?): {e}"
                    ) from None
                self._add_histories(conn, run_id, [outcome], ts)
            if scores:
                self._add_scores(conn, scores, ts, set())

    def stored_ids(self, ids: Sequence[str]) -> set[str]:
        """Those of ``ids`` that are stored."""
        found: set[str] = set()
        for chunk, marks in in_chunks(ids):
            rows = self.conn.execute(f"SELECT id FROM examples WHERE id IN ({marks})", chunk)
            found.update(r[0] for r in rows)
        return found

    def live_content(self, shas: Sequence[str]) -> set[str]:
        """Those of the content ``shas`` that a row of the dataset, or one waiting for
        review, already has."""
        found: set[str] = set()
        for chunk, marks in in_chunks(sorted(set(shas))):
            found.update(
                r[0]
                for r in self.conn.execute(
                    f"SELECT content_sha FROM examples WHERE content_sha IN ({marks}) AND {LIVE}",
                    chunk,
                )
            )
        return found

    def filed(self, ids: Sequence[str]) -> dict[str, FiledRow]:
        """Stored rows by id, with the chain's verdict and, for a row it did not keep,
        the decisions that say why (rejects and reviews, in order)."""
        out: dict[str, FiledRow] = {}
        for chunk, marks in in_chunks(ids):
            for r in self._rows(
                "SELECT id, data_json, status, outcome, rejected_by, origin, run_id"
                f" FROM examples WHERE id IN ({marks})",
                chunk,
            ):
                r = decode(r, "data_json")
                r["why"] = []
                out[r["id"]] = r
            for example_id, filter_name, verdict, reason in self.conn.execute(
                "SELECT example_id, filter, verdict, reason FROM decisions"
                f" WHERE example_id IN ({marks}) AND verdict != 'keep' ORDER BY id",
                chunk,
            ):
                out[example_id]["why"].append((filter_name, verdict, reason))
        return out

    def accepted_ids(self, run_id: str) -> list[tuple[str, str, str]]:
        """(id, slice, label) of the synthetic rows this run accepted."""
        return [
            (r[0], r[1], r[2])
            for r in self.conn.execute(
                "SELECT id, slice, label FROM examples WHERE run_id = ?"
                " AND source = 'synthetic' AND status = 'accepted' ORDER BY rowid",
                (run_id,),
            )
        ]

    def outcomes_by_cell(self, run_id: str) -> dict[CellKey, tuple[int, int]]:
        """(candidates, rows counting toward the target) a run stored, per cell."""
        return {
            CellKey(slice=s, label=label): (int(n), int(counted or 0))
            for s, label, n, counted in self.conn.execute(
                f"SELECT slice, label, count(*), sum({COUNTED}) FROM examples"
                " WHERE run_id = ? AND source = 'synthetic' GROUP BY 1, 2",
                (run_id,),
            )
        }

    # -- reading rows back ---------------------------------------------------------

    def by_id(self, ids: Sequence[str]) -> list[ExampleRow]:
        """Full rows with their lineage, in the order given; ids not stored are skipped."""
        found: dict[str, ExampleRow] = {}
        for chunk, marks in in_chunks(ids):
            for r in self._example_rows(f"WHERE id IN ({marks})", chunk):
                found[r["id"]] = r
        return [found[i] for i in ids if i in found]

    def every_row(self) -> list[ExampleRow]:
        """Every stored row (rejected ones too) with its lineage, oldest first: what an
        external file's rows are matched against."""
        return self._example_rows("ORDER BY rowid")

    def _example_rows(self, where: str, params: Sequence[Any] = ()) -> list[ExampleRow]:
        rows = self._rows(f"SELECT {_EXAMPLE_COLUMNS} FROM examples {where}", params)
        for r in rows:
            decode(r, "data_json", "parent_ids_json")
            r["lineage"] = Lineage.of(r)
        return rows

    def dataset(self) -> list[DatasetRow]:
        """The dataset as it stands, with lineage: the rows counted toward quotas, real
        and synthetic (every imported seed is; a real row a filter run rejected is not)."""
        rows = self._rows(
            "SELECT e.id, e.source, e.slice, e.label, e.data_json, e.status, e.run_id,"
            " e.model, e.template, e.template_sha, e.parent_ids_json, e.origin,"
            " e.llm_call_id, e.content_sha FROM examples e"
            f" WHERE {COUNTED} ORDER BY e.rowid"
        )
        for r in rows:
            decode(r, "data_json", "parent_ids_json")
            r["lineage"] = Lineage.of(r)
        return rows

    def texts_by_cell(self) -> dict[tuple[str, str], dict[str, list[str]]]:
        """(slice, label) -> {"real": [...], "synthetic": [...]}: the texts of the dataset
        as it stands (synthetic: the rows counted toward quotas)."""
        out: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(
            lambda: {"real": [], "synthetic": []}
        )
        for slice_, label, source, text in self.conn.execute(
            f"SELECT slice, label, source, text FROM examples WHERE {COUNTED} ORDER BY rowid"
        ):
            out[(slice_, label)]["real" if source == "real" else "synthetic"].append(text)
        return dict(out)

    def statuses(self) -> Counter[str]:
        """How many rows are in each status."""
        return Counter(
            dict(self.conn.execute("SELECT status, count(*) FROM examples GROUP BY status"))
        )

    # -- edits ---------------------------------------------------------------------

    def edit(self, example_id: str, editor: str, data: dict[str, Any], text: str) -> None:
        """Replace a row's data (``text`` is its text field): the change is kept in
        ``edits`` with the data before and after, and a synthetic row becomes
        ``edited``."""
        ts = now()
        with self._tx() as conn:
            before = self._one("SELECT data_json FROM examples WHERE id = ?", (example_id,))
            if before is None:
                raise StoreError(str(self.path), f"no example {example_id}")
            after = canonical_json(data)
            self._add_edit(conn, example_id, editor, before, after, ts)
            conn.execute(
                # A real row stays real (its edit is in `edits`): quotas and the few-shot
                # pool count it as a seed still.
                "UPDATE examples SET data_json = ?, text = ?, content_sha = ?, source = CASE"
                " WHEN source = 'real' THEN 'real' ELSE 'edited' END, updated_at = ?"
                " WHERE id = ?",
                (after, text, sha256_text(after), ts, example_id),
            )

    def edits(self, example_id: str) -> list[EditRow]:
        """Every change to a row's data, oldest first, ``before``/``after`` decoded."""
        return [
            decode(r, "before_json", "after_json")
            for r in self._rows(
                "SELECT editor, before_json, after_json, created_at FROM edits"
                " WHERE example_id = ? ORDER BY id",
                (example_id,),
            )
        ]


def _generated_columns(outcome: Outcome, status: Status, run_id: str, ts: str) -> dict[str, Any]:
    """A generated candidate's columns: every stored candidate's, and its call's."""
    c = outcome.candidate
    return {
        **_row_columns(outcome, status, run_id, ts),
        "source": Source.EDITED.value if outcome.edits else Source.SYNTHETIC.value,
        "llm_call_id": c.llm_call_id,
        "call_index": c.index,
        "template": c.template,
        "template_sha": c.template_sha,
        "model": c.model,
        "parent_ids_json": json.dumps(list(c.parent_ids)),
    }


def _row_columns(outcome: Outcome, status: Status, run_id: str, ts: str) -> dict[str, Any]:
    """The columns every stored candidate has, generated or read from a file."""
    c = outcome.candidate
    data_json = canonical_json(c.row)
    return {
        "id": c.id,
        "slice": c.cell.slice,
        "label": c.cell.label,
        "data_json": data_json,
        "text": c.text,
        "content_sha": sha256_text(data_json),
        "status": status.value,
        "outcome": outcome.verdict.value,
        "rejected_by": outcome.rejected_by,
        "run_id": run_id,
        "ts": ts,
    }
