"""The quota loop: generate until every cell's accepted count meets its target.

    unfinished calls of a killed run -> answered from the store or sent again
    a window of calls kept full, planned a step at a time:
        plan_cells(counts in memory)      deficits per cell, after any reviews made
                                          meanwhile (read again from the store)
        size the step                     deficit / observed yield, less what the
                                          calls already planned should bring
        store.calls.plan                  recorded as pending before anything is sent
        client.complete_all               each reply committed as it arrives
    replies filtered in plan order, between reads and sends:
        chain.decide                      every decision kept; in a process of its
                                          own, while the loop reads and sends
        judge (if configured)             the survivors' judge calls, concurrently;
                                          judged chunks settle in plan order
        quotas                            accepted until the cell is full, then surplus
        store.examples.add_outcomes       one transaction per chunk of replies
    sample for review, finish the run

The next step is planned each time another ``step`` calls have been filtered (and
whenever the window runs dry), while the calls before it are still on the wire, so
the endpoint never waits for the run to think. Steps are planned at fixed points of
the plan order, from what the replies before that point brought: the same replies
make the same plan and the same decisions whatever order they arrive in, online or
through the Batch API.

A cell that gets nothing accepted for ``generate.max_idle_batches`` of its steps in a
row is stopped: its template or seeds need a person, not more money. The arithmetic of
sizing, sharing and stalls is ``synth.quota``'s, of the budget caps ``synth.spend``'s;
here are their inputs and I/O.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

from synth.alternatives import Alternatives, Spent
from synth.check import preflight
from synth.config import Config
from synth.errors import SynthError
from synth.filters import Outcome
from synth.filters.contamination import ContaminationParams
from synth.filters.process import ChainProcess
from synth.filters.rubric import judge_llm_changes, split_judge
from synth.generate import SeedPool, build_call, candidates_from
from synth.judge.grading import JudgeStage
from synth.llm.batch import BatchClient
from synth.llm.client import CallResult, Completer, LLMClient
from synth.llm.context import context_size
from synth.llm.ledger import QuotaSpent
from synth.llm.structured import parse_reply
from synth.memory import collecting_less
from synth.plan import all_labels, plan_cells
from synth.prompts import Template, load_template
from synth.quota import (
    CellTracker,
    by_reason,
    call_sizes,
    examples_needed,
    unusable_stop,
)
from synth.records import Candidate, CellKey, CellPlan, Status, Unusable, Verdict
from synth.review.sample import sample_for_review
from synth.review.stats import flagged_cells
from synth.spend import RunSpend
from synth.store import CallRow, Spend, Store
from synth.store.rows import JudgeScore

# Replies are filtered and stored in runs of this many, in plan order.
STREAM_CHUNK = 16
# Online, a step's calls are rendered, recorded and sent this many at a time.
SEND_LOT = 16
# Seconds between progress snapshots, beside those sent as replies are filtered.
TICK_S = 1.0


@dataclass
class StepReport:
    """A step of calls, once all its replies are filtered and stored."""

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
    step: StepReport | None = None  # set when a step has just finished
    # Replies of this invocation that brought nothing usable, per cell, by why
    # (synth.records.Unusable words).
    unusable: dict[CellKey, Counter[str]] = field(default_factory=dict)
    waiting: int = 0  # requests sent that the server has not begun to answer
    streaming: int = 0  # requests whose replies are arriving


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
    alternatives: int = 0  # responses stored for preference pairs
    pairs: int = 0  # preference pairs made (or made again)
    steps: list[StepReport] = field(default_factory=list)
    cells: list[CellPlan] = field(default_factory=list)


Progress = Callable[[Snapshot], None]
# A line saying what a run is doing before its first reply comes (the filters' indexes
# can take seconds to build).
Notice = Callable[[str], None]


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run, with what the store kept: every answered call and the
    rows made from them are committed as they come, so the next run resumes."""

    def __init__(self, run_id: str | None, accepted: int, answered: int) -> None:
        self.run_id, self.accepted, self.answered = run_id, accepted, answered
        if run_id is None:
            line = "interrupted before the run began; nothing was sent"
        else:
            line = (
                f"interrupted: run {run_id} keeps its {accepted} accepted rows and"
                f" {answered} answered calls; `synth run` resumes it"
            )
        super().__init__(line)


def run(
    config: Config,
    *,
    progress: Progress | None = None,
    notice: Notice | None = None,
    preview: int | None = None,
) -> RunSummary:
    """Run generation to quota; the store is ``config.project.db``. Ctrl-C raises
    ``Interrupted`` (a KeyboardInterrupt) once everything in flight is put down.

    ``preview``: plan at most this many generation calls per cell, then stop (the
    run's reason says so) without sampling for review: a sample of the run to come,
    whose calls and rows the next run builds on (``synth.estimate``)."""
    with Store(config.db_path) as store:
        try:
            return asyncio.run(
                run_async(config, store, progress=progress, notice=notice, preview=preview)
            )
        except KeyboardInterrupt:
            raise _interrupted(store) from None


def _interrupted(store: Store) -> Interrupted:
    going = [r for r in store.runs.all() if r.kind == "generate" and r.status == "running"]
    if not going:
        return Interrupted(None, 0, 0)
    run_id = going[-1].id
    pending = sum(1 for c in store.calls.unfinished() if c.run_id == run_id)
    answered = store.calls.spend(run_id).calls - pending
    return Interrupted(run_id, len(store.examples.accepted_ids(run_id)), answered)


async def run_async(
    config: Config,
    store: Store,
    *,
    progress: Progress | None = None,
    notice: Notice | None = None,
    preview: int | None = None,
) -> RunSummary:
    # Each reply allocates a few hundred containers: a full collection at Python's
    # thresholds would stall the loop for tens of milliseconds while replies wait.
    with collecting_less():
        return await _run_async(config, store, progress, notice, preview)


async def _run_async(
    config: Config,
    store: Store,
    progress: Progress | None,
    notice: Notice | None,
    preview: int | None = None,
) -> RunSummary:
    template = load_template(config.resolve(config.generate.template), config.generate.template)
    # Reachable, key taken, model served (synth.check): a wrong address, key or model
    # stops the run here, before the filters' indexes are built and anything is paid.
    skipped = await preflight(config)
    if notice is not None:
        if skipped is not None:
            notice(skipped)
        notice(_preparing(config))
    runner = Runner(config, store, template, progress, notice, preview)
    try:
        return await _run_with(runner, config, store)
    finally:
        runner.chain.close()


async def _run_with(runner: Runner, config: Config, store: Store) -> RunSummary:
    judge_config = config.with_llm(**judge_llm_changes(runner.judge_spec))
    # What each endpoint's context holds goes to its client (to tell a full context
    # from max_tokens) and to the judge (to fit its prompts), not into the stored
    # config: a run resumes under the config it was started with.
    context = await context_size(config)
    judge_context = context
    if judge_config.llm.base_url != config.llm.base_url:
        judge_context = await context_size(judge_config.with_llm(context_tokens=None))
    if runner.judge is not None:
        runner.judge.context_tokens = judge_context
    async with AsyncExitStack() as stack:

        def make_client(config: Config) -> LLMClient | BatchClient:
            if config.llm.mode == "batch":
                return BatchClient(
                    config.llm,
                    store.calls,
                    store.batch_jobs,
                    api_key=config.api_key(),
                    ledger=runner.spend.ledger,
                )
            return LLMClient(
                config.llm, store.calls, api_key=config.api_key(), ledger=runner.spend.ledger
            )

        client = make_client(config.with_llm(context_tokens=context))
        await stack.enter_async_context(client)
        judge_client = client
        if judge_config.llm != config.llm:
            # The judge is served elsewhere: its own client, same store and limits.
            judge_client = make_client(judge_config.with_llm(context_tokens=judge_context))
            await stack.enter_async_context(judge_client)
        return await runner.execute(client, judge_client)


@dataclass
class _Step:
    """Calls planned together: ``start`` to ``end`` in the run's plan order."""

    number: int
    start: int
    end: int
    before: dict[CellKey, tuple[int, int]]  # cell counts when it was planned
    cells: set[CellKey]
    accepted: int = 0
    candidates: int = 0
    failed: int = 0
    dropped: int = 0  # of the failed, lost on the way (connection, timeout): transient
    first_error: str | None = None


def _preparing(config: Config) -> str:
    """What the run builds before its first call: "preparing filters: near_dedup,
    contamination (eval sets banking77-test) ..."."""
    names = []
    for spec in config.filters:
        name: str = spec.kind
        if isinstance(spec, ContaminationParams):
            name += f" (eval sets {', '.join(e.name for e in spec.eval_sets)})"
        names.append(name)
    return f"preparing filters: {', '.join(names)} ..."


def _ready(items: int, seconds: float, endpoint: str) -> str:
    """ "filters ready in 0.8 s (contamination index over 400 eval items); calling URL"."""
    index = f" (contamination index over {items} eval items)" if items else ""
    return f"filters ready in {seconds:.1f} s{index}; calling {endpoint}"


class Runner:
    def __init__(
        self,
        config: Config,
        store: Store,
        template: Template,
        progress: Progress | None,
        notice: Notice | None = None,
        preview: int | None = None,
    ) -> None:
        self.config = config
        self.preview = preview
        self.previewed: Counter[CellKey] = Counter()  # calls planned per cell, for preview
        self.store = store
        self.template = template
        self.progress = progress
        self.notice = notice
        self.preparing_since = time.monotonic()  # building the chain is the slow part
        labels = all_labels(config, store.examples.cell_counts())
        ctx = config.filter_context(labels)
        cheap, judge = split_judge(config.filters, config.source.name)
        self.judge_spec = judge
        self.pool = SeedPool.from_rows(store.examples.seeds())
        self.judge = None if judge is None else JudgeStage(judge, config, store, self.pool, ctx)
        # Preference pairs, once the quotas are met; built now so that a template error
        # stops the run before anything is paid.
        self.alternatives = None
        if config.pairs.responses and self.judge is not None:
            self.alternatives = Alternatives(config, store, self.judge, ctx, self.pool.all[:1])
        # The calls of each chunk with the judge, in submission order: they are marked
        # processed with the chunk's rows when it is settled.
        self.with_judge: list[list[str]] = []
        self.asked: Counter[CellKey] = Counter()  # examples asked for, per cell
        self.kept: Counter[CellKey] = Counter()  # examples the chain kept, per cell
        gen = config.generate
        # Yields and stalls per cell, read from the two counters above as filtering
        # fills them.
        self.cells = CellTracker(gen.max_idle_batches, gen.per_call, self.asked, self.kept)
        # Cells whose reviewers reject too much wait for `synth review ack`: more of
        # the same template and seeds would be rejected too.
        self.flagged = flagged_cells(store, config.review)
        self.cells.stalled |= self.flagged
        # The budget caps, hard: every request holds its worst case before it leaves.
        self.spend = RunSpend(config, self.judge)
        self.capped: set[CellKey] = set()  # cells stopped by max_cost_per_cell_usd
        self.started = time.monotonic()
        self.answered = 0
        # The window: calls planned and not yet filtered. It holds what may be in
        # flight plus max_calls_per_batch more, so that replies waiting on an earlier
        # one (filtered in plan order) do not empty the wire.
        self.window = config.llm.max_concurrency + gen.max_calls_per_batch
        self.step = max(STREAM_CHUNK, gen.max_calls_per_batch // 4)
        # Examples asked for by calls planned and not yet filtered, per cell: what the
        # next step can count on without asking again.
        self.ahead: Counter[CellKey] = Counter()
        self.next_index: dict[CellKey, int] = {}
        self.planned = 0  # calls put in the plan order by this invocation
        self.results: list[CallResult | None] = []
        self.asked_of: list[int] = []  # examples asked for, per call
        self.done = 0  # the first `done` calls of the plan order are filtered and stored
        self.handed = 0  # the first `handed` calls' replies went to the filters
        self.handing = 0  # steps[handing] holds call number `handed`
        self.steps: list[_Step] = []
        self.reported = 0  # steps[:reported] are reported
        self.budget: str | None = None  # the cap that stopped the planning
        self.sending: set[asyncio.Future[list[CallResult]]] = set()
        self.usable = 0  # replies of this invocation filtered and found readable
        self.unusable: dict[CellKey, Counter[str]] = {}  # the others, per cell, by why
        # Chunks with the filters, in plan order, not yet settled.
        self.filtering: list[_Filtering] = []
        # Last: a process to close, once nothing above can fail.
        self.chain = ChainProcess(cheap, ctx)

    async def execute(self, client: Completer, judge_client: Completer | None = None) -> RunSummary:
        config, store = self.config, self.store
        # The judge's calls go through the run's client, or their own endpoint's.
        self.judge_client = judge_client or client
        plans = plan_cells(config, store.examples.cell_counts())
        if plans and any(p.deficit for p in plans):
            # Render one prompt up front: a template error stops the run before any spend.
            # Its worst case sizes the first step against the caps.
            per_call = config.generate.per_call
            self.spend.estimate(build_call(config, self.template, plans[0], self.pool, 0, per_call))
        store.calls.add_template(self.template.name, self.template.source, self.template.sha)
        run = store.runs.begin(config.as_json(), config.sha)
        summary = RunSummary(run.id, "running", None, resumed=run.resumes > 0)
        # Kept in memory from here on (one run writes to a store at a time): asking
        # the store after every chunk of replies costs a scan of all examples. Only
        # reviewers change them beside the run; _reread_reviews catches that.
        self.last_review = store.reviews.last_id()
        self.counts = store.examples.cell_counts()
        # Targets hold for the whole run (real rows do not change during it).
        self.targets = {p.cell: p.target for p in plan_cells(config, self.counts)}
        self.client, self.run_id, self.summary = client, run.id, summary
        self.ended: asyncio.Future[tuple[str, str | None]] = (
            asyncio.get_running_loop().create_future()
        )
        self.wake = asyncio.Event()
        # The filter process indexes the stored rows while the first calls go out.
        prepared = self.chain.prepare(store.examples.seen_items())
        prepared.add_done_callback(self._prepared)
        if self.notice is not None:
            took = time.monotonic() - self.preparing_since
            self.notice(_ready(self.chain.eval_items, took, config.endpoint()))
        # A slow server may take minutes over the first replies: the display hears
        # what is on the wire meanwhile.
        ticker = asyncio.ensure_future(self._tick()) if self.progress else None
        try:
            leftovers = store.calls.unfinished()
            self.spend.begin(store, run.id, leftovers)
            if leftovers:
                self._begin_step(len(leftovers), set())
                await self._send(leftovers, [config.generate.per_call] * len(leftovers))
            await self._plan_step()
            while not self.ended.done():
                await self.wake.wait()
                self.wake.clear()
                await self._flush()
            status, reason = self.ended.result()
            if status == "finished" and self.alternatives is not None:
                made = await self.alternatives.run(
                    client, self.judge_client, run.id, Spent(config, store, run.id)
                )
                summary.alternatives, summary.pairs = made.alternatives, made.pairs
                if made.stop_reason is not None:
                    status, reason = "stopped", made.stop_reason
        except BaseException as e:
            if isinstance(e, Exception):
                store.runs.finish(run.id, "failed", str(e))
            raise  # KeyboardInterrupt and kills leave the run resumable
        finally:
            if ticker is not None:
                ticker.cancel()
            for task in self.sending:
                task.cancel()
            await asyncio.gather(*self.sending, return_exceptions=True)
            if self.judge is not None:
                # Before the clients close: a judge call left running would fail on a
                # closed client, in a task nobody reads.
                await self.judge.cancel()
        # A preview's rows are sampled with the run that completes them.
        review_ids = []
        if self.preview is None:
            review_ids = sample_for_review(
                store.examples.accepted_ids(run.id),
                config.review.fraction,
                config.review.min_per_cell,
                config.review.seed,
            )
        store.runs.finish(run.id, status, reason, review_ids)
        summary.status, summary.stop_reason = status, reason
        summary.review_marked = len(review_ids)
        summary.cells = plan_cells(config, store.examples.cell_counts())
        return summary

    def _end_state(self, plans: list[CellPlan]) -> tuple[str, str | None]:
        stalled = [p for p in plans if p.deficit > 0]
        if not stalled:
            return "finished", None
        if self.budget is not None:
            return "stopped", self.budget
        if self.preview is not None:
            return "stopped", f"preview: {self.preview} calls per cell"
        stopped = self.flagged | self.capped
        names = ", ".join(
            str(p.cell) + self._unusable_note(p.cell) for p in stalled if p.cell not in stopped
        )
        limit = self.config.generate.max_idle_batches
        reasons = [f"stalled: nothing accepted in {limit} batches for {names}"] if names else []
        if capped := ", ".join(str(p.cell) for p in stalled if p.cell in self.capped):
            cap = self.config.generate.max_cost_per_cell_usd
            reasons.append(f"cell budget: max_cost_per_cell_usd = {cap} reached for {capped}")
        if flagged := ", ".join(str(p.cell) for p in stalled if p.cell in self.flagged):
            reasons.append(f"review: reviewers rejected too many of {flagged} (synth review ack)")
        return "stopped", "; ".join(reasons)

    def _unusable_note(self, cell: CellKey) -> str:
        """Why a stalled cell's replies were unusable, when some were."""
        counts = self.unusable.get(cell)
        return f" ({sum(counts.values())} replies unusable: {by_reason(counts)})" if counts else ""

    def _budget_left(self) -> tuple[int, str | None]:
        """How many more calls the window and the budget caps allow, and which cap binds
        when they allow none and nothing in flight can free any."""
        return self.spend.allowed(
            self.window - (self.planned - self.done),
            self.config.generate.per_call,
            waiting=self.planned > self.done,
        )

    async def _plan_step(self) -> None:
        """Plan and send the next step of calls, if a cell still needs any; end the
        run when none does and nothing is left in flight."""
        self._reread_reviews()
        plans = plan_cells(self.config, self.counts)
        open_cells = [p for p in plans if p.deficit > 0 and p.cell not in self.cells.stalled]
        if open_cells and self.budget is None:
            allowed, self.budget = self._budget_left()
            if allowed > 0:
                specs = self._plan_calls(open_cells, allowed)
                if specs:
                    if await self._record_and_send(specs):
                        return
                    if self.done == self.planned and not self.spend.ledger.busy():
                        # Not one call fits, and no reply to come can free room.
                        self.budget = self.spend.ledger.reason(*self.spend.unit(specs[0][2]))
        if self.done == self.planned:
            self._end(self._end_state(plans))

    def _plan_calls(
        self, open_cells: list[CellPlan], allowed: int
    ) -> list[tuple[CellPlan, int, int]]:
        """Calls for this step, as (cell, sample index, examples asked for): each cell
        asks for about deficit / yield examples, less those its calls in the window
        already ask for (``quota.call_sizes`` sizes the calls)."""
        per_call = self.config.generate.per_call
        needed = {
            p.cell: examples_needed(p.deficit, self.cells.yield_of(p.cell), self.ahead[p.cell])
            for p in open_cells
        }
        for cell in needed:
            # A cell's own cap, when set, bounds its calls like the run's caps do.
            calls, why = self.spend.cell_allowance(cell, per_call, self.ahead[cell] > 0)
            if why is not None:
                self.capped.add(cell)
                self.cells.stalled.add(cell)
            needed[cell] = int(min(needed[cell], calls * per_call))
            if self.preview is not None:
                left = self.preview - self.previewed[cell]
                needed[cell] = min(needed[cell], left * per_call)
                if left <= 0:
                    self.cells.stalled.add(cell)
        sizes = call_sizes(needed, per_call, allowed)
        specs: list[tuple[CellPlan, int, int]] = []
        by_cell = {p.cell: p for p in open_cells}
        for cell, cell_sizes in sizes.items():
            first = self.next_index.get(cell)
            if first is None:
                first = self.store.calls.next_sample_index(
                    cell, self.template.sha, self.config.llm.model
                )
            self.next_index[cell] = first + len(cell_sizes)
            self.previewed[cell] += len(cell_sizes)
            specs += [(by_cell[cell], first + i, n) for i, n in enumerate(cell_sizes)]
        return specs

    async def _record_and_send(self, specs: list[tuple[CellPlan, int, int]]) -> int:
        """Render the step's calls, record them as pending and send them. Online, a
        few at a time, each lot on the wire while the next is rendered; in batch mode
        as one lot, one Batch API job. The calls sent: those the caps could hold."""
        self._begin_step(len(specs), {plan.cell for plan, _, _ in specs})
        online = self.config.llm.mode == "online"
        lot = SEND_LOT if online else len(specs)
        for start in range(0, len(specs), lot):
            calls, asked = [], []
            for plan, index, n in specs[start : start + lot]:
                call = build_call(self.config, self.template, plan, self.pool, index, n)
                # Held before it is recorded: a call the caps cannot hold is not made,
                # nor any after it in this step (they were sized from an estimate).
                if not self.spend.hold_call(call, plan.cell, n):
                    break
                calls.append(call)
                asked.append(n)
            if calls:
                rows = self.store.calls.plan(self.run_id, calls, first_attempt=online)
                await self._send(rows, asked)
            if len(calls) < len(specs[start : start + lot]):
                break
        step = self.steps[-1]
        step.end = self.planned
        if step.end == step.start:
            self.steps.pop()  # nothing held: the next plan waits for replies
        return step.end - step.start

    def _reread_reviews(self) -> None:
        """Take in what reviewers decided since the last look (`synth review` works
        beside a run): a rejected sampled row leaves its cell short, an approved held
        row counts, and a cell whose reviewers reject too much stops. The counts are
        read again then: the store holds what memory does (rows are stored as they
        are settled) plus the reviews. A cell acknowledged meanwhile waits for the
        next run."""
        last = self.store.reviews.last_id()
        if last == self.last_review:
            return
        self.last_review = last
        counts = self.store.examples.cell_counts()
        # A step in progress measures what it accepted from the counts it was planned
        # with: move those by the reviews' changes, or a reviewer's reject would pass
        # for an idle step and an approval for an accept.
        moved = {
            cell: counts.get(cell, (0, 0))[1] - self.counts.get(cell, (0, 0))[1]
            for cell in counts.keys() | self.counts.keys()
        }
        for step in self.steps[self.reported :]:
            for cell, n in moved.items():
                if n:
                    real, synthetic = step.before.get(cell, (0, 0))
                    step.before[cell] = (real, synthetic + n)
        self.counts = counts
        self.flagged |= flagged_cells(self.store, self.config.review)
        self.cells.stalled |= self.flagged

    def _begin_step(self, size: int, cells: set[CellKey]) -> None:
        start = self.planned
        self.steps.append(_Step(len(self.steps) + 1, start, start + size, dict(self.counts), cells))

    async def _send(self, rows: list[CallRow], asked: list[int]) -> None:
        """Put calls on the wire; their replies are filtered in plan order as they come."""
        offset = self.planned
        self.planned += len(rows)
        self.results += [None] * len(rows)
        self.asked_of += asked
        for row, n in zip(rows, asked, strict=True):
            self.ahead[_cell_of(row)] += n
        self.summary.calls += len(rows)

        def arrived(index: int, result: CallResult) -> None:
            self.answered += 1
            self.results[offset + index] = result
            self.wake.set()

        task = asyncio.ensure_future(self.client.complete_all(rows, on_result=arrived))
        self.sending.add(task)
        task.add_done_callback(self._sent)
        await asyncio.sleep(0)  # the lot goes out before the next is rendered

    def _prepared(self, prepared: asyncio.Future[None]) -> None:
        if not prepared.cancelled() and prepared.exception() is not None:
            self._end(prepared.exception())  # type: ignore[arg-type]

    def _end(self, outcome: tuple[str, str | None] | BaseException) -> None:
        if self.ended.done():
            return
        if isinstance(outcome, QuotaSpent):
            # Not a failure of the run: it stops, and resumes once there is quota.
            self.ended.set_result(("stopped", outcome.reason))
        elif isinstance(outcome, BaseException):
            self.ended.set_exception(outcome)
        else:
            self.ended.set_result(outcome)
        self.wake.set()

    def _sent(self, task: asyncio.Future[list[CallResult]]) -> None:
        self.sending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._end(task.exception())  # type: ignore[arg-type]

    async def _flush(self) -> None:
        """Hand the replies ready in plan order to the filters, a chunk at a time, and
        settle the chunks they have decided, in plan order: count them, fill quotas,
        store them, and plan the next step at each fixed point. Chunks end at those
        points and at the ends of steps, so a step is planned from exactly what came
        before it. Chunks after a point go to the filters before the step at it is
        planned (the filters decide in plan order whatever they are handed), but are
        counted only after it, so the filters have work while the run plans. The
        loop is given back between chunks: replies waiting to be read and calls
        waiting for a slot come before settling, which can wait."""
        while not self.ended.done():
            try:
                self._hand_over()
            except Exception as e:  # an unreadable reply, the filter process
                self._end(e)
                return
            if not self.filtering or not self.filtering[0].outcomes.done():
                return  # woken again by a reply or a decided chunk
            chunk = self.filtering.pop(0)
            step = chunk.step
            fixed = chunk.end in (chunk.point, step.end, self.planned)
            try:
                self._settle_filtered(chunk)
            except Exception as e:  # a filter or the store: the run fails with it
                self._end(e)
                return
            if self.judge is not None and fixed:
                # Chunks are judged in the background and settled here, in the order
                # they were submitted; a step is planned, and a step ends, only from
                # settled counts, so the plan does not depend on when the judge's
                # replies came.
                try:
                    submitted, self.with_judge = self.with_judge, []
                    for judged, ids in zip(await self.judge.drain(), submitted, strict=True):
                        step.accepted += self._settle(
                            self.run_id, judged.outcomes, ids, judged.scores
                        )
                        self.spend.judged(o.candidate for o in judged.outcomes)
                except Exception as e:
                    self._end(e)
                    return
            self.done = chunk.end
            self._report(self.run_id)
            if chunk.end == step.end:
                self.reported += 1
                try:
                    self._step_done(step)
                except SynthError as e:
                    self._end(e)
                    return
                if (reason := unusable_stop(self.usable, self.unusable)) is not None:
                    self._end(("stopped", reason))
                    return
            if chunk.end == chunk.point or self.done == self.planned:
                await self._plan_step()
            await asyncio.sleep(0.001)  # a timer: the loop reads and sends first

    def _hand_over(self) -> None:
        """Hand every chunk of replies ready in plan order to the filters."""
        while self.handed < self.planned:
            ready = self.handed
            while ready < len(self.results) and self.results[ready] is not None:
                ready += 1
            while self.steps[self.handing].end <= self.handed:
                self.handing += 1
            step = self.steps[self.handing]  # the step that holds call number `handed`
            point = (self.handed // self.step + 1) * self.step
            end = min(ready, point, step.end, self.handed + STREAM_CHUNK)
            if end == self.handed:
                return
            if end - self.handed < STREAM_CHUNK and end not in (point, step.end):
                return
            chunk: list[CallResult] = self.results[self.handed : end]  # type: ignore[assignment]
            self._submit(step, point, end, chunk, self.asked_of[self.handed : end])
            self.results[self.handed : end] = [None] * (end - self.handed)  # with the chunk
            self.handed = end

    def _step_done(self, step: _Step) -> None:
        if step.failed == step.end - step.start and self.client.fatal is not None:
            raise self.client.fatal
        lone = step.failed == 1 and self.usable > 0
        if step.failed == step.end - step.start and step.dropped < step.failed and not lone:
            # Nothing got through (a bad model name, an unsupported response_format):
            # say so now rather than spend the remaining steps finding out again; an
            # error the client stopped on says what to do about it. Replies lost on the
            # way (a dropped connection, a broken stream) say nothing about the next
            # step: a small step of them is no reason to stop; a run of them stops on
            # the unusable-replies rule. Nor does one failed call after usable replies
            # (steps shrink to a call as cells close): it is one error, not a pattern.
            if self.client.fatal is not None:
                raise self.client.fatal
            raise SynthError("llm", f"every call of a batch failed; the first: {step.first_error}")
        self.cells.record_step(step.cells, step.before, self.counts)
        self.summary.accepted += step.accepted
        self.summary.candidates += step.candidates
        report = StepReport(
            number=step.number,
            calls=step.end - step.start,
            candidates=step.candidates,
            accepted=step.accepted,
            open_cells=sum(1 for p in plan_cells(self.config, self.counts) if p.deficit),
        )
        self.summary.steps.append(report)
        self._report(self.run_id, report)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self._report(self.run_id)

    def _report(self, run_id: str, step: StepReport | None = None) -> None:
        if self.progress is None:
            return
        wires = {id(c): c.in_flight for c in (self.client, self.judge_client)}.values()
        self.progress(
            Snapshot(
                run_id=run_id,
                answered=self.answered,
                spend=self.store.calls.spend(run_id),
                cells=plan_cells(self.config, self.counts),
                elapsed=time.monotonic() - self.started,
                step=step,
                unusable=self.unusable,
                waiting=sum(w.waiting for w in wires),
                streaming=sum(w.streaming for w in wires),
            )
        )

    def _submit(
        self, step: _Step, point: int, end: int, results: list[CallResult], asked: list[int]
    ) -> None:
        """Hand a chunk's candidates to the filters."""
        matches = {s.name: dict(s.match) for s in self.config.slices}
        candidates: list[Candidate] = []
        processed: list[str] = []
        read: list[int] = []  # examples each reply holds, -1 for one not read
        for r in results:
            if r.status != "ok":
                read.append(-1)
                continue
            items = r.items if r.items is not None else parse_reply(r.content)
            cell_match = matches.get(r.call.slice or "", {})
            candidates += candidates_from(r.call, items, self.config, cell_match, self.run_id)
            processed.append(r.call.id)
            read.append(len(items))
        if candidates:
            # Decided and admitted there before the next chunk: the cheap filters'
            # survivors are in their indexes before any judging, so a duplicate of one
            # in a later chunk never reaches the judge.
            outcomes = self.chain.submit(candidates)
            outcomes.add_done_callback(lambda _: self.wake.set())
        else:
            outcomes = asyncio.get_running_loop().create_future()
            outcomes.set_result([])
        self.filtering.append(
            _Filtering(step, point, end, results, asked, read, processed, len(candidates), outcomes)
        )

    def _settle_filtered(self, chunk: _Filtering) -> None:
        """Count a chunk the filters decided, and settle or judge its outcomes.

        A cell is charged the examples each answered call asked for, whether its
        reply could be read or not (or its prompt did not fit the context): a model
        whose replies are unusable yields nothing per example asked, and a cell of
        such replies stalls (and the run says so) instead of asking again until a
        budget cap ends it."""
        step = chunk.step
        step.candidates += chunk.candidates
        for r, n, items in zip(chunk.results, chunk.asked, chunk.read, strict=True):
            cell = _cell_of(r.call)
            if r.status == "invalid" or r.reason == Unusable.CONTEXT_FULL:
                self.asked[cell] += n
            if r.status == "ok":
                self.asked[cell] += max(n, items)
            self.ahead[cell] -= n
            if r.reason == Unusable.OVER_BUDGET:
                continue  # not sent: the budget's, not the endpoint's doing
            if r.status == "failed" and r.reason != Unusable.CONTEXT_FULL:
                step.failed += 1
                step.dropped += r.reason == Unusable.CONNECTION
                step.first_error = step.first_error or r.error
            if r.status == "ok":
                self.usable += 1
            else:
                why = r.reason or Unusable.FAILED
                self.unusable.setdefault(cell, Counter())[why] += 1
        outcomes = chunk.outcomes.result()
        self.spend.filtered((r.call for r in chunk.results), outcomes)
        if self.judge is None:
            step.accepted += self._settle(self.run_id, outcomes, chunk.processed)
        else:
            self.judge.submit(self.judge_client, self.run_id, outcomes)
            self.with_judge.append(chunk.processed)

    def _settle(
        self,
        run_id: str,
        outcomes: list[Outcome],
        processed: list[str],
        scores: Sequence[JudgeScore] = (),
    ) -> int:
        """Fill quotas in plan order and store the batch; the rows accepted."""
        # Checked here too, not only when planning: a held row approved meanwhile must
        # not let this batch fill its cell past the target.
        self._reread_reviews()
        deficits = {
            cell: target - sum(self.counts.get(cell, (0, 0)))
            for cell, target in self.targets.items()
        }
        statuses: list[Status] = []
        accepted = 0
        for o in outcomes:
            cell = o.candidate.cell
            verdict = o.verdict
            if verdict is Verdict.REJECT:
                statuses.append(Status.REJECTED)
            elif verdict is Verdict.REVIEW:
                statuses.append(Status.REVIEW_PENDING)
            elif deficits.get(cell, 0) > 0:
                deficits[cell] -= 1
                accepted += 1
                statuses.append(Status.ACCEPTED)
                real, synthetic = self.counts.get(cell, (0, 0))
                self.counts[cell] = (real, synthetic + 1)
            else:
                statuses.append(Status.SURPLUS)
            if verdict is Verdict.KEEP:
                self.kept[cell] += 1
        self.store.examples.add_outcomes(run_id, outcomes, statuses, processed, scores)
        return accepted


@dataclass
class _Filtering:
    """A chunk of replies whose candidates are with the filters: calls up to ``end``
    of the plan order."""

    step: _Step
    point: int  # the fixed point the chunk is before (or at)
    end: int
    results: list[CallResult]
    asked: list[int]  # examples each call asked for
    read: list[int]  # examples each reply held, -1 for one not read
    processed: list[str]  # the calls whose replies were read
    candidates: int
    outcomes: asyncio.Future[list[Outcome]]


def _cell_of(call: CallRow) -> CellKey:
    return CellKey(slice=call.slice or "", label=call.label or "")
