"""A run's caps as the quota loop keeps them: what a step may plan, and what it holds.

``generate.max_calls`` and ``generate.max_cost_usd`` are hard (``synth.llm.ledger``):
each generation call is held, before it is recorded or sent, together with the judge
calls its candidates may need (every example it asks for, judged by every model and
sample, label check included), at their worst case. When its reply is filtered, what
it held is swapped for a hold per candidate the cheap filters kept; once the judge is
done with a chunk, those holds are freed. A step plans only as many calls as fit what
is free; one that does not fit while calls are in flight waits for their replies to
free the difference between worst case and cost; one that does not fit when nothing
is in flight ends the run with the cap's reason.

``generate.max_cost_per_cell_usd`` stops a cell, and only that cell, once what it
spent and holds leaves no room for another call: its template or seeds make rows too
dear, which is for a person to look at.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from synth.config import Config
from synth.judge.grading import JudgeStage
from synth.llm.ledger import Ledger, prompt_bound, worst_cost
from synth.records import Candidate, CellKey, Outcome, Verdict
from synth.store import Store
from synth.store.rows import CallRow, PlannedCall


class RunSpend:
    """The ledger of a run, and the holds the quota loop makes on it."""

    def __init__(self, config: Config, judge: JudgeStage | None) -> None:
        gen = config.generate
        self.config = config
        self.ledger = Ledger(gen.max_calls, gen.max_cost_usd)
        self.cell_cap = gen.max_cost_per_cell_usd
        self.judge = judge
        # The Batch API's lines are billed, and held, at its discount.
        self.factor = config.llm.batch_discount if config.llm.mode == "batch" else 1.0
        # Judge requests per candidate kept by the cheap filters, and the worst case of
        # their prompts without the candidate's text, per request.
        self.per_candidate = 0
        self.judge_base: list[tuple[int, int, float, float]] = []  # bytes, max_tokens, in, out
        if judge is not None:
            for call in judge.sample_calls():
                price = config.llm.price(call["model"])
                bound = prompt_bound(call["messages"]) - len(judge.sample_text.encode())
                max_tokens = int(call["params"].get("max_tokens") or config.llm.max_tokens)
                p_in, p_out = (
                    (max(price.input, price.cached), price.output) if price else (0.0, 0.0)
                )
                for _ in range(judge.params.samples):
                    self.judge_base.append((bound, max_tokens, p_in, p_out))
            self.per_candidate = len(self.judge_base)
        self.call_usd = 0.0  # the worst case of the last generation call held

    def begin(self, store: Store, run_id: str, leftovers: Sequence[CallRow]) -> None:
        """Start from what the run spent before (it may be resumed). A leftover call's
        last attempt, counted but of unknown fate, is sent again and counted then."""
        spend = store.calls.spend(run_id)
        resent = sum(1 for c in leftovers if c.status == "pending" and c.attempts)
        by_cell = store.calls.cost_by_cell(run_id) if self.cell_cap is not None else {}
        self.ledger.begin(spend.attempts - resent, spend.cost_usd, by_cell)

    # -- sizing a step ----------------------------------------------------------------

    def unit(self, asked: int) -> tuple[int, float]:
        """What a generation call asking for ``asked`` examples holds: itself and its
        candidates' judge calls, in requests and USD."""
        return 1 + asked * self.per_candidate, self.call_usd + asked * self.judge_usd()

    def judge_usd(self, text: str = "") -> float:
        """The worst case of one candidate's judge requests, for a text of ``text``'s
        length (an empty one: a text as long as a reply of max_tokens could hold)."""
        extra = len(text.encode()) if text else 0
        return self.factor * sum(
            ((bound + extra) * p_in + max_tokens * p_out) / 1e6
            for bound, max_tokens, p_in, p_out in self.judge_base
        )

    def allowed(self, room: int, asked: int, waiting: bool) -> tuple[int, str | None]:
        """How many calls of ``asked`` examples a step may plan within ``room`` and the
        caps, and the reason when the caps allow none and nothing ``waiting`` (calls
        or judging in flight) can free any."""
        if room <= 0:
            return 0, None
        if self.ledger.refused is not None:
            return 0, self.ledger.refused  # a retry or a judge call found the cap
        calls, usd = self.unit(asked)
        n = min(room, self.ledger.affordable(calls, usd, planning=True))
        if n >= 1:
            return int(n), None
        if waiting or self.ledger.busy():
            return 0, None
        return 0, self.ledger.reason(calls, usd)

    def cell_allowance(self, cell: CellKey, asked: int, waiting: bool) -> tuple[float, str | None]:
        """How many more calls of ``asked`` examples a cell's cap allows, and why it
        is stopped when none is and nothing of it is ``waiting``."""
        if self.cell_cap is None:
            return math.inf, None
        _, usd = self.unit(asked)
        left = self.cell_cap - self.ledger.group_usd[cell]
        n = max(0.0, left // usd) if usd > 0 else math.inf
        if n >= 1 or waiting:
            return n, None
        return 0, f"max_cost_per_cell_usd = {self.cell_cap} reached"

    # -- holds ------------------------------------------------------------------------

    def estimate(self, call: PlannedCall) -> float:
        """A generation call's worst case; later steps are sized from the last one."""
        max_tokens = call["params"].get("max_tokens")
        self.call_usd = worst_cost(
            call["messages"],
            max_tokens if isinstance(max_tokens, int) else self.config.llm.max_tokens,
            self.config.llm.price(call["model"]),
            self.factor,
        )
        return self.call_usd

    def hold_call(self, call: PlannedCall, cell: CellKey, asked: int) -> bool:
        """Hold a generation call and its candidates' judging, before it is recorded."""
        usd = self.estimate(call)
        calls = 1 + asked * self.per_candidate
        usd += asked * self.judge_usd()
        return self.ledger.hold(call["request_sha"], calls, usd, cell)

    def filtered(self, calls: Iterable[CallRow], outcomes: Sequence[Outcome]) -> None:
        """Replies filtered by the cheap filters: the calls' holds are freed, and each
        candidate kept for the judge holds its judge requests (as far as the caps go;
        a request not held is taken from what is free when it leaves, if it can be)."""
        for call in calls:
            self.ledger.release(call.request_sha)
        if self.judge is None:
            return
        for o in outcomes:
            if o.verdict is not Verdict.REJECT:
                c = o.candidate
                self.ledger.hold(c.id, self.per_candidate, self.judge_usd(c.text), c.cell)

    def hold_judging(self, outcomes: Sequence[Outcome]) -> str | None:
        """Hold the judging of every candidate the cheap filters kept, all or none;
        the cap that does not allow it, if one does not (or refused a request)."""
        if self.ledger.refused is not None:
            return self.ledger.refused
        kept = [o.candidate for o in outcomes if o.verdict is not Verdict.REJECT]
        usd = [self.judge_usd(c.text) for c in kept]
        for i, c in enumerate(kept):
            if not self.ledger.hold(c.id, self.per_candidate, usd[i], c.cell):
                self.judged(kept[:i])
                return self.ledger.reason(self.per_candidate * len(kept), sum(usd))
        return None

    def judged(self, candidates: Iterable[Candidate]) -> None:
        """Judging done: what the candidates still hold is freed."""
        for c in candidates:
            self.ledger.release(c.id)

    def released(self, calls: Iterable[CallRow]) -> None:
        """Calls whose replies will never be filtered (the run ended): freed."""
        for call in calls:
            self.ledger.release(call.request_sha)
