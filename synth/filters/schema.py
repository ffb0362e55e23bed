"""Schema and length validation: the cheapest filter, and the first.

The LLM's reply as a whole is validated by the client (it must be JSON with a list of
examples); this filter validates each example in it, so one bad item costs one row,
not the whole reply.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from synth.filters.base import Filter, FilterContext, FilterParams
from synth.records import Candidate, Decision

# Scripts written without spaces: each character counts as a word.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_WORD = re.compile(f"[{_CJK}]|[^\\W{_CJK}]+")


def count_words(text: str) -> int:
    """Words in any script: runs of letters and digits, and single CJK characters."""
    return sum(1 for _ in _WORD.finditer(text))


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


class SchemaParams(FilterParams):
    """Per-example checks beyond the field types and lengths declared in ``[schema]``.

    min_words / max_words count words of the text field (a CJK character is a word): Self-
    Instruct drops instructions of <= 3 or > 150 words; for short intents 2 is safer.
    """

    kind: Literal["schema"] = "schema"
    min_words: int = Field(default=1, ge=0)
    max_words: int | None = Field(default=None, gt=0)


class SchemaFilter(Filter):
    name = "schema"
    version = "1"

    def __init__(self, params: SchemaParams, ctx: FilterContext) -> None:
        self.params = params
        self.ctx = ctx

    def decide(self, batch: Sequence[Candidate]) -> list[Decision]:
        out = []
        for c in batch:
            problem = self._problem(c)
            out.append(self.reject(c, problem) if problem else self.keep(c))
        return out

    def _problem(self, c: Candidate) -> str | None:
        for name, spec in self.ctx.fields.items():
            if name not in c.data or c.data[name] is None:
                return f"missing_field: {name}"
            value: Any = c.data[name]
            if not _is_type(value, spec.type):
                return f"wrong_type: {name} is {type(value).__name__}, not {spec.type}"
            if isinstance(value, str):
                if spec.min_length is not None and len(value) < spec.min_length:
                    return f"too_short: {name} has {len(value)} < {spec.min_length} characters"
                if spec.max_length is not None and len(value) > spec.max_length:
                    return f"too_long: {name} has {len(value)} > {spec.max_length} characters"
        extra = sorted(set(c.data) - set(self.ctx.fields))
        if extra:
            return f"unknown_field: {', '.join(extra)}"
        label = c.data[self.ctx.label_field]
        if label != c.cell.label:
            return f"wrong_label: {label!r}, asked for {c.cell.label!r}"
        if not c.text.strip():
            return "empty: no text"
        words = count_words(c.text)
        if words < self.params.min_words:
            return f"too_short: {words} words < {self.params.min_words}"
        if self.params.max_words is not None and words > self.params.max_words:
            return f"too_long: {words} words > {self.params.max_words}"
        return None


def _is_type(value: Any, type_name: str) -> bool:
    if type_name != "boolean" and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES[type_name])
