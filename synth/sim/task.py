"""Reading a generation request: how many items, which fields, which label, which shots.

The simulator sees what a provider sees, the body on the wire, so it reads the task
as a model would: from the response_format's schema when there is one, else from the
example lines and the prose ("8 new examples", "label: card_arrival"). It therefore
answers any template, not only synth's bundled ones.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

_N_EXAMPLES = re.compile(r"(\d+)\s+(?:new\s+)?examples?\b", re.IGNORECASE)
_LABEL_QUOTED = re.compile(r"\blabel\b\s*[:=]?\s*[\"“']([^\"”'\n]{1,100})[\"”']", re.IGNORECASE)
_LABEL_BARE = re.compile(r"\blabel\b\s*[:=]\s*([^\s,;()\"'“”]{1,100})", re.IGNORECASE)
_CLASSIFY_TASK = re.compile(r"\btask[ _]type\b\s*[:=]\s*\W?classification\b", re.IGNORECASE)
MAX_ITEMS = 500


@dataclass
class Task:
    """What one request asks for, as read from its messages and response_format.

    ``fields`` maps each field of an item to a kind: ``label``, ``text`` (the main
    free-text field), ``string`` (other free text), ``copy`` (short categorical
    strings, copied from a shot), ``integer``, ``number``, ``boolean``, ``enum``,
    ``messages`` (a dialogue: a list of role and content turns) or ``any``;
    ``enums`` holds the allowed values of ``enum`` fields.
    """

    n: int
    label_field: str | None
    label: str | None
    fields: dict[str, str]
    required: list[str]
    text_field: str | None
    shots: list[dict[str, Any]]
    contrast: list[dict[str, Any]]
    prompt_chars: int
    enums: dict[str, list[Any]] = field(default_factory=dict)
    classify: bool = False  # the prompt names a classification task type


def _message_texts(messages: list[Any]) -> tuple[list[str], str]:
    """Every message's text, and the last user message's text."""
    texts: list[str] = []
    last_user = ""
    for m in messages:
        if not isinstance(m, dict):
            raise ValueError("each message must be an object")
        content = m.get("content")
        if isinstance(content, str):
            text = content
        elif isinstance(content, list):
            text = "\n".join(
                p.get("text", "") for p in content if isinstance(p, dict) and p.get("text")
            )
        else:
            text = ""
        texts.append(text)
        if m.get("role") == "user":
            last_user = text
    return texts, last_user


def _json_lines(texts: list[str]) -> list[dict[str, Any]]:
    rows = []
    for text in texts:
        if "{" not in text:
            continue
        for line in text.splitlines():
            s = line.strip()
            if not s.endswith("}"):
                continue
            # Allow a short bullet or number before the object ("- {...}", "3. {...}").
            i = s.find("{")
            if i < 0 or i > 4:
                continue
            try:
                obj = json.loads(s[i:])
            except ValueError:
                continue
            # A reply quoted back in a multi-turn prompt is not an example.
            if isinstance(obj, dict) and obj and not isinstance(obj.get("examples"), list):
                rows.append(obj)
    return rows


def _item_schema(fmt: Any) -> tuple[dict[str, Any] | None, int | None]:
    """The schema of one item and the requested count, from a json_schema format."""
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None, None
    spec = fmt.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        return None, None
    array = schema if schema.get("type") == "array" else None
    props = schema.get("properties")
    if array is None and isinstance(props, dict):
        array = props.get("examples")
        if not (isinstance(array, dict) and array.get("type") == "array"):
            array = next(
                (p for p in props.values() if isinstance(p, dict) and p.get("type") == "array"),
                None,
            )
    if not isinstance(array, dict):
        return None, None
    n = array.get("maxItems") or array.get("minItems")
    items = array.get("items")
    if not isinstance(items, dict) or not isinstance(items.get("properties"), dict):
        items = None
    return items, int(n) if isinstance(n, int) and n > 0 else None


def _is_turns(items: Any) -> bool:
    """An array's items are dialogue turns: objects with a role and a content."""
    props = items.get("properties") if isinstance(items, dict) else None
    return isinstance(props, dict) and {"role", "content"} <= set(props)


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "any"


def _label_from_prompt(text: str) -> str | None:
    # JSON lines mention "label" too; only the prose counts.
    prose = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("{"))
    best: tuple[int, str] | None = None
    for rx in (_LABEL_QUOTED, _LABEL_BARE):
        for m in rx.finditer(prose):
            if best is None or m.start() > best[0]:
                best = (m.start(), m.group(1).strip())
    if best is None:
        return None
    # "Label: card_arrival." ends a sentence; the full stop is not part of the label.
    return best[1].rstrip(".!?:") or None


def read_task(body: dict[str, Any]) -> Task:
    """Read a chat-completions body. Raises ValueError when it is not one."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty array")
    texts, last_user = _message_texts(messages)
    rows = _json_lines(texts)
    item_schema, n = _item_schema(body.get("response_format"))

    fields: dict[str, str] = {}
    enums: dict[str, list[Any]] = {}
    label_field: str | None = None
    label: str | None = None
    required: list[str] = []
    if item_schema is not None:
        props: dict[str, Any] = item_schema["properties"]
        req = item_schema.get("required")
        required = [r for r in req if r in props] if isinstance(req, list) else list(props)
        singles = [
            k
            for k, p in props.items()
            if isinstance(p, dict) and isinstance(p.get("enum"), list) and len(p["enum"]) == 1
        ]
        if singles:
            label_field = "label" if "label" in singles else singles[0]
            label = str(props[label_field]["enum"][0])
        for k, p in props.items():
            p = p if isinstance(p, dict) else {}
            kind = p.get("type")
            if isinstance(kind, list):  # ["string", "null"]
                kind = next((t for t in kind if t != "null"), "any")
            if k == label_field:
                fields[k] = "label"
            elif kind == "array" and _is_turns(p.get("items")):
                fields[k] = "messages"
            elif isinstance(p.get("enum"), list) and p["enum"]:
                fields[k] = "enum"
                enums[k] = p["enum"]
            elif kind in ("string", "integer", "number", "boolean"):
                fields[k] = str(kind)
            else:
                fields[k] = "any"
    if label_field is None:
        if item_schema is None:  # the example lines are the schema
            keys: dict[str, None] = {}
            for r in rows:
                keys.update(dict.fromkeys(r))
            label_field = "label" if "label" in keys else None
            for k in keys:
                first = next((r[k] for r in rows if k in r), None)
                fields[k] = "label" if k == label_field else _type_of(first)
            required = list(fields)
        elif "label" in fields:  # a schema that does not pin the label
            label_field = "label"
            fields[label_field] = "label"
        label = _label_from_prompt(last_user)
        if label is None and label_field:
            counts = Counter(
                r[label_field] for r in rows if isinstance(r.get(label_field), (str, int))
            )
            label = str(counts.most_common(1)[0][0]) if counts else None
    if n is None:
        found = _N_EXAMPLES.findall(last_user)
        n = int(found[-1]) if found else 1
    n = max(1, min(n, MAX_ITEMS))

    if label_field:
        shots = [r for r in rows if str(r.get(label_field)) == label]
        contrast = [r for r in rows if label_field in r and str(r.get(label_field)) != label]
    else:
        shots, contrast = rows, []

    if not fields:  # no schema and no example lines: still answer with some text
        fields = {"text": "string", **({"label": "label"} if label is not None else {})}
        required = list(fields)
        label_field = "label" if label is not None else None
    strings = [k for k, kind in fields.items() if kind == "string"]
    # A schema's keys may come sorted ("input" before "instruction"): the main text is
    # found by its usual names before falling back to the first string.
    named = [k for k in ("text", "instruction", "prompt", "question") if k in strings]
    text_field = named[0] if named else (strings[0] if strings else None)
    for k in strings:
        if k == text_field:
            fields[k] = "text"
        elif shots and all(
            isinstance(s.get(k), str) and " " not in s[k].strip() for s in shots if k in s
        ):
            # Short categorical strings ("urgent", "en") are metadata, not prose.
            fields[k] = "copy"
    return Task(
        n=n,
        label_field=label_field,
        label=label,
        fields=fields,
        required=required,
        text_field=text_field,
        shots=shots,
        contrast=contrast,
        prompt_chars=sum(len(t) for t in texts),
        enums=enums,
        classify=_CLASSIFY_TASK.search(last_user) is not None,
    )
