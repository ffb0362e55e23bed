"""Structured output: the JSON schema a request asks for, and the check of the reply.

What a request asks the model to return and what its reply is held to must agree,
so both live here, beside the client: the client checks every reply as it arrives
(generation's examples, the judge's JSON object) without reaching into generation or
the judge, and generation and the judge build their ``response_format`` from the same
pieces. The schemas are part of each request's hash: they must not change shape.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from synth.config import Config

Mode = Literal["json_schema", "json_object", "none"]  # ``llm.response_format``


class ReplyError(ValueError):
    """A reply that is not what its request asked for."""


def strict_object(properties: dict[str, Any]) -> dict[str, Any]:
    """An object with exactly these properties, every one required: the only kind of
    object strict structured outputs accept."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(properties),
        "properties": properties,
    }


def response_format(mode: Mode, name: str, schema: dict[str, Any]) -> dict[str, Any] | None:
    """The request's ``response_format``: the schema under ``name`` with structured
    outputs, plain JSON mode, or nothing for endpoints that support neither."""
    if mode == "none":
        return None
    if mode == "json_object":
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}


def examples_format(config: Config, label: str, n: int) -> dict[str, Any] | None:
    """A generation reply's format: n examples, each with the schema's fields and the
    label pinned to the cell's. Structured outputs make the model keep to it."""
    schema = config.data_schema
    props: dict[str, Any] = {}
    for name, spec in schema.fields.items():
        prop: dict[str, Any] = {"type": spec.type}
        if spec.description:
            prop["description"] = spec.description
        if name == schema.label:
            prop = {"type": "string", "enum": [label]}
        props[name] = prop
    examples = {"type": "array", "minItems": n, "maxItems": n, "items": strict_object(props)}
    return response_format(
        config.llm.response_format, "examples", strict_object({"examples": examples})
    )


class Reply(BaseModel):
    """What a generation reply must be; the items are checked by the schema filter."""

    examples: list[dict[str, Any]]


def parse_reply(content: str | None) -> list[dict[str, Any]]:
    """A generation reply's examples; ReplyError says why a reply is unusable."""
    if not content:
        raise ReplyError("empty reply")
    value = _loads(content)
    if isinstance(value, list):  # some endpoints without structured output do this
        value = {"examples": value}
    try:
        return Reply.model_validate(value).examples
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "reply"
        raise ReplyError(f"{where}: {first['msg']}") from None


def json_object(content: str | None) -> dict[str, Any]:
    """A judge reply's JSON object; what its fields must be is the judge's to check."""
    value = _loads(content or "")
    if not isinstance(value, dict):
        raise ReplyError("the reply is not a JSON object")
    return value


def _loads(content: str) -> Any:
    try:
        return json.loads(content)
    except json.JSONDecodeError as e:
        raise ReplyError(f"invalid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
