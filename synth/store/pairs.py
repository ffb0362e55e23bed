"""``pairs`` and the ``alternative`` rows they are made of: preference data.

An alternative is a row of ``examples`` (status ``alternative``) whose one parent is
the accepted row whose prompt it answers; it is stored with its decisions and judge
scores as any candidate is (``Examples.add_outcomes``). A pair names the best- and
worst-judged of a prompt's responses.
"""

from __future__ import annotations

from typing import Any, TypedDict

from synth.store._part import Part, decode, now
from synth.store.schema import COUNTED

# The rubric's verdict score of a row: the weighted mean it was kept or rejected by.
_SCORE = (
    "(SELECT d.score FROM decisions d WHERE d.example_id = {row}.id AND d.filter = 'rubric'"
    " ORDER BY d.id DESC LIMIT 1)"
)
# A row of the dataset, as examples e.
_COUNTED_E = COUNTED.replace("status", "e.status").replace("outcome", "e.outcome")
_IS_ALTERNATIVE_OF = "a.status = 'alternative' AND a.parent_ids_json = json_array({row}.id)"


class PromptRow(TypedDict):
    """An accepted generated row whose prompt gets more responses."""

    id: str
    slice: str
    label: str
    data: dict[str, Any]
    alternatives: int  # stored so far
    paired: bool  # it has a pair stored


class Response(TypedDict):
    """One response to a prompt: the row's own (first) or an alternative."""

    id: str
    score: float | None  # None: the judge gave none (a failed judge call, a reject before it)


class PairRow(TypedDict):
    prompt_id: str
    chosen_id: str
    rejected_id: str
    chosen_score: float
    rejected_score: float
    gap: float
    responses: int
    run_id: str | None


class PairData(PairRow):
    """A pair with the data of its prompt row and of both sides, for exports."""

    prompt: dict[str, Any]
    chosen: dict[str, Any]
    rejected: dict[str, Any]


class Pairs(Part):
    def prompts(self, alternatives: int) -> list[PromptRow]:
        """Generated rows of the dataset that the judge scored and that have fewer than
        ``alternatives`` alternatives or no pair yet, oldest first."""
        rows = self._rows(
            "SELECT e.id, e.slice, e.label, e.data_json,"
            f" (SELECT count(*) FROM examples a WHERE {_IS_ALTERNATIVE_OF.format(row='e')})"
            " AS alternatives, EXISTS (SELECT 1 FROM pairs p WHERE p.prompt_id = e.id) AS paired"
            f" FROM examples e WHERE e.source != 'real' AND {_COUNTED_E}"
            f" AND {_SCORE.format(row='e')} IS NOT NULL ORDER BY e.rowid",
        )
        # A row with all its alternatives and no pair was cut off between the two.
        out: list[PromptRow] = []
        for r in rows:
            if r["alternatives"] < alternatives or not r["paired"]:
                r["paired"] = bool(r["paired"])
                out.append(decode(r, "data_json"))
        return out

    def responses(self, prompt_id: str) -> list[Response]:
        """The row's own response, then its alternatives in the order they were stored,
        each with its judge score."""
        own: list[Response] = self._rows(
            f"SELECT e.id, {_SCORE.format(row='e')} AS score FROM examples e WHERE e.id = ?",
            (prompt_id,),
        )
        others: list[Response] = self._rows(
            f"SELECT a.id, {_SCORE.format(row='a')} AS score FROM examples a"
            " WHERE a.status = 'alternative' AND a.parent_ids_json = json_array(?)"
            " ORDER BY a.rowid",
            (prompt_id,),
        )
        return own + others

    def put(self, pair: PairRow) -> None:
        """Store a prompt's pair, in place of the one it had."""
        with self._tx() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO pairs (prompt_id, chosen_id, rejected_id, chosen_score,"
                " rejected_score, gap, responses, run_id, created_at) VALUES (:prompt_id,"
                " :chosen_id, :rejected_id, :chosen_score, :rejected_score, :gap, :responses,"
                " :run_id, :created_at)",
                {**pair, "created_at": now()},
            )

    def of(self, example_id: str) -> PairRow | None:
        """The pair a row is in: as its prompt, its chosen or its rejected side."""
        rows: list[PairRow] = self._rows(
            "SELECT prompt_id, chosen_id, rejected_id, chosen_score, rejected_score, gap,"
            " responses, run_id FROM pairs"
            " WHERE prompt_id = :id OR chosen_id = :id OR rejected_id = :id",
            {"id": example_id},
        )
        return rows[0] if rows else None

    def dataset(self, min_gap: float) -> list[PairData]:
        """Pairs whose prompt row is in the dataset and whose gap is at least
        ``min_gap``, in the order their prompt rows were stored."""
        rows = self._rows(
            "SELECT p.prompt_id, p.chosen_id, p.rejected_id, p.chosen_score, p.rejected_score,"
            " p.gap, p.responses, p.run_id, e.data_json AS prompt_json,"
            " c.data_json AS chosen_json, r.data_json AS rejected_json"
            " FROM pairs p JOIN examples e ON e.id = p.prompt_id"
            " JOIN examples c ON c.id = p.chosen_id JOIN examples r ON r.id = p.rejected_id"
            # A gap a hair under the threshold by float rounding (4.25 - 3.75) reaches it.
            f" WHERE p.gap >= ? - 1e-9 AND {_COUNTED_E} ORDER BY e.rowid",
            (min_gap,),
        )
        return [decode(r, "prompt_json", "chosen_json", "rejected_json") for r in rows]

    def counts(self, min_gap: float) -> tuple[int, int]:
        """(pairs, pairs with a gap of at least ``min_gap``) of the whole store."""
        total, wide = self.conn.execute(
            "SELECT count(*), coalesce(sum(gap >= ? - 1e-9), 0) FROM pairs", (min_gap,)
        ).fetchone()
        return int(total), int(wide)
