"""Cells -> requests, and replies -> candidates.

A request is fully determined by its cell, the seeds, the template and its sample
index: the few-shot examples are drawn with a random generator seeded from those, so
the same plan renders the same request and a re-run finds it in the response cache.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from synth.config import Config
from synth.llm.structured import answer_shape, examples_format
from synth.messages import text_of
from synth.prompts import Template
from synth.records import DEFAULT_SLICE, Candidate, CellKey, CellPlan, canonical_json, sha256_text
from synth.store.rows import CallRow, PlannedCall


@dataclass(frozen=True)
class SeedPool:
    """Real rows by cell and by label, for drawing few-shot and contrast examples."""

    by_cell: dict[CellKey, list[dict[str, Any]]]
    by_label: dict[str, list[dict[str, Any]]]
    all: list[dict[str, Any]]
    _others: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # label -> rest

    @classmethod
    def from_rows(cls, seeds: Sequence[Mapping[str, Any]]) -> SeedPool:
        rows = [dict(r) for r in seeds]
        by_cell: dict[CellKey, list[dict[str, Any]]] = defaultdict(list)
        by_label: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            by_cell[CellKey(slice=r["slice"], label=r["label"])].append(r)
            by_label[r["label"]].append(r)
        return cls(dict(by_cell), dict(by_label), rows)

    def shots(self, cell: CellKey, k: int, rng: random.Random) -> list[dict[str, Any]]:
        """k seeds of the cell; a cell with too few borrows from the same label in other
        slices, then from any label (a missing slice's description says what differs)."""
        chosen: list[dict[str, Any]] = []
        for pool in (
            self.by_cell.get(cell, []),
            self.by_label.get(cell.label, []),
            self.all,
        ):
            ids = {r["id"] for r in chosen}
            rest = [r for r in pool if r["id"] not in ids]
            chosen += rng.sample(rest, min(k - len(chosen), len(rest)))
            if len(chosen) >= k:
                break
        return chosen

    def contrast(self, cell: CellKey, k: int, rng: random.Random) -> list[dict[str, Any]]:
        """k seeds of other labels, as examples of what this label is not."""
        if k <= 0:
            return []
        others = self._others.get(cell.label)
        if others is None:
            others = self._others[cell.label] = [r for r in self.all if r["label"] != cell.label]
        return rng.sample(others, min(k, len(others)))


@functools.cache
def _grid(attributes: tuple[tuple[str, tuple[str, ...]], ...], seed: int) -> list[dict[str, str]]:
    names = [name for name, _ in attributes]
    combos = [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(values for _, values in attributes))
    ]
    random.Random(f"attributes|{seed}").shuffle(combos)
    return combos


def attributes_for(config: Config, cell: CellKey, sample_index: int) -> dict[str, str]:
    """The attribute grid's combination for a cell's call ``sample_index``: the grid in
    an order shuffled by ``generate.seed``, cycled call by call from a point that
    differs per cell, so a cell's first calls cover the grid before repeating any of
    it, and cells with a few calls each do not all draw the same few combinations."""
    gen = config.generate
    if not gen.attributes:
        return {}
    grid = _grid(tuple((k, tuple(v)) for k, v in gen.attributes.items()), gen.seed)
    digest = hashlib.sha256(f"{gen.seed}|{cell.slice}|{cell.label}".encode()).digest()
    start = int.from_bytes(digest[:8], "big") % len(grid)
    return dict(grid[(start + sample_index) % len(grid)])


def describe_attributes(attributes: Mapping[str, str]) -> str:
    """The combination as the prompt says it, for templates that do not show
    ``attributes`` themselves."""
    lines = [f"- {name.replace('_', ' ')}: {value}" for name, value in attributes.items()]
    return "Every example you write has these attributes:\n" + "\n".join(lines) + "\n"


def request_rng(seed: int, cell: CellKey, sample_index: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}|{cell.slice}|{cell.label}|{sample_index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def build_call(
    config: Config,
    template: Template,
    plan: CellPlan,
    pool: SeedPool,
    sample_index: int,
    n: int,
) -> PlannedCall:
    """One planned request, as the store records it before it is sent."""
    cell = plan.cell
    gen = config.generate
    schema = config.data_schema
    rng = request_rng(gen.seed, cell, sample_index)
    shots = pool.shots(cell, gen.few_shot, rng)
    contrast = pool.contrast(cell, gen.contrast, rng)
    fields = schema.generated

    def shown(row: dict[str, Any]) -> dict[str, Any]:
        return {f: row["data"].get(f) for f in fields}

    attributes = attributes_for(config, cell, sample_index)
    prompt = template.render(
        label=cell.label,
        label_description=schema.label_descriptions.get(cell.label, ""),
        cell=schema.cell_values(cell.label),
        slice={
            "name": cell.slice,
            "description": plan.description,
            "is_default": cell.slice == DEFAULT_SLICE,
        },
        shots=[shown(r) for r in shots],
        contrast=[shown(r) for r in contrast],
        n=n,
        fields={name: spec.model_dump() for name, spec in schema.fields.items()},
        text_field=schema.text,
        label_field=schema.label,
        answer_shape=answer_shape(config, cell.label),
        attributes=attributes,
    )
    if attributes and "attributes" not in template.uses:
        prompt = prompt.rstrip("\n") + "\n\n" + describe_attributes(attributes)
    messages = [{"role": "user", "content": prompt}]
    params: dict[str, Any] = {
        "temperature": config.llm.temperature,
        "max_tokens": config.llm.max_tokens,
    }
    if config.llm.top_p is not None:
        params["top_p"] = config.llm.top_p
    fmt = examples_format(config, cell.label, n)
    if fmt is not None:
        params["response_format"] = fmt
    model = config.llm.model
    identity = {
        "model": model,
        "messages": messages,
        "params": params,
        "template_sha": template.sha,
        "cell": [cell.slice, cell.label],
        "sample_index": sample_index,
    }
    return planned_call(
        identity,
        slice_=cell.slice,
        label=cell.label,
        sample_index=sample_index,
        template=template,
        parent_ids=[r["id"] for r in shots],
    )


def planned_call(
    identity: dict[str, Any],
    *,
    slice_: str | None,
    label: str | None,
    sample_index: int,
    template: Template,
    parent_ids: list[str],
) -> PlannedCall:
    """A call as the store records it before sending. ``identity`` is everything that
    determines the answer (model, messages, params, and what else the caller adds);
    its hash is the call's ``request_sha``, the response cache's key."""
    return {
        "request_sha": sha256_text(canonical_json(identity)),
        "slice": slice_,
        "label": label,
        "sample_index": sample_index,
        "template": template.name,
        "template_sha": template.sha,
        "model": identity["model"],
        "params": identity["params"],
        "messages": identity["messages"],
        "parent_ids": parent_ids,
    }


def candidates_from(
    call: CallRow,
    items: list[dict[str, Any]],
    config: Config,
    match: dict[str, Any],
    run_id: str,
) -> list[Candidate]:
    """Turn a reply's items into candidates. Ids derive from the call and position, so
    storing the same reply twice stores nothing new."""
    cell = CellKey(slice=call.slice, label=call.label)
    schema = config.data_schema
    text_field = schema.text
    # Cell fields other than a label are synth's to set, as a slice's match values are.
    fixed = {k: v for k, v in schema.cell_values(cell.label).items() if k != schema.label}
    # The grid's combination is synth's to set too, as it was shown in the call's prompt.
    fixed.update(attributes_for(config, cell, call.sample_index or 0))
    out = []
    for i, item in enumerate(items):
        text = text_of(item, text_field)
        metadata = {k: (v[0] if isinstance(v, list) else v) for k, v in match.items()}
        metadata.update(fixed)
        out.append(
            Candidate(
                id="ex_" + sha256_text(f"{call.request_sha}:{i}")[:16],
                run_id=run_id,
                cell=cell,
                text=text,
                data=item,
                metadata=metadata,
                llm_call_id=call.id,
                index=i,
                template=call.template or "",
                template_sha=call.template_sha or "",
                model=call.model,
                parent_ids=tuple(call.parent_ids),
            )
        )
    return out
