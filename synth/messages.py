"""Dialogues: a ``messages`` field, its rules, and the text the filters compare.

A multi-turn chat example holds its dialogue in one field of ``type = "messages"``: a
list of ``{"role", "content"}`` turns, as OpenAI's chat fine-tuning files and Hugging
Face chat templates take them. An optional system turn comes first; then user and
assistant alternate, starting with the user and ending with the assistant (a
training dialogue ends on the answer it teaches). Every content is non-empty text.

The text the dedup, diversity and length filters compare is the user turns joined
by newlines: what the dialogue asks is what makes it new. Two dialogues that open
alike and go on to ask different things are different examples; the replies of the
assistant follow from the asks and would make every greeting-led dialogue look alike.
"""

from __future__ import annotations

from typing import Any, TypeGuard

ROLES = ("system", "user", "assistant")


def check_messages(
    value: Any, min_turns: int | None = None, max_turns: int | None = None
) -> list[dict[str, str]]:
    """``value`` as a dialogue, or a ValueError saying in one line what is wrong with
    it. Turns are counted without the system turn."""
    if not isinstance(value, list):
        raise ValueError(f"must be a list of messages, not {type(value).__name__}")
    out: list[dict[str, str]] = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or set(m) != {"role", "content"}:
            raise ValueError(f"message {i} must be an object with exactly role and content")
        role, content = m["role"], m["content"]
        if role not in ROLES:
            raise ValueError(f"message {i} has role {role!r}, not one of {', '.join(ROLES)}")
        if not isinstance(content, str) or not content.strip():
            raise ValueError(f"message {i} ({role}) must have non-empty text content")
        out.append({"role": role, "content": content})
    turns = out[1:] if out and out[0]["role"] == "system" else out
    for i, m in enumerate(turns):
        want = "user" if i % 2 == 0 else "assistant"
        if m["role"] != want:
            at = i + len(out) - len(turns)
            raise ValueError(
                f"message {at} is {m['role']!r} where {want!r} is due: after an optional"
                " system message, user and assistant alternate, starting with the user"
            )
    if turns and turns[-1]["role"] != "assistant":
        raise ValueError("the last message must be the assistant's")
    if min_turns is not None and len(turns) < min_turns:
        raise ValueError(f"has {len(turns)} turns, fewer than {min_turns}")
    if max_turns is not None and len(turns) > max_turns:
        raise ValueError(f"has {len(turns)} turns, more than {max_turns}")
    return out


def is_dialogue(value: Any) -> TypeGuard[list[dict[str, Any]]]:
    """A non-empty list of objects with a role each (not yet checked further)."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in value)
    )


def user_text(messages: list[dict[str, Any]]) -> str:
    """The user turns of a dialogue, joined by newlines."""
    return "\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")


def text_of(data: dict[str, Any], field: str) -> str:
    """The text of ``data[field]`` the filters compare: a string as it is, a
    dialogue's user turns; "" for anything else."""
    value = data.get(field)
    if isinstance(value, str):
        return value
    if is_dialogue(value):
        return user_text(value)
    return ""
