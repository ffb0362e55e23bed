"""``runs``: one row per `synth run` or `synth filter`; an interrupted run is resumed
under its id.

A run's ``kind`` says which: ``generate`` (the quota loop) or ``filter`` (the chain
over a user's file, ``input_json`` naming the file and the settings). Each kind
resumes only its own runs, and no run starts while another is still going (both
kinds write rows whose counts the other relies on): a run holds the store's run
lock (``lock.py``) until the store is closed, so a run found ``running`` by the
process that holds the lock was cut off, whatever pid it names.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlite_utils

from synth.errors import StoreError
from synth.store._part import Part, new_id, now
from synth.store.lock import RunLock
from synth.store.rows import RunRow


class Runs(Part):
    def __init__(self, db: sqlite_utils.Database, path: Path) -> None:
        super().__init__(db, path)
        self.lock = RunLock(path)

    def begin(self, config_json: str, config_sha: str) -> RunRow:
        """Resume the last run if it was cut off with this config; else start one."""
        self._lock()
        with self._tx() as conn:
            last = self._run_rows("WHERE kind = 'generate' ORDER BY rowid DESC LIMIT 1")
            if last and last[0].status == "running":
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
                " VALUES (:id, :started_at, 'running', :config_json, :config_sha, :pid)",
                {
                    "id": run_id,
                    "started_at": now(),
                    "config_json": config_json,
                    "config_sha": config_sha,
                    "pid": os.getpid(),
                },
            )
        return self._run_rows("WHERE id = ?", (run_id,))[0]

    def begin_filter(
        self, config_json: str, config_sha: str, input_json: str, *, needed: bool
    ) -> RunRow | None:
        """Resume the last filter run if it was cut off over the same input with this
        config; else start one, unless nothing is ``needed`` (every row of the file is
        stored already): then None, and nothing is written."""
        self._lock()
        with self._tx() as conn:
            last = self._one(
                "SELECT id FROM runs WHERE kind = 'filter' AND status = 'running'"
                " ORDER BY rowid DESC LIMIT 1"
            )
            if last is not None:
                sha, was = conn.execute(
                    "SELECT config_sha, input_json FROM runs WHERE id = ?", (last,)
                ).fetchone()
                if sha == config_sha and was == input_json:
                    conn.execute(
                        "UPDATE runs SET pid = ?, resumes = resumes + 1 WHERE id = ?",
                        (os.getpid(), last),
                    )
                    return self._run_rows("WHERE id = ?", (last,))[0]
                conn.execute(
                    "UPDATE runs SET status = 'stopped', finished_at = ?, stop_reason ="
                    " 'interrupted; a later filter run had another input or config'"
                    " WHERE id = ?",
                    (now(), last),
                )
            if not needed:
                return None
            run_id = new_id("run")
            conn.execute(
                "INSERT INTO runs (id, started_at, status, config_json, config_sha, pid, kind,"
                " input_json) VALUES (:id, :started_at, 'running', :config_json, :config_sha,"
                " :pid, 'filter', :input_json)",
                {
                    "id": run_id,
                    "started_at": now(),
                    "config_json": config_json,
                    "config_sha": config_sha,
                    "pid": os.getpid(),
                    "input_json": input_json,
                },
            )
        return self._run_rows("WHERE id = ?", (run_id,))[0]

    def _lock(self) -> None:
        """Take the run lock, or refuse in one line naming the run that holds it."""
        holder = self.lock.acquire()
        if holder is None:
            return
        going = self._one(
            "SELECT kind || ' ' || id FROM runs WHERE status = 'running' AND pid = ?"
            " ORDER BY rowid DESC LIMIT 1",
            (holder,),
        )
        what = (going or "a run").replace("generate ", "run ").replace("filter ", "filter run ")
        pid = f" (pid {holder})" if holder else ""
        raise StoreError(
            str(self.path),
            f"{what} is still going{pid}: one run at a time per store; wait for it to end,"
            " or stop it",
        )

    def finish(
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

    def all(self) -> list[RunRow]:
        """Every run, oldest first."""
        return self._run_rows("ORDER BY rowid")

    def _run_rows(self, where: str, params: Sequence[Any] = ()) -> list[RunRow]:
        return [
            RunRow(*r)
            for r in self.conn.execute(
                "SELECT id, status, config_sha, started_at, finished_at, stop_reason, resumes,"
                f" kind FROM runs {where}",
                params,
            )
        ]
