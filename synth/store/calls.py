"""``llm_calls`` and ``templates``: every request, recorded before it is sent.

A call is written as ``pending`` with its full request before it leaves, each attempt
is counted before it leaves, and its reply is committed the moment it arrives: the
table is the response cache (keyed by ``request_sha``) that makes a resumed run pay
for nothing twice. This part is all the LLM client needs of the store.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from synth.records import SIMULATOR_FINGERPRINT, CellKey, canonical_json
from synth.store._part import Part, in_chunks, new_id, now
from synth.store.rows import CallRow, CellSpend, PlannedCall, Spend

_CALL_COLUMNS = (
    "id, run_id, request_sha, slice, label, template, template_sha, model, params_json,"
    " messages_json, parent_ids_json, status, response_json, attempts, sample_index, purpose"
)

_REPLY_COLUMNS = (
    " status = :status, response_json = :response_json, error = :error,"
    " prompt_tokens = :prompt_tokens, completion_tokens = :completion_tokens,"
    " cost_usd = :cost_usd, cached_tokens = :cached_tokens, cached_usd = :cached_usd,"
    " latency_ms = :latency_ms, answered_at = :answered_at, served_model = :served_model,"
    " repairs_json = :repairs_json, reason = :reason,"
    " processed = CASE WHEN :status = 'ok' THEN processed ELSE 1 END"
)
_RECORD_REPLY = f"UPDATE llm_calls SET{_REPLY_COLUMNS} WHERE id = :id"
# ``attempt_answered``'s taking back, with the reply that answers the attempt.
_RECORD_ANSWER = (
    f"UPDATE llm_calls SET{_REPLY_COLUMNS},"
    " unanswered_attempts = max(0, unanswered_attempts - 1),"
    " unanswered_tokens = max(0, unanswered_tokens - :answered_tokens),"
    " unanswered_usd = max(0.0, unanswered_usd - :answered_usd) WHERE id = :id"
)


class Calls(Part):
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
        return 0 if n is None else int(n) + 1

    def plan(
        self,
        run_id: str,
        calls: Sequence[PlannedCall],
        *,
        purpose: Literal["generate", "judge", "respond"] = "generate",
        first_attempt: bool = False,
    ) -> list[CallRow]:
        """Record calls before they are sent; a request already recorded, answered or
        not, is returned as stored: the response cache.

        ``first_attempt`` counts each new call's first attempt in the same transaction,
        instead of one commit per request as it leaves. An attempt counted but never
        sent (the process died first) is sent under its own Idempotency-Key when the
        run resumes, so it is served, and billed, once either way.
        """
        ts = now()
        attempts = 1 if first_attempt else 0
        with self._tx() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO llm_calls (id, run_id, request_sha, purpose, slice,"
                " label, sample_index, template, template_sha, model, params_json,"
                " messages_json, parent_ids_json, status, attempts, created_at)"
                " VALUES (:id, :run_id, :request_sha, :purpose, :slice, :label,"
                " :sample_index, :template, :template_sha, :model, :params_json,"
                " :messages_json, :parent_ids_json, 'pending', :attempts, :created_at)",
                [
                    {
                        "id": new_id("call"),
                        "run_id": run_id,
                        "request_sha": c["request_sha"],
                        "purpose": purpose,
                        "slice": c["slice"],
                        "label": c["label"],
                        "sample_index": c["sample_index"],
                        "template": c["template"],
                        "template_sha": c["template_sha"],
                        "model": c["model"],
                        "params_json": canonical_json(c["params"]),
                        "messages_json": canonical_json(c["messages"]),
                        "parent_ids_json": json.dumps(c["parent_ids"]),
                        "attempts": attempts,
                        "created_at": ts,
                    }
                    for c in calls
                ],
            )
        shas = [c["request_sha"] for c in calls]
        by_sha = {row.request_sha: row for row in self._by_sha(shas)}
        return [by_sha[s] for s in shas]

    def _by_sha(self, shas: Sequence[str]) -> list[CallRow]:
        out: list[CallRow] = []
        for chunk, marks in in_chunks(shas):
            out += self._call_rows(f"WHERE request_sha IN ({marks})", chunk)
        return out

    def by_id(self, call_ids: Sequence[str]) -> list[CallRow]:
        """The calls with these ids, in the order given; ids not stored are skipped."""
        found: dict[str, CallRow] = {}
        for chunk, marks in in_chunks(call_ids):
            found.update((c.id, c) for c in self._call_rows(f"WHERE id IN ({marks})", chunk))
        return [found[i] for i in call_ids if i in found]

    def unfinished(self) -> list[CallRow]:
        """Generation calls planned but never answered, or answered but not yet turned
        into rows: what a killed run leaves behind, oldest first."""
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
            for r in self.conn.execute(f"SELECT {_CALL_COLUMNS} FROM llm_calls {where}", params)
        ]

    def record_attempt(self, call_id: str) -> None:
        """Counted before the request leaves, so a kill mid-flight still counts it."""
        self.conn.execute("UPDATE llm_calls SET attempts = attempts + 1 WHERE id = ?", (call_id,))
        self.conn.commit()

    def attempt_sent(self, call_id: str, tokens: int, usd: float) -> None:
        """An attempt has left: its estimate stands until its answer comes
        (``synth.llm.unanswered``). Committed at once, so a kill leaves it standing."""
        self.conn.execute(
            "UPDATE llm_calls SET unanswered_attempts = unanswered_attempts + 1,"
            " unanswered_tokens = unanswered_tokens + ?, unanswered_usd = unanswered_usd + ?"
            " WHERE id = ?",
            (tokens, usd, call_id),
        )
        self.conn.commit()

    def attempt_answered(self, call_id: str, tokens: int, usd: float) -> None:
        """The server answered an attempt ``attempt_sent`` recorded: its estimate goes."""
        self.conn.execute(
            "UPDATE llm_calls SET unanswered_attempts = max(0, unanswered_attempts - 1),"
            " unanswered_tokens = max(0, unanswered_tokens - ?),"
            " unanswered_usd = max(0.0, unanswered_usd - ?) WHERE id = ?",
            (tokens, usd, call_id),
        )
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
        cached_tokens: int = 0,
        cached_usd: float = 0.0,
        served_model: str | None = None,
        repairs: Sequence[str] = (),
        reason: str | None = None,
        answered: tuple[int, float] | None = None,
    ) -> None:
        """A reply (or the failure that ended the call), committed as it arrives, with
        the model the server says served it, how its shape was mended, if it was, and
        why it is unusable, if it is (a ``synth.records.Unusable`` word). Of the
        prompt's tokens and ``cost_usd``, ``cached_tokens`` and ``cached_usd`` are
        what the provider's prompt cache served. ``answered`` is the estimate (tokens,
        USD) of the attempt the reply answers, taken back in the same statement as
        ``attempt_answered`` would: a kill leaves the reply and the estimate's going
        together or neither."""
        params = {
            "served_model": served_model,
            "reason": reason,
            "repairs_json": json.dumps(list(repairs)) if repairs else None,
            "status": status,
            "response_json": response_json,
            "error": error,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "cost_usd": cost_usd,
            "cached_tokens": cached_tokens,
            "cached_usd": cached_usd,
            "latency_ms": latency_ms,
            "answered_at": now(),
            "id": call_id,
        }
        if answered is None:
            self.conn.execute(_RECORD_REPLY, params)
        else:
            params["answered_tokens"], params["answered_usd"] = answered
            self.conn.execute(_RECORD_ANSWER, params)
        self.conn.commit()

    def record_cut_body(self, call_id: str, whole_chars: int) -> None:
        """A reply stored cut short (the store keeps a capped prefix): its whole length,
        so what is stored is never taken for all that came."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE llm_calls SET response_chars = ? WHERE id = ?", (whole_chars, call_id)
            )

    def record_repairs(self, call_id: str, repairs: Sequence[str]) -> None:
        """How a reply's shape was mended, found by a reader that knows more of the
        shape than the client did (the judge, which knows its criteria)."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE llm_calls SET repairs_json = ? WHERE id = ?",
                (json.dumps(list(repairs)) if repairs else None, call_id),
            )

    def mark_invalid(self, call_id: str, error: str, reason: str) -> None:
        """A reply that arrived well-formed but is not what was asked for (a judge
        reply missing a criterion): recorded as ``invalid`` with why."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE llm_calls SET status = 'invalid', error = ?, reason = ?, processed = 1"
                " WHERE id = ?",
                (error, reason, call_id),
            )

    def simulated_cost(self) -> float:
        """The cost of the replies synth's simulator wrote (found by their fingerprint):
        its token counts at [llm.prices], no bill."""
        return float(
            self._one(
                "SELECT coalesce(sum(cost_usd), 0) FROM llm_calls WHERE instr(response_json, ?)",
                (SIMULATOR_FINGERPRINT,),
            )
        )

    def spend(self, run_id: str | None = None) -> Spend:
        """Calls, attempts, tokens and cost, and the estimate of attempts that got no
        reply: of one run, or of the whole store."""
        where, params = ("WHERE run_id = ?", (run_id,)) if run_id else ("", ())
        r = self.conn.execute(
            "SELECT count(*), coalesce(sum(attempts), 0), coalesce(sum(prompt_tokens), 0),"
            " coalesce(sum(completion_tokens), 0), coalesce(sum(cost_usd), 0),"
            " coalesce(sum(unanswered_attempts), 0), coalesce(sum(unanswered_tokens), 0),"
            " coalesce(sum(unanswered_usd), 0), coalesce(sum(cached_tokens), 0),"
            " coalesce(sum(cached_usd), 0)"
            f" FROM llm_calls {where}",
            params,
        ).fetchone()
        return Spend(*r)

    def cost_by_cell(self, run_id: str) -> dict[CellKey, float]:
        """USD a run spent per cell, its judge calls included (they carry the cell of
        the candidate they judge)."""
        rows = self.conn.execute(
            "SELECT coalesce(slice, ''), coalesce(label, ''), sum(cost_usd) FROM llm_calls"
            " WHERE run_id = ? GROUP BY 1, 2",
            (run_id,),
        )
        return {CellKey(slice=s, label=label): float(usd or 0) for s, label, usd in rows}

    def spend_by_cell(self, run_id: str) -> dict[CellKey, CellSpend]:
        """A run's generation calls per cell, and the tokens and USD of every call of
        the cell (its judge calls carry the cell of the candidate they judge)."""
        rows = self.conn.execute(
            "SELECT coalesce(slice, ''), coalesce(label, ''),"
            " sum(purpose = 'generate' AND status != 'pending'),"
            " sum(prompt_tokens), sum(completion_tokens), sum(cost_usd)"
            " FROM llm_calls WHERE run_id = ? GROUP BY 1, 2",
            (run_id,),
        )
        return {
            CellKey(slice=s, label=label): CellSpend(
                int(calls or 0), int(p or 0), int(c or 0), float(usd or 0)
            )
            for s, label, calls, p, c, usd in rows
        }
