"""What a reply must be before anything reads it: the boundary between the endpoint and
the rest of synth.

An endpoint can send anything: a ``content`` that is an object, usage counts that are
strings, negative or 5,000 digits long, JSON nested a thousand deep (Python's parser
gives up with a RecursionError), ``NaN``, lone surrogates (``"\\ud800"`` is valid
JSON, but no UTF-8 can carry it, so SQLite refuses the row that holds it), or 60 MB of
text. Every reply is read here, within limits, so what the client, generation and the
judge get is plain: a string or None for the content, non-negative counts for usage,
JSON at most ``MAX_DEPTH`` deep whose every string can be stored. A reply beyond a
limit is one invalid call with its reason (``BadReply``), never an exception anywhere
else.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from synth.records import Unusable

# A reply longer than this is unusable (``too_large``) and the store keeps this much of
# it. A whole chat completion of 250,000 tokens fits; real replies are thousands.
MAX_REPLY_CHARS = 1_000_000
# Bytes read of a reply before it is known to be too large: enough for MAX_REPLY_CHARS
# characters of any width, and one more, so a reply cut here is always over the limit.
READ_LIMIT = 4 * MAX_REPLY_CHARS + 4
# Nesting past this is refused before anything walks it: a chat completion is 4 deep,
# the examples or grades inside it 3 more.
MAX_DEPTH = 64
# A usage count above this is not believed: no context holds 100 million tokens.
MAX_TOKENS = 100_000_000
ERROR_CHARS = 500  # an error message, as stored on a call

_SURROGATES = re.compile("[\ud800-\udfff]")
# The escape of a surrogate (a lone one, or half of a pair): JSON text without one,
# and without the character itself, cannot parse into a lone surrogate.
_SURROGATE_ESCAPES = re.compile(r"\\u[dD][89a-fA-F]")


class BadReply(ValueError):
    """A reply that cannot be read; ``reason`` is the ``Unusable`` word it counts under."""

    def __init__(self, message: str, reason: Unusable = Unusable.UNPARSEABLE) -> None:
        super().__init__(message)
        self.reason = reason


# Hooks for json: NaN and infinities are not JSON (RFC 8259), and a float that
# overflows to one is not a number anything downstream can store or compare.
def refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} is out of range")
    return value


def parse(text: str | bytes | bytearray) -> Any:
    """JSON, or ``ValueError`` (its message one line) for text that is not JSON, that
    holds ``NaN``, an infinite number or one past Python's 4,300 digits, or that nests
    deeper than Python's parser can follow. Its depth and strings are as they came:
    ``loads`` checks them too."""
    try:
        return json.loads(text, parse_constant=refuse_constant, parse_float=finite)
    except RecursionError:
        raise ValueError(f"JSON nested more than {MAX_DEPTH} deep") from None
    except ValueError as e:
        raise ValueError(one_line(str(e), 200)) from None


def loads(text: str | bytes | bytearray) -> Any:
    """``parse``, then ``storable``: also ``ValueError`` for JSON nested deeper than
    ``MAX_DEPTH``; lone surrogates in its strings and keys become U+FFFD."""
    return storable(parse(text))[0]


def too_deep(value: Any) -> bool:
    """Whether ``value`` (parsed JSON) nests deeper than ``MAX_DEPTH``."""
    stack = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict | list):
            if depth >= MAX_DEPTH:
                return True
            stack += [(x, depth + 1) for x in (v.values() if isinstance(v, dict) else v)]
    return False


def storable(value: Any, text: str | None = None) -> tuple[Any, bool]:
    """``value`` (parsed JSON) with lone surrogates in its strings and keys replaced by
    U+FFFD, and whether any was; ``ValueError`` when it nests deeper than
    ``MAX_DEPTH``. Given ``text``, the JSON ``value`` was parsed from (or that its
    one item was, as ``synth.llm.structured`` holds a whole reply's value), a value
    whose text cannot hold a surrogate nor nest that deep is returned as it is,
    unwalked."""
    if text is not None and _plainly_storable(text):
        return value, False
    replaced = False

    def walk(v: Any, depth: int) -> Any:
        nonlocal replaced
        if isinstance(v, str):
            if v.isascii() or not _SURROGATES.search(v):
                return v
            replaced = True
            return _SURROGATES.sub("\ufffd", v)
        if isinstance(v, dict | list):
            if depth >= MAX_DEPTH:
                raise ValueError(f"JSON nested more than {MAX_DEPTH} deep")
            if isinstance(v, list):
                return [walk(x, depth + 1) for x in v]
            return {walk(k, depth): walk(x, depth + 1) for k, x in v.items()}
        return v

    return walk(value, 0), replaced


def _plainly_storable(text: str) -> bool:
    """Whether JSON ``text`` parses into a value ``storable`` leaves as it is, alone or
    as a list's one item: with no surrogate, escaped or not, and fewer brackets than
    ``MAX_DEPTH`` (nesting past it, in a list, takes as many; brackets inside strings
    only add to the count). Reading the text costs a fraction of walking every value
    of a reply."""
    return (
        text.count("{") + text.count("[") < MAX_DEPTH
        and _SURROGATE_ESCAPES.search(text) is None
        and (text.isascii() or _SURROGATES.search(text) is None)
    )


def one_line(text: str, limit: int = ERROR_CHARS) -> str:
    """``text`` as one storable line of at most ``limit`` characters: an error message
    quotes what a server sent, which may be anything."""
    text = " ".join(_SURROGATES.sub("\ufffd", text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Usage:
    """A reply's token counts, each a non-negative int no larger than ``MAX_TOKENS``.
    A count the reply gave that is none of these is replaced by synth's estimate
    (``estimated``): recording 0, or a negative count, would make a paid reply free
    and let spend run past ``max_cost_usd``. A count the reply leaves out is 0, as
    servers without usage reporting have always been read."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False
    # Of prompt_tokens, those served from the provider's prompt cache, never more
    # than prompt_tokens (a count past it is not believed: it would price fresh
    # tokens at the cached rate).
    cached_tokens: int = 0

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _count(value: Any) -> int | None:
    """A believable token count, or None."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS:
        return value
    return None


def read_usage(raw: Any, prompt_estimate: int, completion_estimate: int) -> Usage:
    """The usage a reply reports (``raw``, its ``usage`` field), checked; the estimates
    stand in for counts that are wrong (a string, negative, huge)."""
    if raw is None:
        return Usage()
    if not isinstance(raw, dict):
        return Usage(prompt_estimate, completion_estimate, estimated=True)
    counts = []
    estimated = False
    estimates = {"prompt_tokens": prompt_estimate, "completion_tokens": completion_estimate}
    for key, estimate in estimates.items():
        value = raw.get(key)
        count = 0 if value is None else _count(value)
        if count is None:
            count, estimated = estimate, True
        counts.append(count)
    details = raw.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else None
    cached = min(cached or 0, counts[0])
    return Usage(counts[0], counts[1], estimated, cached)


@dataclass(frozen=True)
class Completion:
    """A chat completion's parts that synth reads, each of the type it expects."""

    content: str | None
    finish: str | None  # finish_reason, when a string
    usage: Usage
    served_model: str | None  # the reply's "model"
    fixes: tuple[str, ...] = ()  # "lone_surrogates", "usage_estimated": as repairs


def read_completion(body: str, prompt_estimate: int = 0) -> Completion:
    """The chat completion in ``body``, or ``BadReply`` saying why there is none:
    too large, not JSON within the limits, not the shape of a chat completion, or a
    content that is not a string. ``prompt_estimate`` stands in for a prompt count
    the reply gets wrong."""
    if len(body) > MAX_REPLY_CHARS:
        raise BadReply(
            f"reply too large: {len(body):,} characters or more, over the limit of"
            f" {MAX_REPLY_CHARS:,}",
            Unusable.TOO_LARGE,
        )
    try:
        reply, replaced = storable(parse(body), body)
    except ValueError as e:
        raise BadReply(f"not a chat completion: {e}") from None
    choices = reply.get("choices") if isinstance(reply, dict) else None
    choice = choices[0] if isinstance(choices, list) and choices else None
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise BadReply("not a chat completion: no choices[0].message object")
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise BadReply(f"not a chat completion: its content is a JSON {kind(content)}")
    finish = choice.get("finish_reason") if isinstance(choice, dict) else None
    usage = read_usage(reply.get("usage"), prompt_estimate, len(content or "") // 4)
    model = reply.get("model")
    fixes = ("lone_surrogates",) * replaced + ("usage_estimated",) * usage.estimated
    return Completion(
        content,
        finish if isinstance(finish, str) else None,
        usage,
        model if isinstance(model, str) else None,
        fixes,
    )


def kind(value: Any) -> str:
    """What sort of JSON value ``value`` is, in words."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object" if isinstance(value, dict) else "null"


def capped(body: str | None) -> tuple[str | None, int | None]:
    """A reply body as the store keeps it: at most ``MAX_REPLY_CHARS``, and its whole
    length when it was cut (None when it was not)."""
    if body is None or len(body) <= MAX_REPLY_CHARS:
        return body, None
    return body[:MAX_REPLY_CHARS], len(body)
