"""``llm_batches``: Batch API jobs, recorded before the run waits on them, so a killed
run polls the same job instead of paying for its calls again. With ``store.calls``,
this is all the batch client needs of the store."""

from __future__ import annotations

import json
from collections.abc import Sequence

from synth.store._part import Part, decode, now
from synth.store.rows import BatchJob


class BatchJobs(Part):
    def record_attempts(self, call_ids: Sequence[str]) -> None:
        """One attempt per line of a job about to be created, in one transaction.
        A call sent again after a failure is pending until its new reply is stored,
        so a resumed run still finds it and collects it from its job."""
        with self._tx() as conn:
            conn.executemany(
                "UPDATE llm_calls SET attempts = attempts + 1, status = 'pending', processed = 0"
                " WHERE id = ?",
                [(i,) for i in call_ids],
            )

    def add(
        self,
        batch_id: str,
        *,
        run_id: str | None,
        input_file_id: str,
        status: str,
        call_ids: Sequence[str],
    ) -> None:
        """Record a created job, committed before anything waits on it."""
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO llm_batches (id, run_id, input_file_id, status, call_ids_json,"
                " created_at) VALUES (:id, :run_id, :input_file_id, :status, :call_ids_json,"
                " :created_at)",
                {
                    "id": batch_id,
                    "run_id": run_id,
                    "input_file_id": input_file_id,
                    "status": status,
                    "call_ids_json": json.dumps(list(call_ids)),
                    "created_at": now(),
                },
            )

    def update(
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
                "UPDATE llm_batches SET status = :status,"
                " output_file_id = coalesce(:output_file_id, output_file_id),"
                " error_file_id = coalesce(:error_file_id, error_file_id),"
                " request_counts_json = coalesce(:request_counts_json, request_counts_json),"
                " finished_at = CASE WHEN :finished THEN :now ELSE finished_at END"
                " WHERE id = :id",
                {
                    "status": status,
                    "output_file_id": output_file_id,
                    "error_file_id": error_file_id,
                    "request_counts_json": (
                        None if request_counts is None else json.dumps(request_counts)
                    ),
                    "finished": finished,
                    "now": now(),
                    "id": batch_id,
                },
            )

    def jobs(self, *, open_only: bool = False) -> list[BatchJob]:
        """Jobs, oldest first; ``open_only``: those whose replies are not yet stored."""
        where = "WHERE finished_at IS NULL" if open_only else ""
        return [
            decode(r, "call_ids_json", "request_counts_json")
            for r in self._rows(
                "SELECT id, run_id, input_file_id, output_file_id, error_file_id, status,"
                " call_ids_json, request_counts_json, created_at, finished_at"
                f" FROM llm_batches {where} ORDER BY rowid"
            )
        ]
