"""Eval items injected into a run never reach an export; `synth contamination FILE`."""

from __future__ import annotations

import json

from click.testing import CliRunner
from conftest import DATA, write_jsonl

from synth.cli import cli
from synth.export import export
from synth.runner import run
from synth.seeds import read_seeds

GSM8K = DATA / "gsm8k" / "test.jsonl"

FILTERS = f"""
[[filters]]
kind = "contamination"
eval_sets = [{{ name = "gsm8k", path = "{GSM8K}", field = "question" }}]
"""


def _questions(n: int) -> list[str]:
    with GSM8K.open() as f:
        return [json.loads(line)["question"] for _, line in zip(range(n), f, strict=False)]


def test_verbatim_and_lightly_edited_gsm8k_questions_are_rejected_and_never_exported(
    sim_project, sim, tmp_path
):
    # A user whose seed rows are (unknowingly) GSM8K test questions: every item the
    # simulator writes is a verbatim or a one-or-two-word-edited copy of one of them.
    write_jsonl(sim_project.seeds, [{"text": q, "label": "math"} for q in _questions(40)])
    config_text = sim_project.config_path.read_text()
    config_text = config_text.replace('[[slices]]\nname = "urgent"', '[[ignored]]\nname = "urgent"')
    start = config_text.index("[[ignored]]")
    end = config_text.index("[generate]")
    config_text = config_text[:start] + config_text[end:]
    config_text = config_text.replace("per_label = 6", "per_label = 45")
    config_text = config_text.replace("max_calls = 200", "max_calls = 8")
    start = config_text.index("[[filters]]")
    end = config_text.index("[review]")
    config_text = config_text[:start] + FILTERS + "\n" + config_text[end:]
    sim_project.config_path.write_text(config_text)
    sim.configure(p_exact_dup=0.5, p_near_dup=0.5)
    config = sim_project.config()
    with sim_project.store() as store:
        store.examples.add_seeds(read_seeds(sim_project.seeds, config).seeds)
    summary = run(config)
    assert summary.status == "stopped" and summary.candidates >= 20
    with sim_project.store() as store:
        verdicts = store.conn.execute(
            "SELECT e.status, e.rejected_by, d.reason FROM examples e JOIN decisions d"
            " ON d.example_id = e.id WHERE e.source != 'real'"
        ).fetchall()
        exported = export(store, config, tmp_path / "out.jsonl")
    assert len(verdicts) == summary.candidates
    assert all(status == "rejected" and by == "contamination" for status, by, _ in verdicts)
    assert all(
        reason.startswith("contamination: ") and "gsm8k" in reason for *_, reason in verdicts
    )
    rows = [json.loads(line) for line in exported.path.read_text().splitlines()]
    assert [r for r in rows if r["provenance"]["source"] != "real"] == []


def test_contamination_command_lists_hits_and_fails(project, tmp_path):
    project.write_config(extra=FILTERS)
    questions = _questions(3)
    rows = [
        {"text": questions[0], "label": "math"},
        {"text": "my card has still not arrived, what should I do", "label": "card_arrival"},
        {"text": questions[1].replace("How many", "How much"), "label": "math"},
        {"text": "what is the exchange rate for euros today", "label": "exchange_rate"},
        {"text": questions[2], "label": "math"},
    ]
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    result = CliRunner().invoke(
        cli, ["--config", str(project.config_path), "contamination", str(data)]
    )
    assert result.exit_code == 1
    hit_rows = {line.split("\t")[0] for line in result.stdout.splitlines()}
    assert hit_rows == {f"{data.absolute()}:{n}" for n in (1, 3, 5)}
    assert all("\tgsm8k\t" in line for line in result.stdout.splitlines())
    clean = write_jsonl(tmp_path / "clean.jsonl", [rows[1], rows[3]])
    ok = CliRunner().invoke(
        cli, ["--config", str(project.config_path), "contamination", str(clean)]
    )
    assert ok.exit_code == 0 and ok.stdout == ""


def test_contamination_command_needs_the_filter(project, tmp_path):
    # Misconfigured (2) is not contaminated (1): a pipeline can tell them apart.
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "hello there", "label": "x"}])
    result = CliRunner().invoke(
        cli, ["--config", str(project.config_path), "contamination", str(data)]
    )
    assert result.exit_code == 2 and 'no [[filters]] kind = "contamination"' in result.output


def test_contamination_command_exit_status_when_it_cannot_check(project, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "hello there", "label": "x"}])
    missing = FILTERS.replace(str(GSM8K), str(tmp_path / "no-such-eval.jsonl"))
    project.write_config(extra=missing)
    result = CliRunner().invoke(
        cli, ["--config", str(project.config_path), "contamination", str(data)]
    )
    assert result.exit_code == 2 and "no-such-eval.jsonl" in result.output
    project.write_config(extra=FILTERS)
    result = CliRunner().invoke(
        cli,
        ["--config", str(project.config_path), "contamination", "--field", "prompt", str(data)],
    )
    assert result.exit_code == 2 and "no field 'prompt'" in result.output
