"""Grounded question answering: a new passage, a question about it, and its answer.

A model asked for reading-comprehension data writes a new passage each time, not the
shots' passages again, so here each passage is composed from parts (a place, what it
is, who made it and when, what it is known for, a visitors' rule and its reason) and
the question asks for one of its facts, in one of several phrasings. The answer is
that fact as the passage states it, except for a planted share of answers that name
a fact of another passage: ungrounded, which a judge that reads the context must
catch (``grounding`` is how the simulated judge does).
"""

from __future__ import annotations

import json
import re
from random import Random
from typing import Any

from synth.sim.task import Task

CONTEXT_FIELDS = ("context", "passage", "document")
ANSWER_FIELDS = ("answer", "response", "output")
# Criteria whose name says they check the answer against the context.
GROUNDING_WORDS = ("ground", "faithful", "support")
UNGROUNDED_SHARE = 0.1

_HEADS = "Bel Cor Dun Esk Fal Gar Hol Ith Kel Lor Mar Nor Ost Pel Ros Tav Vel Wen Ash Brin".split()
_TAILS = "ford mere wick dale holm stead bury ton haven moor gate field".split()
_KINDS = (
    "lighthouse",
    "water mill",
    "stone bridge",
    "abbey",
    "observatory",
    "market hall",
    "walled garden",
    "toy museum",
    "fishing harbour",
    "chapel",
    "open-air theatre",
    "railway station",
    "windmill",
    "botanical glasshouse",
)
_FIRST = "Ada Bram Clara Dmitri Elin Farid Greta Hugo Ines Jonas Kaia Lev Mira Nils Orla".split()
_LAST = "Ashdown Brell Carrow Dimmock Fenwick Galt Hesketh Ivory Jessop Kerr Lusk Morrow".split()
_FEATURES = (
    "painted ceiling",
    "copper roof",
    "spiral staircase",
    "clock tower",
    "rose beds",
    "iron gates",
    "stained glass",
    "brass telescope",
    "carved doors",
    "summer concerts",
    "model trains",
    "old millstones",
)
_SEASONS = ("spring", "summer", "autumn", "winter")
_RULES = (
    ("book a place in advance", "the rooms hold only twenty people at a time"),
    ("leave their dogs outside", "the floors are of soft old wood"),
    ("keep to the marked paths", "rare orchids grow along the walls"),
    ("wear flat shoes", "the stone steps are worn and slippery"),
    ("switch off their phones", "the instruments inside are sensitive to radio signals"),
    ("come with an adult if under fourteen", "the upper galleries have low railings"),
)
# (question phrasings, answer) per fact; {s} is the subject, other names its parts.
_QUESTIONS: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        (
            "Who built {s}, and in which year?",
            "In what year did {person} finish building {s}?",
            "Which builder put up {s} near {place}?",
        ),
        "{person} built it in {year}.",
    ),
    (
        (
            "What is {s} best known for?",
            "Which two things draw people to {s}?",
            "Why do visitors to {place} seek out its {kind}?",
        ),
        "Its {feature} and its {feature2}.",
    ),
    (
        (
            "How many people come to see {s} each {season}?",
            "Roughly how large is the {season} crowd at {s}?",
            "What number of visitors does {s} draw in {season}?",
        ),
        "About {n} people every {season}.",
    ),
    (
        (
            "Why must visitors to {s} {rule}?",
            "What reason does the passage give for asking visitors to {rule}?",
            "Visitors at {place} have to {rule}: why is that?",
        ),
        "Because {reason}.",
    ),
)


def context_field(task: Task) -> str | None:
    return next((n for n in CONTEXT_FIELDS if n in task.fields), None)


def is_qa_task(task: Task) -> bool:
    """No label to write, a question, a context and an answer: grounded QA data."""
    answer = next((n for n in ANSWER_FIELDS if n in task.fields), None)
    return (
        task.label_field is None
        and task.text_field is not None
        and None
        not in (
            context_field(task),
            answer,
        )
    )


def _facts(rng: Random) -> dict[str, Any]:
    place = rng.choice(_HEADS) + rng.choice(_TAILS)
    kind = rng.choice(_KINDS)
    feature, feature2 = rng.sample(_FEATURES, 2)
    rule, reason = rng.choice(_RULES)
    return {
        "place": place,
        "kind": kind,
        "s": f"the {place} {kind}",
        "person": f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
        "year": rng.randint(1620, 1960),
        "feature": feature,
        "feature2": feature2,
        "season": rng.choice(_SEASONS),
        "n": f"{rng.randint(3, 95) * 100:,}",
        "rule": rule,
        "reason": reason,
    }


def _passage(f: dict[str, Any]) -> str:
    return (
        f"The {f['kind']} at {f['place']} was built in {f['year']} by {f['person']}. It is"
        f" best known for its {f['feature']} and its {f['feature2']}, and about {f['n']}"
        f" people come to see it every {f['season']}. Visitors must {f['rule']}, because"
        f" {f['reason']}."
    )


def compose_qa(task: Task, rng: Random) -> dict[str, Any]:
    """One item's context, question and answer, by the task's field names."""
    facts = _facts(rng)
    phrasings, answer = rng.choice(_QUESTIONS)
    question = rng.choice(phrasings).format(**facts)
    # A planted share answers with the facts of another passage.
    told = _facts(rng) if rng.random() < UNGROUNDED_SHARE else facts
    item: dict[str, Any] = {}
    if task.text_field:
        item[task.text_field] = question[0].upper() + question[1:]
    item[context_field(task) or "context"] = _passage(facts)
    answer_field = next((n for n in ANSWER_FIELDS if n in task.fields), "answer")
    item[answer_field] = answer.format(**told)
    return item


_WORD = re.compile(r"[^\W_]+")


def grounding(context: str, answer: str) -> tuple[int, str]:
    """How much of the answer the context states. A number or a name (a capitalised
    word past the first) the context lacks is an unsupported fact: 1. Otherwise the
    share of the answer's longer words found in the context scales the score."""
    found = _WORD.findall(answer)
    have = {w.lower() for w in _WORD.findall(context)}
    facts = [w for i, w in enumerate(found) if w.isdigit() or (i > 0 and w[:1].isupper())]
    missing = [w for w in facts if w.lower() not in have]
    if missing:
        return 1, f"The context does not say {missing[0]!r}."
    words = {w.lower() for w in found if len(w) > 3 or w.isdigit()}
    if not words:
        return 3, "The answer is too short to check against the context."
    share = len(words & have) / len(words)
    # Strict, as the rubric asks: a claim half from elsewhere is not half grounded.
    score = 5 if share == 1 else 4 if share >= 0.8 else 2 if share >= 0.6 else 1
    return score, f"{share:.0%} of the answer's words are in the context."


def candidate_grounding(row: Any, context: str | None) -> tuple[int, str] | None:
    """The grounding score of a judge prompt's candidate: its answer against the
    context line of the prompt, else its own context field; None without either."""
    if not isinstance(row, dict):
        return None
    answer = next((row[n] for n in ANSWER_FIELDS if isinstance(row.get(n), str)), None)
    if context is None:
        context = next((row[n] for n in CONTEXT_FIELDS if isinstance(row.get(n), str)), None)
    if answer is None or context is None:
        return None
    return grounding(context, answer)


def context_line(line: str) -> str | None:
    """The context of a ``Context: "..."`` line (a JSON string), else None."""
    if not line.startswith("Context:"):
        return None
    try:
        value = json.loads(line[len("Context:") :].strip())
    except ValueError:
        return None
    return value if isinstance(value, str) else None
