"""Multi-turn chat items: new dialogues of 1 to 4 exchanges about the shots' topics.

A dialogue is a list of ``{"role", "content"}`` turns in a field whose schema is an
array of such objects (``read_task`` calls that kind ``messages``). Each opens with a
request about a topic (a word of the shots, or a stock one), goes on with follow-ups
that build on the assistant's last answer (a detail, a snag, a wrong first answer
corrected), and ends with the assistant; a share begins with a system message. A
planted share stops on a user turn, the answer never written, as models sometimes
do, for the schema filter to reject.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from random import Random
from typing import Any

from synth.sim.instruct import _topics
from synth.sim.task import Task

BROKEN_SHARE = 0.05
_SYSTEMS = (
    "You are a friendly assistant who answers briefly.",
    "You are a patient tutor. Explain step by step.",
    "You are a helpful assistant for a community centre.",
)
_OPENERS = (
    "Can you help me get started with {t}?",
    "I'm trying to learn about {t} for a {who}. Where do I begin?",
    "Quick question about {t}: is it expensive to try?",
    "My {who} asked me about {t} and I had no idea. What is it, in short?",
    "I keep hearing about {t}. Is it worth an evening a week?",
    "What should a {who} know before trying {t}?",
    "How do I explain {t} to a {who} in two minutes?",
    "Is {t} something I can do on my own, or do I need a group?",
)
_WHO = (
    "ten-year-old",
    "retired neighbour",
    "new colleague",
    "book club",
    "school project",
    "grandmother",
    "flatmate",
    "night class",
)
_FOLLOW_UPS = (
    "That sounds good, but how much time does {t} take each week?",
    "Hmm, that's not right: I asked about {t}, not {u}. Can you try again?",
    "Could you give me one concrete example of {t} for a {who}?",
    "What is the most common mistake beginners make with {t}?",
    "I tried that and it didn't work. What else could I change?",
    "Is there a cheaper way to get into {t}?",
    "How would this work for a {who} with little free time?",
    "Can you sum that up in one sentence I could put on a poster?",
)
_ANSWERS = (
    "Start small with {t}: one short session a week is enough to see whether you like it.",
    "{T} is easiest with a clear goal. Pick one thing to learn first and ask for help early.",
    "Most people spend an hour or two a week on {t}; more is fine once it becomes a habit.",
    "A good first step with {t} is a free local class or a beginner's guide from the library.",
    "For a {who}, keep {t} concrete: one example, one try, then talk about what happened.",
    "The usual mistake with {t} is doing too much at once. Slow, regular practice works better.",
    "You're right, my last answer was about {u}. For {t}, begin with the basics and build up.",
    "{T} costs little to try: borrow what you need before you buy anything.",
)


def dialogue_field(task: Task) -> str | None:
    return next((k for k, kind in task.fields.items() if kind == "messages"), None)


def is_chat_task(task: Task) -> bool:
    """No label to write, and a field that holds a dialogue: multi-turn chat data."""
    return task.label_field is None and dialogue_field(task) is not None


def _chat_topics(task: Task) -> list[str]:
    """The shots' topics, their dialogues' turns read as the texts they are."""
    field = dialogue_field(task) or ""
    turns: list[dict[str, Any]] = []
    for shot in task.shots:
        dialogue = shot.get(field)
        if isinstance(dialogue, list):
            turns += [
                {"content": m["content"]}
                for m in dialogue
                if isinstance(m, dict) and isinstance(m.get("content"), str)
            ]
    return _topics(replace(task, shots=turns))


def plant_in_turn(item: dict[str, Any], task: Task, fn: Callable[[str], str]) -> dict[str, Any]:
    """The item with its dialogue's first user turn rewritten by ``fn`` (a fault
    planted where a filter must find it: PII in a later turn is as much a leak)."""
    field = dialogue_field(task)
    turns = item.get(field) if field else None
    if not isinstance(turns, list):
        return item
    out = [dict(m) for m in turns]
    for m in out:
        if m.get("role") == "user" and isinstance(m.get("content"), str):
            m["content"] = fn(m["content"])
            break
    return {**item, field: out}  # type: ignore[dict-item]


def compose_dialogue(task: Task, rng: Random) -> dict[str, Any]:
    """One item with a new dialogue in the task's dialogue field."""
    t, u = rng.sample(_chat_topics(task), 2)
    values = {"t": t, "u": u, "T": t[0].upper() + t[1:], "who": rng.choice(_WHO)}
    turns: list[dict[str, str]] = []
    if rng.random() < 0.3:
        turns.append({"role": "system", "content": rng.choice(_SYSTEMS)})
    asks = [rng.choice(_OPENERS), *rng.sample(_FOLLOW_UPS, rng.randint(0, 3))]
    answers = rng.sample(_ANSWERS, len(asks))
    for ask, answer in zip(asks, answers, strict=True):
        turns.append({"role": "user", "content": ask.format(**values)})
        turns.append({"role": "assistant", "content": answer.format(**values)})
    if rng.random() < BROKEN_SHARE:
        del turns[-1]  # stops on the user's turn, the answer never written
    return {dialogue_field(task) or "messages": turns}
