"""Immutable dataset versions: freeze, list, diff, splits and the leakage check.

``freeze(store, config, name)`` takes the dataset as it stands (real rows and the
synthetic rows counted toward quotas), assigns each row to train / validation / test,
and stores every row's content and lineage as they are at that moment, with a
manifest (the data card). A version is content-addressed: its sha is the sha256 of
the sorted ``(example id, content sha, split)`` triples, so two versions with the
same sha hold the same rows with the same content in the same splits. Later edits,
reviews or status changes touch the live rows only; the store refuses any change to
a frozen row, so a version's exports are byte-identical whenever they are written.

Splits are assigned to groups, not rows:

- near-duplicate clusters (word n-gram Jaccard >= ``splits.threshold``, verified
  exactly; clusters are the connected components of the near pairs) never cross
  splits;
- each cell's clusters of seeds are laid out in an order fixed by ``splits.seed``
  and a hash of their content (not their ids), and cut at the configured
  fractions, so every cell is split alike and the same data alike in any store;
- a synthetic row goes to the split of the seeds it was made from
  (``parent_ids``); when those fall in several splits, to the most held-out of them
  (test, then validation), so no row derived from a held-out seed is trained on. A
  cluster moves as a whole, and the rule is applied until nothing moves.

Linking a child to *all* its parents with union-find would keep every group whole
too, but few-shot examples are drawn from the cell, so a cell's seeds would all end
up linked and each label would land in a single split.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from synth.config import Config, SplitSettings
from synth.errors import SynthError
from synth.neighbours import NearIndex
from synth.records import canonical_json, sha256_text
from synth.store import Store
from synth.store.rows import VersionItem

SPLITS = ("train", "validation", "test")  # in order of how held-out a split is
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class VersionError(SynthError):
    """A version name that is invalid, taken or unknown."""


# --- splits ---------------------------------------------------------------------


class _Groups:
    """Union-find over row indices."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _order_key(row: Mapping[str, Any], seed: int) -> tuple[str, str]:
    # The content, not the id: a store whose seeds got random ids (before ids were
    # derived from content) splits the same data as any other store.
    content = row.get("content_sha") or row["id"]
    return hashlib.sha256(f"{seed}:{content}".encode()).hexdigest(), row["id"]


def assign_splits(rows: Sequence[Mapping[str, Any]], settings: SplitSettings) -> list[str]:
    """The split of each row (``id``, ``slice``, ``label``, ``text``, ``parent_ids``,
    ``content_sha``),
    by the rules in the module docstring; deterministic for the same rows and seed."""
    n = len(rows)
    if not n:
        return []
    index = {r["id"]: i for i, r in enumerate(rows)}
    groups = _Groups(n)
    for pair in NearIndex(
        [r["text"] for r in rows], n=settings.n, threshold=settings.threshold
    ).pairs():
        groups.union(pair.a, pair.b)
    parents = [[index[p] for p in r.get("parent_ids") or () if p in index] for r in rows]

    # Clusters holding a row that is not derived from another row of the dataset are
    # laid out per cell (the cell of their first such row) and cut at the fractions.
    anchors: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        if not parents[i]:
            anchors[groups.find(i)].append(i)
    by_cell: dict[tuple[str, str], list[int]] = defaultdict(list)
    for root, members in anchors.items():
        first = rows[members[0]]
        by_cell[(first["slice"], first["label"])].append(root)
    bands = (settings.train, settings.train + settings.validation)
    rank: dict[int, int] = {}
    for cell in sorted(by_cell):
        roots = sorted(by_cell[cell], key=lambda r: _order_key(rows[r], settings.seed))
        total = sum(len(anchors[r]) for r in roots)
        at = 0
        for root in roots:
            size = len(anchors[root])
            mid = (at + size / 2) / total
            rank[root] = 0 if mid < bands[0] else 1 if mid < bands[1] else 2
            at += size

    moved = True
    while moved:  # ranks only rise, so this ends
        moved = False
        for i in range(n):
            if not parents[i]:
                continue
            need = max(rank.get(groups.find(p), 0) for p in parents[i])
            own = groups.find(i)
            if rank.get(own, 0) < need:
                rank[own] = need
                moved = True
    return [SPLITS[rank.get(groups.find(i), 0)] for i in range(n)]


@dataclass(frozen=True)
class Leakage:
    """What crosses splits. ``near_pairs``: (id, id, split, split, Jaccard) of near
    duplicates in different splits; ``lineage``: (child id, parent id, child split,
    parent split) where a row derived from a seed sits in a less held-out split than
    that seed. Both are empty for a version frozen by synth."""

    near_pairs: list[tuple[str, str, str, str, float]] = field(default_factory=list)
    lineage: list[tuple[str, str, str, str]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.near_pairs and not self.lineage


def leakage(
    rows: Sequence[Mapping[str, Any]], splits: Sequence[str], *, n: int = 2, threshold: float = 0.5
) -> Leakage:
    """Check an assignment of ``rows`` (``id``, ``text``, ``parent_ids``) to ``splits``."""
    out = Leakage()
    for p in NearIndex([r["text"] for r in rows], n=n, threshold=threshold).pairs():
        if splits[p.a] != splits[p.b]:
            out.near_pairs.append(
                (rows[p.a]["id"], rows[p.b]["id"], splits[p.a], splits[p.b], round(p.jaccard, 4))
            )
    where = {r["id"]: s for r, s in zip(rows, splits, strict=True)}
    for r, s in zip(rows, splits, strict=True):
        for parent in r.get("parent_ids") or ():
            ps = where.get(parent)
            if ps is not None and SPLITS.index(s) < SPLITS.index(ps):
                out.lineage.append((r["id"], parent, s, ps))
    return out


def version_leakage(store: Store, config: Config, name: str) -> Leakage:
    """The leakage check over a frozen version, at the configured threshold."""
    items = _items(store, name)
    rows = [
        {"id": it["example_id"], "text": it["text"], "parent_ids": it["lineage"].get("parent_ids")}
        for it in items
    ]
    return leakage(
        rows,
        [it["split"] for it in items],
        n=config.splits.n,
        threshold=config.splits.threshold,
    )


# --- freeze -----------------------------------------------------------------------


@dataclass(frozen=True)
class FrozenVersion:
    name: str
    sha: str
    rows: int
    splits: dict[str, int]
    leakage: Leakage
    manifest: dict[str, Any]


def version_sha(items: Sequence[Mapping[str, Any]]) -> str:
    """sha256 over the sorted (example id, content sha, split) triples."""
    triples = sorted([it["example_id"], it["content_sha"], it["split"]] for it in items)
    return sha256_text(canonical_json(triples))


def freeze(store: Store, config: Config, name: str) -> FrozenVersion:
    """Freeze the dataset as it stands as version ``name``; a name is used once."""
    if not _NAME.match(name):
        raise VersionError(
            f"version {name!r}", "use letters, digits, '.', '_' or '-' (at most 100)"
        )
    if store.versions.get(name) is not None:
        raise VersionError(f"version {name!r}", "exists; a frozen version never changes")
    schema = config.data_schema
    live = store.examples.dataset()
    reviews = {r["example_id"]: r for r in store.reviews.reviewed_rows() if r["verdict"]}
    for r in live:
        r["text"] = schema.text_of(r["data"])
    splits = assign_splits(live, config.splits)
    items: list[VersionItem] = []
    for r, split in zip(live, splits, strict=True):
        lineage = r["lineage"].as_dict()
        review = reviews.get(r["id"])
        if review:
            lineage["review"] = {"reviewer": review["reviewer"], "verdict": review["verdict"]}
        items.append(
            {
                "example_id": r["id"],
                "split": split,
                "source": r["source"],
                "slice": r["slice"],
                "label": r["label"],
                "status": r["status"],
                "data": r["data"],
                "text": r["text"],
                "content_sha": r["content_sha"],
                "lineage": lineage,
            }
        )
    sha = version_sha(items)
    leaks = leakage(live, splits, n=config.splits.n, threshold=config.splits.threshold)
    manifest = _manifest(store, config, name, sha, items, leaks)
    store.versions.add(name, sha=sha, config_sha=config.sha, manifest=manifest, items=items)
    return FrozenVersion(name, sha, len(items), dict(Counter(splits)), leaks, manifest)


def _manifest(
    store: Store,
    config: Config,
    name: str,
    sha: str,
    items: Sequence[Mapping[str, Any]],
    leaks: Leakage,
) -> dict[str, Any]:
    """The data card: what is in the version and how it was made."""
    cells: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    models: Counter[str] = Counter()
    templates: Counter[tuple[str, str]] = Counter()
    for it in items:
        c = cells[(it["slice"], it["label"])]
        c[it["source"]] += 1
        c[it["split"]] += 1
        lin = it["lineage"]
        # A synthetic row brought in from a file (synth filter) names no model or
        # template: it is counted under its source, not here.
        if it["source"] != "real" and lin.get("model"):
            models[lin["model"]] += 1
        if it["source"] != "real" and lin.get("template"):
            templates[(lin["template"], lin["template_sha"])] += 1
    review = Counter[str]()
    for r in store.reviews.reviewed_rows():
        review["sampled"] += 1
        if r["verdict"] is None:
            review["pending"] += 1
        else:
            review["reviewed"] += 1
            review["approved" if r["verdict"] == "approve" else "rejected"] += 1
            review["edited"] += int(bool(r["edited"]))
    checked = Counter(d["verdict"] for d in store.reports.filter_decisions("contamination"))
    eval_sets = []
    for spec in config.filters:
        for es in getattr(spec, "eval_sets", ()):
            path = config.resolve(es.path)
            eval_sets.append(
                {
                    "name": es.name,
                    "path": es.path,
                    "sha256": _file_sha(path),
                    "rows_checked": sum(checked.values()),
                    "hits": checked.get("reject", 0),
                }
            )
    return {
        "format": "synth-version/1",
        "name": name,
        "sha": sha,
        "created_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "synth_version": _synth_version(),
        "project": config.project.name,
        "config_sha": config.sha,
        "rows": len(items),
        "sources": dict(sorted(Counter(it["source"] for it in items).items())),
        "splits": {
            "fractions": {s: getattr(config.splits, s) for s in SPLITS},
            "seed": config.splits.seed,
            "near_duplicate": {
                "shingle": f"word {config.splits.n}-grams",
                "threshold": config.splits.threshold,
            },
            "counts": {s: sum(1 for it in items if it["split"] == s) for s in SPLITS},
            "leakage": {"near_pairs": len(leaks.near_pairs), "lineage": len(leaks.lineage)},
        },
        "cells": [
            {
                "slice": k[0],
                "label": k[1],
                **{x: c.get(x, 0) for x in ("real", "synthetic", "edited", *SPLITS)},
            }
            for k, c in sorted(cells.items())
        ],
        "models": [{"model": m, "rows": n} for m, n in sorted(models.items())],
        "templates": [{"name": t, "sha": s, "rows": n} for (t, s), n in sorted(templates.items())],
        "filters": {
            "chain": [spec.kind for spec in config.filters],
            "versions": [
                {"filter": f, "version": v, "decisions": n}
                for f, v, n in store.reports.filter_versions()
            ],
        },
        "review": {
            k: review.get(k, 0)
            for k in ("sampled", "reviewed", "approved", "rejected", "edited", "pending")
        },
        "eval_sets": eval_sets,
    }


def _file_sha(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _synth_version() -> str:
    try:
        return package_version("synth")
    except PackageNotFoundError:
        return "unknown"


# --- reading versions -------------------------------------------------------------


def _items(store: Store, name: str) -> list[VersionItem]:
    if store.versions.get(name) is None:
        known = ", ".join(v["name"] for v in store.versions.all()) or "none yet"
        raise VersionError(f"version {name!r}", f"no such version (frozen: {known})")
    return store.versions.items(name)


def version_rows(store: Store, name: str) -> tuple[dict[str, Any], list[VersionItem]]:
    """A version's manifest and its rows, as frozen."""
    items = _items(store, name)
    v = store.versions.get(name)
    assert v is not None
    return v["manifest"], items


@dataclass(frozen=True)
class VersionSummary:
    name: str
    sha: str
    created_at: str
    rows: int
    sources: dict[str, int]
    splits: dict[str, int]


def list_versions(store: Store) -> list[VersionSummary]:
    """Every frozen version, oldest first."""
    return [
        VersionSummary(
            v["name"],
            v["sha"],
            v["created_at"],
            v["rows"],
            v["manifest"].get("sources", {}),
            v["manifest"].get("splits", {}).get("counts", {}),
        )
        for v in store.versions.all()
    ]


@dataclass(frozen=True)
class VersionDiff:
    """What changed from version ``a`` to ``b``: ids added and removed, ids whose
    content changed, and ids that moved split (``(id, split in a, split in b)``)."""

    a: str
    b: str
    added: list[str]
    removed: list[str]
    changed: list[str]
    moved: list[tuple[str, str, str]]
    unchanged: int
    # id -> (cell, text) as in b, or as in a for a removed row; the text in a of a
    # changed row is in ``before``.
    rows: dict[str, tuple[str, str]] = field(default_factory=dict)
    before: dict[str, str] = field(default_factory=dict)

    @property
    def same(self) -> bool:
        return not (self.added or self.removed or self.changed or self.moved)


def diff_versions(store: Store, a: str, b: str) -> VersionDiff:
    """Compare two frozen versions row by row."""
    old = {it["example_id"]: it for it in _items(store, a)}
    new = {it["example_id"]: it for it in _items(store, b)}
    changed = [i for i in new if i in old and new[i]["content_sha"] != old[i]["content_sha"]]
    moved = [
        (i, old[i]["split"], new[i]["split"])
        for i in new
        if i in old and new[i]["split"] != old[i]["split"]
    ]
    same = sum(
        1
        for i in new
        if i in old
        and new[i]["content_sha"] == old[i]["content_sha"]
        and new[i]["split"] == old[i]["split"]
    )
    return VersionDiff(
        a,
        b,
        added=[i for i in new if i not in old],
        removed=[i for i in old if i not in new],
        changed=changed,
        moved=moved,
        unchanged=same,
        rows={
            i: (f"{it['slice']}/{it['label']}", it["text"])
            for i, it in (*old.items(), *new.items())
        },
        before={i: old[i]["text"] for i in changed},
    )


def render_diff(d: VersionDiff) -> str:
    """One line per row that changed, with its cell and text, then the counts."""

    def one_line(text: str) -> str:
        return " ".join(text.split())

    out = []
    for mark, ids in (("+", d.added), ("-", d.removed)):
        out += [f"{mark} {i}  {d.rows[i][0]}  {one_line(d.rows[i][1])}" for i in ids]
    for i in d.changed:
        out += [
            f"~ {i}  {d.rows[i][0]}",
            f"    {d.a}: {one_line(d.before[i])}",
            f"    {d.b}: {one_line(d.rows[i][1])}",
        ]
    out += [
        f"> {i} {old} -> {new}  {d.rows[i][0]}  {one_line(d.rows[i][1])}" for i, old, new in d.moved
    ]
    out.append(
        f"{d.a} -> {d.b}: {len(d.added)} added, {len(d.removed)} removed,"
        f" {len(d.changed)} changed, {len(d.moved)} moved split, {d.unchanged} unchanged"
    )
    return "\n".join(out)
