"""Filtering a dataset that already exists: the run's filter chain over a user's file.

People clean or decontaminate data they already have, or check a synthetic set made
elsewhere, and want the decisions generation would make, with the same reasons, kept
in the same store. So the chain is built exactly as the runner builds it, from the
same ``[[filters]]``, and every decision of every row (keeps too) is stored under a
run of kind ``filter``:

    read the file once         the seed reader: the same formats and schema checks,
                               the same FILE:LINE errors; a bad row stops everything
                               before anything is stored (or is skipped and listed)
    build the chain            prepared with the store's seeds and kept rows
                               (against="store"), or with nothing but the rows of
                               this file already stored (against="file")
    read it again, a chunk at a time, in file order:
        rows stored before     read back; nothing is decided or stored again
        new rows               chain.decide, chain.admit, then the judge if asked
        the store              the chunk's rows and decisions, one transaction
        the outputs            kept / rejected / review rows, to temporary files
    finish                     review sample, run closed, outputs renamed into place

How a file's rows are stored (``examples``), and what that does to the rest of synth:

- ``id`` is ``row_`` and a hash of the row's source, its content and which copy of
  that content in the file it is (first, second ...). Neither the file's name nor the
  line is part of it: a row is filtered once, so re-running a file, or a copy of it
  with rows added, moved or renamed, stores only the rows it has not seen.
- ``origin`` is ``FILE:LINE``; ``run_id`` the filter run; no call, template or model.
- ``source`` is what the caller says: ``real`` (the user's own data) or ``synthetic``
  (a set made elsewhere). A synthetic row a filter redacted becomes ``edited``; a real
  one stays real, with the data before in ``edits``, as an edited seed does.
- ``outcome`` is the chain's verdict; ``status`` follows from it:
  a reject is ``rejected``: never in the dataset, a quota, the few-shot pool or an
  export, and not something later rows are compared with;
  a review is ``review_pending``: in the review queue, in the dataset once approved;
  a keep is ``accepted``: a real row counts toward its cell as a seed does, joins the
  few-shot pool and the exports; a synthetic row counts toward its cell's quota until
  the cell is full, as a generated row does, and ``surplus`` beyond it;
  a kept or held row whose exact content the dataset already holds (possible with
  against="file", or with no exact_dedup in the chain) is ``surplus``: the dataset
  holds each row once.
- Synthetic rows that joined the dataset are sampled for review at the end, as a
  run's are.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from synth.config import Config
from synth.errors import ConfigError, SeedError, SynthError
from synth.filters import FilterChain, FilterContext, build_chain
from synth.filters.digests import DigestSet
from synth.filters.rubric import RubricParams, decision_filters, judge_llm_changes, split_judge
from synth.generate import SeedPool
from synth.judge.grading import JudgeStage
from synth.llm.client import LLMClient
from synth.memory import collecting_less
from synth.plan import all_labels, plan_cells
from synth.records import (
    Candidate,
    CellKey,
    Outcome,
    Seed,
    Source,
    Status,
    Verdict,
    canonical_json,
    sha256_text,
)
from synth.review.sample import sample_for_review
from synth.seeds import iter_seeds
from synth.spend import RunSpend
from synth.store import Store
from synth.store.rows import FiledRow, JudgeScore

if TYPE_CHECKING:
    from synth.distributed import RayDecider

# Rows decided and stored together: one transaction, one progress report. Large
# enough that a chunk's store work is small next to its filtering; small enough that
# a kill loses little and the progress bar moves.
CHUNK = 1000

CHANGED = "the file changed while it was being filtered; run again"

Against = Literal["store", "file"]
JudgeState = Literal["ran", "not_asked", "not_configured"]


@dataclass(frozen=True)
class FilterProgress:
    """Where a filter run stands, sent after every chunk."""

    done: int  # rows of the file settled so far (decided now or stored before)
    total: int  # rows in the file (valid ones)
    kept: int
    rejected: int
    review: int
    already_stored: int
    elapsed: float  # seconds since the call began

    @property
    def rate(self) -> float:
        """Rows per second so far."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0


@dataclass(frozen=True)
class FunnelStage:
    """One line of the funnel: a filter, the rows it rejected, the rows left after it."""

    name: str
    removed: int
    left: int


@dataclass
class FilterReport:
    """What ``filter_file`` did. Verdict counts cover the whole file, rows stored by an
    earlier run included (from their stored decisions), so a second run over the same
    file reports the same funnel, with every row ``already_stored`` and none ``new``."""

    path: Path
    run_id: str | None  # None when every row was stored already: no run was needed
    resumed: bool  # an interrupted run over the same input was continued
    against: Against
    source: Source
    judge: JudgeState  # "not_asked": the chain has a rubric judge and it was not run
    filters: list[str]  # the names decisions are stored under, in chain order
    rows: int = 0
    new: int = 0  # decided and stored by this call
    already_stored: int = 0
    kept: int = 0
    rejected: int = 0
    review: int = 0  # held for a reviewer: in the review queue, not in any output but --review
    surplus: int = 0  # kept or held, but not added to the dataset (see the module doc)
    rejected_by: Counter[str] = field(default_factory=Counter)  # filter -> rows
    reasons: dict[str, Counter[str]] = field(default_factory=dict)  # filter -> slug -> rows
    skipped: list[str] = field(default_factory=list)  # "FILE:LINE: reason" (skip_invalid)
    status: str = "finished"  # finished | stopped (a budget cap) | nothing_new
    stop_reason: str | None = None
    kept_path: Path | None = None
    rejected_path: Path | None = None
    review_path: Path | None = None
    elapsed: float = 0.0

    def funnel(self) -> list[FunnelStage]:
        """The rows, then what each filter rejected in chain order (any other filter
        that rejected a stored row after them), then the rows held for review; the
        last stage's ``left`` is ``kept``."""
        stages = [FunnelStage("rows", 0, self.rows)]
        left = self.rows
        names = self.filters + sorted(f for f in self.rejected_by if f not in self.filters)
        for name in names:
            removed = self.rejected_by.get(name, 0)
            left -= removed
            stages.append(FunnelStage(name, removed, left))
        stages.append(FunnelStage("review", self.review, left - self.review))
        return stages

    @property
    def rate(self) -> float:
        return self.rows / self.elapsed if self.elapsed > 0 else 0.0


Progress = Callable[[FilterProgress], None]


def filter_file(
    config: Config,
    store: Store,
    path: str | os.PathLike[str],
    *,
    against: Against = "store",
    source: Literal["real", "synthetic"] = "real",
    judge: bool = False,
    kept: str | os.PathLike[str] | None = None,
    rejected: str | os.PathLike[str] | None = None,
    review: str | os.PathLike[str] | None = None,
    skip_invalid: bool = False,
    progress: Progress | None = None,
    chunk: int = CHUNK,
    ray: bool = False,
) -> FilterReport:
    """Run the configured filter chain over a JSONL or CSV file and store every decision.

    Args:
        config: The project; its ``[[filters]]`` are the chain, its ``[schema]`` what a
            row must be.
        store: Where rows and decisions go (``Store(config.db_path)``).
        path: The file: what ``synth seeds import`` reads, checked the same way.
        against: ``"store"`` compares the rows with the store's seeds and kept rows
            (and with each other); ``"file"`` with each other only, as if the store
            were empty.
        source: What the rows are: ``"real"`` (your own data: kept rows become seeds)
            or ``"synthetic"`` (a set made elsewhere: kept rows fill quotas as
            generated rows do). See the module doc for what each status means.
        judge: Also run the chain's rubric judge (paid LLM calls, through the run's
            client, limits and budget caps). Without it the judge is simply not run.
        kept, rejected, review: JSONL files to write: the kept rows as stored
            (redactions applied); the rejected rows with the filter and reason; the
            rows held for review with their reasons. Each appears whole or not at all.
        skip_invalid: Store the good rows and list the bad ones in ``skipped``,
            instead of refusing the file at its first bad row.
        progress: Called after every chunk with a :class:`FilterProgress`.
        chunk: Rows per chunk (a transaction, a progress report).
        ray: Decide on Ray Data (``[ray] address``, else a local Ray): the same
            decisions, the heavy work spread over a cluster; see
            :mod:`synth.distributed` for what runs where.

    Raises:
        SeedError: a row does not parse or validate (``FILE:LINE: reason``); nothing
            is stored.
        ConfigError: ``judge`` without a rubric filter, a bad ``against`` or
            ``source``, ``ray`` without ray installed.
    """
    started = time.monotonic()
    path = Path(path)
    if against not in ("store", "file"):
        raise ConfigError("against", f"{against!r} is not 'store' or 'file'")
    if source not in (Source.REAL, Source.SYNTHETIC):
        raise ConfigError("source", f"{source!r} is not 'real' or 'synthetic'")
    if chunk < 1:
        raise ConfigError("chunk", f"must be at least 1, not {chunk}")
    kind = Source(source)
    cheap, judge_spec = split_judge(config.filters, config.source.name)
    if ray:
        from synth.distributed import check_chain

        check_chain(cheap, config.source.name)
    if judge and judge_spec is None:
        raise ConfigError(
            f"{config.source.name}: filters",
            'judging asked for, but no [[filters]] kind = "rubric" names a rubric',
        )
    scan = _scan(path, config, kind, skip_invalid)
    labels = all_labels(config, store.examples.cell_counts())
    if not config.data_schema.labels:
        labels = sorted(set(labels) | {cell.label for cell in scan.cells})
    ctx = config.filter_context(labels)
    # Built before anything is stored: an eval set that cannot be read, a judge key
    # that is not set, stop the call here.
    chain = build_chain(cheap, ctx)
    use_judge = judge_spec if judge else None
    judge_config = config.with_llm(**judge_llm_changes(use_judge))
    if use_judge is not None:
        judge_config.api_key()
    stored = store.examples.stored_ids(scan.ids)
    names = decision_filters(
        [*cheap, *([use_judge] if use_judge else [])], bool(config.data_schema.label)
    )
    report = FilterReport(
        path=path,
        run_id=None,
        resumed=False,
        against=against,
        source=kind,
        judge="ran" if use_judge else "not_asked" if judge_spec else "not_configured",
        filters=names,
        rows=len(scan.ids),
        skipped=scan.problems,
    )
    run = store.runs.begin_filter(
        config.as_json(),
        config.sha,
        canonical_json(
            {"file": scan.name, "against": against, "source": kind.value, "judge": judge}
        ),
        needed=len(stored) < len(scan.ids),
    )
    job = _Job(config, store, path, scan, kind, chain, ctx, report, progress, started, chunk)
    if run is not None:
        report.run_id, report.resumed = run.id, run.resumes > 0
        # Only the new rows are decided, so the chain is prepared only when there are
        # some; against the file alone, with what of this file a cut-off run stored.
        if len(stored) < len(scan.ids) and (against == "store" or stored):
            seen = store.examples.seen_items(None if against == "store" else stored)
            if run.resumes:
                # What this run stored before it was cut off, the chain admitted as
                # candidates, not seeds: seen as seeds now, they would move the
                # thresholds calibrated on the seeds, and the resumed run would decide
                # otherwise than an uncut one.
                mine = store.examples.ids_of_run(run.id)
                seen = [
                    s.model_copy(update={"source": Source.SYNTHETIC}) if s.id in mine else s
                    for s in seen
                ]
            chain.prepare(seen)
    try:
        # What is read and indexed by now lives as long as the call.
        with collecting_less(), ExitStack() as outputs:
            if ray and run is not None and len(stored) < len(scan.ids):
                job.decide_on_ray(run.id, stored)
            job.outputs = {
                name: outputs.enter_context(_Output(Path(target)))
                for name, target in (("keep", kept), ("reject", rejected), ("review", review))
                if target is not None
            }
            if use_judge is not None and run is not None:
                asyncio.run(job.run_judged(run.id, use_judge, judge_config))
            else:
                job.run(run.id if run is not None else None)
            if report.status == "finished":
                for out in job.outputs.values():
                    out.commit()
    except Exception as e:
        if run is not None:
            store.runs.finish(run.id, "failed", str(e))
        raise
    # A KeyboardInterrupt or a kill leaves the run `running`: the next call over the
    # same input resumes it under its id.
    if run is not None:
        # As at the end of a generation run, stopped or not: a stratified sample of
        # the synthetic rows it accepted waits for a reviewer (real rows are not
        # sampled: they are the user's own, as imported seeds are).
        review_ids = sample_for_review(
            store.examples.accepted_ids(run.id),
            config.review.fraction,
            config.review.min_per_cell,
            config.review.seed,
        )
        store.runs.finish(run.id, report.status, report.stop_reason, review_ids)
    else:
        report.status = "nothing_new"
    report.kept_path = _written(job, "keep", kept)
    report.rejected_path = _written(job, "reject", rejected)
    report.review_path = _written(job, "review", review)
    report.elapsed = time.monotonic() - started
    return report


def _written(job: _Job, name: str, target: str | os.PathLike[str] | None) -> Path | None:
    out = job.outputs.get(name)
    return Path(target) if target is not None and out is not None and out.done else None


def row_id(source: Source, content: str, copy: int) -> str:
    """The id of the ``copy``-th row (from 0) of a file with this content sha."""
    return "row_" + sha256_text(f"{source.value}:{content}:{copy}")[:16]


class RowIds(Sequence[str]):
    """A file's row ids in order, 8 bytes each: an id is ``row_`` and 16 hex digits,
    which a 64-bit number holds; a list of the strings costs ~77 bytes a row (77 MB
    for a file of a million rows, held for the whole call)."""

    def __init__(self) -> None:
        self._values = array("Q")

    def append(self, id_: str) -> None:
        self._values.append(int(id_.removeprefix("row_"), 16))

    def __len__(self) -> int:
        return len(self._values)

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [f"row_{v:016x}" for v in self._values[i]]
        return f"row_{self._values[i]:016x}"


# --- reading ----------------------------------------------------------------------


@dataclass
class _Scan:
    """What the first read of the file learnt: every valid row's id, in order."""

    name: str  # the file as stored origins name it
    ids: RowIds = field(default_factory=lambda: RowIds())
    cells: set[CellKey] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


def _scan(path: Path, config: Config, source: Source, skip_invalid: bool) -> _Scan:
    """Validate the whole file before anything is stored; the ids of its rows."""
    try:
        name = str(path.resolve().relative_to(config.root.resolve()))
    except ValueError:
        name = str(path.resolve())
    scan = _Scan(name)
    for _, item, copy in _rows(path, config, skip_invalid, scan.problems):
        scan.ids.append(row_id(source, item.content_sha, copy))
        scan.cells.add(CellKey(slice=item.slice, label=item.label))
    return scan


def _rows(
    path: Path, config: Config, skip_invalid: bool, problems: list[str] | None = None
) -> Iterator[tuple[str, Seed, int]]:
    """(FILE:LINE, row, which copy of its content) of every valid row, in order."""
    # 64 bits of each content sha, ~10 bytes a row (a Counter of the hex shas would
    # hold ~180); only contents met again are counted.
    seen = DigestSet()
    again: Counter[int] = Counter()
    for where, item in iter_seeds(path, config):
        if isinstance(item, str):
            if not skip_invalid:
                raise SeedError(where, item)
            if problems is not None:
                problems.append(f"{where}: {item}")
            continue
        sha = int(item.content_sha[:16], 16)
        if seen.add(sha):
            yield where, item, 0
        else:
            again[sha] += 1
            yield where, item, again[sha]


# --- the work ---------------------------------------------------------------------


class _Output:
    """A JSONL file written to a temporary name beside its target and renamed into
    place once complete, so it appears whole or not at all."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.rows = 0
        self.done = False
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        self.tmp = Path(tmp)
        self.handle = os.fdopen(fd, "w", encoding="utf-8", newline="")

    def write(self, value: dict[str, Any]) -> None:
        self.handle.write(json.dumps(value, ensure_ascii=False) + "\n")
        self.rows += 1

    def commit(self) -> None:
        self.handle.close()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o666 & ~umask)  # mkstemp makes it private; this is a normal file
        os.replace(self.tmp, self.target)
        self.done = True

    def __enter__(self) -> _Output:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.done:
            self.handle.close()
            self.tmp.unlink(missing_ok=True)


@dataclass
class _Row:
    """One row of the file on its way through: read, then decided or read back."""

    where: str
    id: str
    seed: Seed
    outcome: Outcome | None = None  # decided now
    filed: FiledRow | None = None  # stored before


class _Job:
    """One call of ``filter_file``: the second read of the file, chunk by chunk."""

    def __init__(
        self,
        config: Config,
        store: Store,
        path: Path,
        scan: _Scan,
        source: Source,
        chain: FilterChain,
        ctx: FilterContext,
        report: FilterReport,
        progress: Progress | None,
        started: float,
        chunk: int,
    ) -> None:
        self.config = config
        self.store = store
        self.path = path
        self.scan = scan
        self.source = source
        self.chain = chain
        self.ctx = ctx
        self.report = report
        self.progress = progress
        self.started = started
        self.chunk = chunk
        self.outputs: dict[str, _Output] = {}
        self.ray: RayDecider | None = None  # the Ray backend, its work done ahead
        self.fields = set(config.data_schema.generated)
        self.done = 0
        # Synthetic rows fill quotas as generated ones do; the counts are kept in
        # memory from here on, as the runner keeps them (one run writes at a time).
        # The file's cells are planned too: its labels may be new to the store.
        self.counts = {cell: (0, 0) for cell in scan.cells}
        self.counts.update(store.examples.cell_counts())
        self.targets = {p.cell: p.target for p in plan_cells(config, self.counts)}

    def chunks(self) -> Iterator[list[_Row]]:
        """The file again, in chunks, each row with its id and, if stored, its record."""
        ids = self.scan.ids
        batch: list[_Row] = []
        for where, seed, copy in _rows(self.path, self.config, skip_invalid=True):
            i = self.done + len(batch)
            if i >= len(ids) or ids[i] != row_id(self.source, seed.content_sha, copy):
                raise SynthError(str(self.path), CHANGED)
            batch.append(_Row(where, ids[i], seed))
            if len(batch) == self.chunk:
                yield self._with_stored(batch)
                batch = []
        if batch:
            yield self._with_stored(batch)
        if self.done != len(ids):
            raise SynthError(str(self.path), CHANGED)

    def _with_stored(self, batch: list[_Row]) -> list[_Row]:
        filed = self.store.examples.filed([r.id for r in batch])
        for r in batch:
            r.filed = filed.get(r.id)
        return batch

    def run(self, run_id: str | None) -> None:
        for batch in self.chunks():
            new = [r for r in batch if r.filed is None]
            if new:
                assert run_id is not None  # a run is begun whenever a row is new
                self._decide(run_id, new)
                self._store(run_id, new, ())
            self._emit(batch)

    async def run_judged(self, run_id: str, spec: RubricParams, judge_config: Config) -> None:
        """As ``run``, with the judge after the cheap filters, through the run's client
        (limits, retries, the response cache) and within its budget caps."""
        config, store = self.config, self.store
        pool = SeedPool.from_rows(store.examples.seeds())
        stage = JudgeStage(spec, config, store, pool, self.ctx)
        # The caps are hard: a chunk is judged only if all its judge requests can be
        # held at their worst case, and each takes its own before it leaves.
        spend = RunSpend(config, stage)
        spend.begin(store, run_id, ())
        client = LLMClient(
            judge_config.llm, store.calls, api_key=judge_config.api_key(), ledger=spend.ledger
        )
        async with client:
            for batch in self.chunks():
                new = [r for r in batch if r.filed is None]
                if new:
                    outcomes = self._decide(run_id, new)
                    if (cap := spend.hold_judging(outcomes)) is not None:
                        self.report.status, self.report.stop_reason = "stopped", cap
                        return
                    judged = await stage.judge(client, run_id, outcomes)
                    spend.judged(o.candidate for o in outcomes)
                    self._store(run_id, new, judged.scores)
                self._emit(batch)

    def decide_on_ray(self, run_id: str, stored: set[str]) -> None:
        """Do the Ray backend's work over every new row; ``_decide`` then takes each
        chunk's decisions from it, in the chunks ``run`` stores them in."""
        from synth.distributed import RayDecider

        decider = RayDecider(self.chain, self.ctx)
        for i, (where, seed, _) in enumerate(_rows(self.path, self.config, skip_invalid=True)):
            if i < len(self.scan.ids) and self.scan.ids[i] not in stored:
                decider.add(self._candidate(run_id, _Row(where, self.scan.ids[i], seed)))
        settings = self.config.ray
        decider.run(address=settings.address or None, num_cpus=settings.num_cpus)
        self.ray = decider

    def _decide(self, run_id: str, rows: Sequence[_Row]) -> list[Outcome]:
        """The cheap filters' decisions; their survivors join the chain's indexes now,
        as in a run, so a later copy is caught before any judge is paid for it."""
        if self.ray is not None:
            outcomes = self.ray.decide([self._candidate(run_id, r) for r in rows])
        else:
            outcomes = self.chain.decide([self._candidate(run_id, r) for r in rows])
            self.chain.admit([o.candidate for o in outcomes if o.verdict is not Verdict.REJECT])
        for r, o in zip(rows, outcomes, strict=True):
            r.outcome = o
        return outcomes

    def _candidate(self, run_id: str, row: _Row) -> Candidate:
        seed = row.seed
        return Candidate(
            id=row.id,
            run_id=run_id,
            cell=CellKey(slice=seed.slice, label=seed.label),
            text=seed.text,
            # The schema's fields are what the filters judge; any other column (a
            # slice's match field, an id) is carried along as it is, as seeds keep it.
            data={k: v for k, v in seed.data.items() if k in self.fields},
            metadata={k: v for k, v in seed.data.items() if k not in self.fields},
            llm_call_id="",
            index=0,
            template="",
            template_sha="",
            model="",
        )

    def _store(self, run_id: str, rows: Sequence[_Row], scores: Sequence[JudgeScore]) -> None:
        outcomes = [r.outcome for r in rows if r.outcome is not None]
        live = self.store.examples.live_content([o.candidate.content_sha for o in outcomes])
        statuses: list[Status] = []
        for o in outcomes:
            status = self._status(o, live)
            statuses.append(status)
            if status in (Status.ACCEPTED, Status.REVIEW_PENDING):
                live.add(o.candidate.content_sha)  # a later copy in this chunk is surplus
        origins = [r.seed.origin for r in rows]
        self.store.examples.add_file_rows(run_id, outcomes, statuses, origins, self.source, scores)
        for r, status in zip(rows, statuses, strict=True):
            r.filed = _filed(r, status)
        self.report.new += len(rows)

    def _status(self, o: Outcome, live: set[str]) -> Status:
        if o.verdict is Verdict.REJECT:
            return Status.REJECTED
        if o.candidate.content_sha in live:
            return Status.SURPLUS
        if o.verdict is Verdict.REVIEW:
            return Status.REVIEW_PENDING
        if self.source is Source.REAL:
            return Status.ACCEPTED
        cell = o.candidate.cell
        real, synthetic = self.counts.get(cell, (0, 0))
        if self.targets.get(cell, 0) - real - synthetic <= 0:
            return Status.SURPLUS
        self.counts[cell] = (real, synthetic + 1)
        return Status.ACCEPTED

    def _emit(self, batch: Sequence[_Row]) -> None:
        """Count the chunk into the report, write it to the outputs, say how far."""
        report = self.report
        for r in batch:
            filed = r.filed
            assert filed is not None
            if r.outcome is None:
                report.already_stored += 1
            if filed["status"] == Status.SURPLUS:
                report.surplus += 1
            verdict = filed["outcome"]
            if verdict == Verdict.REJECT:
                report.rejected += 1
                by = filed["rejected_by"] or "?"
                reason = next((why for f, v, why in filed["why"] if v == Verdict.REJECT), "")
                report.rejected_by[by] += 1
                report.reasons.setdefault(by, Counter())[_slug(reason)] += 1
                self._write("reject", r, filter=by, reason=reason)
            elif verdict == Verdict.REVIEW:
                report.review += 1
                reasons = [{"filter": f, "reason": why} for f, v, why in filed["why"]]
                self._write("review", r, reasons=reasons)
            else:
                report.kept += 1
                out = self.outputs.get("keep")
                if out is not None:
                    out.write(_as_read(filed["data"], r.seed))
        self.done += len(batch)
        if self.progress is not None:
            self.progress(
                FilterProgress(
                    done=self.done,
                    total=len(self.scan.ids),
                    kept=report.kept,
                    rejected=report.rejected,
                    review=report.review,
                    already_stored=report.already_stored,
                    elapsed=time.monotonic() - self.started,
                )
            )

    def _write(self, name: str, r: _Row, **why: Any) -> None:
        out = self.outputs.get(name)
        if out is not None:
            assert r.filed is not None
            out.write(
                {"id": r.id, "where": r.where, **why, "row": _as_read(r.filed["data"], r.seed)}
            )


def _as_read(data: dict[str, Any], seed: Seed) -> dict[str, Any]:
    """A row's stored data with its fields in the order the file has them, so the
    outputs read like the input and are the same bytes whether the row was decided
    now or read back from the store (which keeps keys sorted)."""
    first = {k: data[k] for k in seed.data if k in data}
    return {**first, **{k: v for k, v in data.items() if k not in first}}


def _filed(r: _Row, status: Status) -> FiledRow:
    """A row just stored, as it would be read back."""
    o = r.outcome
    assert o is not None
    return {
        "id": r.id,
        "data": o.candidate.row,
        "status": status.value,
        "outcome": o.verdict.value,
        "rejected_by": o.rejected_by,
        "origin": r.seed.origin,
        "run_id": o.candidate.run_id,
        "why": [
            (d.filter, d.verdict.value, d.reason)
            for d in o.decisions
            if d.verdict is not Verdict.KEEP
        ],
    }


def _slug(reason: str) -> str:
    return reason.split(":", 1)[0].strip() or "?"


def render_report(report: FilterReport) -> str:
    """The funnel and what was stored and written, as ``synth filter`` prints it."""
    how = f"against the {'store' if report.against == 'store' else 'file alone'}"
    if report.run_id is None:
        head = "nothing new to filter: every row is stored already"
    else:
        head = f"run {report.run_id}{' (resumed)' if report.resumed else ''}, {how}"
    lines = [
        f"{report.path}: {report.rows:,} rows ({report.source.value}), {report.new:,} new,"
        f" {report.already_stored:,} already stored; {head}",
    ]
    stages = report.funnel()
    width = max(len(s.name) for s in stages) + 2
    for s in stages:
        if s.name == "rows":
            lines.append(f"  {'rows':{width}}  {s.left:>8,}")
            continue
        slugs = report.reasons.get(s.name, Counter())
        why = ", ".join(f"{k} {n:,}" for k, n in slugs.most_common(4))
        lines.append(f"  - {s.name:{width - 2}}  {s.removed:>8,}   {why}".rstrip())
    lines.append(f"  = {'kept':{width - 2}}  {report.kept:>8,}")
    if report.judge == "not_asked":
        lines.append("judge: not run (the chain's rubric judge runs with --judge)")
    if report.review:
        lines.append(f"review: {report.review:,} rows held for a reviewer (synth review serve)")
    if report.surplus:
        lines.append(
            f"surplus: {report.surplus:,} kept rows not added to the dataset"
            " (the dataset holds them already, or their cell's quota is met)"
        )
    if report.status == "stopped":
        lines.append(
            f"stopped: {report.stop_reason}; no output file written: raise the cap and run"
            " again to filter the rest"
        )
    written = [
        f"{name} -> {path}"
        for name, path in (
            ("kept", report.kept_path),
            ("rejected", report.rejected_path),
            ("review", report.review_path),
        )
        if path is not None
    ]
    if written:
        lines.append("; ".join(written))
    if report.elapsed > 0:
        lines.append(f"{report.elapsed:.1f} s, {report.rate:,.0f} rows/s")
    return "\n".join(lines)
