"""The provenance audit: what the dataset is made of and how it got that way.

``audit_store(config, store)`` answers, per slice x label and in total: how many rows
are real, synthetic and edited (and their shares); the filter funnel with the reasons
rows were rejected, and the generation calls whose replies were unusable, by why
(unparseable, cut off, context full ...); review coverage and outcomes; judge-human
agreement; eval-set contamination hits; diversity figures; tokens and cost per
accepted row; and the class balance before (real rows only) and after (real +
accepted synthetic), against the target. All of it is read from the store; the
result is plain JSON-ready data, which ``render_audit`` prints as tables and
``synth.report`` turns into an HTML page.

``audit_file(config, store, path)`` audits a dataset assembled elsewhere (JSONL or
CSV): each row is matched to the store, first by content hash (the whole row, then
its normalised text, against the live rows and every frozen version), failing that by
near-duplicate search over every stored row, and tagged ``real``, ``synthetic``,
``edited`` or ``unknown`` with its provenance.

Judge-human agreement pairs the decision of the ``rubric`` filter with the latest
human verdict on the same row, as ``synth judge agreement`` does (one function,
``judge_human_pairs``, decides which rows count): the judge's ``keep`` counts as
approve, ``review`` and ``reject`` as reject (a borderline grade is not a pass), and a
row whose judge call failed is left out and counted. Cohen's kappa is computed over
every such pair and per cell, and is None when undefined (no pairs, or both raters
used one verdict throughout).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from synth.agreement import KAPPA_WARN_BELOW, cohen_kappa
from synth.config import Config
from synth.datafiles import read_rows
from synth.errors import SynthError
from synth.filters import build_chain
from synth.filters.diversity import diversity_figures
from synth.filters.rubric import decision_filters, split_judge
from synth.judge.calibration import JudgePairs, excluded_note, judge_human_pairs
from synth.plan import plan_cells
from synth.quota import by_reason
from synth.records import CellKey, SeenItem, Source, canonical_json, sha256_text
from synth.status import simulated_note
from synth.store import Store, empty_funnel_row
from synth.store.rows import ExampleRow, FrozenItem
from synth.text import normalize_text

TAGS = ("real", "synthetic", "edited", "unknown")
CONTAMINATION = "contamination"


class AuditFileError(SynthError):
    """A dataset file that cannot be read: names the file and line."""


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _per(value: float, count: int) -> float | None:
    return value / count if count else None


# --- the store ------------------------------------------------------------------


def audit_store(config: Config, store: Store) -> dict[str, Any]:
    """The audit of the project's store, as JSON-ready data (see the module doc)."""
    funnel = {(r["slice"], r["label"]): r for r in store.reports.funnel()}
    plans = {
        (p.cell.slice, p.cell.label): p for p in plan_cells(config, store.examples.cell_counts())
    }
    composition: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for r in store.examples.dataset():
        composition[(r["slice"], r["label"])][r["source"]] += 1
    reasons: dict[tuple[str, str], dict[str, Counter[str]]] = defaultdict(
        lambda: defaultdict(Counter)
    )
    for slice_, label, filter_name, slug, n in store.reports.rejection_reasons():
        reasons[(slice_, label)][filter_name][slug or "?"] += n
    reviews = store.reviews.reviewed_rows()
    judged = judge_human_pairs(store)
    pairs: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for row, human in judged.pairs:
        pairs[(row["slice"], row["label"])].append((JudgePairs.judge(row), human))
    hits = [d for d in store.reports.filter_decisions(CONTAMINATION) if d["verdict"] == "reject"]
    texts = store.examples.texts_by_cell()

    keys = sorted(set(funnel) | set(plans) | set(composition))
    cells = []
    for key in keys:
        f = funnel.get(key) or empty_funnel_row(*key)
        plan = plans.get(key)
        mix = composition.get(key, Counter())
        rows = sum(mix.values())
        review = _review_figures([r for r in reviews if (r["slice"], r["label"]) == key])
        tokens = f["prompt_tokens"] + f["completion_tokens"]
        cell_texts = texts.get(key, {"real": [], "synthetic": []})
        cells.append(
            {
                "slice": key[0],
                "label": key[1],
                "rows": rows,
                "real": mix["real"],
                "synthetic": mix["synthetic"],
                "edited": mix["edited"],
                "real_share": _share(mix["real"], rows),
                "synthetic_share": _share(mix["synthetic"], rows),
                "edited_share": _share(mix["edited"], rows),
                # what a model wrote, edited or not
                "generated_share": _share(mix["synthetic"] + mix["edited"], rows),
                "target": plan.target if plan else None,
                "before": mix["real"],
                "after": rows,
                "deficit": plan.deficit if plan else 0,
                "generated": f["generated"],
                "rejected": dict(sorted(f["rejected"].items())),
                "reasons": {k: dict(sorted(v.items())) for k, v in sorted(reasons[key].items())},
                "accepted": f["accepted"],
                "held": f["held"],
                "surplus": f["surplus"],
                "review_rejected": f["review_rejected"],
                "review": review,
                "agreement": _agreement(pairs.get(key, [])),
                "contamination_hits": sum(1 for h in hits if (h["slice"], h["label"]) == key),
                "diversity": {
                    source: asdict(diversity_figures(t)) if len(t) > 1 else None
                    for source, t in cell_texts.items()
                },
                # every call made for the cell, the judge's of its rows included, as
                # in the totals
                "calls": f["calls"],
                "judge_calls": f["judge_calls"],
                # generation calls that brought nothing usable, by why
                "unusable": dict(sorted(f["unusable"].items())),
                "tokens": tokens,
                "cost_usd": f["cost_usd"],
                "tokens_per_accepted": _per(tokens, f["accepted"]),
                "cost_per_accepted": _per(f["cost_usd"], f["accepted"]),
            }
        )
    return {
        "project": config.project.name,
        "filters": _filter_order(config, cells),
        "totals": {
            **_totals(store, cells, reviews, pairs, hits),
            "judge_failed_excluded": judged.failed,
        },
        "slices": _slices(cells),
        "funnel": _funnel(config, cells),
        "reasons": [
            {"filter": f, "reason": slug, "count": n}
            for f, slug, n in sorted(_sum_reasons(cells), key=lambda x: (-x[2], x[0], x[1]))
        ],
        "contamination": [
            {
                "example_id": h["example_id"],
                "slice": h["slice"],
                "label": h["label"],
                "reason": h["reason"],
            }
            for h in hits
        ],
        "cells": cells,
        "calibration": calibration(config, real_rows(store)),
    }


def _review_figures(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    reviewed = [r for r in rows if r["verdict"]]
    return {
        "sampled": len(rows),
        "reviewed": len(reviewed),
        "pending": len(rows) - len(reviewed),
        "approved": sum(1 for r in reviewed if r["verdict"] == "approve"),
        "rejected": sum(1 for r in reviewed if r["verdict"] == "reject"),
        "edited": sum(1 for r in reviewed if r["edited"]),
        "coverage": _share(len(reviewed), len(rows)),
    }


def _agreement(pairs: list[tuple[str, str]]) -> dict[str, Any] | None:
    if not pairs:
        return None
    a = cohen_kappa(pairs)
    return {
        "n": a.n,
        "observed": a.observed,
        "kappa": a.kappa,
        "low": a.low,
        "caveat": a.caveat().strip(" ()"),
    }


def _filter_order(config: Config, cells: list[dict[str, Any]]) -> list[str]:
    names = decision_filters(config.filters, bool(config.data_schema.label))
    for c in cells:
        names += [f for f in c["rejected"] if f not in names]
    return names


def _sum_reasons(cells: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    total: Counter[tuple[str, str]] = Counter()
    for c in cells:
        for f, slugs in c["reasons"].items():
            for slug, n in slugs.items():
                total[(f, slug)] += n
    return [(f, s, n) for (f, s), n in total.items()]


def _funnel(config: Config, cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Generated, then what is left after each filter in chain order, then accepted."""
    generated = sum(c["generated"] for c in cells)
    stages = [{"stage": "generated", "rows": generated, "removed": 0}]
    left = generated
    for name in _filter_order(config, cells):
        removed = sum(c["rejected"].get(name, 0) for c in cells)
        left -= removed
        stages.append({"stage": name, "rows": left, "removed": removed})
    accepted = sum(c["accepted"] for c in cells)
    stages.append({"stage": "accepted", "rows": accepted, "removed": left - accepted})
    return stages


def _slices(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for c in cells:
        for k in ("rows", "real", "synthetic", "edited"):
            out[c["slice"]][k] += c[k]
    return [
        {
            "slice": s,
            **{k: v[k] for k in ("rows", "real", "synthetic", "edited")},
            "generated_share": _share(v["synthetic"] + v["edited"], v["rows"]),
        }
        for s, v in sorted(out.items())
    ]


def _totals(
    store: Store,
    cells: list[dict[str, Any]],
    reviews: Sequence[Mapping[str, Any]],
    pairs: dict[tuple[str, str], list[tuple[str, str]]],
    hits: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    spend = store.calls.spend()
    sums = {
        k: sum(c[k] for c in cells)
        for k in ("rows", "real", "synthetic", "edited", "generated", "accepted")
    }
    tokens = spend.prompt_tokens + spend.completion_tokens
    return {
        **sums,
        "real_share": _share(sums["real"], sums["rows"]),
        "synthetic_share": _share(sums["synthetic"], sums["rows"]),
        "edited_share": _share(sums["edited"], sums["rows"]),
        "generated_share": _share(sums["synthetic"] + sums["edited"], sums["rows"]),
        "target": sum(c["target"] or 0 for c in cells),
        "calls": spend.calls,
        "attempts": spend.attempts,
        "tokens": tokens,
        # Of the prompt tokens and the cost, what the provider's prompt cache served.
        "prompt_tokens": spend.prompt_tokens,
        "cached_tokens": spend.cached_tokens,
        "fresh_tokens": spend.prompt_tokens - spend.cached_tokens,
        "cached_usd": spend.cached_usd,
        "cost_usd": spend.cost_usd,
        # of it, what synth's simulator answered: no bill
        "simulated_cost_usd": store.calls.simulated_cost(),
        # Every call counts, judge calls included, as in each cell: what an accepted
        # row cost.
        "tokens_per_accepted": _per(tokens, sums["accepted"]),
        "cost_per_accepted": _per(spend.cost_usd, sums["accepted"]),
        "review": _review_figures(reviews),
        "agreement": _agreement([p for cell in pairs.values() for p in cell]),
        "contamination_hits": len(hits),
    }


# --- terminal tables ----------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(r: list[str]) -> str:
        return "  ".join(
            [r[0].ljust(widths[0]), *(v.rjust(w) for v, w in zip(r[1:], widths[1:], strict=True))]
        )

    return [fmt(header), "-" * len(fmt(header)), *(fmt(r) for r in rows)]


def pct(x: float | None) -> str:
    """A share as a percentage with one decimal; None as '-'."""
    return "-" if x is None else f"{100 * x:.1f}%"


def num(x: float | None, digits: int = 3) -> str:
    """A number with ``digits`` decimals; None as '-'."""
    return "-" if x is None else f"{x:.{digits}f}"


def render_audit(report: dict[str, Any]) -> str:
    """The audit as plain-text tables: composition and balance, funnel and reasons,
    review and agreement, diversity and cost."""
    cells = report["cells"]
    t = report["totals"]
    out = [f"audit of {report['project']}", ""]
    out += _table(
        ["cell", "real", "synthetic", "edited", "generated %", "target", "before", "after"],
        [
            [
                f"{c['slice']}/{c['label']}",
                str(c["real"]),
                str(c["synthetic"]),
                str(c["edited"]),
                pct(c["generated_share"]),
                "-" if c["target"] is None else str(c["target"]),
                str(c["before"]),
                str(c["after"]),
            ]
            for c in cells
        ]
        + [
            [
                "total",
                str(t["real"]),
                str(t["synthetic"]),
                str(t["edited"]),
                pct(t["generated_share"]),
                str(t["target"]),
                str(t["real"]),
                str(t["rows"]),
            ]
        ],
    )
    out += ["", "funnel: " + " -> ".join(f"{s['stage']} {s['rows']}" for s in report["funnel"])]
    if report["reasons"]:
        out += ["rejected because:"]
        out += [f"  {r['filter']}: {r['reason']}  {r['count']}" for r in report["reasons"]]
    unusable = [c for c in cells if c.get("unusable")]
    if unusable:
        out += ["unusable replies, by why:"]
        out += [f"  {c['slice']}/{c['label']}: {by_reason(c['unusable'])}" for c in unusable]
    rv = t["review"]
    out += [
        "",
        f"review: {rv['reviewed']} of {rv['sampled']} sampled rows reviewed"
        f" ({pct(rv['coverage'])}): {rv['approved']} approved, {rv['rejected']} rejected,"
        f" {rv['edited']} edited, {rv['pending']} pending",
    ]
    ag = t["agreement"]
    excluded = excluded_note(t.get("judge_failed_excluded", 0))
    if ag is None:
        out.append("judge-human agreement: no row was graded by the judge and reviewed" + excluded)
    else:
        warn = f"  (below {KAPPA_WARN_BELOW})" if ag["low"] else ""
        caveat = f"; {ag['caveat']}" if ag.get("caveat") else ""
        out.append(
            f"judge-human agreement: kappa {num(ag['kappa'])}, observed {pct(ag['observed'])}"
            f" over {ag['n']} rows{warn}{excluded}{caveat}"
        )
    out.append(f"contamination hits: {t['contamination_hits']}")
    out += [""]
    out += _table(
        ["cell", "reviewed", "kappa", "contam", "distinct-2", "NN-ROUGE-L", "tokens/acc", "$/acc"],
        [
            [
                f"{c['slice']}/{c['label']}",
                f"{c['review']['reviewed']}/{c['review']['sampled']}",
                num(c["agreement"]["kappa"]) if c["agreement"] else "-",
                str(c["contamination_hits"]),
                num((c["diversity"]["synthetic"] or {}).get("distinct_2")),
                num((c["diversity"]["synthetic"] or {}).get("mean_nn_rouge_l")),
                num(c["tokens_per_accepted"], 0),
                num(c["cost_per_accepted"], 6),
            ]
            for c in cells
        ],
    )
    out += [
        "",
        f"calls {t['calls']} (attempts {t['attempts']}), tokens {t['tokens']},"
        f" cost ${t['cost_usd']:.4f}; per accepted row: {num(t['tokens_per_accepted'], 0)}"
        f" tokens, ${num(t['cost_per_accepted'], 6)}",
    ]
    if t["simulated_cost_usd"]:
        out.append(simulated_note(t["simulated_cost_usd"], t["cost_usd"]))
    if "calibration" in report:
        out += ["", render_calibration(report["calibration"])]
    return "\n".join(out)


# --- calibration -----------------------------------------------------------------------


def real_rows(store: Store) -> list[SeenItem]:
    """The store's real rows (seeds), as the filters see them."""
    return [s for s in store.examples.seen_items() if s.source is Source.REAL]


def stored_seeds(config: Config) -> list[SeenItem] | None:
    """The seeds of the project's store; None when there is no store yet (reading
    must not create one)."""
    if not config.db_path.exists():
        return None
    with Store(config.db_path, readonly=True) as store:
        return real_rows(store)


def seed_file_rows(config: Config, path: Path) -> list[SeenItem]:
    """The rows of a seed file, validated as ``synth seeds import`` would, as seeds."""
    from synth.seeds import read_seeds

    return [
        SeenItem(
            id=f"seed:{s.origin}",
            text=s.text,
            cell=CellKey(slice=s.slice, label=s.label),
            source=Source.REAL,
        )
        for s in read_seeds(path, config).seeds
    ]


def calibration(config: Config, seeds: Sequence[SeenItem]) -> dict[str, Any]:
    """For each similarity filter of the chain: its thresholds, the rule that set each,
    and the distribution of the seeds' scores it was set from (the seeds among
    themselves, and against each eval set).

    The filters are built and prepared exactly as a run prepares them, so the figures
    are the ones the next run decides with. A filter that cannot be built (an eval set
    file missing) is reported with its error instead of failing the whole report.
    """
    out: dict[str, Any] = {"seeds": len(seeds), "filters": [], "error": None}
    try:
        cheap, _ = split_judge(config.filters, config.source.name)
        chain = build_chain(cheap, config.filter_context())
        chain.prepare(seeds)
    except SynthError as e:
        out["error"] = str(e)
        return out
    for f in chain.filters:
        table = f.calibration_table()
        if table is not None:
            out["filters"].append(table.as_dict())
    return out


def render_calibration(report: Mapping[str, Any]) -> str:
    """The calibration as a table: one row per threshold."""
    out = [f"thresholds calibrated on {report['seeds']} seeds"]
    if report["error"]:
        return "\n".join([*out, f"error: {report['error']}"])
    rows = []
    for f in report["filters"]:
        for t in f["thresholds"]:
            q = t["scores"]["quantiles"]
            rows.append(
                [
                    f["filter"],
                    t["name"],
                    num(t["value"], 2),
                    t["rule"],
                    str(t["scores"]["count"]),
                    *(num(q.get(k), 2) for k in ("0.5", "0.9", "0.95", "0.99")),
                    num(t["scores"]["max"], 2),
                    t["why"],
                ]
            )
    header = ["filter", "threshold", "value", "rule", "n", "q50", "q90", "q95", "q99", "max", "why"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    left = {0, 1, 3, 10}  # names and words left, figures right

    def fmt(r: list[str]) -> str:
        cells = [
            v.ljust(w) if i in left else v.rjust(w)
            for i, (v, w) in enumerate(zip(r, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    out += ["", fmt(header), "-" * len(fmt(header)), *(fmt(r) for r in rows)]
    for f in report["filters"]:
        out += ["", f"{f['filter']}: {f['measure']}"]
        out += [f"  note: {n}" for n in f["notes"]]
    return "\n".join(out)


# --- an external file -----------------------------------------------------------------

_PROVENANCE_COLUMNS = {
    "provenance",
    "id",
    "source",
    "slice",
    "split",
    "status",
    "model",
    "template",
    "template_sha",
    "run_id",
    "llm_call_id",
    "parent_ids",
    "origin",
    "content_sha",
    "version",
}


def read_dataset(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, row) of a JSONL or CSV file; a bad line raises AuditFileError naming it."""
    for n, row in read_rows(path, AuditFileError, "dataset"):
        if isinstance(row, str):
            raise AuditFileError(f"{path}:{n}", row)
        yield n, row


def _rank(row: Mapping[str, Any]) -> int:
    """Which stored row a file row is said to be when several match: a dataset row
    (real first) before a row that never made it into the dataset (a real row that
    `synth filter` rejected is one of those)."""
    live = row["status"] in ("accepted", "approved", "review_pending")
    if row["source"] == "real" and live:
        return 0
    return 1 if live else 2


def audit_file(config: Config, store: Store, path: str | Path) -> dict[str, Any]:
    """Tag every row of a dataset file real / synthetic / edited / unknown, with its
    provenance, and sum the tags per slice and label (see the module doc)."""
    from synth.neighbours import NearIndex

    path = Path(path)
    schema = config.data_schema
    parsed = list(read_dataset(path))
    stored = sorted(store.examples.every_row(), key=_rank)
    frozen = store.versions.frozen_by_content()
    by_content: dict[str, ExampleRow] = {}
    by_text: dict[str, ExampleRow] = {}
    for r in stored:
        by_content.setdefault(r["content_sha"], r)
        by_text.setdefault(sha256_text(normalize_text(r["text"])), r)
    frozen_text: dict[str, FrozenItem] = {}
    for it in frozen.values():
        frozen_text.setdefault(sha256_text(normalize_text(it["text"])), it)

    results: list[dict[str, Any]] = []
    unmatched: list[int] = []
    # A provenance column is not content, unless the schema says it is a field; an
    # empty CSV cell of a field only some rows have (a slice's match value) is absent.
    drop = _PROVENANCE_COLUMNS - set(schema.fields)
    is_csv = path.suffix.lower() in (".csv", ".tsv")
    for line, row in parsed:
        data = {
            k: v
            for k, v in row.items()
            if k not in drop and not (is_csv and v == "" and k not in schema.fields)
        }
        text = row.get(schema.text)
        if not isinstance(text, str):
            raise AuditFileError(f"{path}:{line}", f"no text field {schema.text!r}")
        sha = sha256_text(canonical_json(data))
        text_sha = sha256_text(normalize_text(text))
        try:
            cell = schema.cell_of(row)
        except (KeyError, ValueError):  # a row without its cell fields: no cell to name
            cell = ""
        entry: dict[str, Any] = {"line": line, "label": cell}
        if sha in by_content:
            entry.update(_live(by_content[sha], "content", 1.0))
        elif sha in frozen:
            entry.update(_frozen(frozen[sha], "frozen content", 1.0))
        elif text_sha in by_text:
            entry.update(_live(by_text[text_sha], "text", 1.0))
        elif text_sha in frozen_text:
            entry.update(_frozen(frozen_text[text_sha], "frozen text", 1.0))
        else:
            unmatched.append(len(results))
        entry["_text"] = text
        results.append(entry)

    if unmatched and stored:
        index = NearIndex(
            [r["text"] for r in stored], n=config.splits.n, threshold=config.splits.threshold
        )
        found = index.nearest([results[i]["_text"] for i in unmatched])
        for i, hit in zip(unmatched, found, strict=True):
            if hit is not None:
                results[i].update(_live(stored[hit[0]], "near", round(hit[1], 4)))
    for entry in results:
        entry.pop("_text")
        entry.setdefault("tag", "unknown")
        entry.setdefault("match", None)
        entry.setdefault("similarity", None)
        entry.setdefault("slice", "?")
    cells: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for entry in results:
        cells[(entry["slice"], entry["label"])][entry["tag"]] += 1
    totals = Counter(e["tag"] for e in results)
    return {
        "file": str(path),
        "rows": len(results),
        "totals": {t: totals.get(t, 0) for t in TAGS},
        "cells": [
            {"slice": k[0], "label": k[1], **{t: v.get(t, 0) for t in TAGS}}
            for k, v in sorted(cells.items())
        ],
        "items": results,
    }


def _live(row: Mapping[str, Any], match: str, similarity: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "tag": row["source"],
        "match": match,
        "similarity": similarity,
        "id": row["id"],
        "slice": row["slice"],
        "stored_label": row["label"],
        "status": row["status"],
    }
    out.update(row["lineage"].as_dict())
    return out


def _frozen(item: Mapping[str, Any], match: str, similarity: float) -> dict[str, Any]:
    return {
        "tag": item["source"],
        "match": match,
        "similarity": similarity,
        "id": item["example_id"],
        "slice": item["slice"],
        "stored_label": item["label"],
        "status": item["status"],
        "version": item["version"],
        **item["lineage"],
    }


def render_file_audit(report: dict[str, Any]) -> str:
    """One line per row (line, tag, how it matched, id, the stored row's status), then
    the sums per cell."""
    lines = []
    for e in report["items"]:
        how = "" if e["match"] is None else f"{e['match']}"
        if e["match"] == "near":
            how += f" j={e['similarity']:.2f}"
        lines.append(f"{e['line']}\t{e['tag']}\t{how}\t{e.get('id', '')}\t{e.get('status', '')}")
    lines.append("")
    lines += _table(
        ["cell", *TAGS],
        [[f"{c['slice']}/{c['label']}", *(str(c[t]) for t in TAGS)] for c in report["cells"]]
        + [["total", *(str(report["totals"][t]) for t in TAGS)]],
    )
    return "\n".join(lines)
