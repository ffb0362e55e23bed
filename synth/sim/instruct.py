"""Instruction -> response items: new tasks composed from the seeds' topics.

Rewording a seed instruction gives near copies of it (an instruction is short, and
the paraphrase tables are about support messages), which dedup and diversity rightly
reject. A model asked for new tasks writes new ones: here each instruction joins a
task frame, a topic (a word of the shots, or a stock one), an audience and a
constraint, so instructions differ in more than one place, and the response is
written for that instruction. A prompt that names a classification task type gets
classification tasks, with an input to classify and the class as the response.
"""

from __future__ import annotations

import re
from random import Random
from typing import Any

from synth.sim.task import Task

RESPONSE_FIELDS = ("response", "output", "answer", "completion")
INPUT_FIELDS = ("input", "context")
_WORD = re.compile(r"[A-Za-z]{6,}")
_COMMON = frozenset(
    """following between without because before should another something please
    generate provide explain describe write answer given sentence question example
    examples response output instruction through people""".split()
)
_TOPICS = (
    "composting",
    "sourdough bread",
    "solar panels",
    "budgeting",
    "chess openings",
    "volcanoes",
    "time management",
    "public speaking",
    "houseplants",
    "cycling to work",
    "password security",
    "the water cycle",
    "jazz music",
    "recycling",
    "marathon training",
    "saving energy at home",
    "learning a language",
    "remote work",
    "bird watching",
    "first aid",
    "photosynthesis",
    "inflation",
    "coral reefs",
    "job interviews",
    "meal planning",
    "electric cars",
    "sleep habits",
    "board games",
    "urban gardening",
    "the printing press",
    "meditation",
    "renting a flat",
    "team meetings",
    "beekeeping",
)
_FRAMES = (
    "Explain how {t} works",
    "Write a short poem about {t}",
    "List the main benefits of {t}",
    "Give a step-by-step guide to getting started with {t}",
    "Summarise the history of {t}",
    "Suggest three names for a blog about {t}",
    "Write a tweet announcing a workshop on {t}",
    "Outline a one-hour lesson plan on {t}",
    "Draft a polite email asking a colleague for advice on {t}",
    "Create a multiple-choice quiz question about {t}",
    "Name two common misconceptions about {t}",
    "Propose a weekend project involving {t}",
    "Argue briefly for more public funding of {t}",
    "Write a product description for a gadget that helps with {t}",
    "Describe what a beginner gets wrong about {t}",
    "Compare {t} with {u}",
)
_AUDIENCES = (
    "",
    " for a ten-year-old",
    " for a busy manager",
    " for a complete beginner",
    " for a retired engineer",
    " for a high-school class",
    " for readers of a local newspaper",
)
_CONSTRAINTS = (
    "",
    " Keep it under 80 words.",
    " Use a friendly tone.",
    " Answer in bullet points.",
    " Include one concrete example.",
    " Avoid technical jargon.",
    " End with a question for the reader.",
)
_CLASSIFY = (
    ("is it positive or negative?", ("positive", "negative")),
    ("is it a fact or an opinion?", ("fact", "opinion")),
    ("label it as a question, a complaint or praise.", ("question", "complaint", "praise")),
    ("decide whether its register is formal or informal.", ("formal", "informal")),
)
_LEADS = (
    "Read the {k} below, which a customer wrote about {t}:",
    "Here is a {k} from an online forum on {t};",
    "A friend forwarded me this {k} about {t}, so",
    "Our team collects every {k} mentioning {t}. For the one given,",
    "Looking at this short {k} on the subject of {t},",
    "Below is one {k} from a survey about {t}:",
)
_KINDS = ("review", "comment", "post", "note", "reply", "remark", "message")
_SAYINGS = {
    "positive": "I tried {t} last month and it was better than I hoped.",
    "negative": "Honestly, {t} was a waste of my weekend and my money.",
    "fact": "{T} has been studied by researchers for many decades.",
    "opinion": "{T} is the most overrated hobby of our time.",
    "question": "Where can I learn more about {t} near me?",
    "complaint": "The course on {t} I paid for never started on time.",
    "praise": "Your guide to {t} was clear, kind and genuinely useful.",
    "formal": "We would be grateful for your assessment of {t}.",
    "informal": "honestly {t} is kinda fun once you get into it lol",
}
_POINTS = (
    "{T} rewards a little patience at the start.",
    "The basics of {t} take an afternoon to learn.",
    "Most people find {t} easier with a friend or a group.",
    "A small daily habit beats a big effort once a month.",
    "Good sources on {t} explain the why, not only the how.",
    "Mistakes with {t} are normal and teach the most.",
    "Measure progress so you can see what works.",
)


def is_instruction_task(task: Task) -> bool:
    """No label to write, and a response field beside the text: instruction data."""
    return task.label_field is None and _field(task, RESPONSE_FIELDS) is not None


def _field(task: Task, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in task.fields), None)


def _topics(task: Task) -> list[str]:
    """Words of the shots worth writing a task about, then the stock topics."""
    found: dict[str, None] = {}
    for shot in task.shots:
        for value in shot.values():
            if isinstance(value, str):
                for word in _WORD.findall(value):
                    if word.lower() not in _COMMON:
                        found[word.lower()] = None
    return [*found, *_TOPICS]


def compose(task: Task, rng: Random, classify: bool) -> dict[str, Any]:
    """One item's instruction, input and response, by the task's field names."""
    topics = _topics(task)
    t, u = rng.sample(topics, 2)
    values: dict[str, str] = {"input": ""}
    if classify:
        frame, classes = rng.choice(_CLASSIFY)
        answer = rng.choice(classes)
        lead = rng.choice(_LEADS).format(k=rng.choice(_KINDS), t=t)
        values["instruction"] = f"{lead} {frame}" + rng.choice(_CONSTRAINTS)
        values["input"] = _SAYINGS[answer].format(t=t, T=t.capitalize())
        values["response"] = answer.capitalize() + "."
    else:
        head = rng.choice(_FRAMES).format(t=t, u=u) + rng.choice(_AUDIENCES) + "."
        values["instruction"] = head + rng.choice(_CONSTRAINTS)
        points = rng.sample(_POINTS, rng.randint(2, 4))
        lines = [p.format(t=t, T=t.capitalize()) for p in points]
        bullets = "bullet" in values["instruction"]
        values["response"] = "\n".join(f"- {x}" for x in lines) if bullets else " ".join(lines)
    item: dict[str, Any] = {}
    response, given = _field(task, RESPONSE_FIELDS), _field(task, INPUT_FIELDS)
    if task.text_field:
        item[task.text_field] = values["instruction"]
    if given:
        item[given] = values["input"]
    if response:
        item[response] = values["response"]
    return item
