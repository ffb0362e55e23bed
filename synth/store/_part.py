"""What every part of the store shares: the connection, transactions, row reading.

A part (``store.calls``, ``store.examples`` ...) is a view of one group of tables
over the store's one connection, so a stage's signature can name the small part it
uses while every write still goes through the same ``atomic()``.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def decode(row: dict[str, Any], *columns: str) -> Any:
    """Replace each ``<name>_json`` column of ``row`` by ``<name>``, decoded (NULL stays
    None): callers never see the store's JSON encoding. The row, typed by the caller."""
    for column in columns:
        raw = row.pop(column)
        row[column.removesuffix("_json")] = None if raw is None else json.loads(raw)
    return row


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[None]:
    """One transaction; nested in another, a savepoint.

    It begins IMMEDIATE: it takes the write lock first, waiting up to the busy timeout
    for another process's writes. A deferred transaction that read before it wrote
    cannot wait (its snapshot may be stale), and fails at once with "database is
    locked" when another process wrote in between.
    """
    if db.conn.in_transaction:
        with db.atomic():
            yield
        return
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.conn.execute("COMMIT")
    except BaseException:
        _rollback(db.conn)
        raise


def _rollback(conn: sqlite3.Connection) -> None:
    # A failed rollback (the disk gone) must not hide the error that caused it.
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass


def in_chunks(values: Sequence[str], size: int = 500) -> Iterator[tuple[list[str], str]]:
    """``values`` in chunks small enough for one ``IN (...)`` (SQLite caps the number
    of parameters of a statement), each with its placeholders."""
    for i in range(0, len(values), size):
        chunk = list(values[i : i + size])
        yield chunk, ",".join("?" * len(chunk))


class Part:
    """One group of tables over the store's connection."""

    def __init__(self, db: sqlite_utils.Database, path: Path) -> None:
        self.db = db
        self.conn: sqlite3.Connection = db.conn
        self.path = path

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with transaction(self.db):
            yield self.conn

    def _rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        """Rows as dicts keyed by column; typed by the caller's return annotation."""
        cur = self.conn.execute(sql, params)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def _one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return row[0] if row else None
