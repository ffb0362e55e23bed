"""Opening the store file, and what its failures mean to the person at the keyboard.

Every sqlite3 error becomes a one-line ``StoreError`` naming the file and what to do;
SQLite's own words ("database or disk is full", "file is not a database") say what
happened but not which file, whether anything was lost, or what to try next.

A read-only open (``file:...?mode=ro``) serves the commands that only read, so an
archived store on read-only media can still be audited and exported. SQLite in WAL
mode keeps a shared-memory file (``-shm``) beside the store even to read, which a
read-only folder cannot hold; when no write-ahead log is left there (the last writer
checkpointed it on close) the file is read as immutable, since nothing can be
missing from it.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from synth.errors import StoreError

# SQLite's primary result codes (https://sqlite.org/rescode.html).
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 8, 10, 11, 13, 14, 26

READ_COMMANDS = "status, audit, export, show, rows, versions"

_WHAT_TO_DO = {
    _FULL: "the disk is full: the failed step was rolled back; free some space and run the"
    " command again",
    _IOERR: "disk I/O error (a full disk, a file size limit or a failing disk): the failed"
    " step was rolled back; check the disk and run the command again",
    _CORRUPT: "the file is damaged (sqlite3: {}): restore it from a backup;"
    " `sqlite3 FILE .recover` may save its rows",
    _NOTADB: "not a SQLite database (or its header is damaged): check project.db in the"
    " config, or restore the store from a backup",
    _READONLY: "the store is read-only (the file or its folder is not writable) and this"
    f" command writes to it: make both writable, or use a command that reads ({READ_COMMANDS})",
    _CANTOPEN: "cannot open the store file (its folder is missing, not writable, or not"
    " accessible): check the path and its permissions",
    _BUSY: "the store is busy: another synth process held it for over 10 s; run the command"
    " again when that one is done",
}
_WHAT_TO_DO[_LOCKED] = _WHAT_TO_DO[_BUSY]


def read_only(path: Path) -> StoreError:
    """The error for a command that writes, given a store it cannot write."""
    return StoreError(str(path), _WHAT_TO_DO[_READONLY])


def store_fault(error: BaseException, path: Path) -> StoreError:
    """The one-line error for a failure of the store at ``path``."""
    if isinstance(error, StoreError):
        return error
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", None)
        template = _WHAT_TO_DO.get(code & 0xFF) if isinstance(code, int) else None
        if template is None:
            return StoreError(str(path), f"sqlite3: {error}")
        return StoreError(str(path), template.format(error))
    if isinstance(error, OSError):
        return StoreError(str(path), f"{error.strerror or error}")
    return StoreError(str(path), str(error))


def connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    """A connection to the store; refuses an empty file, and for ``readonly`` a missing one
    (only a command that writes creates a store)."""
    if readonly and not path.exists():
        raise StoreError(
            str(path), "no store here yet: `synth seeds import FILE` or `synth run` creates it"
        )
    if path.exists() and path.is_file() and path.stat().st_size == 0:
        # SQLite takes an empty file for a new database; here it is far more likely a
        # store truncated by a failed copy, and a run on it would start from nothing.
        raise StoreError(
            str(path),
            "the store file is empty (0 bytes), not a synth store: restore it, or delete it"
            " to start a new store",
        )
    if not readonly:
        path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite3.connect(path)
    uri = f"file:{quote(str(path.absolute()))}?mode=ro"
    try:
        return _checked(sqlite3.connect(uri, uri=True))
    except sqlite3.Error as e:
        wal = path.with_name(path.name + "-wal")
        no_log = not wal.exists() or wal.stat().st_size == 0
        if getattr(e, "sqlite_errorcode", 0) & 0xFF != _CANTOPEN or not no_log:
            raise
    return _checked(sqlite3.connect(uri + "&immutable=1", uri=True))


def _checked(conn: sqlite3.Connection) -> sqlite3.Connection:
    """The connection, once the file's header has been read: a damaged file fails here,
    where the message can name it, rather than in the middle of a report."""
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def writable(path: Path) -> bool:
    """Whether a writer can use the store at ``path`` (file and folder both writable)."""
    folder = path.parent if path.parent.exists() else None
    if folder is not None and not os.access(folder, os.W_OK):
        return False
    return not path.exists() or os.access(path, os.W_OK)
