"""The simulator's judge: grades judge requests by simple, deterministic heuristics.

A request is a judge request when its ``response_format`` is a JSON schema named
``rubric_grade`` (score a candidate against a rubric) or ``label_check`` (name the
candidate's label and slice). The prompt is read as the bundled templates in
``prompts/judge/`` write it: a ``Candidate: {...}`` line, example rows one JSON object
per line, ``Label <name>`` and ``Slice <name>: <description>`` headings
(``read_prompt``; tests/test_sim_judge_templates.py fails when a bundled template
stops writing them so).

Heuristics, not a model: the tests need a judge whose verdicts are deterministic and
follow from the candidate for reasons a test can predict, so that pass, fail,
borderline and off-label candidates can be planted on purpose.

Words are compared as crude stems (lowercased, letters and digits, first five
characters), stop words dropped, a word the paraphrase engine swaps in (``vocab.py``'s
synonym table) read as the word it replaces. With C the candidate's stems:

- overlap with a set of examples = |C & stems of the examples| / |C|. The candidate's
  text is its longest string (a dialogue's turns count; a ``context`` does not).
- ``rubric_grade``: each criterion is scored by what its name says it checks:

  =========================================  =========================================
  criterion name contains                    score
  =========================================  =========================================
  ``label``, ``fidel``, ``intent``           overlap with the reference examples: >= 0.6
                                             -> 5, >= 0.45 -> 4, >= 0.3 -> 3, >= 0.15 -> 2,
                                             else 1
  ``real``, ``fluen``, ``natural``           a planted defect or under 3 words -> 1;
                                             4 to 40 words -> 5; 3 or 41 to 60 -> 4;
                                             over 60 -> 2
  ``specific``, ``detail``                   words >= 10 -> 5, >= 7 -> 4, >= 5 -> 3,
                                             >= 3 -> 2, else 1
  ``slice``                                  4 (the simulator cannot tell a slice's tone)
  ``ground``, ``faithful``, ``support``      the share of the answer's words found in
                                             its context (``qa.grounding``): all -> 5,
                                             >= 0.8 -> 4, >= 0.6 -> 2, else 1; a number
                                             or name it lacks -> 1 (the rounded mean
                                             for a candidate without both)
  anything else                              the rounded mean of the three above
  =========================================  =========================================

  A planted defect is text a real judge would fault on sight: "lorem ipsum",
  "as an ai", "placeholder", "todo", "xxx", or square brackets, in the text or in a
  response field (``response``, ``output``, ``answer``, ``completion``).
- ``label_check``: the label whose examples the candidate overlaps most (ties: the
  first listed); the slice whose description and examples share the most stems with
  the candidate, else ``default``.
- A request with ``seed`` > 0 (a judge's second and later samples) moves each
  criterion's score by -1 (p 0.2) or +1 (p 0.2), within 1..5, so samples differ
  as real ones do; sample 0 is the plain heuristic.
"""

from __future__ import annotations

import json
import re
from random import Random
from typing import Any, NamedTuple

from synth.sim.instruct import RESPONSE_FIELDS
from synth.sim.qa import CONTEXT_FIELDS, GROUNDING_WORDS, candidate_grounding, context_line
from synth.sim.vocab import EN_SYNONYMS

JUDGE_SCHEMAS = ("rubric_grade", "label_check")
_WORD = re.compile(r"[^\W_]+")
_STOP = frozenset(
    """a an the i i'm im me my mine you your we our us it its is are was were be been
    am do does did have has had can could would should will shall to of in on at for
    from with by and or but so if then than that this these those there here what when
    where why how which who whom not no yes please just still also any some get got
    there's it's don't didn't can't won't hi hello hey thanks thank""".split()
)
_DEFECTS = re.compile(r"lorem ipsum|\bas an ai\b|placeholder|\btodo\b|\bxxx\b|\[|\]", re.I)


def judge_kind(body: dict[str, Any]) -> str | None:
    """``rubric_grade`` or ``label_check`` for a judge request, else None."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    spec = fmt.get("json_schema")
    name = spec.get("name") if isinstance(spec, dict) else None
    return name if name in JUDGE_SCHEMAS else None


def _prompt(body: dict[str, Any]) -> str:
    parts = []
    for m in body.get("messages") or []:
        if isinstance(m, dict) and isinstance(m.get("content"), str):
            parts.append(m["content"])
    return "\n".join(parts)


def _text_of(row: Any) -> str:
    """The row's longest string value: its text field, whatever it is called. A
    passage the row is about is not its text (grounded QA), and a dialogue's turns
    are read as strings of their own."""
    if not isinstance(row, dict):
        return ""
    strings = [v for k, v in row.items() if isinstance(v, str) and k not in CONTEXT_FIELDS]
    for value in row.values():
        if isinstance(value, list):
            strings += [m["content"] for m in value if isinstance(m, dict) and _is_turn(m)]
    return max(strings, key=lambda s: len(s.split()), default="")


def _is_turn(m: dict[str, Any]) -> bool:
    return isinstance(m.get("content"), str) and m.get("role") in ("user", "assistant")


# A word the paraphrase engine swaps in counts as the word it replaced, as a reader
# would take "shipping" for "delivery".
_CANON: dict[str, str] = {}
for _key, _alts in EN_SYNONYMS.items():
    for _alt in _alts:
        if " " not in _alt:
            _CANON.setdefault(_alt.lower(), _key)


def stems(text: str) -> set[str]:
    words = (m.group(0).lower() for m in _WORD.finditer(text))
    return {_CANON.get(w, w)[:5] for w in words if w not in _STOP}


def overlap(text: str, examples: list[str]) -> float:
    mine = stems(text)
    if not mine:
        return 0.0
    theirs: set[str] = set()
    for e in examples:
        theirs |= stems(e)
    return len(mine & theirs) / len(mine)


def _json(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None


def candidate_text(body: dict[str, Any]) -> str | None:
    """The text of the candidate a judge request is about (None if not a judge request)."""
    if judge_kind(body) is None:
        return None
    for line in _prompt(body).splitlines():
        if line.startswith("Candidate:"):
            return _text_of(_json(line[len("Candidate:") :].strip()))
    return ""


def _scale(x: float, steps: tuple[float, float, float, float]) -> int:
    for score, bar in zip((5, 4, 3, 2), steps, strict=True):
        if x >= bar:
            return score
    return 1


def _scores(text: str, references: list[str], response: str = "") -> dict[str, tuple[int, str]]:
    words = len(text.split())
    o = overlap(text, references)
    # A response's defect gives a row away even where its instruction is the longer text.
    defect = _DEFECTS.search(text) or _DEFECTS.search(response)
    label = _scale(o, (0.6, 0.45, 0.3, 0.15))
    if defect:
        real = 1
    elif 4 <= words <= 40:
        real = 5
    elif words == 3 or 41 <= words <= 60:
        real = 4
    elif words < 3:
        real = 1
    else:
        real = 2
    specific = _scale(words, (10, 7, 5, 3))
    return {
        "label": (label, f"{o:.0%} of its content words appear in the label's examples."),
        "real": (
            real,
            f"Planted defect {defect.group(0)!r} gives it away."
            if defect
            else f"At {words} words it reads like a customer message."
            if words >= 3
            else f"At {words} words it is a fragment, not a message.",
        ),
        "specific": (specific, f"It gives {words} words of detail."),
        "slice": (4, "Nothing in it contradicts the slice."),
    }


def _pick(name: str, scores: dict[str, tuple[int, str]]) -> tuple[int, str]:
    low = name.lower()
    for keys, which in (
        (("label", "fidel", "intent"), "label"),
        (("real", "fluen", "natural"), "real"),
        (("specific", "detail"), "specific"),
        (("slice",), "slice"),
    ):
        if any(k in low for k in keys):
            return scores[which]
    mean = (scores["label"][0] + scores["real"][0] + scores["specific"][0]) / 3
    return round(mean), "Judged on its overall quality."


def _criteria(body: dict[str, Any]) -> list[str]:
    schema = body["response_format"]["json_schema"].get("schema") or {}
    props = schema.get("properties") or {}
    return [k for k in props if isinstance(k, str)]


def _enum(body: dict[str, Any], key: str) -> list[str]:
    schema = body["response_format"]["json_schema"].get("schema") or {}
    prop = (schema.get("properties") or {}).get(key) or {}
    values = prop.get("enum")
    return [str(v) for v in values] if isinstance(values, list) else []


class JudgePrompt(NamedTuple):
    """What the simulated judge finds in a judge request's prompt."""

    candidate: str
    rows: list[tuple[str | None, str]]  # (label heading, example text)
    slices: dict[str, str]  # slice name -> description


def read_prompt(body: dict[str, Any]) -> JudgePrompt:
    """The candidate's text, the example rows under their ``Label`` headings and the
    ``Slice`` lines of a judge prompt, read as the bundled templates write them."""
    candidate = ""
    rows: list[tuple[str | None, str]] = []
    slices: dict[str, str] = {}
    heading: str | None = None
    for line in _prompt(body).splitlines():
        s = line.strip()
        if s.startswith("Candidate:"):
            candidate = _text_of(_json(s[len("Candidate:") :].strip()))
        elif s.startswith("Label "):
            heading = s[len("Label ") :].split(":", 1)[0].strip()
        elif s.startswith("Slice "):
            name, _, desc = s[len("Slice ") :].partition(":")
            slices[name.strip()] = desc.strip()
        elif s.startswith("{") and s.endswith("}"):
            text = _text_of(_json(s))
            if text:
                rows.append((heading, text))
    return JudgePrompt(candidate, rows, slices)


def grade(body: dict[str, Any], rng: Random) -> str:
    """The reply content for a judge request (``judge_kind(body)`` is not None)."""
    kind = judge_kind(body)
    candidate, rows, slices = read_prompt(body)
    if kind == "label_check":
        return json.dumps(_label_answer(body, candidate, rows, slices), ensure_ascii=False)
    scores = _scores(candidate, [t for _, t in rows], _response(body))
    grounded = _grounding(body)
    jitter = _seed(body) > 0
    out = {}
    for name in _criteria(body):
        score, why = _pick(name, scores)
        if grounded is not None and any(k in name.lower() for k in GROUNDING_WORDS):
            score, why = grounded
        if jitter:
            u = rng.random()
            score = max(1, min(5, score + (-1 if u < 0.2 else 1 if u >= 0.8 else 0)))
        out[name] = {"score": score, "rationale": why}
    return json.dumps(out, ensure_ascii=False)


def _response(body: dict[str, Any]) -> str:
    """The candidate's response field (instruction data, answers), or ""."""
    for line in _prompt(body).splitlines():
        s = line.strip()
        if s.startswith("Candidate:"):
            row = _json(s[len("Candidate:") :].strip())
            if isinstance(row, dict):
                found = (row.get(k) for k in RESPONSE_FIELDS)
                return next((v for v in found if isinstance(v, str)), "")
    return ""


def _grounding(body: dict[str, Any]) -> tuple[int, str] | None:
    """The candidate's answer against its context (a ``Context:`` line, else the
    candidate's own context field); None for a candidate without both."""
    context, row = None, None
    for line in _prompt(body).splitlines():
        s = line.strip()
        context = context_line(s) if context is None else context
        if s.startswith("Candidate:"):
            row = _json(s[len("Candidate:") :].strip())
    return candidate_grounding(row, context)


def _seed(body: dict[str, Any]) -> int:
    seed = body.get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else 0


def _label_answer(
    body: dict[str, Any],
    candidate: str,
    rows: list[tuple[str | None, str]],
    slices: dict[str, str],
) -> dict[str, Any]:
    labels = _enum(body, "label") or sorted({h for h, _ in rows if h})
    by_label: dict[str, list[str]] = {label: [] for label in labels}
    for heading, text in rows:
        if heading in by_label:
            by_label[heading].append(text)
    best, best_o = (labels[0] if labels else ""), -1.0
    for label in labels:
        o = overlap(candidate, by_label[label])
        if o > best_o:
            best, best_o = label, o
    slice_names = _enum(body, "slice") or list(slices)
    mine = stems(candidate)
    chosen, shared = ("default" if "default" in slice_names else ""), 0
    for name in slice_names:
        if name == "default":
            continue
        n = len(mine & stems(slices.get(name, "")))
        if n > shared:
            chosen, shared = name, n
    if not chosen and slice_names:
        chosen = slice_names[0]
    answer: dict[str, Any] = {
        "label": best,
        "rationale": f"{best_o:.0%} of its content words appear in the examples of {best}.",
    }
    if "slice" in _criteria(body):
        answer["slice"] = chosen
    return answer
