"""The SQLite provenance store: the only package that speaks SQL.

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
    pairs       preference pairs: the best- and worst-judged responses to a prompt

``Store(path)`` is the one entry point: it opens the file, sets the pragmas and applies
the migrations (``schema.py``); ``Store(path, readonly=True)`` opens it for reading
only, migrating nothing, so a store on read-only media can be read (``faults.py``).
A failure of the file, at open or under ``with Store(...)``, is a one-line
``StoreError`` naming it and what to do. Its parts each hold the SQL of one group of tables, so
a stage names only the part it uses (the LLM client takes ``store.calls``):

    store.runs        runs.py        begin, resume, finish
    store.calls       calls.py       templates, planned calls, replies, spend
    store.batch_jobs  batch_jobs.py  Batch API jobs
    store.examples    examples.py    seeds, candidates with their decisions, edits
    store.reviews     reviews.py     the review queue and verdicts
    store.versions    versions.py    frozen versions
    store.reports     reports.py     funnel, filter and judge figures, one row's story
    store.pairs       pairs.py       preference pairs and the alternative responses

Reads return typed rows (``rows.py``), JSON columns decoded. Writes that belong
together share one transaction (``atomic()`` nests as savepoints); a paid reply is
committed the moment it arrives, in its own transaction, so a crash loses no paid work.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from synth.errors import StoreError
from synth.store._part import transaction
from synth.store.batch_jobs import BatchJobs
from synth.store.calls import Calls
from synth.store.examples import Examples
from synth.store.faults import connect, read_only, store_fault, writable
from synth.store.pairs import Pairs
from synth.store.reports import Reports
from synth.store.reviews import Reviews
from synth.store.rows import CallRow, NewReview, RunRow, SeedImport, Spend, empty_funnel_row
from synth.store.runs import Runs
from synth.store.schema import migrations
from synth.store.versions import Versions

_COUNTABLE = frozenset({"examples", "llm_calls", "decisions", "reviews", "runs", "edits"})


class Store:
    """A synth project's SQLite file. One per project; safe to reopen at any time."""

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        try:
            self.db = sqlite_utils.Database(self._connect())
        except (sqlite3.Error, OSError) as e:
            raise store_fault(e, self.path) from None
        self.conn: sqlite3.Connection = self.db.conn
        self.runs = Runs(self.db, self.path)
        self.calls = Calls(self.db, self.path)
        self.batch_jobs = BatchJobs(self.db, self.path)
        self.examples = Examples(self.db, self.path)
        self.reviews = Reviews(self.db, self.path)
        self.versions = Versions(self.db, self.path)
        self.reports = Reports(self.db, self.path)
        self.pairs = Pairs(self.db, self.path)

    def _connect(self) -> sqlite3.Connection:
        if not self.readonly and not writable(self.path):
            raise read_only(self.path)
        conn = connect(self.path, readonly=self.readonly)
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            if self.readonly:
                conn.execute("PRAGMA query_only = ON")
                self._refuse_unmigrated(sqlite_utils.Database(conn))
                return conn
            db = sqlite_utils.Database(conn)
            db.enable_wal()
            # WAL + NORMAL survives a killed process (only an OS crash can lose the last
            # commits), at a fraction of FULL's fsync cost per paid reply.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            # SQLite's default 2 MB page cache holds the top of the indexes of a store of
            # 10,000 rows; at 100,000 every insert reads index pages back through the
            # OS (0.16 ms more CPU per stored row in bench/scale.py's one cell).
            conn.execute("PRAGMA cache_size = -32768")
            if migrations.pending(db):
                # Under the write lock, so two processes opening a new store at once do
                # not both create its tables: the second finds nothing left to apply.
                with transaction(db):
                    migrations.apply(db)
        except BaseException:
            conn.close()
            raise
        return conn

    def _refuse_unmigrated(self, db: sqlite_utils.Database) -> None:
        if migrations.pending(db):
            raise StoreError(
                str(self.path),
                "the store was made by an earlier synth and needs upgrading, which a"
                " read-only open cannot do: make it writable and run `synth plan` once",
            )

    def close(self) -> None:
        self.runs.lock.release()
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, kind: object, error: BaseException | None, tb: object) -> None:
        self.close()
        if isinstance(error, sqlite3.Error):
            raise store_fault(error, self.path) from None

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """One transaction around several parts' writes; nested, a savepoint."""
        with transaction(self.db):
            yield

    def count(self, table: str) -> int:
        """Rows in one of the main tables."""
        if table not in _COUNTABLE:
            raise ValueError(table)
        return int(self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


__all__ = [
    "CallRow",
    "NewReview",
    "RunRow",
    "SeedImport",
    "Spend",
    "Store",
    "empty_funnel_row",
    "migrations",
]
