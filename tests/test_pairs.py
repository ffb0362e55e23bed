"""Preference pairs: a real run to quota, more responses judged, DPO export, and both
sides of every pair traceable with `synth show`."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from shapes import bundled_project, synth_cli

from synth.alternatives import choose_pair
from synth.cli import cli
from synth.config import load_config
from synth.errors import ConfigError
from synth.store.pairs import Response

PAIRS = '\n[pairs]\nresponses = 3\ntemplate = "respond.md.j2"\nmin_gap = 0.5\n'


SEEDS = ("instruction.jsonl", "instruction_eval.jsonl")


def _project(tmp_path: Path, base_url: str, extra: str = PAIRS) -> Path:
    """The bundled instruction project with pairs on, pointed at ``base_url``."""
    config = bundled_project(tmp_path, "instruction", SEEDS, base_url)
    text = config.read_text(encoding="utf-8")
    # A smaller project: the missing task type to 12 rows, the other to its 40 seeds.
    text = text.replace("per_label = 48", "per_label = 12")
    config.write_text(text + extra, encoding="utf-8")
    return config


def test_the_best_and_the_worst_judged_responses_make_the_pair() -> None:
    responses: list[Response] = [
        {"id": "own", "score": 4.0},
        {"id": "a1", "score": 2.5},
        {"id": "a2", "score": None},  # the judge failed: not ranked
        {"id": "a3", "score": 4.5},
    ]
    pair = choose_pair("own", responses, "run_1")
    assert pair is not None
    assert (pair["chosen_id"], pair["rejected_id"], pair["gap"]) == ("a3", "a1", 2.0)
    assert pair["responses"] == 3
    # A tie: the row's own response is chosen, the latest alternative rejected.
    tie = choose_pair("own", [{"id": "own", "score": 4.0}, {"id": "a1", "score": 4.0}], "r")
    assert tie is not None and (tie["chosen_id"], tie["rejected_id"], tie["gap"]) == (
        "own",
        "a1",
        0.0,
    )
    assert (
        choose_pair("own", [{"id": "own", "score": 4.0}, {"id": "a1", "score": None}], "r") is None
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("\n[pairs]\nresponses = 1\n", "pairs: Value error, a pair needs 2 responses"),
        ("\n[pairs]\nresponses = 2\n", "pairs need a template"),
        (
            '\n[pairs]\nresponses = 2\ntemplate = "respond.md.j2"\nfield = "instruction"\n',
            "pairs.field: 'instruction' is the text",
        ),
        (
            '\n[pairs]\nresponses = 2\ntemplate = "respond.md.j2"\nfield = "reply"\n',
            "pairs.field: 'reply' is not a string field",
        ),
    ],
)
def test_a_pairs_section_that_cannot_work_is_refused(
    tmp_path: Path, extra: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_project(tmp_path, "http://127.0.0.1:9/v1", extra))


def test_pairs_without_a_judge_are_refused(tmp_path: Path) -> None:
    path = _project(tmp_path, "http://127.0.0.1:9/v1")
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: text.index('[[filters]]\nkind = "rubric"')] + PAIRS, encoding="utf-8")
    with pytest.raises(ConfigError, match="pairs.responses: pairs are ranked by the rubric"):
        load_config(path)


def test_a_run_to_quota_makes_judged_pairs_that_export_as_dpo_and_trace_back(
    tmp_path: Path, sim: object
) -> None:
    config = _project(tmp_path, sim.base_url)  # type: ignore[attr-defined]

    synth = synth_cli(config)

    synth("seeds", "import", str(tmp_path / "seeds" / "instruction.jsonl"))
    out = synth("run", "--quiet")
    assert "finished" in out, out
    db = sqlite3.connect(config.parent / "instruction.db")
    counted = "status IN ('accepted', 'review_pending') AND outcome = 'keep'"
    prompts = [
        r[0] for r in db.execute(f"SELECT id FROM examples WHERE source != 'real' AND {counted}")
    ]
    assert len(prompts) == 12  # the quota, exact: alternatives never count toward it
    assert f"{2 * 12} more responses judged, 12 pairs made" in out, out

    # Two alternatives per accepted row, each a stored row whose parent is the row,
    # made by a call of its own and graded by the same rubric.
    alternatives = db.execute(
        "SELECT id, parent_ids_json, llm_call_id FROM examples WHERE status = 'alternative'"
    ).fetchall()
    assert len(alternatives) == 24
    assert sorted(json.loads(p)[0] for _, p, _ in alternatives) == sorted(prompts * 2)
    purposes = {
        db.execute("SELECT purpose FROM llm_calls WHERE id = ?", (c,)).fetchone()[0]
        for _, _, c in alternatives
    }
    assert purposes == {"respond"}
    graded = db.execute(
        "SELECT count(DISTINCT d.example_id) FROM decisions d JOIN examples e"
        " ON e.id = d.example_id WHERE e.status = 'alternative' AND d.filter = 'rubric'"
    ).fetchone()[0]
    assert graded == 24
    # Alternatives stay out of the quotas, the funnel and the dataset's exports.
    alpaca = tmp_path / "alpaca.jsonl"
    synth("export", "--out", str(alpaca), "--format", "alpaca")
    assert len(alpaca.read_text(encoding="utf-8").splitlines()) == 40 + 12
    assert "alternative" not in synth("status")

    # The simulator writes responses of differing quality: most pairs have a clear
    # gap, some are near ties, which the export leaves out.
    gaps = [g for (g,) in db.execute("SELECT gap FROM pairs")]
    assert len(gaps) == 12
    wide = [g for g in gaps if g >= 0.5]
    assert 0 < len(wide) < 12, gaps
    dpo = tmp_path / "pairs.jsonl"
    assert f"{len(wide)} preference pairs" in synth("export", "--out", str(dpo), "--format", "dpo")
    lines = [json.loads(x) for x in dpo.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == len(wide)
    for line in lines:
        assert set(line) == {
            "prompt",
            "chosen",
            "rejected",
            "prompt_id",
            "chosen_id",
            "rejected_id",
            "chosen_score",
            "rejected_score",
            "score_gap",
        }
        assert line["chosen"] != line["rejected"]
        assert line["chosen_score"] - line["rejected_score"] == pytest.approx(line["score_gap"])
        assert line["score_gap"] >= 0.5
        prompt = json.loads(
            db.execute(
                "SELECT data_json FROM examples WHERE id = ?", (line["prompt_id"],)
            ).fetchone()[0]
        )
        assert line["prompt"].startswith(prompt["instruction"])
        # Either side, shown, names the other and the pair; each is a stored row with
        # its own call, model and template, and the alternative names its prompt row.
        for side, other in (("chosen", "rejected"), ("rejected", "chosen")):
            shown = synth("show", line[f"{side}_id"])
            assert f"{side:9}{line[f'{side}_id']}" in shown and "(this row)" in shown
            assert line[f"{other}_id"] in shown
            assert "provenance: model" in shown and "rubric" in shown
            if line[f"{side}_id"] != line["prompt_id"]:
                assert "status alternative" in shown and "respond.md.j2" in shown
                assert f"made from:\n  {line['prompt_id']}" in shown
        as_json = json.loads(synth("show", line["rejected_id"], "--json"))
        assert as_json["pair"]["chosen_id"] == line["chosen_id"]

    # A second run has nothing left to do: no request at all.
    before = db.execute("SELECT count(*) FROM llm_calls").fetchone()[0]
    assert "0 more responses judged" in synth("run", "--quiet")
    assert db.execute("SELECT count(*) FROM llm_calls").fetchone()[0] == before


def test_dpo_export_needs_pairs_and_no_version(tmp_path: Path) -> None:
    config = _project(tmp_path, "http://127.0.0.1:9/v1", "")
    seeds = str(tmp_path / "seeds" / "instruction.jsonl")
    assert (
        CliRunner().invoke(cli, ["--config", str(config), "seeds", "import", seeds]).exit_code == 0
    )
    result = CliRunner().invoke(
        cli, ["--config", str(config), "export", "--out", str(tmp_path / "x"), "--format", "dpo"]
    )
    assert result.exit_code != 0
    assert "pairs.responses: no preference pairs are made" in result.output
    result = CliRunner().invoke(
        cli,
        ["--config", str(config), "export", "--out", "x", "--format", "dpo", "--version", "v1"],
    )
    assert result.exit_code == 2 and "a version holds rows" in result.output
