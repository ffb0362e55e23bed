"""Writing a reply's items: each one normal or one of the planted faults, every field
filled.

The filters are tested on what they catch, so the share of each fault is set by the
config (``SimConfig.item_shares``) and the kind each item was written as is counted
in ``/stats``: a test can tell how many exact duplicates, near duplicates, off-label
items, PII and bad items a run met and check that its filters rejected as many.
"""

from __future__ import annotations

from random import Random
from typing import Any

from synth.sim.dialogue import compose_dialogue, is_chat_task, plant_in_turn
from synth.sim.instruct import compose, is_instruction_task
from synth.sim.qa import compose_qa, is_qa_task
from synth.sim.task import Task, _type_of
from synth.sim.text import _CJK, near_dup, normalize, paraphrase, weave_pii

ITEM_KINDS = ("normal", "exact_dup", "near_dup", "off_label", "pii", "bad_item")


def _fallback_text(label: str | None, rng: Random) -> str:
    topic = (label or "my account").replace("_", " ").replace("-", " ")
    return rng.choice(
        (
            f"I have a question about {topic}",
            f"can you help me with {topic}?",
            f"{topic}: what should I do?",
            f"I need some help with {topic} please",
            f"something is wrong with {topic}",
        )
    )


class ItemWriter:
    """Writes the items of one reply. ``shares`` maps item kinds to their shares."""

    def __init__(self, task: Task, rng: Random, shares: dict[str, float]) -> None:
        self.task = task
        self.rng = rng
        self.shares = shares
        tf = task.text_field
        self.texts = [s[tf] for s in task.shots if tf and isinstance(s.get(tf), str)]
        self.contrast_texts = [
            s[tf] for s in task.contrast if tf and isinstance(s.get(tf), str) and s[tf].strip()
        ]
        self.seen = {normalize(t) for t in self.texts}
        self.chat = is_chat_task(task)
        self.qa = not self.chat and is_qa_task(task)
        self.instruct = not self.qa and is_instruction_task(task)

    def kind(self) -> str:
        """Draw the kind of the next item from the shares ("normal" for the rest)."""
        u = self.rng.random()
        for k in ITEM_KINDS[1:]:
            p = self.shares.get(k, 0.0)
            if u < p:
                return k
            u -= p
        return "normal"

    def items(self) -> tuple[list[dict[str, Any]], list[str]]:
        """The reply's ``task.n`` items and the kind each was written as."""
        out, kinds = [], []
        for _ in range(self.task.n):
            kind = self.kind()
            item, kind = self.item(kind)
            out.append(item)
            kinds.append(kind)
        return out, kinds

    def item(self, kind: str) -> tuple[dict[str, Any], str]:
        """One item of ``kind``; a copy or off-label fault with nothing to copy from
        is written as a normal item, and the kind returned says so."""
        task, rng = self.task, self.rng
        shot = rng.choice(task.shots) if task.shots else {}
        if kind == "exact_dup" and shot:
            return self._fill(dict(shot), shot), kind
        if kind == "near_dup" and self.texts and task.text_field in shot:
            item = self._fill(dict(shot), shot)
            item[task.text_field] = near_dup(str(shot[task.text_field]), rng)
            return item, kind
        if kind == "off_label" and self.contrast_texts and task.text_field is not None:
            source = rng.choice(self.contrast_texts)
            text = self._fresh(source, [], rate=0.5)
            return self._fill({task.text_field: text}, shot), kind
        if kind in ("exact_dup", "near_dup", "off_label"):
            kind = "normal"  # nothing to copy from: the fault degrades to a normal item
        item = self._normal(shot)
        tf = task.text_field
        if kind == "pii" and tf and isinstance(item.get(tf), str):
            item[tf] = weave_pii(item[tf], rng)
        elif kind == "pii" and self.chat:
            item = plant_in_turn(item, task, lambda text: weave_pii(text, rng))
        elif kind == "bad_item":
            fields = task.required or list(task.fields)
            if tf and (rng.random() < 0.5 or not fields):
                text = str(item.get(tf, ""))
                if _CJK.search(text):
                    item[tf] = text[: rng.randint(1, 2)]
                else:
                    item[tf] = " ".join(text.split()[: rng.randint(1, 2)])
            elif fields:
                item.pop(rng.choice(fields), None)
        return item, kind

    def _fresh(self, primary: str, others: list[str], rate: float) -> str:
        """A paraphrase that is no copy of a shot or of an earlier item."""
        rng = self.rng
        for attempt in range(4):
            text = paraphrase(
                primary, others, rng, rate=min(0.9, rate + 0.15 * attempt), force=attempt == 3
            )
            key = normalize(text)
            if key and key not in self.seen:
                break
        self.seen.add(key)
        return text

    def _normal(self, shot: dict[str, Any]) -> dict[str, Any]:
        task, rng = self.task, self.rng
        tf = task.text_field
        item: dict[str, Any] = {}
        if self.chat:
            item = compose_dialogue(task, rng)
        elif self.instruct or self.qa:
            for _ in range(4):  # a new task, not one this reply already has
                item = compose_qa(task, rng) if self.qa else compose(task, rng, task.classify)
                key = normalize(str(item.get(tf or "", "")))
                if key not in self.seen:
                    break
            self.seen.add(key)
        elif tf:
            primary = shot.get(tf) if isinstance(shot.get(tf), str) else None
            if primary and primary.strip():
                others = [t for t in self.texts if t is not primary]
                item[tf] = self._fresh(primary, others, rate=rng.uniform(0.5, 0.85))
            else:
                item[tf] = self._fresh(_fallback_text(task.label, rng), [], rate=0.5)
        return self._fill(item, shot)

    def _fill(self, item: dict[str, Any], shot: dict[str, Any]) -> dict[str, Any]:
        """Complete ``item`` in field order: the label, then every other field from
        ``shot`` (prose reworded) or a plausible value."""
        task, rng = self.task, self.rng
        out: dict[str, Any] = {}
        for name, kind in task.fields.items():
            if kind == "label":
                out[name] = task.label if task.label is not None else shot.get(name)
                continue
            if name in item:
                out[name] = item[name]
                continue
            value = shot.get(name)
            if kind == "string":
                text = value if isinstance(value, str) else ""
                out[name] = (
                    paraphrase(text, [], rng, rate=0.4, recombine=False, decorate=False)
                    if text
                    else ""
                )
            elif kind == "copy":
                out[name] = value if isinstance(value, str) else ""
            elif kind == "enum":
                allowed = task.enums.get(name) or [None]
                out[name] = value if value in allowed else rng.choice(allowed)
            elif kind == "integer":
                out[name] = value if _type_of(value) == "integer" else rng.randint(1, 5)
            elif kind == "number":
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                out[name] = value if ok else round(rng.uniform(0, 1), 2)
            elif kind == "boolean":
                out[name] = value if isinstance(value, bool) else rng.random() < 0.5
            else:
                out[name] = value
        return out
