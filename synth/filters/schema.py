"""Schema and length validation: the cheapest filter, and the first.

The LLM's reply as a whole is validated by the client (it must be JSON with a list of
examples); this filter validates each example in it, so one bad item costs one row,
not the whole reply.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from functools import partial
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model

from synth.filters.base import Filter, FilterContext, FilterParams
from synth.messages import check_messages
from synth.records import Candidate, Decision
from synth.text import count_words

_TYPES: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool}


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
        self.model = example_model(ctx.fields, ctx.optional)

    def decide(self, batch: Sequence[Candidate]) -> list[Decision]:
        out = []
        for c in batch:
            problem = self._problem(c)
            out.append(self.reject(c, problem) if problem else self.keep(c))
        return out

    def _problem(self, c: Candidate) -> str | None:
        try:
            self.model.model_validate(c.data)
        except ValidationError as e:
            return _reason(e.errors()[0])
        if self.ctx.label_field:
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


def example_model(
    fields: dict[str, Any], optional: Collection[str] = frozenset()
) -> type[BaseModel]:
    """The pydantic model of one example, from ``[schema] fields``: strict types (a
    model that answers 42 for a text is wrong, not coercible), lengths, no extras."""
    definitions: dict[str, Any] = {}
    for name, spec in fields.items():
        kind: Any
        if spec.type == "messages":
            check = partial(check_messages, min_turns=spec.min_length, max_turns=spec.max_length)
            kind = Annotated[list[Any], AfterValidator(check)]
        else:
            kind = _TYPES[spec.type]
        if spec.type == "string":
            kind = Annotated[str, Field(min_length=spec.min_length, max_length=spec.max_length)]
        if name not in optional:
            definitions[name] = (kind, ...)
        else:  # may be left out or null; present, it is held to its type
            definitions[name] = (kind | None, None)
    return create_model(
        "Example", __config__=ConfigDict(extra="forbid", strict=True), **definitions
    )


_SLUGS = {
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
    "string_too_short": "too_short",
    "string_too_long": "too_long",
    "value_error": "bad_dialogue",  # the only validator: a messages field's
}


def _reason(error: Any) -> str:
    field = ".".join(str(p) for p in error["loc"])
    slug = _SLUGS.get(error["type"], "wrong_type")
    msg = str(error["msg"]).removeprefix("Value error, ")
    return f"{slug}: {field}: {msg}"
