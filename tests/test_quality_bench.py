"""The quality benchmark's labelled set: every kind, with answers that hold by
construction (bench/qualitydata.py, built small from ../shared/data)."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter

import pytest
from conftest import DATA, ROOT

from synth.config import load_config
from synth.filters.pii import find_pii, iban_valid, luhn_valid
from synth.text import normalize_text

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data")


def _qualitydata():
    spec = importlib.util.spec_from_file_location("qualitydata", ROOT / "bench" / "qualitydata.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["qualitydata"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    qd = _qualitydata()
    project = qd.write_project(tmp_path_factory.mktemp("qbench"), qd.Sizes.small(), seed=0)
    return qd, project


def test_every_kind_is_built_with_its_expected_verdict(built):
    qd, project = built
    kinds = Counter(r.kind for r in project.rows)
    assert set(kinds) == set(qd.KINDS)
    assert min(kinds.values()) >= 40, kinds
    for row in project.rows:
        if row.kind in ("clean", "boilerplate", "same_domain"):
            assert row.expected == "keep"
        elif row.kind == "pii":
            assert row.expected == "redact"  # the bundled config's action
        elif row.kind == "eval_near_miss":
            assert row.expected == "info"
        else:
            assert row.expected == "reject", row


def test_files_line_up_and_the_config_is_the_bundled_chain(built):
    qd, project = built
    candidates = [json.loads(x) for x in project.candidates.read_text().splitlines()]
    answers = [
        json.loads(x) for x in (project.config.parent / "answers.jsonl").read_text().splitlines()
    ]
    assert [c["text"] for c in candidates] == [r.text for r in project.rows]
    assert [a["kind"] for a in answers] == [r.kind for r in project.rows]
    assert all(set(c) == {"text", "label"} for c in candidates)
    config = load_config(project.config)
    bundled = load_config(ROOT / "config.toml")
    kinds = [f.kind for f in config.filters]
    assert kinds == [f.kind for f in bundled.filters if f.kind != "rubric"]
    for ours, theirs in zip(config.filters, bundled.filters, strict=False):
        if ours.kind != "contamination":
            assert ours == theirs
        else:
            assert ours.model_copy(update={"eval_sets": ()}) == theirs.model_copy(
                update={"eval_sets": ()}
            )
            assert {s.name for s in ours.eval_sets} >= {"banking77-test", "gsm8k", "humaneval"}


def test_copies_come_after_what_they_copy(built):
    _, project = built
    seeds = {normalize_text(json.loads(x)["text"]) for x in project.seeds.read_text().splitlines()}
    for line, row in enumerate(project.rows, 1):
        if row.after_line is not None:
            assert row.after_line < line
            assert row.origin == "row"
        if row.kind == "exact_dup":
            original = (
                seeds
                if row.origin == "seed"
                else {normalize_text(project.rows[row.after_line - 1].text)}
            )
            assert normalize_text(row.text) in original


def test_edits_are_light_and_keep_rows_are_fresh(built):
    qd, project = built
    seeds = [json.loads(x) for x in project.seeds.read_text().splitlines()]
    seed_labels = {s["label"] for s in seeds}
    for row in project.rows:
        if row.kind == "cross_label_near_dup":
            assert row.label != row.origin_label
            assert {row.label, row.origin_label} <= seed_labels
    # Edits: 5-15 % of the tokens, measured; too short a text is never edited.
    import random

    rng = random.Random(1)
    text = "How do I turn on my new card that came in the post today?"
    for _ in range(20):
        edited = qd.light_edit(text, rng, ["blue", "account", "transfer"])
        assert edited is not None and 0.05 <= qd.edit_share(text, edited) <= 0.15
    assert qd.light_edit("Where is my card?", rng, ["blue"]) is None
    # Keep rows: more than 20 % token edits from every seed (checked the slow way on some).
    clean = [r for r in project.rows if r.kind == "clean"][:12]
    for row in clean:
        nearest = min(qd.edit_share(row.text, s["text"]) for s in seeds)
        assert nearest > qd.FRESH, row.text


def test_pii_rows_carry_valid_values_of_every_kind(built):
    _, project = built
    rows = [r for r in project.rows if r.kind == "pii"]
    assert {r.pii["kind"] for r in rows} == {
        "email",
        "phone",
        "credit_card",
        "iban",
        "ssn",
        "ip_address",
    }
    for row in rows:
        kind, value, start = row.pii["kind"], row.pii["value"], row.pii["start"]
        assert row.text[start : start + len(value)] == value
        digits = "".join(ch for ch in value if ch.isdigit())
        if kind == "credit_card":
            assert luhn_valid(digits)
        if kind == "iban":
            assert iban_valid(value)
    # The base rows carry no PII of their own: the value added is the only one.
    for row in rows:
        start, value = row.pii["start"], row.pii["value"]
        assert find_pii(row.text[:start] + row.text[start + len(value) :]) == []
