"""The LLM judge as the chain's last filter: rubric grading and label consistency.

Only candidates every cheap filter kept reach it, and its calls are paid, so the
runner sends them concurrently for a whole chunk (``synth/judge/grading.py``) and
the classes here turn the validated replies into decisions:

- ``label_check`` (when ``label_check = true``): the judge, not told the intended
  label, names the label (and slice) the candidate belongs to. A different label is
  ``reject`` ``off_label: judged <x>, asked <y>``; with ``check_slice = true`` so is a
  different slice. Several samples or models vote; a tie goes to ``review``.
- ``rubric``: one score per criterion per sample and judge model, aggregated
  (``mean``, ``min`` or ``majority``), weighted by the rubric into one score:
  ``keep`` at or above ``pass_threshold``, ``review`` in the borderline band below it
  (a human decides), ``reject`` under it.

A judge reply that is not what was asked for (not JSON, a criterion missing, a score
outside 1-5, a label not in the list) is retried under a fresh sample index up to
``retries`` times; then the candidate gets ``review`` ``judge_failed: ...``, never a
silent keep.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from synth.errors import ConfigError
from synth.filters.base import Decides, FilterContext, FilterParams
from synth.judge.rubric import Rubric, load_rubric
from synth.prompts import Template, load_template
from synth.records import Candidate, Decision

Aggregate = Literal["mean", "min", "majority"]


class RubricParams(FilterParams):
    """The judge: which rubric, which templates, which models, how many samples.

    - ``rubric``: a rubric file (``prompts/rubrics/*.toml``, see ``synth.judge.rubric``).
    - ``models``: judge models; empty means ``llm.model``. A judge from another model
      family than the generator avoids self-preference: models rate text like their
      own higher. Each model needs its ``[llm.prices]`` entry.
    - ``base_url`` and ``api_key_env``: the judge's own OpenAI-compatible endpoint and
      the variable holding its key, for a judge served elsewhere than the generator
      (another provider, a local vLLM); empty means the ``[llm]`` ones. The ``[llm]``
      limits (concurrency, RPM, TPM, retries, timeout) apply to it as well.
    - ``samples`` per model, and ``aggregate``: ``mean`` of each criterion's scores,
      ``min`` (the harshest grade counts: fewer false keeps, more rejects) or
      ``majority`` of the per-sample verdicts (a tie goes to review). Samples differ
      only if ``temperature`` > 0; each carries its sample index as ``seed``.
    - ``retries``: fresh samples asked for after an invalid reply.
    - ``references``: real examples of the intended label shown with the rubric;
      ``label_examples``: real examples per label shown to the label check.
    """

    kind: Literal["rubric"] = "rubric"
    rubric: str = Field(min_length=1)
    template: str = "prompts/judge/grade.md.j2"
    label_template: str = "prompts/judge/label.md.j2"
    label_check: bool = True
    check_slice: bool = False
    models: list[str] = Field(default_factory=list)
    base_url: str = ""
    api_key_env: str = ""
    samples: int = Field(default=1, ge=1, le=16)
    aggregate: Aggregate = "mean"
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int = Field(default=512, gt=0)
    retries: int = Field(default=1, ge=0, le=5)
    references: int = Field(default=5, ge=0)
    label_examples: int = Field(default=3, ge=0)


@dataclass(frozen=True)
class Grade:
    """One judge reply to the rubric: a score and a rationale per criterion."""

    model: str
    sample: int
    call_id: str
    scores: dict[str, int]
    rationales: dict[str, str]


@dataclass(frozen=True)
class LabelAnswer:
    """One judge reply to the label check."""

    model: str
    sample: int
    call_id: str
    label: str
    slice: str | None
    rationale: str


@dataclass
class Judged:
    """What the judge said about one candidate: its replies, or why it failed."""

    grades: list[Grade] = field(default_factory=list)
    labels: list[LabelAnswer] = field(default_factory=list)
    failure: str | None = None  # set when a reply stayed invalid after every retry


@dataclass(frozen=True)
class Aggregated:
    score: float  # the weighted score, 1-5
    criteria: dict[str, float]  # each criterion's aggregated score
    verdict: str  # pass | borderline | fail


def aggregate(rubric: Rubric, grades: Sequence[Grade], how: Aggregate) -> Aggregated:
    """Several grades of one candidate made one.

    ``mean`` and ``min`` combine each criterion's scores and weigh the result;
    ``majority`` weighs each grade, takes the most common of their verdicts (a tie
    between verdicts is ``borderline``: a human decides) and reports the mean score.
    """
    if not grades:
        raise ValueError("no grades to aggregate")
    names = [c.name for c in rubric.criteria]
    values = {n: [g.scores[n] for g in grades] for n in names}
    if how == "min":
        per = {n: float(min(v)) for n, v in values.items()}
    else:
        per = {n: sum(v) / len(v) for n, v in values.items()}
    if how != "majority":
        score = rubric.weighted(per)
        return Aggregated(score, per, rubric.verdict(score))
    totals = [rubric.weighted({n: float(g.scores[n]) for n in names}) for g in grades]
    votes = Counter(rubric.verdict(t) for t in totals).most_common()
    tied = len(votes) > 1 and votes[0][1] == votes[1][1]
    return Aggregated(sum(totals) / len(totals), per, "borderline" if tied else votes[0][0])


class RubricFilter(Decides):
    """The judge's rubric and templates, and its grades made keep / review / reject
    (see the module docs)."""

    name = "rubric"
    version = "1"

    def __init__(self, params: RubricParams, ctx: FilterContext) -> None:
        self.params = params
        self.ctx = ctx
        self.rubric = load_rubric(_resolve(ctx, params.rubric), params.rubric)
        self.template: Template = load_template(_resolve(ctx, params.template), params.template)
        # Without a label there is no label check, and no template of it to read.
        self.label_template: Template | None = None
        if ctx.label_field:
            self.label_template = load_template(
                _resolve(ctx, params.label_template), params.label_template
            )

    @property
    def tag(self) -> str:
        """The rubric's name and sha, put on every decision."""
        return f"[rubric {self.rubric.name}@{self.rubric.sha[:12]}]"

    def decide_judged(
        self, batch: Sequence[Candidate], judged: Mapping[str, Judged]
    ) -> list[Decision]:
        """One decision per candidate, in order, from what the judge said of it
        (``judged`` by candidate id; a candidate missing there is the caller's bug)."""
        return [self._one(c, judged[c.id]) for c in batch]

    def _one(self, c: Candidate, judged: Judged) -> Decision:
        if judged.failure is not None:
            return self.review(c, f"judge_failed: {judged.failure} {self.tag}")
        agg = aggregate(self.rubric, judged.grades, self.params.aggregate)
        spec = self.rubric.spec
        low = spec.pass_threshold - spec.borderline
        if agg.verdict == "pass":
            return self.keep(
                c, agg.score, f"pass: {agg.score:.2f} >= {spec.pass_threshold:g} {self.tag}"
            )
        weakest = min(agg.criteria, key=lambda n: agg.criteria[n])
        detail = f"weakest {weakest} {agg.criteria[weakest]:.1f} {self.tag}"
        if agg.verdict == "borderline":
            reason = f"borderline: {agg.score:.2f} in [{low:g}, {spec.pass_threshold:g}); {detail}"
            return self.review(c, reason, agg.score)
        return self.reject(c, f"below_threshold: {agg.score:.2f} < {low:g}; {detail}", agg.score)


class LabelCheckFilter(Decides):
    """Off-label candidates out: the judge named another label (or slice)."""

    name = "label_check"
    version = "1"

    def __init__(self, params: RubricParams, ctx: FilterContext) -> None:
        self.params = params
        self.ctx = ctx

    def decide_judged(
        self, batch: Sequence[Candidate], judged: Mapping[str, Judged]
    ) -> list[Decision]:
        """One decision per candidate, in order, from the labels the judge named."""
        return [self._one(c, judged[c.id]) for c in batch]

    def _one(self, c: Candidate, judged: Judged) -> Decision:
        if judged.failure is not None:
            return self.review(c, f"judge_failed: {judged.failure}")
        label, label_tie = _vote([a.label for a in judged.labels])
        asked = c.cell.label
        share = sum(a.label == asked for a in judged.labels) / len(judged.labels)
        if label_tie:
            return self.review(c, f"label_unsure: the judges split on {asked}", share)
        if label != asked:
            return self.reject(c, f"off_label: judged {label}, asked {asked}", share)
        if self.params.check_slice:
            slice_, slice_tie = _vote([a.slice or "" for a in judged.labels])
            if slice_tie:
                return self.review(c, f"label_unsure: the judges split on slice {c.cell.slice}")
            if slice_ != c.cell.slice:
                return self.reject(
                    c, f"off_label: judged slice {slice_}, asked {c.cell.slice}", share
                )
        return self.keep(c, share, f"label_match: {label}")


def _vote(values: list[str]) -> tuple[str, bool]:
    """The most common value, and whether it ties with another."""
    votes = Counter(values).most_common()
    return votes[0][0], len(votes) > 1 and votes[0][1] == votes[1][1]


def _resolve(ctx: FilterContext, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else ctx.root / p


def split_judge(
    specs: Sequence[FilterParams], config_name: str = "config.toml"
) -> tuple[list[FilterParams], RubricParams | None]:
    """The cheap filters, and the judge's settings if the chain ends with one.

    The judge must be the last filter (it is the expensive one) and there is at most
    one; anything else is a ConfigError naming the filter."""
    cheap: list[FilterParams] = []
    judge: RubricParams | None = None
    for i, spec in enumerate(specs):
        if isinstance(spec, RubricParams):
            if judge is not None or i != len(specs) - 1:
                raise ConfigError(
                    f"{config_name}: filters[{i}]",
                    "the rubric judge must be the one and last filter of the chain",
                )
            judge = spec
        else:
            cheap.append(spec)
    return cheap, judge


def decision_filters(specs: Sequence[FilterParams], labelled: bool = True) -> list[str]:
    """The names decisions are stored under, in the order the chain makes them: each
    filter's kind, except that the judge decides as ``label_check`` (when on, and the
    schema has a label), then ``rubric``. Funnels and reports list their columns in
    this order."""
    names: list[str] = []
    for spec in specs:
        if isinstance(spec, RubricParams) and spec.label_check and labelled:
            names.append(LabelCheckFilter.name)
        names.append(spec.kind)
    return names


def judge_llm_changes(spec: RubricParams | None) -> dict[str, Any]:
    """What the judge's endpoint changes in ``[llm]``; empty when it shares it."""
    if spec is None:
        return {}
    changes: dict[str, Any] = {"base_url": spec.base_url, "api_key_env": spec.api_key_env}
    changes = {k: v for k, v in changes.items() if v}
    if spec.base_url:
        changes["base_urls"] = []  # its one endpoint replaces [llm]'s list
    return changes
