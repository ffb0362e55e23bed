"""The SQLite provenance store: the only module that speaks SQL.

The schema is public: query it with sqlite3 or Datasette (README, "The store").

    runs        one row per `synth run` (resumed runs keep their id)
    templates   every prompt template used, by content sha
    llm_calls   every request: planned (pending), then answered (ok), invalid or
                failed; also the response cache, keyed by request_sha
    examples    every row: real seeds, synthetic candidates (rejected ones too),
                edited rows; status says where each is in its life
    decisions   one row per filter per candidate, keeps included
    reviews     human verdicts
    edits       every change to an example's data (redaction, a reviewer's edit),
                with the data before and after
    llm_batches Batch API jobs: recorded before the run waits on them, so a killed
                run polls the same job instead of paying for its calls again
    judge_scores the judge's score and rationale per candidate, criterion and sample
    review_items the review queue: why each row is in it, how many reviewers it needs
    review_acks flagged cells a person acknowledged, so generation resumes for them
    versions    frozen dataset versions (content-addressed), with their manifest
    version_items each row of a version as it was frozen; triggers refuse changes

Writes that belong together share one transaction; a paid reply is committed the
moment it arrives, in its own transaction, so a crash loses no paid work.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlite_utils.migrations import Migrations

from synth.errors import StoreError
from synth.filters import Outcome
from synth.records import (
    CellKey,
    Decision,
    Seed,
    SeenItem,
    Source,
    Status,
    Verdict,
    canonical_json,
    content_sha,
    sha256_text,
)

migrations = Migrations("synth")

# Statuses whose rows fill a cell's quota. A row sampled for review stays counted;
# one a filter sent to review counts only once a human approves it.
COUNTED = "(status IN ('accepted', 'approved') OR (status = 'review_pending' AND outcome = 'keep'))"


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL,          -- running | finished | stopped | failed
            stop_reason TEXT,
            config_json TEXT NOT NULL,
            config_sha TEXT NOT NULL,
            pid INTEGER,
            resumes INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE templates (
            sha TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            source TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE llm_calls (
            id TEXT PRIMARY KEY,
            run_id TEXT REFERENCES runs(id),
            request_sha TEXT NOT NULL UNIQUE,
            purpose TEXT NOT NULL,         -- generate | judge
            slice TEXT,
            label TEXT,
            sample_index INTEGER,
            template TEXT,
            template_sha TEXT,
            model TEXT NOT NULL,
            params_json TEXT NOT NULL,
            messages_json TEXT NOT NULL,
            parent_ids_json TEXT NOT NULL DEFAULT '[]',
            response_json TEXT,
            status TEXT NOT NULL,          -- pending | ok | invalid | failed
            error TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0,
            latency_ms REAL,
            processed INTEGER NOT NULL DEFAULT 0,  -- its examples are stored
            created_at TEXT NOT NULL,
            answered_at TEXT
        );
        CREATE INDEX llm_calls_cell ON llm_calls(slice, label);
        CREATE INDEX llm_calls_status ON llm_calls(status, processed);
        CREATE TABLE examples (
            id TEXT PRIMARY KEY,
            source TEXT NOT NULL,          -- real | synthetic | edited
            slice TEXT NOT NULL,
            label TEXT NOT NULL,
            data_json TEXT NOT NULL,
            text TEXT NOT NULL,
            content_sha TEXT NOT NULL,
            status TEXT NOT NULL,          -- accepted | rejected | review_pending |
                                           -- approved | review_rejected | surplus
            outcome TEXT,                  -- the filter chain's verdict: keep | reject | review
            rejected_by TEXT,
            run_id TEXT REFERENCES runs(id),
            llm_call_id TEXT REFERENCES llm_calls(id),
            call_index INTEGER,
            template TEXT,
            template_sha TEXT,
            model TEXT,
            parent_ids_json TEXT NOT NULL DEFAULT '[]',
            origin TEXT,                   -- seeds: "file:line"
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX examples_cell ON examples(slice, label, status);
        CREATE INDEX examples_sha ON examples(content_sha);
        CREATE INDEX examples_call ON examples(llm_call_id);
        CREATE UNIQUE INDEX examples_real_content ON examples(content_sha) WHERE source = 'real';
        CREATE TABLE decisions (
            id INTEGER PRIMARY KEY,
            example_id TEXT NOT NULL REFERENCES examples(id),
            filter TEXT NOT NULL,
            filter_version TEXT NOT NULL,
            verdict TEXT NOT NULL,         -- keep | reject | review
            score REAL,
            reason TEXT NOT NULL,
            run_id TEXT REFERENCES runs(id),
            created_at TEXT NOT NULL
        );
        CREATE INDEX decisions_example ON decisions(example_id);
        CREATE INDEX decisions_filter ON decisions(filter, verdict);
        CREATE TABLE reviews (
            id INTEGER PRIMARY KEY,
            example_id TEXT NOT NULL REFERENCES examples(id),
            reviewer TEXT NOT NULL,
            verdict TEXT NOT NULL,         -- approve | reject
            edited_data_json TEXT,
            note TEXT,
            created_at TEXT NOT NULL
        );
        CREATE INDEX reviews_example ON reviews(example_id);
        CREATE TABLE edits (
            id INTEGER PRIMARY KEY,
            example_id TEXT NOT NULL REFERENCES examples(id),
            editor TEXT NOT NULL,          -- "filter:pii" or "reviewer:<name>"
            before_json TEXT NOT NULL,
            after_json TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX edits_example ON edits(example_id);
        """
    )


@migrations()
def m002_batches(db: sqlite_utils.Database) -> None:
    # One row per Batch API job: its id is recorded before the run waits on it, so a
    # killed run polls the same job again instead of paying for its calls twice.
    db.executescript(
        """
        CREATE TABLE llm_batches (
            id TEXT PRIMARY KEY,           -- the provider's batch id
            run_id TEXT REFERENCES runs(id),
            input_file_id TEXT NOT NULL,
            output_file_id TEXT,
            error_file_id TEXT,
            status TEXT NOT NULL,          -- the provider's last reported status, or lost
            call_ids_json TEXT NOT NULL,   -- llm_calls.id of every line, custom_id order
            request_counts_json TEXT,
            created_at TEXT NOT NULL,
            finished_at TEXT               -- set once its replies are stored; NULL: open
        );
        CREATE INDEX llm_batches_open ON llm_batches(finished_at);
        """
    )


@migrations()
def m003_judge_scores(db: sqlite_utils.Database) -> None:
    # The judge's per-criterion scores and rationales: one row per candidate x
    # criterion x judge sample (several samples or judge models may grade one row).
    db.executescript(
        """
        CREATE TABLE judge_scores (
            id INTEGER PRIMARY KEY,
            example_id TEXT NOT NULL REFERENCES examples(id),
            criterion TEXT NOT NULL,       -- a rubric criterion, or "label" for consistency
            score REAL,                    -- 1-5 on the rubric's anchored scale
            rationale TEXT NOT NULL DEFAULT '',
            judge_model TEXT NOT NULL,
            sample INTEGER NOT NULL DEFAULT 0,
            rubric TEXT NOT NULL,          -- the rubric file's name
            rubric_sha TEXT NOT NULL,
            llm_call_id TEXT REFERENCES llm_calls(id),
            run_id TEXT REFERENCES runs(id),
            created_at TEXT NOT NULL
        );
        CREATE INDEX judge_scores_example ON judge_scores(example_id);
        """
    )


@migrations()
def m004_review(db: sqlite_utils.Database) -> None:
    # The review queue: why each row is in it and how many reviewers it needs (two
    # for the double-review share, whose pairs give reviewer agreement). A review's
    # reason tag and where it was made (web page, terminal, an imported file) are
    # columns of reviews: every review has them, so they belong on its row.
    db.executescript(
        """
        CREATE TABLE review_items (
            example_id TEXT PRIMARY KEY REFERENCES examples(id),
            reason TEXT NOT NULL,          -- sampled | filter (a filter said review)
            reviews_needed INTEGER NOT NULL DEFAULT 1,
            created_at TEXT NOT NULL
        );
        ALTER TABLE reviews ADD COLUMN reason TEXT;   -- a reject's tag: off_label, ...
        ALTER TABLE reviews ADD COLUMN origin TEXT;   -- web | terminal | label-studio | argilla
        CREATE UNIQUE INDEX reviews_once ON reviews(example_id, reviewer);
        -- A cell flagged for its reviewers' rejections generates again once
        -- acknowledged; the reviews up to last_review_id are then set aside.
        CREATE TABLE review_acks (
            id INTEGER PRIMARY KEY,
            slice TEXT NOT NULL,
            label TEXT NOT NULL,
            last_review_id INTEGER NOT NULL,
            note TEXT,
            created_at TEXT NOT NULL
        );
        """
    )


@migrations()
def m005_versions(db: sqlite_utils.Database) -> None:
    # Frozen dataset versions. Each item keeps the row's content and lineage as they
    # were at the freeze, so a later edit, review or status change never alters a
    # version or its exports; triggers refuse any change to a frozen row.
    db.executescript(
        """
        CREATE TABLE versions (
            name TEXT PRIMARY KEY,
            sha TEXT NOT NULL,             -- sha256 over sorted (id, content_sha, split)
            created_at TEXT NOT NULL,
            config_sha TEXT NOT NULL,
            rows INTEGER NOT NULL,
            manifest_json TEXT NOT NULL    -- the data card, written beside every export
        );
        CREATE TABLE version_items (
            version TEXT NOT NULL REFERENCES versions(name),
            example_id TEXT NOT NULL REFERENCES examples(id),
            position INTEGER NOT NULL,     -- export order
            split TEXT NOT NULL,           -- train | validation | test
            source TEXT NOT NULL,          -- real | synthetic | edited, at the freeze
            slice TEXT NOT NULL,
            label TEXT NOT NULL,
            status TEXT NOT NULL,
            data_json TEXT NOT NULL,
            text TEXT NOT NULL,
            content_sha TEXT NOT NULL,
            lineage_json TEXT NOT NULL,    -- run, model, template, parents, origin, call
            PRIMARY KEY (version, example_id)
        );
        CREATE INDEX version_items_sha ON version_items(content_sha);
        CREATE TRIGGER versions_frozen_update BEFORE UPDATE ON versions
            BEGIN SELECT RAISE(ABORT, 'a frozen version never changes'); END;
        CREATE TRIGGER versions_frozen_delete BEFORE DELETE ON versions
            BEGIN SELECT RAISE(ABORT, 'a frozen version never changes'); END;
        CREATE TRIGGER version_items_frozen_update BEFORE UPDATE ON version_items
            BEGIN SELECT RAISE(ABORT, 'a frozen version never changes'); END;
        CREATE TRIGGER version_items_frozen_delete BEFORE DELETE ON version_items
            BEGIN SELECT RAISE(ABORT, 'a frozen version never changes'); END;
        """
    )


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


@dataclass(frozen=True)
class SeedImport:
    added: int
    duplicates: int


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
    purpose: str = "generate"  # or "judge"


@dataclass(frozen=True)
class RunRow:
    id: str
    status: str
    config_sha: str
    started_at: str
    finished_at: str | None
    stop_reason: str | None
    resumes: int


@dataclass(frozen=True)
class Spend:
    calls: int
    attempts: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class Store:
    """A synth project's SQLite file. One per project; safe to reopen at any time."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite_utils.Database(self.path)
        self.conn: sqlite3.Connection = self.db.conn
        self.conn.execute("PRAGMA busy_timeout = 10000")
        self.db.enable_wal()
        # WAL + NORMAL survives a killed process (only an OS crash can lose the last
        # commits), at a fraction of FULL's fsync cost per paid reply.
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute("PRAGMA foreign_keys = ON")
        migrations.apply(self.db)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self.db.atomic():
            yield self.conn

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        cur = self.conn.execute(sql, params)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]  # type: ignore[misc]

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return row[0] if row else None

    # -- seeds ---------------------------------------------------------------------

    def add_seeds(self, seeds: Sequence[Seed]) -> SeedImport:
        """Store real rows; rows whose content is already stored are skipped."""
        added = 0
        ts = now()
        with self._tx() as conn:
            for seed in seeds:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO examples (id, source, slice, label, data_json, text,"
                    " content_sha, status, origin, created_at, updated_at)"
                    " VALUES (?, 'real', ?, ?, ?, ?, ?, 'accepted', ?, ?, ?)",
                    (
                        new_id("seed"),
                        seed.slice,
                        seed.label,
                        canonical_json(seed.data),
                        seed.text,
                        seed.content_sha,
                        seed.origin,
                        ts,
                        ts,
                    ),
                )
                added += cur.rowcount
        return SeedImport(added=added, duplicates=len(seeds) - added)

    def seeds(self) -> list[dict[str, Any]]:
        """Real rows, oldest first: the few-shot pool."""
        rows = self._rows(
            "SELECT id, slice, label, data_json, text FROM examples"
            " WHERE source = 'real' ORDER BY rowid"
        )
        for r in rows:
            r["data"] = json.loads(r.pop("data_json"))
        return rows

    def count(self, table: str) -> int:
        if table not in {"examples", "llm_calls", "decisions", "reviews", "runs", "edits"}:
            raise ValueError(table)
        return int(self._one(f"SELECT count(*) FROM {table}"))

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

    def seen_items(self) -> list[SeenItem]:
        """Seeds and every synthetic row the filter chain did not reject, in order."""
        return [
            SeenItem(
                id=r[0],
                text=r[1],
                cell=CellKey(slice=r[2], label=r[3]),
                source=Source(r[4]),
            )
            for r in self.conn.execute(
                "SELECT id, text, slice, label, source FROM examples"
                " WHERE source = 'real' OR outcome IN ('keep', 'review') ORDER BY rowid"
            )
        ]

    # -- runs ----------------------------------------------------------------------

    def begin_run(self, config_json: str, config_sha: str) -> RunRow:
        """Resume the last run if it was cut off with this config; else start one."""
        with self._tx() as conn:
            last = self._run_rows("ORDER BY rowid DESC LIMIT 1")
            if last and last[0].status == "running":
                pid = self._one("SELECT pid FROM runs WHERE id = ?", (last[0].id,))
                if pid and pid != os.getpid() and _alive(pid):
                    raise StoreError(str(self.path), f"run {last[0].id} is still going (pid {pid})")
                if last[0].config_sha == config_sha:
                    conn.execute(
                        "UPDATE runs SET pid = ?, resumes = resumes + 1 WHERE id = ?",
                        (os.getpid(), last[0].id),
                    )
                    return self._run_rows("WHERE id = ?", (last[0].id,))[0]
                conn.execute(
                    "UPDATE runs SET status = 'stopped', finished_at = ?,"
                    " stop_reason = 'interrupted; a later run had another config' WHERE id = ?",
                    (now(), last[0].id),
                )
            run_id = new_id("run")
            conn.execute(
                "INSERT INTO runs (id, started_at, status, config_json, config_sha, pid)"
                " VALUES (?, ?, 'running', ?, ?, ?)",
                (run_id, now(), config_json, config_sha, os.getpid()),
            )
        return self._run_rows("WHERE id = ?", (run_id,))[0]

    def finish_run(
        self,
        run_id: str,
        status: str,
        reason: str | None = None,
        review_ids: Sequence[str] = (),
    ) -> None:
        """Close the run; the rows sampled for review are marked in the same
        transaction, so a resumed run never samples twice."""
        ts = now()
        with self._tx() as conn:
            conn.executemany(
                "UPDATE examples SET status = 'review_pending', updated_at = ?"
                " WHERE id = ? AND status = 'accepted'",
                [(ts, i) for i in review_ids],
            )
            conn.execute(
                "UPDATE runs SET status = ?, stop_reason = ?, finished_at = ? WHERE id = ?",
                (status, reason, now(), run_id),
            )

    def runs(self) -> list[RunRow]:
        return self._run_rows("ORDER BY rowid")

    def _run_rows(self, where: str, params: Sequence[Any] = ()) -> list[RunRow]:
        return [
            RunRow(*r)
            for r in self.conn.execute(
                "SELECT id, status, config_sha, started_at, finished_at, stop_reason, resumes"
                f" FROM runs {where}",
                params,
            )
        ]

    # -- templates and calls -------------------------------------------------------

    def add_template(self, name: str, source: str, sha: str) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO templates (sha, name, source, created_at)"
                " VALUES (?, ?, ?, ?)",
                (sha, name, source, now()),
            )

    def next_sample_index(self, cell: CellKey, template_sha: str, model: str) -> int:
        n = self._one(
            "SELECT max(sample_index) FROM llm_calls WHERE purpose = 'generate'"
            " AND slice = ? AND label = ? AND template_sha = ? AND model = ?",
            (cell.slice, cell.label, template_sha, model),
        )
        return 0 if n is None else n + 1

    def plan_calls(
        self, run_id: str, calls: Sequence[dict[str, Any]], *, first_attempt: bool = False
    ) -> list[CallRow]:
        """Record calls before they are sent; a request already recorded is reused.

        ``first_attempt`` counts each new call's first attempt in the same transaction,
        instead of one commit per request as it leaves. An attempt counted but never
        sent (the process died first) is sent under its own Idempotency-Key when the
        run resumes, so it is served, and billed, once either way.
        """
        ts = now()
        attempts = 1 if first_attempt else 0
        with self._tx() as conn:
            for c in calls:
                conn.execute(
                    "INSERT OR IGNORE INTO llm_calls (id, run_id, request_sha, purpose, slice,"
                    " label, sample_index, template, template_sha, model, params_json,"
                    " messages_json, parent_ids_json, status, attempts, created_at)"
                    " VALUES (?, ?, ?, 'generate', ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                    (
                        new_id("call"),
                        run_id,
                        c["request_sha"],
                        c["slice"],
                        c["label"],
                        c["sample_index"],
                        c["template"],
                        c["template_sha"],
                        c["model"],
                        canonical_json(c["params"]),
                        canonical_json(c["messages"]),
                        json.dumps(c["parent_ids"]),
                        attempts,
                        ts,
                    ),
                )
        shas = [c["request_sha"] for c in calls]
        by_sha = {row.request_sha: row for row in self._calls_by_sha(shas)}
        return [by_sha[s] for s in shas]

    def _calls_by_sha(self, shas: Sequence[str]) -> list[CallRow]:
        out: list[CallRow] = []
        for chunk, marks in _in_chunks(shas):
            out += self._call_rows(f"WHERE request_sha IN ({marks})", chunk)
        return out

    def unfinished_calls(self) -> list[CallRow]:
        """Calls planned but never answered, or answered but not yet turned into rows:
        what a killed run leaves behind, oldest first."""
        return self._call_rows(
            "WHERE purpose = 'generate' AND (status = 'pending' OR (status = 'ok'"
            " AND processed = 0)) ORDER BY rowid"
        )

    def _call_rows(self, where: str, params: Sequence[Any] = ()) -> list[CallRow]:
        return [
            CallRow(
                id=r[0],
                run_id=r[1],
                request_sha=r[2],
                slice=r[3],
                label=r[4],
                template=r[5],
                template_sha=r[6],
                model=r[7],
                params=json.loads(r[8]),
                messages=json.loads(r[9]),
                parent_ids=json.loads(r[10]),
                status=r[11],
                response_json=r[12],
                attempts=r[13],
                sample_index=r[14],
                purpose=r[15],
            )
            for r in self.conn.execute(
                "SELECT id, run_id, request_sha, slice, label, template, template_sha, model,"
                " params_json, messages_json, parent_ids_json, status, response_json,"
                f" attempts, sample_index, purpose FROM llm_calls {where}",
                params,
            )
        ]

    def record_attempt(self, call_id: str) -> None:
        """Counted before the request leaves, so a kill mid-flight still counts it."""
        self.conn.execute("UPDATE llm_calls SET attempts = attempts + 1 WHERE id = ?", (call_id,))
        self.conn.commit()

    def record_reply(
        self,
        call_id: str,
        *,
        status: str,
        response_json: str | None,
        error: str | None,
        prompt_tokens: int,
        completion_tokens: int,
        cost_usd: float,
        latency_ms: float | None,
    ) -> None:
        self.conn.execute(
            "UPDATE llm_calls SET status = ?, response_json = ?, error = ?, prompt_tokens = ?,"
            " completion_tokens = ?, cost_usd = ?, latency_ms = ?, answered_at = ?,"
            " processed = CASE WHEN ? = 'ok' THEN processed ELSE 1 END WHERE id = ?",
            (
                status,
                response_json,
                error,
                prompt_tokens,
                completion_tokens,
                cost_usd,
                latency_ms,
                now(),
                status,
                call_id,
            ),
        )
        self.conn.commit()

    def spend(self, run_id: str | None = None) -> Spend:
        where, params = ("WHERE run_id = ?", (run_id,)) if run_id else ("", ())
        r = self.conn.execute(
            "SELECT count(*), coalesce(sum(attempts), 0), coalesce(sum(prompt_tokens), 0),"
            " coalesce(sum(completion_tokens), 0), coalesce(sum(cost_usd), 0)"
            f" FROM llm_calls {where}",
            params,
        ).fetchone()
        return Spend(*r)

    # -- candidates and decisions --------------------------------------------------

    def add_batch(
        self,
        run_id: str,
        outcomes: Sequence[Outcome],
        statuses: Sequence[Status],
        processed_call_ids: Iterable[str],
    ) -> None:
        """Store a batch of candidates with every decision, and mark their calls done:
        one transaction, so a crash leaves either all of it or none."""
        ts = now()
        with self._tx() as conn:
            for outcome, status in zip(outcomes, statuses, strict=True):
                c = outcome.candidate
                edits = outcome.edits
                cur = conn.execute(
                    "INSERT OR IGNORE INTO examples (id, source, slice, label, data_json, text,"
                    " content_sha, status, outcome, rejected_by, run_id, llm_call_id,"
                    " call_index, template, template_sha, model, parent_ids_json, created_at,"
                    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                    " ?, ?, ?, ?, ?, ?)",
                    (
                        c.id,
                        Source.EDITED.value if edits else Source.SYNTHETIC.value,
                        c.cell.slice,
                        c.cell.label,
                        data_json := canonical_json(c.row),
                        c.text,
                        sha256_text(data_json),
                        status.value,
                        outcome.verdict.value,
                        outcome.rejected_by,
                        run_id,
                        c.llm_call_id,
                        c.index,
                        c.template,
                        c.template_sha,
                        c.model,
                        json.dumps(list(c.parent_ids)),
                        ts,
                        ts,
                    ),
                )
                if not cur.rowcount:
                    continue  # stored before a crash; its decisions are stored too
                self._add_decisions(conn, run_id, outcome.decisions, ts)
                # The data as generated is kept here, out of exports: a redacting
                # filter's edit is provenance like any other.
                before = outcome.original.row if outcome.original else c.row
                for d in edits:
                    after = {**(d.edited_data or {}), **c.metadata}
                    conn.execute(
                        "INSERT INTO edits (example_id, editor, before_json, after_json,"
                        " created_at) VALUES (?, ?, ?, ?, ?)",
                        (
                            c.id,
                            f"filter:{d.filter}",
                            canonical_json(before),
                            canonical_json(after),
                            ts,
                        ),
                    )
                    before = after
            conn.executemany(
                "UPDATE llm_calls SET processed = 1 WHERE id = ?",
                [(i,) for i in processed_call_ids],
            )

    def _add_decisions(
        self, conn: sqlite3.Connection, run_id: str, decisions: Sequence[Decision], ts: str
    ) -> None:
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
                for d in decisions
            ],
        )

    def accepted_ids(self, run_id: str) -> list[tuple[str, str, str]]:
        """(id, slice, label) of the synthetic rows this run accepted."""
        return [
            tuple(r)  # type: ignore[misc]
            for r in self.conn.execute(
                "SELECT id, slice, label FROM examples WHERE run_id = ?"
                " AND source = 'synthetic' AND status = 'accepted' ORDER BY rowid",
                (run_id,),
            )
        ]

    # -- reading back --------------------------------------------------------------

    def funnel(self) -> list[dict[str, Any]]:
        """Per cell, where every generated row stands. They add up:

            generated = sum(rejected by each filter) + accepted + held
                        + review_rejected + surplus

        ``accepted`` counts toward the quota (approved rows and rows sampled for
        review included); ``sampled`` is the part of it awaiting a reviewer; ``held``
        are rows a filter sent to review, counted only once approved.
        """
        cells: dict[tuple[str, str], dict[str, Any]] = {}

        def cell(slice_: str, label: str) -> dict[str, Any]:
            return cells.setdefault((slice_, label), empty_funnel_row(slice_, label))

        for slice_, label, source, status, outcome, rejected_by, n in self.conn.execute(
            "SELECT slice, label, source, status, outcome, rejected_by, count(*) FROM examples"
            " GROUP BY slice, label, source, status, outcome, rejected_by"
        ):
            row = cell(slice_, label)
            if source == Source.REAL:
                row["real"] += n
                continue
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
            else:
                row[status] += n
        for slice_, label, status, n, pt, ct, cost in self.conn.execute(
            "SELECT slice, label, status, count(*), sum(prompt_tokens), sum(completion_tokens),"
            " sum(cost_usd) FROM llm_calls WHERE purpose = 'generate'"
            " GROUP BY slice, label, status"
        ):
            row = cell(slice_, label)
            row["calls"] += n
            if status in ("failed", "invalid"):
                row["failed_calls"] += n
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

    def dataset_rows(self) -> list[dict[str, Any]]:
        """The dataset as it stands: real rows and counted synthetic rows, with lineage."""
        rows = self._rows(
            "SELECT e.id, e.source, e.slice, e.label, e.data_json, e.status, e.run_id,"
            " e.model, e.template, e.template_sha, e.parent_ids_json, e.origin,"
            " e.llm_call_id, e.content_sha FROM examples e"
            f" WHERE e.source = 'real' OR {COUNTED} ORDER BY e.rowid"
        )
        for r in rows:
            r["data"] = json.loads(r.pop("data_json"))
            r["parent_ids"] = json.loads(r.pop("parent_ids_json"))
        return rows

    def texts_by_cell(self) -> dict[tuple[str, str], dict[str, list[str]]]:
        """(slice, label) -> {"real": [...], "synthetic": [...]}: the texts of the dataset
        as it stands (synthetic: the rows counted toward quotas)."""
        out: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(
            lambda: {"real": [], "synthetic": []}
        )
        for slice_, label, source, text in self.conn.execute(
            "SELECT slice, label, source, text FROM examples"
            f" WHERE source = 'real' OR {COUNTED} ORDER BY rowid"
        ):
            out[(slice_, label)]["real" if source == "real" else "synthetic"].append(text)
        return dict(out)

    def example_statuses(self) -> Counter[str]:
        return Counter(
            dict(self.conn.execute("SELECT status, count(*) FROM examples GROUP BY status"))
        )

    def decisions_for(self, example_id: str) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT filter, filter_version, verdict, score, reason FROM decisions"
            " WHERE example_id = ? ORDER BY id",
            (example_id,),
        )

    def judge_scores_for(self, example_id: str) -> list[dict[str, Any]]:
        """The judge's per-criterion scores and rationales for one row, in order."""
        return self._rows(
            "SELECT criterion, score, rationale, judge_model, sample, rubric, rubric_sha,"
            " llm_call_id FROM judge_scores WHERE example_id = ? ORDER BY id",
            (example_id,),
        )

    # -- audit, reviews, edits and frozen versions ---------------------------------

    def audit_examples(self) -> list[dict[str, Any]]:
        """Every stored row (rejected ones too) with its lineage, oldest first:
        what an external file's rows are matched against."""
        rows = self._rows(
            "SELECT id, source, slice, label, data_json, text, content_sha, status, run_id,"
            " model, template, template_sha, parent_ids_json, origin, llm_call_id"
            " FROM examples ORDER BY rowid"
        )
        for r in rows:
            r["data"] = json.loads(r.pop("data_json"))
            r["parent_ids"] = json.loads(r.pop("parent_ids_json"))
        return rows

    def rejection_reasons(self) -> list[tuple[str, str, str, str, int]]:
        """(slice, label, filter, reason slug, count) of every reject decision."""
        return [
            tuple(r)  # type: ignore[misc]
            for r in self.conn.execute(
                "SELECT e.slice, e.label, d.filter,"
                " trim(substr(d.reason, 1, instr(d.reason || ':', ':') - 1)), count(*)"
                " FROM decisions d JOIN examples e ON e.id = d.example_id"
                " WHERE d.verdict = 'reject' GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
            )
        ]

    def filter_decisions(self, filter_name: str) -> list[dict[str, Any]]:
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
            tuple(r)  # type: ignore[misc]
            for r in self.conn.execute(
                "SELECT filter, filter_version, count(*) FROM decisions"
                " GROUP BY filter, filter_version ORDER BY filter, filter_version"
            )
        ]

    def templates_used(self) -> list[dict[str, Any]]:
        """The templates stored, with how many generation calls used each."""
        return self._rows(
            "SELECT t.name, t.sha, (SELECT count(*) FROM llm_calls c"
            " WHERE c.template_sha = t.sha) AS calls FROM templates t ORDER BY t.name, t.sha"
        )

    def review_rows(self) -> list[dict[str, Any]]:
        """Rows that a human was asked to review or did review: the row's cell and
        status, and its latest review (verdict None while pending)."""
        return self._rows(
            "SELECT e.id AS example_id, e.slice, e.label, e.status, e.outcome,"
            " r.reviewer, r.verdict, r.edited_data_json IS NOT NULL AS edited"
            " FROM examples e LEFT JOIN reviews r ON r.id = (SELECT max(id) FROM reviews"
            " WHERE example_id = e.id) WHERE e.status IN ('review_pending', 'approved',"
            " 'review_rejected') OR r.id IS NOT NULL ORDER BY e.rowid"
        )

    def edit_example(self, example_id: str, editor: str, data: dict[str, Any], text: str) -> None:
        """Replace a row's data (``text`` is its text field): the change is kept in
        ``edits`` with the data before and after, and a synthetic row becomes
        ``edited``."""
        with self._tx() as conn:
            self._edit(conn, example_id, editor, data, text, now())

    def _edit(
        self,
        conn: sqlite3.Connection,
        example_id: str,
        editor: str,
        data: dict[str, Any],
        text: str | None,
        ts: str,
    ) -> None:
        before = self._one("SELECT data_json FROM examples WHERE id = ?", (example_id,))
        if before is None:
            raise StoreError(str(self.path), f"no example {example_id}")
        if text is None:
            raise ValueError("an edit needs the edited row's text")
        after = canonical_json(data)
        conn.execute(
            "INSERT INTO edits (example_id, editor, before_json, after_json, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (example_id, editor, before, after, ts),
        )
        conn.execute(
            # A real row stays real (its edit is in `edits`): quotas and the few-shot
            # pool count it as a seed still.
            "UPDATE examples SET data_json = ?, text = ?, content_sha = ?, source = CASE"
            " WHEN source = 'real' THEN 'real' ELSE 'edited' END, updated_at = ? WHERE id = ?",
            (after, text, sha256_text(after), ts, example_id),
        )

    def add_version(
        self,
        name: str,
        *,
        sha: str,
        config_sha: str,
        manifest: dict[str, Any],
        items: Sequence[dict[str, Any]],
    ) -> None:
        """Store a frozen version and its items (each: example_id, split, source,
        slice, label, status, data, text, content_sha, lineage) in one transaction."""
        with self._tx() as conn:
            if self._one("SELECT 1 FROM versions WHERE name = ?", (name,)):
                raise StoreError(
                    str(self.path), f"version {name!r} exists; a frozen version never changes"
                )
            conn.execute(
                "INSERT INTO versions (name, sha, created_at, config_sha, rows, manifest_json)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    name,
                    sha,
                    manifest.get("created_at") or now(),
                    config_sha,
                    len(items),
                    canonical_json(manifest),
                ),
            )
            conn.executemany(
                "INSERT INTO version_items (version, example_id, position, split, source,"
                " slice, label, status, data_json, text, content_sha, lineage_json)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        name,
                        it["example_id"],
                        i,
                        it["split"],
                        it["source"],
                        it["slice"],
                        it["label"],
                        it["status"],
                        canonical_json(it["data"]),
                        it["text"],
                        it["content_sha"],
                        canonical_json(it["lineage"]),
                    )
                    for i, it in enumerate(items)
                ],
            )

    def versions(self) -> list[dict[str, Any]]:
        """Frozen versions, oldest first (manifest decoded)."""
        rows = self._rows(
            "SELECT name, sha, created_at, config_sha, rows, manifest_json FROM versions"
            " ORDER BY rowid"
        )
        for r in rows:
            r["manifest"] = json.loads(r.pop("manifest_json"))
        return rows

    def version(self, name: str) -> dict[str, Any] | None:
        """One frozen version (manifest decoded), or None."""
        rows = self._rows(
            "SELECT name, sha, created_at, config_sha, rows, manifest_json FROM versions"
            " WHERE name = ?",
            (name,),
        )
        for r in rows:
            r["manifest"] = json.loads(r.pop("manifest_json"))
        return rows[0] if rows else None

    def version_items(self, name: str) -> list[dict[str, Any]]:
        """A version's rows as they were frozen, in export order."""
        rows = self._rows(
            "SELECT example_id, split, source, slice, label, status, data_json, text,"
            " content_sha, lineage_json FROM version_items WHERE version = ?"
            " ORDER BY position",
            (name,),
        )
        for r in rows:
            r["data"] = json.loads(r.pop("data_json"))
            r["lineage"] = json.loads(r.pop("lineage_json"))
        return rows

    def frozen_by_content(self) -> dict[str, dict[str, Any]]:
        """content_sha -> the first frozen item with that content (and its version):
        lets an audit recognise an exported row after the live row was edited."""
        out: dict[str, dict[str, Any]] = {}
        for r in self._rows(
            "SELECT version, example_id, source, slice, label, status, text, content_sha,"
            " lineage_json FROM version_items ORDER BY rowid"
        ):
            r["lineage"] = json.loads(r.pop("lineage_json"))
            out.setdefault(r["content_sha"], r)
        return out

    # -- the judge -----------------------------------------------------------------

    def plan_judge_calls(self, run_id: str, calls: Sequence[dict[str, Any]]) -> list[CallRow]:
        """Record judge calls (``purpose = 'judge'``) before they are sent; a request
        already recorded, answered or not, is returned as stored: the response cache."""
        ts = now()
        with self._tx() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO llm_calls (id, run_id, request_sha, purpose, slice,"
                " label, sample_index, template, template_sha, model, params_json,"
                " messages_json, parent_ids_json, status, created_at)"
                " VALUES (?, ?, ?, 'judge', ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                [
                    (
                        new_id("call"),
                        run_id,
                        c["request_sha"],
                        c["slice"],
                        c["label"],
                        c["sample_index"],
                        c["template"],
                        c["template_sha"],
                        c["model"],
                        canonical_json(c["params"]),
                        canonical_json(c["messages"]),
                        json.dumps(c["parent_ids"]),
                        ts,
                    )
                    for c in calls
                ],
            )
        shas = [c["request_sha"] for c in calls]
        by_sha = {row.request_sha: row for row in self._calls_by_sha(shas)}
        return [by_sha[s] for s in shas]

    def mark_call_invalid(self, call_id: str, error: str) -> None:
        """A reply that arrived well-formed but is not what was asked for (a judge
        reply missing a criterion): recorded as ``invalid`` with why."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE llm_calls SET status = 'invalid', error = ?, processed = 1 WHERE id = ?",
                (error, call_id),
            )

    def add_judged_batch(
        self,
        run_id: str,
        outcomes: Sequence[Outcome],
        statuses: Sequence[Status],
        processed_call_ids: Iterable[str],
        scores: Sequence[dict[str, Any]],
    ) -> None:
        """``add_batch`` and the judge's score rows (``judge_scores``), in one
        transaction. Scores of a row stored before are not stored again."""
        ts = now()
        with self._tx() as conn:
            ids = [o.candidate.id for o in outcomes]
            stored: set[str] = set()
            for chunk, marks in _in_chunks(ids):
                found = conn.execute(f"SELECT id FROM examples WHERE id IN ({marks})", chunk)
                stored.update(r[0] for r in found)
            self.add_batch(run_id, outcomes, statuses, processed_call_ids)
            conn.executemany(
                "INSERT INTO judge_scores (example_id, criterion, score, rationale,"
                " judge_model, sample, rubric, rubric_sha, llm_call_id, run_id, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r["example_id"],
                        r["criterion"],
                        r["score"],
                        r["rationale"],
                        r["judge_model"],
                        r["sample"],
                        r["rubric"],
                        r["rubric_sha"],
                        r["llm_call_id"],
                        r["run_id"],
                        ts,
                    )
                    for r in scores
                    if r["example_id"] not in stored
                ],
            )
            # A judge call is processed once its scores are stored, as a generation
            # call is once its rows are: nothing of it is left to do after a crash.
            conn.executemany(
                "UPDATE llm_calls SET processed = 1 WHERE id = ?",
                [(i,) for i in {r["llm_call_id"] for r in scores if r["llm_call_id"]}],
            )

    def judged_examples(self) -> list[dict[str, Any]]:
        """Every row the rubric judge decided, with its verdict, weighted score and
        reason, its mean score per criterion, and the last human verdict on it (from
        ``reviews``; None if nobody reviewed it), oldest first."""
        rows = self._rows(
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

    def judge_summary(self) -> dict[str, Any]:
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
        return {
            "decisions": {f: dict(c) for f, c in reasons.items()},
            "criteria": criteria,
            "calls": calls[0],
            "cost_usd": calls[1],
            "invalid_calls": calls[2],
        }

    def example(self, example_id: str) -> dict[str, Any] | None:
        """One row with its provenance, decisions, judge scores, edits and reviews."""
        rows = self._rows(
            "SELECT id, source, slice, label, data_json, status, outcome, rejected_by, run_id,"
            " llm_call_id, template, template_sha, model, origin, created_at"
            " FROM examples WHERE id = ?",
            (example_id,),
        )
        if not rows:
            return None
        row = rows[0]
        row["data"] = json.loads(row.pop("data_json"))
        row["decisions"] = self.decisions_for(example_id)
        row["judge_scores"] = self.judge_scores_for(example_id)
        row["reviews"] = self._rows(
            "SELECT reviewer, verdict, note, created_at FROM reviews WHERE example_id = ?"
            " ORDER BY id",
            (example_id,),
        )
        return row

    # -- batch jobs ----------------------------------------------------------------

    def record_batch_attempts(self, call_ids: Sequence[str]) -> None:
        """One attempt per line of a batch about to be created, in one transaction.
        A call sent again after a failure is pending until its new reply is stored,
        so a resumed run still finds it and collects it from its batch."""
        with self._tx() as conn:
            conn.executemany(
                "UPDATE llm_calls SET attempts = attempts + 1, status = 'pending', processed = 0"
                " WHERE id = ?",
                [(i,) for i in call_ids],
            )

    def add_batch_job(
        self,
        batch_id: str,
        *,
        run_id: str | None,
        input_file_id: str,
        status: str,
        call_ids: Sequence[str],
    ) -> None:
        """Record a created batch job, committed before anything waits on it."""
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO llm_batches (id, run_id, input_file_id, status, call_ids_json,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (batch_id, run_id, input_file_id, status, json.dumps(list(call_ids)), now()),
            )

    def update_batch_job(
        self,
        batch_id: str,
        *,
        status: str,
        output_file_id: str | None = None,
        error_file_id: str | None = None,
        request_counts: dict[str, int] | None = None,
        finished: bool = False,
    ) -> None:
        """Note a job's status; ``finished`` once every reply of it is stored."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE llm_batches SET status = ?,"
                " output_file_id = coalesce(?, output_file_id),"
                " error_file_id = coalesce(?, error_file_id),"
                " request_counts_json = coalesce(?, request_counts_json),"
                " finished_at = CASE WHEN ? THEN ? ELSE finished_at END WHERE id = ?",
                (
                    status,
                    output_file_id,
                    error_file_id,
                    None if request_counts is None else json.dumps(request_counts),
                    finished,
                    now(),
                    batch_id,
                ),
            )

    def batch_jobs(self, *, open_only: bool = False) -> list[dict[str, Any]]:
        """Batch jobs, oldest first; ``open_only``: those whose replies are not yet
        stored. ``call_ids`` and ``request_counts`` come decoded."""
        where = "WHERE finished_at IS NULL" if open_only else ""
        rows = self._rows(
            "SELECT id, run_id, input_file_id, output_file_id, error_file_id, status,"
            " call_ids_json, request_counts_json, created_at, finished_at FROM llm_batches"
            f" {where} ORDER BY rowid"
        )
        for r in rows:
            r["call_ids"] = json.loads(r.pop("call_ids_json"))
            counts = r.pop("request_counts_json")
            r["request_counts"] = json.loads(counts) if counts else None
        return rows

    def calls_by_id(self, call_ids: Sequence[str]) -> list[CallRow]:
        """The calls with these ids, in the order given; ids not stored are skipped."""
        found: dict[str, CallRow] = {}
        for chunk, marks in _in_chunks(call_ids):
            found.update((c.id, c) for c in self._call_rows(f"WHERE id IN ({marks})", chunk))
        return [found[i] for i in call_ids if i in found]

    # -- human review --------------------------------------------------------------

    def unqueued_for_review(self) -> list[dict[str, Any]]:
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

    def enqueue_for_review(self, items: Sequence[tuple[str, str, int]]) -> None:
        """Add ``(example_id, reason, reviews_needed)`` to the queue; queued rows stay."""
        ts = now()
        with self._tx() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO review_items (example_id, reason, reviews_needed,"
                " created_at) VALUES (?, ?, ?, ?)",
                [(i, reason, n, ts) for i, reason, n in items],
            )

    def review_queue(self) -> list[dict[str, Any]]:
        """Every queued row in queue order: cell, why, reviews needed, its status and
        the reviewers who reviewed it (``reviewers``, a list)."""
        rows = self._rows(
            "SELECT q.example_id, e.slice, e.label, q.reason, q.reviews_needed, e.status,"
            " (SELECT json_group_array(r.reviewer) FROM reviews r"
            "  WHERE r.example_id = q.example_id) AS reviewers"
            " FROM review_items q JOIN examples e ON e.id = q.example_id ORDER BY q.rowid"
        )
        for r in rows:
            r["reviewers"] = json.loads(r["reviewers"])
        return rows

    def examples_by_id(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Full rows (``data`` and ``parent_ids`` decoded) in the order given; ids not
        stored are skipped."""
        found: dict[str, dict[str, Any]] = {}
        for chunk, marks in _in_chunks(ids):
            for r in self._rows(
                "SELECT id, source, slice, label, data_json, text, status, outcome, run_id,"
                " llm_call_id, template, template_sha, model, parent_ids_json, origin,"
                f" created_at FROM examples WHERE id IN ({marks})",
                chunk,
            ):
                r["data"] = json.loads(r.pop("data_json"))
                r["parent_ids"] = json.loads(r.pop("parent_ids_json"))
                found[r["id"]] = r
        return [found[i] for i in ids if i in found]

    def edits_for(self, example_id: str) -> list[dict[str, Any]]:
        """Every change to a row's data, oldest first, ``before``/``after`` decoded."""
        rows = self._rows(
            "SELECT editor, before_json, after_json, created_at FROM edits"
            " WHERE example_id = ? ORDER BY id",
            (example_id,),
        )
        for r in rows:
            r["before"] = json.loads(r.pop("before_json"))
            r["after"] = json.loads(r.pop("after_json"))
        return rows

    def reviews(self, example_id: str | None = None) -> list[dict[str, Any]]:
        """Reviews (all, or one row's) in the order made, with the row's cell;
        ``edited_data`` decoded (None when the reviewer did not edit)."""
        where, params = ("WHERE r.example_id = ?", (example_id,)) if example_id else ("", ())
        rows = self._rows(
            "SELECT r.id, r.example_id, e.slice, e.label, r.reviewer, r.verdict, r.reason,"
            " r.note, r.origin, r.edited_data_json, r.created_at"
            f" FROM reviews r JOIN examples e ON e.id = r.example_id {where} ORDER BY r.id",
            params,
        )
        for r in rows:
            edited = r.pop("edited_data_json")
            r["edited_data"] = json.loads(edited) if edited else None
        return rows

    def add_reviews(self, reviews: Sequence[NewReview]) -> tuple[int, int]:
        """Store reviews in one transaction: all of them or, on an error, none.

        A reviewer reviews a row once: a second review by the same name is skipped
        (counted as a duplicate, so importing a file twice adds nothing). An edit
        rewrites the row's data (``source = edited``), the data before it kept in
        ``edits`` under ``reviewer:<name>``. Once a row has the reviews it needs it
        is ``approved`` if every reviewer approved, else ``review_rejected``.
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
                cur = conn.execute(
                    "INSERT OR IGNORE INTO reviews (example_id, reviewer, verdict,"
                    " edited_data_json, note, reason, origin, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        rv.example_id,
                        rv.reviewer,
                        rv.verdict,
                        None if rv.edited_data is None else canonical_json(rv.edited_data),
                        rv.note,
                        rv.reason,
                        rv.origin,
                        ts,
                    ),
                )
                if not cur.rowcount:
                    duplicates += 1
                    continue
                added += 1
                after = None if rv.edited_data is None else canonical_json(rv.edited_data)
                if after is not None and after != data_json:
                    conn.execute(
                        "INSERT INTO edits (example_id, editor, before_json, after_json,"
                        " created_at) VALUES (?, ?, ?, ?, ?)",
                        (rv.example_id, f"reviewer:{rv.reviewer}", data_json, after, ts),
                    )
                    conn.execute(
                        "UPDATE examples SET data_json = ?, text = ?, content_sha = ?,"
                        " source = 'edited', updated_at = ? WHERE id = ?",
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
                    conn.execute(
                        "UPDATE examples SET status = ?, updated_at = ? WHERE id = ?",
                        (status, ts, rv.example_id),
                    )
        return added, duplicates

    def ack_review_cell(self, slice_: str, label: str, note: str | None = None) -> int:
        """Acknowledge a cell's reviews so far; returns how many were set aside."""
        with self._tx() as conn:
            last = conn.execute("SELECT coalesce(max(id), 0) FROM reviews").fetchone()[0]
            before = self._last_ack(slice_, label)
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

    def _last_ack(self, slice_: str, label: str) -> int:
        return int(
            self._one(
                "SELECT coalesce(max(last_review_id), 0) FROM review_acks"
                " WHERE slice = ? AND label = ?",
                (slice_, label),
            )
        )

    def review_acks(self) -> dict[tuple[str, str], int]:
        """(slice, label) -> the last review id acknowledged for that cell."""
        return {
            (r[0], r[1]): r[2]
            for r in self.conn.execute(
                "SELECT slice, label, max(last_review_id) FROM review_acks GROUP BY 1, 2"
            )
        }


@dataclass(frozen=True)
class NewReview:
    """One reviewer's verdict on one queued row, as ``Store.add_reviews`` takes it."""

    example_id: str
    reviewer: str
    verdict: str  # approve | reject
    origin: str  # web | terminal | label-studio | argilla
    reason: str | None = None  # a reject's tag
    note: str | None = None
    edited_data: dict[str, Any] | None = None  # the whole row after an edit
    edited_text: str | None = None  # its text field, for the text column


def _in_chunks(values: Sequence[str], size: int = 500) -> Iterator[tuple[list[str], str]]:
    """``values`` in chunks small enough for one ``IN (...)`` (SQLite caps the number
    of parameters of a statement), each with its placeholders."""
    for i in range(0, len(values), size):
        chunk = list(values[i : i + size])
        yield chunk, ",".join("?" * len(chunk))


def empty_funnel_row(slice_: str, label: str) -> dict[str, Any]:
    return {
        "slice": slice_,
        "label": label,
        "real": 0,
        "generated": 0,
        "rejected": Counter(),
        "accepted": 0,
        "sampled": 0,
        "held": 0,
        "review_rejected": 0,
        "surplus": 0,
        "calls": 0,
        "failed_calls": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost_usd": 0.0,
    }


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = ["CallRow", "RunRow", "SeedImport", "Spend", "Store", "content_sha", "Verdict"]
