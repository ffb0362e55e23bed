"""The simulated judge reads the bundled judge prompts as synth renders them.

The simulator's judge finds what a judge prompt shows by markers in its text: the
``Candidate:`` line, example rows one JSON object per line, ``Label <name>`` headings
and ``Slice <name>: <description>`` lines (synth/sim/judge.py). A template edit that
drops one leaves every judge test talking to a judge that reads nothing: it grades an
empty candidate against no examples, and the tests pass or fail for the wrong reason.
So the prompts are rendered here by synth's own JudgeStage from the bundled
config.toml, rubric, templates and seeds, and the simulated judge must find in them
what was rendered, and answer what synth's judge parses.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from random import Random
from typing import Any

import pytest
from conftest import ROOT

from synth.config import load_config
from synth.filters.rubric import RubricParams
from synth.generate import SeedPool
from synth.judge.grading import GRADE, LABEL, JudgeStage
from synth.plan import all_labels
from synth.records import DEFAULT_SLICE, Candidate, CellKey
from synth.seeds import read_seeds
from synth.sim.judge import candidate_text, grade, judge_kind, read_prompt
from synth.store import Store


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JudgeStage]:
    """The bundled project's judge stage, over a store holding the bundled seeds."""
    config = load_config(ROOT / "config.toml")
    with Store(tmp_path_factory.mktemp("bundled") / "synth.db") as store:
        store.examples.add_seeds(read_seeds(ROOT / "seeds" / "banking.jsonl", config).seeds)
        spec = next(f for f in config.filters if isinstance(f, RubricParams))
        ctx = config.filter_context(all_labels(config, store.examples.cell_counts()))
        yield JudgeStage(spec, config, store, SeedPool.from_rows(store.examples.seeds()), ctx)


def _body(stage: JudgeStage, kind: str, example: dict[str, Any], slice_: str) -> dict[str, Any]:
    """The judge request about ``example``, as the client puts it on the wire."""
    candidate = Candidate(
        id="ex_template0001",
        run_id="",
        cell=CellKey(slice=slice_, label=example["label"]),
        text=example["text"],
        data=example,
        llm_call_id="",
        index=0,
        template="",
        template_sha="",
        model="",
    )
    call = stage._call(kind, candidate, stage.models[0], 0)
    return {"model": call["model"], "messages": call["messages"], **call["params"]}


def test_the_simulated_judge_reads_the_bundled_rubric_grade_prompt(stage):
    label = stage.labels[-1]
    shown = stage.examples[label][: stage.params.references]
    body = _body(stage, GRADE, shown[0], "urgent")

    assert judge_kind(body) == "rubric_grade"
    assert candidate_text(body) == shown[0]["text"]
    prompt = read_prompt(body)
    assert prompt.candidate == shown[0]["text"]
    assert [text for _, text in prompt.rows] == [r["text"] for r in shown]

    reply = json.loads(grade(body, Random(0)))
    graded = stage._parse_grade(reply, "sim", 0, "call")  # raises if a criterion is missing
    criteria = [c.name for c in stage.rubric.rubric.criteria]
    assert list(graded.scores) == criteria
    # The candidate is one of the label's examples shown: the examples were read.
    assert graded.scores["label_fidelity"] == 5
    unread = [c for c in criteria if graded.rationales[c] == "Judged on its overall quality."]
    assert unread == [], "criteria the simulated judge has no heuristic for"


def test_the_simulated_judge_reads_the_bundled_label_check_prompt(stage):
    shown = {
        name: [r["text"] for r in stage.examples[name][: stage.params.label_examples]]
        for name in stage.labels
    }
    for label in stage.labels:
        body = _body(stage, LABEL, stage.examples[label][0], DEFAULT_SLICE)

        assert judge_kind(body) == "label_check"
        assert candidate_text(body) == shown[label][0]
        prompt = read_prompt(body)
        assert prompt.candidate == shown[label][0]
        read: dict[str | None, list[str]] = {}
        for heading, text in prompt.rows:
            read.setdefault(heading, []).append(text)
        assert read == shown
        assert prompt.slices == stage.slices

        answer = stage._parse_label(json.loads(grade(body, Random(0))), "sim", 0, "call")
        # The candidate is one of the examples shown under its label's heading.
        assert answer.label == label
        assert answer.slice in stage.slices
