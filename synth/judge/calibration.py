"""Calibration: how often the judge agrees with humans, beyond chance.

Judge verdicts are the rubric filter's decisions: ``keep`` counts as approve,
``reject`` and ``review`` (borderline) as reject. A row whose judge call failed
(``judge_failed``) has no judge verdict, only a route to a human: it is left out, and
counted as excluded. ``judge_human_pairs`` makes the pairs, for this module and for
``synth audit`` alike, so both report the same kappa on the same store. Human
verdicts (approve | reject) come from the ``reviews`` table (the last one per row), or
from a JSONL file of ``{"example_id": ..., "verdict": ...}`` lines, which take
precedence. Cohen's kappa (``synth.agreement``) is computed

- overall,
- per criterion: the criterion's score (mean over samples and models) at or above
  its ``pass_level`` counts as approve,
- per cell (slice/label),

and flagged below 0.7. ``suggest`` tries every distinct weighted score as the pass
threshold and names the one that maximises kappa with the humans (ties: the one
nearest the current threshold).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from synth.agreement import KAPPA_WARN_BELOW, Agreement, cohen_kappa, kappa_by_group
from synth.config import Config
from synth.datafiles import read_rows
from synth.errors import SynthError
from synth.filters.rubric import RubricParams
from synth.judge.rubric import Rubric, load_rubric
from synth.store import Store
from synth.store.rows import JudgedRow

VERDICTS = ("approve", "reject")


class HumanVerdictError(SynthError):
    """A file of human verdicts that cannot be read; ``where`` is ``file:line``."""


@dataclass(frozen=True)
class JudgePairs:
    """Judged rows paired with a human verdict; ``failed``: rows a human reviewed whose
    judge call failed, left out; ``without_human``: judge verdicts no human covers."""

    pairs: list[tuple[JudgedRow, str]]
    judged: int  # rows with a judge verdict
    failed: int
    without_human: int

    @staticmethod
    def judge(row: JudgedRow) -> str:
        """The judge's verdict as a reviewer's: a borderline grade is not a pass."""
        return "approve" if row["verdict"] == "keep" else "reject"

    def agreement(self) -> Agreement:
        return cohen_kappa([(self.judge(r), h) for r, h in self.pairs])

    def by_cell(self) -> dict[str, Agreement]:
        return {
            str(k): v
            for k, v in kappa_by_group(
                (f"{r['slice']}/{r['label']}", self.judge(r), h) for r, h in self.pairs
            ).items()
        }


def judge_failed(row: JudgedRow) -> bool:
    return row["reason"].startswith("judge_failed")


def judge_human_pairs(store: Store, humans: dict[str, str] | None = None) -> JudgePairs:
    """Every row with a judge verdict paired with its human verdict (``humans`` first,
    then the last review). The one definition of which rows count for judge-human
    agreement."""
    humans = humans or {}
    judged: list[JudgedRow] = []
    failed = 0
    for r in store.reports.judged_examples():
        if not judge_failed(r):
            judged.append(r)
        elif humans.get(r["id"], r["human"]) in VERDICTS:
            failed += 1
    paired = []
    for r in judged:
        human = humans.get(r["id"], r["human"])
        if human in VERDICTS:
            paired.append((r, human))
    return JudgePairs(paired, len(judged), failed, len(judged) - len(paired))


@dataclass(frozen=True)
class Calibration:
    overall: Agreement
    by_criterion: dict[str, Agreement]
    by_cell: dict[str, Agreement]
    threshold: float  # the rubric's pass threshold
    suggested: float | None  # the threshold that maximises kappa, if any is defined
    suggested_agreement: Agreement | None
    judged: int  # rows the judge decided
    without_human: int  # of those, rows no human verdict covers
    failed: int = 0  # reviewed rows whose judge call failed: no verdict to compare
    warnings: list[str] = field(default_factory=list)


def read_human_verdicts(path: Path) -> dict[str, str]:
    """example_id -> approve | reject, from JSONL; a bad line is an error naming it."""
    out: dict[str, str] = {}
    for n, row in read_rows(path, HumanVerdictError, "human verdict"):
        where = f"{path}:{n}"
        if isinstance(row, str):
            raise HumanVerdictError(where, row)
        example_id, verdict = row.get("example_id"), row.get("verdict")
        if not isinstance(example_id, str) or not example_id:
            raise HumanVerdictError(where, "example_id is missing")
        if verdict not in VERDICTS:
            raise HumanVerdictError(where, f"verdict must be approve or reject, not {verdict!r}")
        out[example_id] = verdict
    return out


def rubric_of(config: Config) -> Rubric:
    """The rubric of the config's judge filter."""
    spec = next((f for f in config.filters if isinstance(f, RubricParams)), None)
    if spec is None:
        raise SynthError(
            f"{config.source.name}: filters", 'no [[filters]] kind = "rubric": there is no judge'
        )
    return load_rubric(config.resolve(spec.rubric), spec.rubric)


def calibrate(store: Store, rubric: Rubric, humans: dict[str, str] | None = None) -> Calibration:
    """Judge vs human agreement over every judged row a human verdict covers."""
    found = judge_human_pairs(store, humans)
    paired = found.pairs
    overall = found.agreement()
    by_criterion = {
        c.name: cohen_kappa(
            [
                ("approve" if r["criteria"][c.name] >= c.pass_level else "reject", h)
                for r, h in paired
                if c.name in r["criteria"]
            ]
        )
        for c in rubric.criteria
    }
    by_cell = found.by_cell()
    threshold = rubric.spec.pass_threshold
    suggested, best = _suggest(paired, threshold)
    warnings = []
    if overall.low:
        warnings.append(
            f"judge vs humans: kappa {overall.kappa:.2f} is below {KAPPA_WARN_BELOW}:"
            f" do not trust the judge's verdicts unreviewed{overall.caveat()}"
        )
    warnings += [
        f"criterion {name}: kappa {a.kappa:.2f} is below {KAPPA_WARN_BELOW}{a.caveat()}"
        for name, a in by_criterion.items()
        if a.low
    ]
    warnings += [
        f"cell {name}: kappa {a.kappa:.2f} is below {KAPPA_WARN_BELOW}{a.caveat()}"
        for name, a in by_cell.items()
        if a.low
    ]
    return Calibration(
        overall=overall,
        by_criterion=by_criterion,
        by_cell=by_cell,
        threshold=threshold,
        suggested=suggested,
        suggested_agreement=best,
        judged=found.judged,
        without_human=found.without_human,
        failed=found.failed,
        warnings=warnings,
    )


def _suggest(
    paired: list[tuple[JudgedRow, str]], current: float
) -> tuple[float | None, Agreement | None]:
    best: tuple[float, float, float] | None = None  # (kappa, -distance, threshold)
    best_agreement = None
    for t in sorted({float(r["score"] or 0.0) for r, _ in paired}):
        a = cohen_kappa(
            [
                ("approve" if float(r["score"] or 0.0) >= t - 1e-9 else "reject", h)
                for r, h in paired
            ]
        )
        if a.kappa is None:
            continue
        key = (a.kappa, -abs(t - current), t)
        if best is None or key > best:
            best, best_agreement = key, a
    return (best[2], best_agreement) if best else (None, None)


def judge_agreement(config: Config, humans_file: Path | None = None) -> Calibration:
    """``synth judge agreement``: calibrate the project's judge against humans."""
    rubric = rubric_of(config)
    humans = read_human_verdicts(humans_file) if humans_file is not None else None
    with Store(config.db_path) as store:
        return calibrate(store, rubric, humans)


def excluded_note(failed: int) -> str:
    """What a kappa line says about the reviewed rows it leaves out."""
    if not failed:
        return ""
    rows = "row" if failed == 1 else "rows"
    return f"; {failed} reviewed {rows} left out: the judge call failed, so no verdict"


def render_calibration(c: Calibration) -> str:
    """The agreement report as plain text."""

    def line(name: str, a: Agreement, width: int) -> str:
        kappa = "-" if a.kappa is None else f"{a.kappa:.3f}"
        flag = "  < 0.7" if a.low else ""
        return f"  {name:{width}}  {a.n:5}  {a.observed:8.3f}  {kappa:>6}{flag}"

    names = [*c.by_criterion, *c.by_cell, "overall"]
    width = max(len(n) for n in names)
    head = f"  {'':{width}}  {'n':>5}  {'observed':>8}  {'kappa':>6}"
    out = [
        f"judged rows {c.judged}, with a human verdict {c.judged - c.without_human}"
        + excluded_note(c.failed),
        head,
        line("overall", c.overall, width) + c.overall.caveat(),
        "per criterion (score >= its pass level):",
        *(line(n, a, width) for n, a in c.by_criterion.items()),
        "per cell:",
        *(line(n, a, width) for n, a in c.by_cell.items()),
    ]
    if c.suggested is not None and c.suggested_agreement is not None:
        k = c.suggested_agreement.kappa
        out.append(
            f"pass_threshold is {c.threshold:g}; {c.suggested:.2f} maximises agreement"
            f" (kappa {k:.3f})"
        )
    out += [f"warning: {w}" for w in c.warnings]
    return "\n".join(out)
