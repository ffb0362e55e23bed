"""Preference pairs: more responses to accepted rows' prompts, judged and paired.

Once every quota is met, each generated row of the dataset that the judge scored gets
``pairs.responses - 1`` more responses to its prompt (its fields but the response),
one call each, through the run's client. Each alternative is checked by the chain's
``schema`` and ``pii`` filters (lengths, redaction) and graded by the chain's judge
with the same rubric as the row, then stored as a row of status ``alternative`` whose
parent is the row. Of a prompt's judged responses, its own included, the best and
the worst are its pair (ties: the row's own response is the chosen one, the latest
alternative the rejected one).

Why after the quotas and not as part of generation: a quota counts rows, and a
prompt with several responses is still one row of the dataset; dedup and diversity
would reject every alternative (it repeats its row's prompt by design); and a prompt
the chain would reject is never paid a second response. Requests are keyed by the
row and the alternative's number, so a killed run resumes without paying twice, and
a later run (with ``responses`` raised, or rows added) asks only for what is missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from synth.config import Config
from synth.filters import FilterChain, FilterContext, build_chain
from synth.generate import planned_call
from synth.judge.grading import JudgeStage
from synth.llm.client import CallResult, Completer
from synth.llm.structured import ReplyError, read_object, response_format, strict_object
from synth.llm.structured import text_schema as string_schema
from synth.prompts import Template, load_template
from synth.records import Candidate, CellKey, Status, sha256_text
from synth.store import Store
from synth.store.pairs import PairRow, PromptRow, Response
from synth.store.rows import PlannedCall

# The name of the reply's schema: also how the simulator tells such a request apart.
SCHEMA_NAME = "alternative_response"
# Prompts asked about at a time: their alternatives are sent together, then judged.
LOT = 16
# Filters that need no index of other rows: what an alternative must pass besides the
# judge. Dedup and diversity would reject it for repeating its row's prompt.
CHECKS = ("schema", "pii")


@dataclass
class PairReport:
    alternatives: int = 0  # stored by this invocation
    pairs: int = 0  # made or made again by this invocation
    stop_reason: str | None = None  # a budget cap reached before every prompt was done


class Alternatives:
    """The pairing stage of a run (see the module docs)."""

    def __init__(
        self,
        config: Config,
        store: Store,
        judge: JudgeStage,
        ctx: FilterContext,
        samples: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """``samples``: stored rows (``id``, ``slice``, ``label``, ``data``) to render
        the template for at once, so an error in it stops a run before any spend."""
        self.config = config
        self.store = store
        self.judge = judge
        settings = config.pairs
        self.field = settings.field
        self.wanted = settings.responses - 1
        self.template: Template = load_template(
            config.resolve(settings.template), settings.template
        )
        store.calls.add_template(self.template.name, self.template.source, self.template.sha)
        self.checks: FilterChain = build_chain(
            [spec for spec in config.filters if spec.kind in CHECKS], ctx
        )
        self.checks.prepare([])
        self.written = config.data_schema.generated
        for row in samples:
            self._call(
                {
                    "id": row["id"],
                    "slice": row["slice"],
                    "label": row["label"],
                    "data": row["data"],
                    "alternatives": 0,
                    "paired": False,
                },
                1,
            )

    async def run(
        self, client: Completer, judge_client: Completer, run_id: str, spent: Spent
    ) -> PairReport:
        """Alternatives for every prompt short of them, a lot at a time, until done or a
        budget cap (``spent`` says what the run has spent) is reached."""
        report = PairReport()
        prompts = self.store.pairs.prompts(self.wanted)
        per_alternative = 1 + self.judge_calls()
        for start in range(0, len(prompts), LOT):
            lot = prompts[start : start + LOT]
            calls = [c for p in lot for c in self._calls(p)]
            if calls:
                report.stop_reason = spent(len(calls) * per_alternative)
                if report.stop_reason is not None:
                    break
                report.alternatives += await self._answer(client, judge_client, run_id, lot, calls)
            for p in lot:
                pair = choose_pair(p["id"], self.store.pairs.responses(p["id"]), run_id)
                if pair is not None:
                    self.store.pairs.put(pair)
                    report.pairs += 1
        return report

    async def _answer(
        self,
        client: Completer,
        judge_client: Completer,
        run_id: str,
        lot: Sequence[PromptRow],
        calls: Sequence[PlannedCall],
    ) -> int:
        """Send a lot's calls, check and judge the alternatives, store them; how many."""
        rows = self.store.calls.plan(run_id, calls, purpose="respond")
        # An answered call comes from the store; one recorded invalid or failed was paid
        # for (or tried) already and is not sent again.
        sendable = [r for r in rows if r.status in ("pending", "ok")]
        results = await client.complete_all(sendable)
        candidates, processed = self._candidates(results, run_id, {p["id"]: p for p in lot})
        outcomes = self.checks.decide(candidates)
        judged = await self.judge.judge(judge_client, run_id, outcomes)
        self.store.examples.add_outcomes(
            run_id,
            judged.outcomes,
            [Status.ALTERNATIVE] * len(judged.outcomes),
            processed,
            judged.scores,
        )
        return len(judged.outcomes)

    def judge_calls(self) -> int:
        """Judge calls per alternative, at the least (retries come on top)."""
        params = self.judge.params
        models = len(params.models) or 1
        return models * params.samples

    def _calls(self, prompt: PromptRow) -> list[PlannedCall]:
        """The calls a prompt is short of: alternatives number ``have + 1`` on."""
        first = prompt["alternatives"] + 1
        return [self._call(prompt, n) for n in range(first, self.wanted + 1)]

    def _call(self, prompt: PromptRow, number: int) -> PlannedCall:
        config = self.config
        shown = {k: prompt["data"].get(k) for k in self.written if k != self.field}
        spec = config.data_schema.fields[self.field]
        text = self.template.render(
            prompt=shown,
            field=self.field,
            description=spec.description,
            cell=config.data_schema.cell_values(prompt["label"]),
            slice=prompt["slice"],
            answer_shape='{"' + self.field + '": "..."}',
        )
        messages = [{"role": "user", "content": text}]
        # The seed tells the alternatives of one prompt apart: the same messages at the
        # same settings would otherwise be one request (and, greedy, one reply).
        params: dict[str, Any] = {
            "temperature": config.llm.temperature,
            "max_tokens": config.llm.max_tokens,
            "seed": number,
        }
        if config.llm.top_p is not None:
            params["top_p"] = config.llm.top_p
        schema = string_schema(config, min_length=spec.min_length, max_length=spec.max_length)
        fmt = response_format(
            config.llm.response_format, SCHEMA_NAME, strict_object({self.field: schema})
        )
        if fmt is not None:
            params["response_format"] = fmt
        identity = {
            "purpose": "respond",
            "prompt": prompt["id"],
            "model": config.llm.model,
            "messages": messages,
            "params": params,
            "template_sha": self.template.sha,
            "sample_index": number,
        }
        return planned_call(
            identity,
            slice_=prompt["slice"],
            label=prompt["label"],
            sample_index=number,
            template=self.template,
            parent_ids=[prompt["id"]],
        )

    def _candidates(
        self, results: Sequence[CallResult], run_id: str, prompts: dict[str, PromptRow]
    ) -> tuple[list[Candidate], list[str]]:
        """The alternatives the replies hold, each its prompt row's data with the
        response replaced; a reply without one is recorded invalid."""
        out: list[Candidate] = []
        processed: list[str] = []
        for r in results:
            if r.status != "ok":
                continue
            call = r.call
            try:
                value = read_object(r.content, [self.field]).value.get(self.field)
                if not isinstance(value, str):
                    raise ReplyError(f"{self.field!r} is not a string in the reply")
            except ReplyError as e:
                self.store.calls.mark_invalid(call.id, str(e), e.reason)
                continue
            prompt = prompts[call.parent_ids[0]]
            data = {k: prompt["data"].get(k) for k in self.written}
            data[self.field] = value
            out.append(
                Candidate(
                    id="ex_" + sha256_text(f"{call.request_sha}:0")[:16],
                    run_id=run_id,
                    cell=CellKey(slice=prompt["slice"], label=prompt["label"]),
                    text=self.config.data_schema.text_of(data),
                    data=data,
                    # The row's cell values, slice match and attributes, as the row has them.
                    metadata={k: v for k, v in prompt["data"].items() if k not in data},
                    llm_call_id=call.id,
                    index=0,
                    template=self.template.name,
                    template_sha=self.template.sha,
                    model=call.model,
                    parent_ids=(prompt["id"],),
                )
            )
            processed.append(call.id)
        return out, processed


class Spent:
    """Whether the run's budget caps allow ``n`` more calls: None, or why not."""

    def __init__(self, config: Config, store: Store, run_id: str) -> None:
        self.caps = config.generate
        self.store = store
        self.run_id = run_id

    def __call__(self, n: int) -> str | None:
        spend = self.store.calls.spend(self.run_id)
        caps = self.caps
        if caps.max_calls is not None and spend.calls + n > caps.max_calls:
            return f"budget: max_calls = {caps.max_calls} reached (preference pairs)"
        if caps.max_cost_usd is not None and spend.cost_usd >= caps.max_cost_usd:
            return f"budget: max_cost_usd = {caps.max_cost_usd:g} reached (preference pairs)"
        return None


def choose_pair(prompt_id: str, responses: Sequence[Response], run_id: str) -> PairRow | None:
    """The best- and worst-judged of a prompt's responses (the row's own first), or
    None with fewer than two judged. On a tie for best the earlier response is chosen,
    on a tie for worst the later one rejected, so a tie of all is a pair of gap 0."""
    judged = [(r["id"], r["score"]) for r in responses if r["score"] is not None]
    if len(judged) < 2:
        return None
    best = max(judged, key=lambda r: r[1])  # max keeps the first of equals
    worst = min(reversed(judged), key=lambda r: r[1])  # and min, of the reversed list, the last
    if best[0] == worst[0]:
        return None
    return {
        "prompt_id": prompt_id,
        "chosen_id": best[0],
        "rejected_id": worst[0],
        "chosen_score": best[1],
        "rejected_score": worst[1],
        "gap": best[1] - worst[1],
        "responses": len(judged),
        "run_id": run_id,
    }
