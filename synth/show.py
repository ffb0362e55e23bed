"""One row, everything the store knows about it: ``synth show ID``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from synth.errors import SynthError
from synth.store import Store
from synth.store.rows import ExampleDetail


def show_example(store: Store, example_id: str) -> ExampleDetail:
    """The row with its provenance, decisions, judge scores and reviews."""
    row = store.reports.example(example_id)
    if row is None:
        raise SynthError(example_id, "no such example in the store")
    return row


def render_example(row: Mapping[str, Any]) -> str:
    out = [
        f"{row['id']}  {row['source']}  {row['slice']}/{row['label']}  status {row['status']}"
        + (f" (rejected by {row['rejected_by']})" if row["rejected_by"] else ""),
        json.dumps(row["data"], ensure_ascii=False),
    ]
    prov = [
        f"{k} {row[k]}" for k in ("model", "template", "run_id", "llm_call_id", "origin") if row[k]
    ]
    served = row.get("served_model")
    if served and served != row["model"]:
        prov.insert(1, f"served as {served}")
    if prov:
        out.append("provenance: " + ", ".join(prov))
    parents = {p["id"]: p for p in row.get("parents") or ()}
    if row.get("parent_ids"):
        out.append("made from:")
        for pid in row["parent_ids"]:
            p = parents.get(pid)
            if p is None:
                out.append(f"  {pid}  (not in the store)")
                continue
            where = f", {p['origin']}" if p["origin"] else ""
            out.append(f"  {pid}  {p['slice']}/{p['label']}{where}: {p['text']}")
    if row["decisions"]:
        out.append("decisions:")
        for d in row["decisions"]:
            score = "" if d["score"] is None else f" {d['score']:.3f}"
            out.append(f"  {d['filter']:14} {d['verdict']:6}{score}  {d['reason']}")
    if row["judge_scores"]:
        first = row["judge_scores"][0]
        out.append(f"judge scores (rubric {first['rubric']} @ {first['rubric_sha'][:12]}):")
        for s in row["judge_scores"]:
            score = "-" if s["score"] is None else f"{s['score']:g}"
            out.append(
                f"  {s['criterion']:16} {score:>3}  {s['judge_model']} #{s['sample']}"
                f"  {s['rationale']}"
            )
    for r in row["reviews"]:
        note = f": {r['note']}" if r["note"] else ""
        out.append(f"review by {r['reviewer']}: {r['verdict']}{note}")
    pair = row.get("pair")
    if pair:
        out.append(
            f"preference pair of {pair['prompt_id']}'s prompt ({pair['responses']} responses"
            f" judged), score gap {pair['gap']:.2f}:"
        )
        for side in ("chosen", "rejected"):
            this = "  (this row)" if pair[f"{side}_id"] == row["id"] else ""
            out.append(f"  {side:9}{pair[f'{side}_id']}  {pair[f'{side}_score']:.2f}{this}")
    return "\n".join(out)
