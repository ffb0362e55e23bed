"""Structured output: the JSON schema a request asks for, and the check of the reply.

What a request asks the model to return and what its reply is held to must agree,
so both live here, beside the client: the client checks every reply as it arrives
(generation's examples, the judge's JSON object) without reaching into generation or
the judge, and generation and the judge build their ``response_format`` from the same
pieces. The schemas are part of each request's hash: they must not change shape.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from synth.config import Config
from synth.llm.reply import MAX_DEPTH, finite, refuse_constant, storable
from synth.messages import ROLES, is_dialogue
from synth.records import Unusable

Mode = Literal["json_schema", "json_object", "none"]  # ``llm.response_format``


class ReplyError(ValueError):
    """A reply that is not what its request asked for. ``reason``: JSON was found but
    is not the shape asked for (the default), or none could be read at all."""

    def __init__(self, message: str, reason: Unusable = Unusable.SCHEMA_MISMATCH) -> None:
        super().__init__(message)
        self.reason = reason


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


def with_lengths(config: Config) -> bool:
    """Whether schemas sent carry string lengths (``llm.schema_lengths``)."""
    setting = config.llm.schema_lengths
    if setting != "auto":
        return setting == "always"
    return urlsplit(config.endpoint()).hostname != "api.openai.com"


def text_schema(
    config: Config, *, min_length: int | None = None, max_length: int | None = None
) -> dict[str, Any]:
    """A string, with its lengths where the endpoint takes them."""
    prop: dict[str, Any] = {"type": "string"}
    if with_lengths(config):
        if min_length is not None:
            prop["minLength"] = min_length
        if max_length is not None:
            prop["maxLength"] = max_length
    return prop


def messages_schema(config: Config, min_turns: int | None, max_turns: int | None) -> dict[str, Any]:
    """A dialogue: a list of {role, content} turns. The order of roles is beyond a
    JSON schema; the schema filter checks it."""
    turn = strict_object(
        {"role": {"type": "string", "enum": list(ROLES)}, "content": {"type": "string"}}
    )
    prop: dict[str, Any] = {"type": "array", "items": turn}
    if with_lengths(config):
        # A system message may come on top of the turns.
        if min_turns is not None:
            prop["minItems"] = min_turns
        if max_turns is not None:
            prop["maxItems"] = max_turns + 1
    return prop


def item_schema(config: Config, label: str) -> dict[str, Any]:
    """One example: every field of ``[schema]`` with its type, description and
    lengths, and the label pinned to the cell's. What the schema filter holds each
    example to, the server is asked to keep to while it writes."""
    schema = config.data_schema
    props: dict[str, Any] = {}
    for name in schema.generated:
        spec = schema.fields[name]
        if name == schema.label:
            props[name] = {"type": "string", "enum": [label]}
            continue
        prop: dict[str, Any] = {"type": spec.type}
        if spec.type == "messages":
            prop = messages_schema(config, spec.min_length, spec.max_length)
        elif spec.type == "string":
            prop = text_schema(config, min_length=spec.min_length, max_length=spec.max_length)
        if spec.description:
            prop["description"] = spec.description
        props[name] = prop
    return strict_object(props)


def examples_format(config: Config, label: str, n: int) -> dict[str, Any] | None:
    """A generation reply's format: n examples (``item_schema``). Structured outputs
    make the model keep to it."""
    items = item_schema(config, label)
    examples = {"type": "array", "minItems": n, "maxItems": n, "items": items}
    return response_format(
        config.llm.response_format, "examples", strict_object({"examples": examples})
    )


def answer_shape(config: Config, label: str) -> str:
    """The exact shape of the answer, for the prompt to show: the object
    ``read_examples`` reads without a repair, with the label filled in and "..." for
    the other fields. Models without a schema to keep to copy a shape they are
    shown far more reliably than one they are told about."""
    schema = config.data_schema
    one = json.dumps(
        {name: label if name == schema.label else "..." for name in schema.generated},
        ensure_ascii=False,
    )
    return '{"examples": [' + one + ", " + one + ", ...]}"


class Reply(BaseModel):
    """What a generation reply must be; the items are checked by the schema filter."""

    examples: list[dict[str, Any]]


@dataclass(frozen=True)
class Examples:
    """A generation reply's examples, and how its shape was mended to find them."""

    items: list[dict[str, Any]]
    repairs: tuple[str, ...] = ()


@dataclass(frozen=True)
class FoundObject:
    """A judge reply's JSON object, and how its shape was mended to find it."""

    value: dict[str, Any]
    repairs: tuple[str, ...] = ()


# Repairs, as recorded on the call (``llm_calls.repairs_json``), each a stable slug:
#   code_fence         the JSON inside a ``` fence
#   text_around_json   prose before or after the JSON
#   broken_json        JSON that does not parse (a missing brace, a trailing comma,
#                      a cut): the complete objects inside it are read
#   json_lines         one example object per line, not {"examples": [...]}
#   several_values     more than one JSON value, each read (repeats, afterthoughts)
#   bare_list          a list of examples, not {"examples": [...]}
#   single_example     one example object, not a list of them
#   keyed_examples     examples as the values of an object ({"example1": {...}, ...})
#   extra_keys         the examples beside other keys, which are ignored
#   wrapper:KEY        the expected object under a wrapper key ({"data": {...}})
#   non_objects        entries of the list that are not objects, left out
#   cut_off            the reply ended at max_tokens; the examples before the cut


def read_examples(content: str | None) -> Examples:
    """A generation reply's examples, from whatever shape the model wrote them in.

    Endpoints with structured outputs return exactly ``{"examples": [...]}``; models
    asked for JSON without a schema (``json_object``, ``none``) also write a bare
    list, a single example, a wrapper object (``{"data": {"examples": [...]}}``),
    one object per line (the format the prompt shows its examples in), a fenced
    code block, prose around any of those, or JSON with a slip in it. Each is read,
    the same content always giving the same examples, and what was mended is named
    in ``repairs``. An example is a flat object (the schema's fields are scalars, or
    dialogues);
    the schema filter judges each one. ReplyError says why a reply holds none."""
    if not content or not content.strip():
        raise ReplyError("empty reply", Unusable.UNPARSEABLE)
    values, repairs = _json_values(content)
    items: list[dict[str, Any]] = []
    broken = "broken_json" in repairs
    if all(_is_example(v) for v in values) and (len(values) > 1 or broken):
        # Objects side by side: one per line, or the items of a list that broke.
        if not broken:
            repairs.append("json_lines")
        items = list(values)
    else:
        if len(values) > 1:
            repairs.append("several_values")
        # A list found inside JSON that broke was no bare list of the model's.
        for value in values:
            items += _examples_in(value, repairs, top=not broken)
    if not items:
        raise ReplyError(_no_examples(values))
    try:
        reply = Reply.model_validate({"examples": items})
    except ValidationError as e:  # pragma: no cover - items are objects by construction
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "reply"
        raise ReplyError(f"{where}: {first['msg']}") from None
    return Examples(reply.examples, tuple(dict.fromkeys(repairs)))


def parse_reply(content: str | None) -> list[dict[str, Any]]:
    """A generation reply's examples (``read_examples`` without the repairs)."""
    return read_examples(content).items


def read_object(content: str | None, keys: Collection[str] = ()) -> FoundObject:
    """A judge reply's JSON object; what its fields must be is the judge's to check.

    Found as ``read_examples`` finds examples: in prose, in a fence, among several
    values. With ``keys`` (the fields the judge asked for) the object that holds the
    most of them is taken, and a wrapper around it (``{"grades": {...}}``) is
    looked through."""
    if not content or not content.strip():
        raise ReplyError("empty reply", Unusable.UNPARSEABLE)
    values, repairs = _json_values(content)
    objects = [v for v in values if isinstance(v, dict)]
    if not objects:
        raise ReplyError(_no_examples(values, what="JSON object"))
    wanted = set(keys)
    best: tuple[int, int, dict[str, Any], list[str]] | None = None
    for i, obj in enumerate(objects):
        found, path = _unwrap(obj, wanted)
        score = len(wanted & set(found))
        if best is None or score > best[0]:
            best = (score, i, found, path)
    assert best is not None
    _, _, value, path = best
    if len(values) > 1:
        repairs.append("several_values")
    repairs += [f"wrapper:{k}" for k in path]
    return FoundObject(value, tuple(dict.fromkeys(repairs)))


def json_object(content: str | None) -> dict[str, Any]:
    """A judge reply's JSON object (``read_object`` without the repairs)."""
    return read_object(content).value


_DECODER = json.JSONDecoder(parse_constant=refuse_constant, parse_float=finite)
_FENCE = re.compile(r"^[ \t]*```[\w+-]*[ \t]*$", re.MULTILINE)
_OPENERS = re.compile(r"[{\[]")


def _json_values(content: str) -> tuple[list[Any], list[str]]:
    """Every JSON value in the reply, and what surrounded them: the whole reply when
    it is JSON, else each object or list found in it, left to right, never one
    inside another. Where an opening brace starts JSON that does not parse, the
    values inside it are found instead."""
    text = content.strip()
    whole = _decoded(text)
    if whole is not None:
        return _storable(whole, [], text)
    mended = _mended(text)
    if mended is not None:
        whole = _decoded(mended)
        if whole is not None:
            return _storable(whole, ["broken_json"], mended)
    values: list[Any] = []
    outside: list[str] = []  # text outside every value and every broken fragment
    broken = False
    in_fragment = False  # after an opening brace that did not parse
    unreadable = None  # why JSON that parses as JSON was refused (NaN, 5,000 digits)
    i = 0
    while True:
        m = _OPENERS.search(text, i)
        if m is None:
            if not in_fragment:
                outside.append(text[i:])
            break
        if not in_fragment:
            outside.append(text[i : m.start()])
        try:
            value, end = _DECODER.raw_decode(text, m.start())
        except RecursionError:
            # Read again from every bracket inside, it would fail as deep each time.
            raise ReplyError(_TOO_DEEP, Unusable.UNPARSEABLE) from None
        except ValueError as e:  # not JSON; or NaN, or a number past 4,300 digits
            if not isinstance(e, json.JSONDecodeError):
                unreadable = unreadable or str(e)
            broken = in_fragment = True
            i = m.start() + 1
            continue
        in_fragment = False
        if isinstance(value, dict) and value or isinstance(value, list) and value:
            values.append(value)
        i = end
    if not values and unreadable:
        raise ReplyError(f"no readable JSON in the reply: {unreadable}", Unusable.UNPARSEABLE)
    if not values:
        start = " ".join(text.split())
        start = start if len(start) <= 60 else start[:57] + "..."
        raise ReplyError(f"no JSON in the reply, which begins {start!r}", Unusable.UNPARSEABLE)
    repairs = []
    rest = "".join(outside)
    if _FENCE.search(rest):
        repairs.append("code_fence")
        rest = _FENCE.sub("", rest)
    if any(ch.isalnum() for ch in rest):
        repairs.append("text_around_json")
    if broken:
        repairs.append("broken_json")
    return _storable(values, repairs)


_TOO_DEEP = f"JSON nested more than {MAX_DEPTH} deep"


def _decoded(text: str) -> list[Any] | None:
    """The JSON value ``text`` is whole (in a list), or None: not JSON, or NaN, an infinite
    number or one past 4,300 digits in it (``synth.llm.reply``), or nested too deep."""
    try:
        return [_DECODER.decode(text)]
    except RecursionError:
        raise ReplyError(_TOO_DEEP, Unusable.UNPARSEABLE) from None
    except ValueError:
        return None


def _storable(
    values: Any, repairs: list[str], text: str | None = None
) -> tuple[list[Any], list[str]]:
    """The values with their strings made storable, nested no deeper than the limit
    (``synth.llm.reply.storable``, told the ``text`` they were parsed from when it
    is at hand)."""
    try:
        values, replaced = storable(values, text)
    except ValueError:
        raise ReplyError(_TOO_DEEP, Unusable.UNPARSEABLE) from None
    if replaced:
        repairs.append("lone_surrogates")
    return values, repairs


_CLOSERS = {"{": "}", "[": "]"}
_BARE_KEY = re.compile(r"([{,]\s*)([A-Za-z_][\w-]*)(\s*:)")


def _mended(text: str) -> str | None:
    """The reply with the slips models make in otherwise whole JSON mended: object
    keys left unquoted (as in JavaScript), closing brackets left off (a brace
    forgotten, a cut between two values). None when it needs other mending."""
    if not text or text[0] not in _CLOSERS:
        return None
    quoted = _outside_strings(text, lambda part: _BARE_KEY.sub(r'\1"\2"\3', part))
    return _closed(quoted)


def _outside_strings(text: str, change: Callable[[str], str]) -> str:
    """``change`` applied to the parts of ``text`` outside JSON strings."""
    out: list[str] = []
    start = 0
    in_string = escaped = False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
                out.append(text[start : i + 1])
                start = i + 1
        elif ch == '"':
            out.append(change(text[start:i]))
            start = i
            in_string = True
    out.append(text[start:] if in_string else change(text[start:]))
    return "".join(out)


def _closed(text: str) -> str:
    """JSON that stops short of its closing brackets closed; the text as it is when
    it does not stop so (a cut inside a string, brackets that do not match, text
    after the end), for the parse to refuse."""
    stack: list[str] = []
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in _CLOSERS:
            stack.append(_CLOSERS[ch])
        elif ch in "}]":
            if not stack or stack.pop() != ch or not stack:
                return text  # mismatched, or closed before the end with more after it
    if in_string or not stack:
        return text
    return text.rstrip().rstrip(",") + "".join(reversed(stack))


def _is_example(value: Any) -> bool:
    """A flat, non-empty object: every field of an example is a scalar, or a dialogue
    (a list of turns with roles), which is a field's value and no wrapper."""
    return (
        isinstance(value, dict)
        and bool(value)
        and all(
            v is None or isinstance(v, (str, int, float, bool)) or is_dialogue(v)
            for v in value.values()
        )
    )


def _examples_in(value: Any, repairs: list[str], *, top: bool = False) -> list[dict[str, Any]]:
    """The examples a JSON value holds, noting every departure from
    ``{"examples": [...]}`` (``top``: the value is the reply's own, not inside one)."""
    if isinstance(value, list):
        if top:
            repairs.append("bare_list")
        out: list[dict[str, Any]] = []
        for entry in value:
            if _is_example(entry):
                out.append(entry)
            elif isinstance(entry, dict):
                out += _examples_in(entry, repairs)
            else:
                repairs.append("non_objects")
        return out
    if not isinstance(value, dict) or not value:
        return []
    if _is_example(value):
        repairs.append("single_example")
        return [value]
    key = "examples"
    if key not in value and all(_is_example(v) for v in value.values()):
        # Examples under keys of their own: {"example1": {...}, "example2": {...}}.
        repairs.append("keyed_examples")
        return list(value.values())
    if key not in value:
        # A wrapper: the one field that holds a list or an object ({"data": ...}).
        containers = [k for k, v in value.items() if isinstance(v, (dict, list))]
        if len(containers) != 1:
            return []
        key = containers[0]
        repairs.append(f"wrapper:{key}")
    if len(value) > 1:
        repairs.append("extra_keys")
    return _examples_in(value[key], repairs)


def _unwrap(obj: dict[str, Any], wanted: set[str]) -> tuple[dict[str, Any], list[str]]:
    """The object, or the one a chain of single-key wrappers holds when the object
    itself has none of the wanted keys; with the wrapper keys passed through."""
    path: list[str] = []
    while wanted and not wanted & set(obj) and len(obj) == 1:
        key, inner = next(iter(obj.items()))
        if not isinstance(inner, dict):
            break
        path.append(key)
        obj = inner
    return obj, path


def _no_examples(values: list[Any], what: str = "examples") -> str:
    """Why the JSON found holds nothing usable, in one line."""
    first = values[0] if values else None
    if isinstance(first, dict):
        if first.get("examples") == []:
            return "the reply's examples list is empty"
        keys = ", ".join(list(first)[:6])
        return f"no {what} in the reply: a JSON object with keys {keys}"
    if isinstance(first, list):
        return f"no {what} in the reply: a JSON list of {len(first)} non-objects"
    kind = {str: "string", int: "number", float: "number", bool: "boolean"}.get(type(first), "null")
    return f"no {what} in the reply: a JSON {kind}"
