"""Quality benchmark: the bundled filter chain on a labelled set of real data.

    python bench/quality.py [--small] [--per-kind N] [--seed S] [--json] [--workdir DIR]

Builds the labelled project (``bench/qualitydata.py``: seeds, eval sets, candidates
whose kind and expected verdict are known by construction), runs every candidate
through the bundled config's filter chain the way ``synth run`` filters replies, and
prints, per kind, how many rows were rejected and by which filter (recall for the
kinds that should go, false rejections for those that should stay), per filter the
precision of its rejections and the thresholds in force, and a check per target of
the issue's "done when". ``--json`` prints the same figures as JSON.

The judge is left out (it needs a model). Everything else is the bundled chain with
the bundled settings; only the eval sets, the seeds and the text's length limit are
the benchmark's own.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import qualitydata as qd  # noqa: E402

from synth.config import Config, load_config  # noqa: E402
from synth.datafiles import read_rows  # noqa: E402
from synth.errors import SeedError  # noqa: E402
from synth.filtering import filter_file  # noqa: E402
from synth.filters.diversity import DiversityParams  # noqa: E402
from synth.filters.near_dedup import NearDedupParams  # noqa: E402
from synth.filters.rouge import RougeIndex  # noqa: E402
from synth.filters.rubric import split_judge  # noqa: E402
from synth.filters.shingles import shingle_hashes  # noqa: E402
from synth.seeds import read_seeds  # noqa: E402
from synth.store import Store  # noqa: E402

# Candidates decided together. The run decides the candidates of 16 replies at a time
# (up to 80 at per_call = 5); every filter compares within a chunk as across chunks.
CHUNK = 16


@dataclass
class RowDecision:
    """What the chain made of one candidate row (line ``line`` of the file)."""

    line: int
    verdict: str  # keep | reject | review
    text: str  # as the chain left it: a redaction is applied
    decisions: list[dict[str, Any]] = field(default_factory=list)  # filter, verdict, score, reason

    @property
    def rejected_by(self) -> str | None:
        return next((d["filter"] for d in self.decisions if d["verdict"] == "reject"), None)

    def of(self, name: str) -> dict[str, Any] | None:
        return next((d for d in self.decisions if d["filter"] == name), None)


def decide_all(config: Config, seeds_path: Path, candidates_path: Path) -> list[RowDecision]:
    """Every row of the candidate file through ``synth filter``'s code path: seeds
    imported into a fresh store, then ``filter_file`` against them, as a set made
    elsewhere (``source="synthetic"``), judge left out. What it decided is read back
    from the store, as a user would: one row per line, in file order."""
    with Store(config.db_path) as store:
        store.examples.add_seeds(read_seeds(seeds_path, config).seeds)
        report = filter_file(config, store, candidates_path, source="synthetic")
        by_line = {
            int(str(r["origin"]).rsplit(":", 1)[1]): r
            for r in store.examples.every_row()
            if r["run_id"] == report.run_id
        }
        out = []
        for line in sorted(by_line):
            r = by_line[line]
            decisions = [
                {
                    "filter": d["filter"],
                    "verdict": d["verdict"],
                    "score": d["score"],
                    "reason": d["reason"],
                }
                for d in store.reports.decisions_for(r["id"])
            ]
            out.append(RowDecision(line, str(r["outcome"]), r["text"], decisions))
    assert [d.line for d in out] == list(range(1, len(out) + 1)), "a line was not filtered"
    return out


def labels_by_id(config: Config, project: qd.Project) -> dict[str, str]:
    """The label of every row a reason can name: seeds and candidates, by store id."""
    del project  # every row a reason can name is in the store
    with Store(config.db_path) as store:
        return {r["id"]: r["label"] for r in store.examples.every_row()}


def matched_id(reason: str) -> str | None:
    """The row a dedup or diversity reason names: "... with <id>" or "... as <id>"."""
    m = re.search(r"\b(?:with|as) ((?:seed|row|ex)_[0-9a-f]+)\b", reason)
    return m.group(1) if m else None


# --- scoring --------------------------------------------------------------------------


def pii_handled(row: qd.Row, d: RowDecision) -> bool:
    """The configured PII action was taken on the value added: the row rejected or sent
    to review by the PII filter, or the value (all of it, and nothing else) replaced by
    a placeholder."""
    assert row.pii is not None
    pii = d.of("pii")
    if pii is None:
        return False
    if row.expected in ("reject", "review"):
        return pii["verdict"] == row.expected
    start, value = row.pii["start"], row.pii["value"]
    head, tail = row.text[:start], row.text[start + len(value) :]
    middle = d.text[len(head) : len(d.text) - len(tail)]
    return (
        d.text.startswith(head)
        and d.text.endswith(tail)
        and re.fullmatch(r"\[[A-Z_]+\]", middle) is not None
    )


@dataclass
class Tally:
    """Rows of one kind (or one source of a kind) and what became of them."""

    rows: int = 0
    unscored: int = 0  # copies of a row the chain rejected: no duplicate of anything kept
    rejected: int = 0
    review: int = 0
    handled: int = 0  # PII rows whose value was dealt with as configured
    by: Counter[str] = field(default_factory=Counter)  # rejecting filter -> rows
    other_label: Counter[str] = field(default_factory=Counter)  # of those: named another label
    source_label: int = 0  # cross-label rows whose reject names a row of the source label

    def add(self, row: qd.Row, d: RowDecision, labels: dict[str, str], scored: bool) -> None:
        if not scored:
            self.unscored += 1
            return
        self.rows += 1
        self.review += d.verdict == "review"
        if row.pii is not None:
            self.handled += pii_handled(row, d)
        by = d.rejected_by
        if by is None:
            return
        self.rejected += 1
        self.by[by] += 1
        named = labels.get(matched_id(d.of(by)["reason"]) or "", "")  # type: ignore[index]
        if named and named != row.label:
            self.other_label[by] += 1
        if named and row.origin_label and named == row.origin_label:
            self.source_label += 1

    def figure(self, kind: str) -> tuple[str, float]:
        """The kind's headline: recall for rows that should go, else false rejections."""
        if not self.rows:
            return "", 0.0
        if kind == "pii":
            return "handled", self.handled / self.rows
        if kind in qd.REJECT_KINDS:
            return "recall", self.rejected / self.rows
        name = "false_rejections" if kind in qd.KEEP_KINDS else "rejected"
        return name, self.rejected / self.rows

    def as_json(self, kind: str) -> dict[str, Any]:
        name, value = self.figure(kind)
        return {
            "rows": self.rows,
            "not_scored": self.unscored,
            "rejected": self.rejected,
            "review": self.review,
            name: round(value, 4),
            "by_filter": dict(self.by),
            "named_another_label": dict(self.other_label),
            **({"named_source_label": self.source_label} if kind == "cross_label_near_dup" else {}),
        }


@dataclass
class FilterTally:
    decided: int = 0
    acted: int = 0  # rejected (PII: also redacted or sent to review)
    right: int = 0  # of those, on rows that should be rejected (PII: rows with PII)


def score(
    project: qd.Project, results: Sequence[RowDecision], labels: dict[str, str]
) -> dict[str, Any]:
    kinds: dict[str, Tally] = defaultdict(Tally)
    by_source: dict[str, dict[str, Tally]] = defaultdict(lambda: defaultdict(Tally))
    filters: dict[str, FilterTally] = defaultdict(FilterTally)
    contamination_same_domain = [0, 0]  # flagged, decided
    rejected = right = 0
    for row, d in zip(project.rows, results, strict=True):
        copied = row.after_line is not None and results[row.after_line - 1].verdict == "reject"
        kinds[row.kind].add(row, d, labels, not copied)
        # PII rows are broken down by the kind of value added, the others by source.
        group = row.pii["kind"] if row.pii else row.source
        by_source[row.kind][group].add(row, d, labels, not copied)
        scored = row.expected != "info" and not copied
        for dec in d.decisions:
            ft = filters[dec["filter"]]
            ft.decided += 1
            acted = dec["verdict"] != "keep" or dec["reason"].startswith("pii_redacted")
            if acted and scored:
                ft.acted += 1
                ft.right += (
                    row.pii is not None if dec["filter"] == "pii" else row.expected == "reject"
                )
        if row.kind == "same_domain" and (c := d.of("contamination")) is not None:
            contamination_same_domain[0] += c["verdict"] == "reject"
            contamination_same_domain[1] += 1
        if scored and d.verdict == "reject":
            rejected += 1
            right += row.expected == "reject"
    return {
        "kinds": kinds,
        "by_source": by_source,
        "filters": filters,
        "precision": right / rejected if rejected else 1.0,
        "rejections": rejected,
        "same_domain_contamination": contamination_same_domain,
    }


# --- the data's nature ----------------------------------------------------------------


def nature(project: qd.Project, config: Config) -> dict[str, dict[str, float]]:
    """Per kind, the share of rows past the near-dedup threshold (word n-gram Jaccard,
    any label) and the diversity threshold (ROUGE-L, same label) with their nearest
    seed or earlier keep row, the rows a perfect chain keeps: how hard each kind is,
    measured on the data alone. (ROUGE-L only for the keep and duplicate kinds.)"""
    near = next((f for f in config.filters if isinstance(f, NearDedupParams)), None)
    div = next((f for f in config.filters if isinstance(f, DiversityParams)), None)
    seeds = [(r["text"], r["label"]) for _, r in read_rows(project.seeds, SeedError, "seed")]
    rows = project.rows
    keep = np.array([r.expected not in ("reject", "info") for r in rows])
    kinds = np.array([r.kind for r in rows])
    out: dict[str, dict[str, float]] = defaultdict(dict)
    if near is not None:
        texts = [t for t, _ in seeds] + [r.text for r in rows]
        best = max_jaccard(texts, len(seeds), keep, near.shingle, near.ngram)
        for kind in qd.KINDS:
            out[kind]["jaccard"] = round(float(np.mean(best[kinds == kind] >= near.threshold)), 4)
    if div is not None:
        indexes: dict[str, RougeIndex] = defaultdict(lambda: RougeIndex(div.tokenizer))
        for i, (text, label) in enumerate(seeds):
            indexes[label].add(f"s{i}", text)
        over: dict[str, list[bool]] = defaultdict(list)
        for i, r in enumerate(rows):
            if r.kind in qd.KEEP_KINDS or r.kind.endswith("_dup"):
                index = indexes[r.label]
                over[r.kind].append(len(index) > 0 and index.nearest(r.text).score > div.threshold)
            if keep[i]:
                indexes[r.label].add(f"r{i}", r.text)
        for kind, flags in over.items():
            out[kind]["rouge_l"] = round(float(np.mean(flags)), 4)
    return dict(out)


def max_jaccard(
    texts: Sequence[str], n_seeds: int, keep: np.ndarray, kind: str, n: int
) -> np.ndarray:
    """For each text after the first ``n_seeds``, its highest shingle-set Jaccard with a
    seed or an earlier text whose ``keep`` is set."""
    sets = shingle_hashes(texts, kind, n)  # type: ignore[arg-type]
    _, columns = np.unique(np.concatenate(sets), return_inverse=True)
    sizes = np.array([len(s) for s in sets])
    m = sparse.csr_matrix(
        (np.ones(len(columns), np.int32), (np.repeat(np.arange(len(sets)), sizes), columns))
    )
    shared = (m[n_seeds:] @ m.T).tocoo()
    i, j = shared.row, shared.col
    reference = np.concatenate([np.ones(n_seeds, bool), keep])
    ok = (j < n_seeds + i) & reference[j]
    union = sizes[n_seeds + i[ok]] + sizes[j[ok]] - shared.data[ok]
    best = np.zeros(len(texts) - n_seeds)
    np.maximum.at(best, i[ok], shared.data[ok] / np.maximum(union, 1))
    return best


# --- printing -------------------------------------------------------------------------

CHECKS = [
    # (what, kind or figure, target, higher is better)
    ("clean rows falsely rejected", "clean", 0.03, False),
    ("boilerplate-sharing rows rejected", "boilerplate", 0.05, False),
    ("exact duplicates caught", "exact_dup", 0.98, True),
    ("near duplicates caught", "near_dup", 0.98, True),
    ("cross-label near duplicates caught", "cross_label_near_dup", 0.98, True),
    ("verbatim eval items caught", "eval_verbatim", 1.0, True),
    ("edited eval items caught", "eval_edited", 1.0, True),
    ("paraphrased eval items caught", "eval_paraphrase", 0.90, True),
    ("same-domain rows flagged as contamination", "same_domain_contamination", 0.02, False),
    ("precision of rejections", "precision", 0.97, True),
]


def checks(figures: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for what, key, target, higher in CHECKS:
        if key == "precision":
            value = figures["precision"]
        elif key == "same_domain_contamination":
            flagged, decided = figures["same_domain_contamination"]
            value = flagged / decided if decided else 0.0
        else:
            value = figures["kinds"][key].figure(key)[1]
        ok = value >= target if higher else value <= target
        out.append(
            {
                "check": what,
                "value": round(value, 4),
                "target": target,
                "pass": ok,
                "op": ">=" if higher else "<=",
            }
        )
    return out


def thresholds(config: Config) -> dict[str, dict[str, Any]]:
    """Each filter's settings as in force, defaults included (eval sets: how many)."""
    out = {}
    for spec in split_judge(config.filters, config.source.name)[0]:
        params = spec.model_dump(mode="json", exclude={"kind", "eval_sets"})
        if spec.kind == "contamination":
            params["eval_sets"] = len(spec.eval_sets)  # type: ignore[attr-defined]
        if spec.kind == "schema":
            text = config.data_schema.fields[config.data_schema.text]
            params |= {"min_chars": text.min_length, "max_chars": text.max_length}
        out[spec.kind] = params
    return out


def _short(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "/".join(map(str, value)) if value else "-"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{v}" for k, v in value.items()) + "}" if value else "{}"
    return str(value)


def _by(t: Tally) -> str:
    parts = []
    for name, n in t.by.most_common():
        other = t.other_label.get(name, 0)
        parts.append(f"{name} {n}" + (f" ({other} named another label)" if other else ""))
    return ", ".join(parts)


def print_report(
    project: qd.Project, config: Config, figures: dict[str, Any], info: dict[str, Any]
) -> None:
    kinds, sources = figures["kinds"], figures["by_source"]
    seconds = info["seconds"]
    print(
        f"synth quality bench: {len(project.rows)} candidates, {project.n_seeds} seeds, "
        f"{len(project.specs)} eval sets, random seed {info['seed']}\n"
        f"sizes: {_sizes(info['sizes'])}\n"
        f"chain: the bundled config.toml's filters, judge left out; "
        f"built in {seconds['build']:.0f} s, filtered in {seconds['filter']:.0f} s"
    )
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(project.skipped.items()))
    print(
        f"keep rows are > {qd.FRESH:.0%} token edits from every seed, eval item and earlier "
        f"keep row; drawn rows skipped as closer: {skipped or 'none'}"
    )
    line = "{:32s} {:>5s} {:>7s} {:>8s} {:>16s}  {}"
    print("\n" + line.format("per kind / source", "rows", "expect", "rejected", "", "rejected by"))
    for kind in qd.KINDS:
        t = kinds[kind]
        expected = "/".join(sorted({r.expected for r in project.rows if r.kind == kind}))
        notes = f", {t.review} to review" if t.review else ""
        if t.unscored:
            notes += f"; {t.unscored} more copy a rejected row: not scored"
        print(line.format(kind, str(t.rows), expected, *_figures(t, kind), _by(t) + notes))
        for source, s in sorted(sources[kind].items()) if len(sources[kind]) > 1 else ():
            print(line.format("  " + source, str(s.rows), "", *_figures(s, kind), _by(s)))
        if kind == "cross_label_near_dup":
            print(f"  of its rejects, {t.source_label} name a seed of the label it was edited from")
    nat = info["nature"]
    print(
        "\nthe data's nature: share of rows past a filter's threshold, by the filter's own "
        "measure, with their\nnearest seed or earlier keep row (what a chain that kept all "
        "keep rows would hold)"
    )
    line = "{:32s} {:>26s} {:>22s}"
    print(line.format("kind", "near_dedup (any label)", "diversity (same label)"))
    for kind in qd.KINDS:
        n = nat.get(kind, {})
        rouge = f"{n['rouge_l']:.1%}" if "rouge_l" in n else "-"
        print(line.format(kind, f"{n.get('jaccard', 0):.1%}", rouge))
    line = "{:14s} {:>8s} {:>8s} {:>8s} {:>9s}"
    print("\n" + line.format("per filter", "decided", "rejected", "right", "precision"))
    params = thresholds(config)
    for name, ft in figures["filters"].items():
        precision = f"{ft.right / ft.acted:.3f}" if ft.acted else "-"
        print(line.format(name, str(ft.decided), str(ft.acted), str(ft.right), precision))
        shown = (f"{k}={_short(v)}" for k, v in params.get(name, {}).items())
        print("    " + ", ".join(shown))
    print(
        line.format(
            "all filters", "", str(figures["rejections"]), "", f"{figures['precision']:.3f}"
        )
    )
    flagged, decided = figures["same_domain_contamination"]
    print(
        "(pii: its redactions are its actions, right on rows with PII; rows of eval_near_miss "
        "and copies of rejected rows are not scored)\n"
        f"same_domain rows flagged by contamination: {flagged} of the {decided} it decided"
    )
    print("\ndone when:")
    for c in info["checks"]:
        mark = "PASS" if c["pass"] else "FAIL"
        print(f"  {mark}  {c['check']:44s} {c['value']:.3f} {c['op']} {c['target']}")


def _sizes(sizes: dict[str, int]) -> str:
    return (
        f"{sizes['per_kind']} rows per kind; seeds: {sizes['banking_labels']} BANKING77 and "
        f"{sizes['clinc_labels']} CLINC150 intents x <= {sizes['per_label']} rows, "
        f"175 Self-Instruct tasks, {sizes['code_seeds']} code items"
    )


def _figures(t: Tally, kind: str) -> tuple[str, str]:
    name, value = t.figure(kind)
    name = {"false_rejections": "false rej."}.get(name, name)
    return f"{t.rejected / max(1, t.rows):.1%}", f"{name} {value:.3f}"


def as_json(
    project: qd.Project, config: Config, figures: dict[str, Any], info: dict[str, Any]
) -> dict[str, Any]:
    return {
        **info,
        "candidates": len(project.rows),
        "seeds": project.n_seeds,
        "eval_sets": [s.name for s in project.specs],
        "skipped_not_fresh": dict(project.skipped),
        "kinds": {
            k: {
                "expected": sorted({r.expected for r in project.rows if r.kind == k}),
                **figures["kinds"][k].as_json(k),
                "sources": {s: t.as_json(k) for s, t in sorted(figures["by_source"][k].items())},
            }
            for k in qd.KINDS
        },
        "filters": {
            name: {
                "decided": ft.decided,
                "rejected": ft.acted,
                "right": ft.right,
                "precision": round(ft.right / ft.acted, 4) if ft.acted else None,
                "thresholds": thresholds(config).get(name, {}),
            }
            for name, ft in figures["filters"].items()
        },
        "precision": round(figures["precision"], 4),
        "same_domain_contamination": figures["same_domain_contamination"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="a quick run: 60 rows per kind")
    ap.add_argument("--per-kind", type=int, help="rows per kind (default 300, --small 60)")
    ap.add_argument("--seed", type=int, default=0, help="the random seed of every draw")
    ap.add_argument("--data", type=Path, default=qd.DATA, help="../shared/data")
    ap.add_argument("--workdir", type=Path, help="write the project here and keep it")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    sizes = qd.Sizes.small() if args.small else qd.Sizes()
    if args.per_kind:
        sizes = dataclasses.replace(sizes, per_kind=args.per_kind)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        for old in work.glob("bench.db*"):  # a fresh store, as a first run has
            old.unlink()
        start = time.perf_counter()
        project = qd.write_project(work, sizes, args.seed, args.data.resolve())
        config = load_config(project.config)
        built = time.perf_counter()
        results = decide_all(config, project.seeds, project.candidates)
        filtered = time.perf_counter()
        figures = score(project, results, labels_by_id(config, project))
        info = {
            "seed": args.seed,
            "sizes": dataclasses.asdict(sizes),
            "seconds": {"build": round(built - start, 1), "filter": round(filtered - built, 1)},
            "nature": nature(project, config),
            "checks": checks(figures),
        }
        if args.workdir:
            qd.write_jsonl(work / "decisions.jsonl", [dataclasses.asdict(r) for r in results])
        if args.json:
            print(json.dumps(as_json(project, config, figures, info), indent=1))
        else:
            print_report(project, config, figures, info)


if __name__ == "__main__":
    main()
