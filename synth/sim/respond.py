"""Alternative responses, for preference pairs: of differing quality on purpose.

A request is one when its ``response_format`` is a JSON schema named
``alternative_response`` (synth.alternatives) with one string property, the response
field. The simulator answers the ``Prompt: {...}`` line's instruction either well (a
few sentences on a word of the instruction, as its instruction writer does) or
poorly: a hedge that opens "As an AI" and says nothing, which a judge faults on sight
(the simulated judge reads a planted defect in a response field as a judge would).
Three replies in five are poor, so most prompts get a pair with a clear gap, and
some a near tie that ``pairs.min_gap`` keeps out of exports.
"""

from __future__ import annotations

import json
import re
from random import Random
from typing import Any

SCHEMA_NAME = "alternative_response"
P_POOR = 0.6
_WORD = re.compile(r"[A-Za-z]{5,}")
_GOOD = (
    "{T} is easiest to understand one step at a time.",
    "Start with the basics of {t} and practise them daily.",
    "A clear example makes {t} much easier to follow.",
    "Most questions about {t} come down to a few simple ideas.",
)
_POOR = (
    "As an AI, I would say it depends on many things.",
    "As an AI, I cannot really say; there are many views on this.",
    "As an AI, I think that is a good question with no single answer.",
)


def respond_field(body: dict[str, Any]) -> str | None:
    """The response field of an alternative-response request, else None."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict) or spec.get("name") != SCHEMA_NAME:
        return None
    props = (spec.get("schema") or {}).get("properties") or {}
    return next(iter(props), None) if isinstance(props, dict) else None


def respond(body: dict[str, Any], field: str, rng: Random) -> str:
    """The reply content: one response, good or poor."""
    prompt: dict[str, Any] = {}
    for m in body.get("messages") or []:
        content = m.get("content") if isinstance(m, dict) else None
        for line in str(content or "").splitlines():
            if line.startswith("Prompt:"):
                try:
                    prompt = json.loads(line[len("Prompt:") :])
                except ValueError:
                    prompt = {}
    words = [w.lower() for v in prompt.values() if isinstance(v, str) for w in _WORD.findall(v)]
    topic = rng.choice(words) if words else "the task"
    if rng.random() < P_POOR:
        text = rng.choice(_POOR)
    else:
        lines = rng.sample(_GOOD, 2)
        text = " ".join(x.format(t=topic, T=topic.capitalize()) for x in lines)
    return json.dumps({field: text}, ensure_ascii=False)
