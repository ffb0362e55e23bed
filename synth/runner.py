"""The quota loop: generate until every cell's accepted count meets its target.

    unfinished calls of a killed run -> answered from the store or sent again
    loop:
        plan_cells(store counts)          deficits per cell
        size the batch                    deficit / observed yield, within budget
        store.plan_calls                  recorded as pending before anything is sent
        client.complete_all               each reply committed as it arrives
        chain.decide                      every decision kept
        judge (if configured)             the survivors' judge calls, concurrently;
                                          judged chunks settle in plan order
        quotas                            accepted until the cell is full, then surplus
        store.add_batch                   one transaction per batch
    sample for review, finish the run

A cell that gets nothing accepted for ``generate.max_idle_batches`` batches in a row is
stopped: its template or seeds need a person, not more money.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from synth.config import Config
from synth.errors import SynthError
from synth.filters import FilterChain, FilterContext, Outcome, build_chain
from synth.filters.rubric import split_judge
from synth.generate import SeedPool, build_call, candidates_from, parse_reply
from synth.judge.grading import JudgeStage
from synth.llm.client import CallResult, LLMClient
from synth.plan import all_labels, plan_cells
from synth.prompts import Template, load_template
from synth.records import Candidate, CellKey, CellPlan, Status, Verdict
from synth.review.agreement import flagged_cells
from synth.review.sample import sample_for_review
from synth.store import Spend, Store

# Before a cell has history, assume this share of asked-for examples is accepted;
# PRIOR_WEIGHT is how many observed examples it is worth.
PRIOR_YIELD = 0.8
PRIOR_WEIGHT = 5
MIN_YIELD = 0.05
# Replies are filtered and stored in runs of at least this many, in plan order.
STREAM_CHUNK = 8


@dataclass
class BatchReport:
    number: int
    calls: int
    candidates: int
    accepted: int
    open_cells: int


@dataclass(frozen=True)
class Snapshot:
    """Where a run stands, for progress displays: sent after every chunk of replies."""

    run_id: str
    answered: int  # calls answered (or failed) by this invocation
    spend: Spend  # the whole run's, resumed parts included
    cells: list[CellPlan]
    elapsed: float  # seconds since this invocation started
    batch: BatchReport | None = None  # set when a batch has just finished


@dataclass
class RunSummary:
    run_id: str
    status: str  # finished | stopped | failed
    stop_reason: str | None
    resumed: bool
    calls: int = 0  # planned or re-sent by this invocation
    accepted: int = 0
    candidates: int = 0
    review_marked: int = 0
    batches: list[BatchReport] = field(default_factory=list)
    cells: list[CellPlan] = field(default_factory=list)


Progress = Callable[[Snapshot], None]


def run(config: Config, *, progress: Progress | None = None) -> RunSummary:
    """Run generation to quota; the store is ``config.project.db``."""
    with Store(config.db_path) as store:
        return asyncio.run(run_async(config, store, progress=progress))


async def run_async(
    config: Config, store: Store, *, progress: Progress | None = None
) -> RunSummary:
    template = load_template(config.resolve(config.generate.template), config.generate.template)
    runner = Runner(config, store, template, progress)
    if config.llm.mode == "batch":
        from synth.llm.batch import BatchClient  # only batch mode needs it

        async with BatchClient(config.llm, store, api_key=config.api_key()) as batch_client:
            return await runner.execute(batch_client)  # type: ignore[arg-type]
    async with LLMClient(config.llm, store, api_key=config.api_key()) as client:
        return await runner.execute(client)


def filter_context(config: Config, labels: list[str] | None = None) -> FilterContext:
    """What the filters get from the project besides their own settings."""
    schema = config.data_schema
    return FilterContext(
        root=config.root,
        text_field=schema.text,
        label_field=schema.label,
        fields=dict(schema.fields),
        labels=tuple(labels or schema.labels),
    )


def _share(wanted: dict[CellKey, int], allowed: int) -> dict[CellKey, int]:
    """``allowed`` calls shared in proportion to what each cell wants (largest
    remainders first), so the whole allowance is used and none is left for a tail batch."""
    total = sum(wanted.values())
    exact = {c: n * allowed / total for c, n in wanted.items()}
    shares = {c: math.floor(x) for c, x in exact.items()}
    by_remainder = sorted(wanted, key=lambda c: (shares[c] - exact[c], str(c)))
    for c in by_remainder[: allowed - sum(shares.values())]:
        shares[c] += 1
    return {c: n for c, n in shares.items() if n > 0}


def _spread(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` sizes that differ by at most one: 7, 3 -> 3, 2, 2."""
    share, extra = divmod(max(total, parts), parts)
    return [share + (1 if i < extra else 0) for i in range(parts)]


class Runner:
    def __init__(
        self, config: Config, store: Store, template: Template, progress: Progress | None
    ) -> None:
        self.config = config
        self.store = store
        self.template = template
        self.progress = progress
        labels = all_labels(config, store.cell_counts())
        ctx = filter_context(config, labels)
        cheap, judge = split_judge(config.filters, config.source.name)
        self.chain: FilterChain = build_chain(cheap, ctx)
        self.pool = SeedPool.from_rows(store.seeds())
        self.judge = None if judge is None else JudgeStage(judge, config, store, self.pool, ctx)
        self.asked: Counter[CellKey] = Counter()  # examples asked for, per cell
        self.kept: Counter[CellKey] = Counter()  # examples the chain kept, per cell
        self.idle: Counter[CellKey] = Counter()
        self.stalled: set[CellKey] = set()
        # Cells whose reviewers reject too much wait for `synth review ack`: more of
        # the same template and seeds would be rejected too.
        self.flagged = flagged_cells(store, config.review)
        self.stalled |= self.flagged
        self.started = time.monotonic()
        self.answered = 0

    async def execute(self, client: LLMClient) -> RunSummary:
        config, store = self.config, self.store
        self.client = client  # the judge sends its calls through it too
        plans = plan_cells(config, store.cell_counts())
        if plans and any(p.deficit for p in plans):
            # Render one prompt up front: a template error stops the run before any spend.
            build_call(config, self.template, plans[0], self.pool, 0, config.generate.per_call)
        store.add_template(self.template.name, self.template.source, self.template.sha)
        run = store.begin_run(config.as_json(), config.sha)
        summary = RunSummary(run.id, "running", None, resumed=run.resumes > 0)
        self.chain.prepare(store.seen_items())
        # Kept in memory from here on (one run writes to a store at a time): asking
        # the store after every chunk of replies costs a scan of all examples.
        self.counts = store.cell_counts()
        try:
            leftovers = store.unfinished_calls()
            if leftovers:
                summary.calls += len(leftovers)
                await self._batch(client, run.id, leftovers, summary)
            while True:
                plans = plan_cells(config, self.counts)
                open_cells = [p for p in plans if p.deficit > 0 and p.cell not in self.stalled]
                if not open_cells:
                    status, reason = self._end_state(plans)
                    break
                allowed, reason = self._budget_left(run.id)
                if allowed <= 0:
                    status = "stopped"
                    break
                calls = self._plan_batch(open_cells, allowed)
                rows = store.plan_calls(run.id, calls, first_attempt=config.llm.mode == "online")
                summary.calls += len(rows)
                before = dict(self.counts)
                await self._batch(client, run.id, rows, summary)
                self._track_idle(open_cells, before, self.counts)
        except BaseException as e:
            if isinstance(e, Exception):
                store.finish_run(run.id, "failed", str(e))
            raise  # KeyboardInterrupt and kills leave the run resumable
        review_ids = sample_for_review(
            store.accepted_ids(run.id),
            config.review.fraction,
            config.review.min_per_cell,
            config.review.seed,
        )
        store.finish_run(run.id, status, reason, review_ids)
        summary.status, summary.stop_reason = status, reason
        summary.review_marked = len(review_ids)
        summary.cells = plan_cells(config, store.cell_counts())
        return summary

    def _end_state(self, plans: list[CellPlan]) -> tuple[str, str | None]:
        stalled = [p for p in plans if p.deficit > 0]
        if not stalled:
            return "finished", None
        names = ", ".join(str(p.cell) for p in stalled if p.cell not in self.flagged)
        limit = self.config.generate.max_idle_batches
        reasons = [f"stalled: nothing accepted in {limit} batches for {names}"] if names else []
        if flagged := ", ".join(str(p.cell) for p in stalled if p.cell in self.flagged):
            reasons.append(f"review: reviewers rejected too many of {flagged} (synth review ack)")
        return "stopped", "; ".join(reasons)

    def _budget_left(self, run_id: str) -> tuple[int, str | None]:
        """How many more calls the budget caps allow, and which cap binds."""
        gen = self.config.generate
        spend = self.store.spend(run_id)
        allowed = gen.max_calls_per_batch
        if gen.max_calls is not None:
            allowed = min(allowed, gen.max_calls - spend.calls)
            if allowed <= 0:
                return 0, f"budget: max_calls = {gen.max_calls} reached"
        if gen.max_cost_usd is not None:
            if spend.cost_usd >= gen.max_cost_usd:
                return 0, f"budget: max_cost_usd = {gen.max_cost_usd} reached"
            if spend.calls and spend.cost_usd > 0:
                per_call = spend.cost_usd / spend.calls
                allowed = min(allowed, max(1, int((gen.max_cost_usd - spend.cost_usd) / per_call)))
        return allowed, None

    def _yield(self, cell: CellKey) -> float:
        kept = self.kept[cell] + PRIOR_YIELD * PRIOR_WEIGHT
        return max(MIN_YIELD, kept / (self.asked[cell] + PRIOR_WEIGHT))

    def _plan_batch(self, open_cells: list[CellPlan], allowed: int) -> list[dict]:
        """Calls for this batch: each cell asks for about deficit / yield examples,
        in calls of at most ``per_call``, spread evenly so the last call is not a
        full one that mostly ends up as surplus."""
        per_call = self.config.generate.per_call
        needed = {p.cell: math.ceil(p.deficit / self._yield(p.cell)) for p in open_cells}
        n_calls = {c: max(1, math.ceil(n / per_call)) for c, n in needed.items()}
        total = sum(n_calls.values())
        if total > allowed:
            n_calls = _share(n_calls, allowed)
        calls = []
        by_cell = {p.cell: p for p in open_cells}
        for cell, count in n_calls.items():
            first = self.store.next_sample_index(cell, self.template.sha, self.config.llm.model)
            sizes = _spread(min(needed[cell], count * per_call), count)
            for i, n in enumerate(sizes):
                calls.append(
                    build_call(self.config, self.template, by_cell[cell], self.pool, first + i, n)
                )
        return calls

    async def _batch(
        self, client: LLMClient, run_id: str, calls: list, summary: RunSummary
    ) -> None:
        """Send a batch; filter and store its replies in plan order as they come, so
        the work overlaps the wait and decisions do not depend on arrival order."""
        results: list[CallResult | None] = [None] * len(calls)
        done = 0  # results[:done] are filtered and stored
        accepted = candidates = 0

        def flush(final: bool) -> None:
            nonlocal done, accepted, candidates
            ready = done
            while ready < len(results) and results[ready] is not None:
                ready += 1
            if ready - done >= STREAM_CHUNK or (final and ready > done):
                a, c = self._process(run_id, results[done:ready])  # type: ignore[arg-type]
                accepted, candidates, done = accepted + a, candidates + c, ready
                self._report(run_id)

        def arrived_counted(index: int, result: CallResult) -> None:
            self.answered += 1
            arrived(index, result)

        def arrived(index: int, result: CallResult) -> None:
            results[index] = result
            flush(final=False)

        await client.complete_all(calls, on_result=arrived_counted)
        flush(final=True)
        if self.judge is not None:
            accepted += await self.judge.drain()
        if results and all(r is not None and r.status == "failed" for r in results):
            # Nothing got through (a bad model name, an unsupported response_format):
            # say so now rather than spend the remaining batches finding out again.
            first = results[0].error if results[0] else None
            raise SynthError("llm", f"every call of a batch failed; the first: {first}")
        summary.accepted += accepted
        summary.candidates += candidates
        report = BatchReport(
            number=len(summary.batches) + 1,
            calls=len(calls),
            candidates=candidates,
            accepted=accepted,
            open_cells=sum(1 for p in plan_cells(self.config, self.counts) if p.deficit),
        )
        summary.batches.append(report)
        self._report(run_id, report)

    def _report(self, run_id: str, batch: BatchReport | None = None) -> None:
        if self.progress is None:
            return
        self.progress(
            Snapshot(
                run_id=run_id,
                answered=self.answered,
                spend=self.store.spend(run_id),
                cells=plan_cells(self.config, self.counts),
                elapsed=time.monotonic() - self.started,
                batch=batch,
            )
        )

    def _process(self, run_id: str, results: list[CallResult]) -> tuple[int, int]:
        """Filter a batch's candidates in plan order, fill quotas, store it all."""
        matches = {s.name: dict(s.match) for s in self.config.slices}
        candidates: list[Candidate] = []
        processed: list[str] = []
        for r in results:
            if r.status != "ok":
                continue
            items = r.items if r.items is not None else parse_reply(r.content)
            cell_match = matches.get(r.call.slice or "", {})
            candidates += candidates_from(r.call, items, self.config, cell_match, run_id)
            processed.append(r.call.id)
            self.asked[CellKey(slice=r.call.slice or "", label=r.call.label or "")] += len(items)
        outcomes = self.chain.decide(candidates)
        if self.judge is None:
            return self._settle(run_id, outcomes, processed), len(candidates)
        # The cheap filters' survivors join their indexes now, so a duplicate of one in a
        # later chunk never reaches the judge; the judge's verdicts settle in plan order.
        self.chain.admit([o.candidate for o in outcomes if o.verdict is not Verdict.REJECT])
        self.judge.submit(
            self.client,
            run_id,
            outcomes,
            lambda judged, scores: self._settle(run_id, judged, processed, scores),
        )
        return 0, len(candidates)

    def _settle(
        self,
        run_id: str,
        outcomes: list[Outcome],
        processed: list[str],
        scores: list[dict] | None = None,
    ) -> int:
        """Fill quotas in plan order and store the batch; the rows accepted."""
        deficits = {p.cell: p.deficit for p in plan_cells(self.config, self.counts)}
        statuses: list[Status] = []
        accepted = 0
        for o in outcomes:
            cell = o.candidate.cell
            if o.verdict is Verdict.REJECT:
                statuses.append(Status.REJECTED)
            elif o.verdict is Verdict.REVIEW:
                statuses.append(Status.REVIEW_PENDING)
            elif deficits.get(cell, 0) > 0:
                deficits[cell] -= 1
                accepted += 1
                statuses.append(Status.ACCEPTED)
                real, synthetic = self.counts.get(cell, (0, 0))
                self.counts[cell] = (real, synthetic + 1)
            else:
                statuses.append(Status.SURPLUS)
            if o.verdict is Verdict.KEEP:
                self.kept[cell] += 1
        if scores is None:
            self.chain.admit([o.candidate for o in outcomes if o.verdict is not Verdict.REJECT])
            self.store.add_batch(run_id, outcomes, statuses, processed)
        else:
            self.store.add_judged_batch(run_id, outcomes, statuses, processed, scores)
        return accepted

    def _track_idle(
        self,
        open_cells: list[CellPlan],
        before: dict[CellKey, tuple[int, int]],
        after: dict[CellKey, tuple[int, int]],
    ) -> None:
        limit = self.config.generate.max_idle_batches
        for p in open_cells:
            if after.get(p.cell, (0, 0))[1] > before.get(p.cell, (0, 0))[1]:
                self.idle[p.cell] = 0
            else:
                self.idle[p.cell] += 1
                if self.idle[p.cell] >= limit:
                    self.stalled.add(p.cell)
