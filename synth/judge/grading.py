"""Judge calls: render, send through the run's client, validate, retry, decide.

The chain runs the cheap filters as each chunk of replies arrives; the survivors are
handed to ``JudgeStage.submit``, which sends their judge calls concurrently (through
the same client as generation: its limits, retries and idempotency keys) while
generation goes on. ``drain`` gives the judged chunks back in the order they were
submitted, and the runner settles them (quotas filled, rows stored) in that order,
so the rows a run accepts do not depend on which reply came back first.

Judge calls are recorded in ``llm_calls`` (``purpose = 'judge'``, ``parent_ids`` the
candidate judged) before they are sent and each reply is committed as it arrives.
Their ``request_sha`` covers the candidate, model, messages, parameters, templates,
rubric and sample index, so a resumed run finds every answered judge call in the
store and never pays the judge twice for the same candidate; a reply recorded
invalid counts as a failed attempt and is not sent again.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from synth.config import Config
from synth.filters.base import FilterContext
from synth.filters.rubric import (
    Grade,
    Judged,
    LabelAnswer,
    LabelCheckFilter,
    RubricFilter,
    RubricParams,
)
from synth.generate import SeedPool, planned_call
from synth.llm.client import Completer
from synth.llm.limits import fits
from synth.llm.structured import (
    ReplyError,
    read_object,
    response_format,
    strict_object,
    text_schema,
)
from synth.records import DEFAULT_SLICE, Candidate, CellKey, Outcome, Unusable, Verdict
from synth.store import CallRow, Store
from synth.store.rows import JudgeScore, PlannedCall

GRADE, LABEL = "rubric_grade", "label_check"
LABEL_KEYS = ("label", "slice", "rationale")
RATIONALE_CHARS = 300  # a rationale's length limit in the schema sent, where lengths go


class JudgeReplyError(ReplyError):
    """A judge reply whose fields are not what was asked for."""


@dataclass(frozen=True)
class JudgedChunk:
    """One submitted chunk, judged: what the runner settles and stores."""

    outcomes: list[Outcome]  # as submitted, the judge's decisions appended
    scores: list[JudgeScore]  # the judge's score rows, stored with the outcomes


class JudgeStage:
    """The judge between the cheap filters and the store (see the module docs)."""

    def __init__(
        self,
        params: RubricParams,
        config: Config,
        store: Store,
        pool: SeedPool,
        ctx: FilterContext,
    ) -> None:
        self.params = params
        self.config = config
        self.store = store
        self.ctx = ctx
        self.rubric = RubricFilter(params, ctx)
        # Without a label there is nothing for the judge to name: the check is off.
        checks = params.label_check and bool(ctx.label_field)
        self.label_check = LabelCheckFilter(params, ctx) if checks else None
        self.models = list(params.models) or [config.llm.model]
        self.labels = list(ctx.labels)
        self.slices = {DEFAULT_SLICE: "the dataset's ordinary traffic, no slice in particular"}
        self.slices.update({s.name: s.description for s in config.slices})
        # The same examples for every candidate of a label: fair, and a prompt prefix
        # that providers' prompt caches can reuse.
        rng = random.Random(config.generate.seed)
        want = max(params.references, params.label_examples)
        self.examples: dict[str, list[dict[str, Any]]] = {}
        for label in self.labels:
            rows = list(pool.by_label.get(label, []))
            self.examples[label] = [
                self._shown(r["data"]) for r in rng.sample(rows, min(want, len(rows)))
            ]
        self._tasks: list[asyncio.Task[JudgedChunk]] = []  # in submission order
        # The judge endpoint's context, when known (the run sets it): prompts show
        # fewer real examples rather than overflow it.
        self.context_tokens: int | None = config.llm.context_tokens
        for t in (self.rubric.template, self.rubric.label_template):
            if t is not None:
                store.calls.add_template(t.name, t.source, t.sha)
        rubric = self.rubric.rubric
        store.calls.add_template(rubric.path, rubric.source, rubric.sha)
        self._check_templates(pool)

    def _check_templates(self, pool: SeedPool) -> None:
        """Render both judge prompts for a seed: a template error stops the run
        before anything is paid, naming the file and line. They are kept: a run
        sizes what judging a candidate may cost from them."""
        self.sample_text = ""
        self._samples: list[PlannedCall] = []
        if not pool.all:
            return
        seed = pool.all[0]
        self.sample_text = seed["text"]
        c = Candidate(
            id="ex_template_check",
            run_id="",
            cell=CellKey(slice=seed["slice"], label=seed["label"]),
            text=seed["text"],
            data=seed["data"],
            llm_call_id="",
            index=0,
            template="",
            template_sha="",
            model="",
        )
        for kind in (GRADE, LABEL) if self.label_check is not None else (GRADE,):
            self._samples += [self._call(kind, c, model, 0) for model in self.models]

    def sample_calls(self) -> list[PlannedCall]:
        """One judge request of each kind and model, for the first seed (one sample)."""
        return list(self._samples)

    # -- the seam the runner calls ---------------------------------------------------

    def submit(self, client: Completer, run_id: str, outcomes: list[Outcome]) -> None:
        """Judge the chain's survivors among ``outcomes`` in the background; ``drain``
        gives them back."""
        self._tasks.append(asyncio.ensure_future(self.judge(client, run_id, outcomes)))

    async def drain(self) -> Iterator[JudgedChunk]:
        """Wait until every chunk submitted so far is judged; then the chunks in the
        order they were submitted. A chunk whose judging failed raises its error
        where it comes: the chunks before it are given, none after it."""
        tasks, self._tasks = self._tasks, []
        # Chunks are judged concurrently; every one is waited for, failed or not,
        # so none is left running unwatched when a failure ends the run.
        judged = await asyncio.gather(*tasks, return_exceptions=True)
        return _in_order(judged)

    async def cancel(self) -> None:
        """Stop judging what was submitted and not drained (a run ending early)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- judging ---------------------------------------------------------------------

    async def judge(self, client: Completer, run_id: str, outcomes: list[Outcome]) -> JudgedChunk:
        """The judge's decisions appended to the outcomes the chain did not reject,
        and the per-criterion score rows to store with them."""
        alive = [o for o in outcomes if o.verdict is not Verdict.REJECT]
        scores: list[JudgeScore] = []
        if self.label_check is not None and alive:
            candidates = [o.candidate for o in alive]
            judged = await self._ask(client, run_id, candidates, LABEL)
            for o in alive:
                scores += self._label_rows(o.candidate, judged[o.candidate.id], run_id)
            decisions = self.label_check.decide_judged(candidates, judged)
            for o, d in zip(alive, decisions, strict=True):
                o.decisions.append(d)
            alive = [o for o in alive if o.verdict is not Verdict.REJECT]
        if alive:
            candidates = [o.candidate for o in alive]
            judged = await self._ask(client, run_id, candidates, GRADE)
            for o in alive:
                scores += self._grade_rows(o.candidate, judged[o.candidate.id], run_id)
            decisions = self.rubric.decide_judged(candidates, judged)
            for o, d in zip(alive, decisions, strict=True):
                o.decisions.append(d)
        return JudgedChunk(outcomes, scores)

    async def _ask(
        self, client: Completer, run_id: str, candidates: list[Candidate], kind: str
    ) -> dict[str, Judged]:
        """Every model x sample of every candidate, concurrently; an invalid reply is
        asked again under a fresh sample index, ``retries`` times, where that can
        change the reply: not at temperature 0, and never for a prompt that did not
        fit the context."""
        samples = self.params.samples
        # At temperature 0 another sample index changes only the seed, which greedy
        # decoding ignores: the same prompt gets the same unusable reply again.
        deterministic = self.params.temperature == 0
        judged = {c.id: Judged() for c in candidates}
        pending = [(c, m, s, 0) for c in candidates for m in self.models for s in range(samples)]
        while pending:
            calls = [self._call(kind, c, m, s + a * samples) for c, m, s, a in pending]
            rows = self.store.calls.plan(run_id, calls, purpose="judge")
            # Answered calls come from the store; one recorded invalid is a failed
            # attempt already paid for, not a request to send again.
            sendable = [r for r in rows if r.status in ("pending", "ok")]
            results = {r.call.id: r for r in await client.complete_all(sendable)}
            retry = []
            for (c, m, s, a), row in zip(pending, rows, strict=True):
                error = None
                final = False  # asking again would get the same answer
                result = results.get(row.id)
                if result is None:
                    error = f"{row.status} reply (recorded earlier)"
                    final = row.status == "invalid" and deterministic
                elif result.status != "ok":
                    error = result.error or result.status
                    final = result.reason == Unusable.CONTEXT_FULL or (
                        result.status == "invalid" and deterministic
                    )
                else:
                    try:
                        self._add(judged[c.id], kind, m, s, row, result.content)
                    except ReplyError as e:
                        error = str(e)
                        final = deterministic
                        self.store.calls.mark_invalid(row.id, error, e.reason)
                if error is None:
                    continue
                if a < self.params.retries and not final:
                    retry.append((c, m, s, a + 1))
                elif judged[c.id].failure is None:
                    judged[c.id].failure = f"{m} sample {s}, {a + 1} tries: {error}"
            pending = retry
        return judged

    def _add(
        self, judged: Judged, kind: str, model: str, sample: int, row: CallRow, content: str | None
    ) -> None:
        # The reply's object is found wherever the model put it (in prose, a fence, a
        # wrapper); how it was found is recorded on the call.
        keys = LABEL_KEYS if kind == LABEL else [c.name for c in self.rubric.rubric.criteria]
        found = read_object(content, keys)
        if found.repairs:
            self.store.calls.record_repairs(row.id, found.repairs)
        value = found.value
        if kind == LABEL:
            judged.labels.append(self._parse_label(value, model, sample, row.id))
        else:
            judged.grades.append(self._parse_grade(value, model, sample, row.id))

    def _parse_grade(self, value: dict[str, Any], model: str, sample: int, call_id: str) -> Grade:
        scores: dict[str, int] = {}
        rationales: dict[str, str] = {}
        for c in self.rubric.rubric.criteria:
            entry = value.get(c.name)
            if not isinstance(entry, dict):
                raise JudgeReplyError(f"criterion {c.name} is missing")
            score = entry.get("score")
            if isinstance(score, float) and score.is_integer():
                score = int(score)
            if not isinstance(score, int) or isinstance(score, bool) or not 1 <= score <= 5:
                raise JudgeReplyError(
                    f"{c.name}.score: {_quoted(score)} is not an integer from 1 to 5"
                )
            why = entry.get("rationale")
            if not isinstance(why, str) or not why.strip():
                raise JudgeReplyError(f"{c.name}.rationale is missing")
            scores[c.name], rationales[c.name] = score, why.strip()
        return Grade(model, sample, call_id, scores, rationales)

    def _parse_label(
        self, value: dict[str, Any], model: str, sample: int, call_id: str
    ) -> LabelAnswer:
        label = value.get("label")
        if not isinstance(label, str) or label not in self.labels:
            raise JudgeReplyError(f"label: {_quoted(label)} is not one of the labels")
        slice_ = value.get("slice")
        if not isinstance(slice_, str) or slice_ not in self.slices:
            if self.params.check_slice:
                raise JudgeReplyError(f"slice: {_quoted(slice_)} is not one of the slices")
            slice_ = None
        why = value.get("rationale")
        why = why.strip() if isinstance(why, str) else ""
        return LabelAnswer(model, sample, call_id, label, slice_, why)

    # -- requests --------------------------------------------------------------------

    def _shown(self, data: dict[str, Any], without_label: bool = False) -> dict[str, Any]:
        fields = [f for f in self.ctx.fields if not (without_label and f == self.ctx.label_field)]
        return {f: data.get(f) for f in fields}

    def _call(self, kind: str, c: Candidate, model: str, sample_index: int) -> PlannedCall:
        """One judge request, as the store records it before it is sent: with as many
        real examples as configured, or as many as fit the context with the reply."""
        template = self.rubric.template if kind == GRADE else self.rubric.label_template
        assert template is not None  # a label check is only asked for with its template
        most = self.params.references if kind == GRADE else self.params.label_examples
        room = self.params.max_tokens, self.context_tokens
        messages = self._messages(kind, c, most)
        if not fits(messages, *room):
            # More examples never make a prompt shorter: the most that fit, by
            # bisection. Even none may not fit; the server's refusal then is recorded
            # as context_full.
            low, high = 0, most - 1
            while low < high:
                middle = (low + high + 1) // 2
                if fits(self._messages(kind, c, middle), *room):
                    low = middle
                else:
                    high = middle - 1
            messages = self._messages(kind, c, low)
        params: dict[str, Any] = {
            "temperature": self.params.temperature,
            "max_tokens": self.params.max_tokens,
            "seed": sample_index,
        }
        fmt = self._format(kind)
        if fmt is not None:
            params["response_format"] = fmt
        identity = {
            "purpose": "judge",
            "kind": kind,
            "candidate": c.id,
            "model": model,
            "messages": messages,
            "params": params,
            "template_sha": template.sha,
            "rubric_sha": self.rubric.rubric.sha,
            "sample_index": sample_index,
        }
        return planned_call(
            identity,
            slice_=c.cell.slice,
            label=c.cell.label,
            sample_index=sample_index,
            template=template,
            parent_ids=[c.id],
        )

    def _messages(self, kind: str, c: Candidate, examples: int) -> list[dict[str, Any]]:
        """The judge's prompt for ``c``, showing ``examples`` real examples (of its
        label to the rubric, of each label to the label check)."""
        label, slice_ = c.cell.label, c.cell.slice
        descriptions = self.config.data_schema.label_descriptions
        if kind == GRADE:
            rubric = self.rubric.rubric
            prompt = self.rubric.template.render(
                candidate=self._shown(c.data),
                label=label,
                label_description=descriptions.get(label, ""),
                slice={
                    "name": slice_,
                    "description": self.slices.get(slice_, ""),
                    "is_default": slice_ == DEFAULT_SLICE,
                },
                references=self.examples.get(label, [])[:examples],
                rubric={
                    "name": rubric.name,
                    "description": rubric.spec.description,
                    "criteria": [c.model_dump() for c in rubric.criteria],
                },
                text_field=self.ctx.text_field,
                label_field=self.ctx.label_field,
            )
        else:
            assert self.rubric.label_template is not None
            prompt = self.rubric.label_template.render(
                candidate=self._shown(c.data, without_label=True),
                labels=[
                    {
                        "name": name,
                        "description": descriptions.get(name, ""),
                        "examples": self.examples.get(name, [])[:examples],
                    }
                    for name in self.labels
                ],
                slices=[{"name": n, "description": d} for n, d in self.slices.items()],
                text_field=self.ctx.text_field,
                label_field=self.ctx.label_field,
            )
        return [{"role": "user", "content": prompt}]

    def _format(self, kind: str) -> dict[str, Any] | None:
        props: dict[str, Any]
        # One sentence, bounded: a small model's rationale otherwise runs on until
        # max_tokens cuts the whole reply off.
        rationale = text_schema(self.config, max_length=RATIONALE_CHARS)
        if kind == LABEL:
            props = {
                "label": {"type": "string", "enum": self.labels},
                "slice": {"type": "string", "enum": list(self.slices)},
                "rationale": rationale,
            }
        else:
            score = {"type": "integer", "enum": [1, 2, 3, 4, 5]}
            props = {
                c.name: strict_object({"score": score, "rationale": rationale})
                for c in self.rubric.rubric.criteria
            }
        return response_format(self.config.llm.response_format, kind, strict_object(props))

    # -- score rows ------------------------------------------------------------------

    def _score(
        self,
        c: Candidate,
        run_id: str,
        criterion: str,
        score: float,
        rationale: str,
        answer: Grade | LabelAnswer,
    ) -> JudgeScore:
        rubric = self.rubric.rubric
        return {
            "example_id": c.id,
            "rubric": rubric.path,
            "rubric_sha": rubric.sha,
            "run_id": run_id,
            "criterion": criterion,
            "score": score,
            "rationale": rationale,
            "judge_model": answer.model,
            "sample": answer.sample,
            "llm_call_id": answer.call_id,
        }

    def _grade_rows(self, c: Candidate, judged: Judged, run_id: str) -> list[JudgeScore]:
        return [
            self._score(c, run_id, name, float(score), g.rationales[name], g)
            for g in judged.grades
            for name, score in g.scores.items()
        ]

    def _label_rows(self, c: Candidate, judged: Judged, run_id: str) -> list[JudgeScore]:
        rows: list[JudgeScore] = []
        for a in judged.labels:
            answers = [("label", a.label, c.cell.label)]
            if a.slice is not None:
                answers.append(("slice", a.slice, c.cell.slice))
            for criterion, said, asked in answers:
                score = 1.0 if said == asked else 0.0
                why = f"judged {said}: {a.rationale}".rstrip(": ")
                rows.append(self._score(c, run_id, criterion, score, why, a))
        return rows


def _quoted(value: Any) -> str:
    """A value a judge wrote, quoted for an error message: short, whatever it is."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _in_order(judged: list[JudgedChunk | BaseException]) -> Iterator[JudgedChunk]:
    for chunk in judged:
        if isinstance(chunk, BaseException):
            raise chunk
        yield chunk
