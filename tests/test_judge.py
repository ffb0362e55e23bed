"""The rubric judge: rubric files, judge calls against the simulator over loopback
(the real openai client), aggregation, label consistency, and a full run's funnel."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3

import pytest
from conftest import ROOT

from synth.errors import ConfigError, SynthError
from synth.filters import Outcome
from synth.filters.rubric import Grade, RubricParams, aggregate
from synth.generate import SeedPool
from synth.judge.grading import JudgeReplyError, JudgeStage
from synth.judge.rubric import RubricError, load_rubric
from synth.llm.client import LLMClient
from synth.plan import all_labels
from synth.records import Candidate, CellKey, Verdict
from synth.runner import run
from synth.seeds import read_seeds

GOOD_RUBRIC = """
name = "test"
pass_threshold = 3.5
borderline = 0.5

[[criteria]]
name = "realism"
checks = "reads like a customer"
weight = 1
levels = ["a", "b", "c", "d", "e"]

[[criteria]]
name = "label_fidelity"
checks = "about the label"
weight = 2
pass_level = 4
levels = ["a", "b", "c", "d", "e"]
"""

# Strict enough that the short test run, whose rows score 4.5 to 5, sees all three
# verdicts: 5 passes, 4.75 is borderline, 4.5 fails.
STRICT = (
    GOOD_RUBRIC.replace("pass_threshold = 3.5", "pass_threshold = 4.9").replace(
        "borderline = 0.5", "borderline = 0.3"
    )
    + """
[[criteria]]
name = "specificity"
checks = "concrete detail"
levels = ["a", "b", "c", "d", "e"]
"""
)


def judge_project(project, rubric: str = GOOD_RUBRIC, filter_extra: str = "", base_url=None):
    """The test project with the bundled judge templates, a rubric and the judge last."""
    shutil.copytree(ROOT / "prompts" / "judge", project.root / "prompts" / "judge")
    (project.root / "prompts" / "rubrics").mkdir(parents=True)
    (project.root / "prompts" / "rubrics" / "test.toml").write_text(rubric)
    extra = '\n[[filters]]\nkind = "rubric"\nrubric = "prompts/rubrics/test.toml"\n' + filter_extra
    project.write_config(extra, base_url=base_url or project.config().llm.base_url)
    config = project.config()
    with project.store() as store:
        store.examples.add_seeds(read_seeds(project.seeds, config).seeds)
    return config


# -- rubric files -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("name = 'x'\npass_threshold = ", "r.toml", "not valid TOML"),
        (GOOD_RUBRIC.replace("pass_threshold = 3.5", ""), "r.toml: pass_threshold", "required"),
        (GOOD_RUBRIC.replace("borderline", "borderlin"), "r.toml: borderlin", "Extra inputs"),
        (
            GOOD_RUBRIC.replace('levels = ["a", "b", "c", "d", "e"]', 'levels = ["a"]', 1),
            "r.toml: criteria[0].levels",
            "exactly 5 anchor sentences",
        ),
        (
            GOOD_RUBRIC.replace("weight = 2", "weight = -1"),
            "r.toml: criteria[1].weight",
            "greater than 0",
        ),
        (
            GOOD_RUBRIC.replace('name = "realism"', 'name = "label"'),
            "r.toml: criteria[0].name",
            "reserved",
        ),
        (
            GOOD_RUBRIC.replace('name = "realism"', 'name = "label_fidelity"'),
            "r.toml: criteria",
            "unique",
        ),
        (
            GOOD_RUBRIC.replace("pass_level = 4", "pass_level = 9"),
            "r.toml: criteria[1].pass_level",
            "less than or equal to 5",
        ),
        (GOOD_RUBRIC.replace('checks = "about the label"', ""), "r.toml: criteria[1].checks", ""),
    ],
)
def test_a_malformed_rubric_names_file_and_key(tmp_path, text, where, message):
    path = tmp_path / "r.toml"
    path.write_text(text)
    with pytest.raises(RubricError) as e:
        load_rubric(path, "r.toml")
    assert e.value.where == where
    assert message in e.value.message


def test_the_bundled_rubric_loads_and_its_sha_is_of_the_file():
    rubric = load_rubric(ROOT / "prompts" / "rubrics" / "banking.toml")
    assert [c.name for c in rubric.criteria] == [
        "realism",
        "label_fidelity",
        "specificity",
        "slice_fit",
    ]
    assert len(rubric.sha) == 64
    assert rubric.verdict(rubric.spec.pass_threshold) == "pass"
    assert rubric.verdict(rubric.spec.pass_threshold - 0.1) == "borderline"
    assert rubric.verdict(1.0) == "fail"


def test_a_run_with_a_broken_rubric_stops_before_any_request(sim_project, sim):
    config = judge_project(sim_project, GOOD_RUBRIC.replace("weight = 2", "weight = 0"))
    with pytest.raises(RubricError, match=r"test.toml: criteria\[1\].weight"):
        run(config)
    assert sim.stats()["requests"] == 0


def test_the_judge_must_be_the_last_filter(sim_project):
    judge_project(sim_project)
    text = sim_project.config_path.read_text()
    sim_project.config_path.write_text(text + '\n[[filters]]\nkind = "exact_dedup"\n')
    with pytest.raises(ConfigError, match=r"config.toml: filters\[2\]"):
        run(sim_project.config())


# -- aggregation ----------------------------------------------------------------------


def _grade(realism: int, fidelity: int, sample: int = 0) -> Grade:
    return Grade("m", sample, "c", {"realism": realism, "label_fidelity": fidelity}, {})


@pytest.mark.parametrize(
    ("how", "grades", "score", "verdict"),
    [
        # weights 1 and 2; pass 3.5, borderline [3.0, 3.5)
        ("mean", [(5, 5)], 5.0, "pass"),
        ("mean", [(5, 1), (5, 3)], (5 + 2 * 2) / 3, "borderline"),
        ("min", [(5, 5), (3, 5), (5, 2)], (3 + 2 * 2) / 3, "fail"),
        ("min", [(4, 4), (5, 5)], 4.0, "pass"),
        ("majority", [(5, 5), (5, 5), (1, 1)], (5 + 5 + 1) / 3, "pass"),
        ("majority", [(5, 5), (1, 1)], 3.0, "borderline"),  # a tie goes to a human
        ("majority", [(1, 1), (1, 2), (5, 5)], (1 + 5 / 3 + 5) / 3, "fail"),
    ],
)
def test_aggregation_of_several_samples(tmp_path, how, grades, score, verdict):
    path = tmp_path / "r.toml"
    path.write_text(GOOD_RUBRIC)
    rubric = load_rubric(path)
    agg = aggregate(rubric, [_grade(r, f, i) for i, (r, f) in enumerate(grades)], how)
    assert agg.score == pytest.approx(score)
    assert agg.verdict == verdict


# -- judge calls against the simulator -------------------------------------------------


def _candidate(text: str, label: str, n: int, slice_: str = "default") -> Candidate:
    return Candidate(
        id=f"ex_test{n:04d}",
        run_id="r",
        cell=CellKey(slice=slice_, label=label),
        text=text,
        data={"text": text, "label": label},
        llm_call_id="call_x",
        index=0,
        template="t",
        template_sha="s",
        model="sim-1",
    )


def _judge(project, candidates, **params):
    """Run the judge stage on hand-made candidates; (outcomes, score rows, store)."""
    config = project.config()
    store = project.store()
    spec = next(f for f in config.filters if isinstance(f, RubricParams))
    spec = spec.model_copy(update=params)
    ctx = config.filter_context(all_labels(config, store.examples.cell_counts()))
    stage = JudgeStage(spec, config, store, SeedPool.from_rows(store.examples.seeds()), ctx)
    run_row = store.runs.begin("{}", "test")
    outcomes = [Outcome(c) for c in candidates]

    async def go():
        async with LLMClient(config.llm, store.calls, api_key="unused") as client:
            return (await stage.judge(client, run_row.id, outcomes)).scores

    scores = asyncio.run(go())
    return outcomes, scores, store


def _judge_calls(store) -> list[tuple]:
    conn = sqlite3.connect(store.path)
    try:
        return conn.execute(
            "SELECT sample_index, status, error, parent_ids_json FROM llm_calls"
            " WHERE purpose = 'judge' ORDER BY rowid"
        ).fetchall()
    finally:
        conn.close()


def test_label_consistency_rejects_a_planted_off_label_candidate(sim_project, sim):
    judge_project(sim_project)
    planted = _candidate("I think my card was stolen at the station last night", "card_arrival", 1)
    honest = _candidate("my new card has still not arrived after two weeks", "card_arrival", 2)
    outcomes, scores, store = _judge(sim_project, [planted, honest])
    off, ok = outcomes
    assert off.verdict is Verdict.REJECT and off.rejected_by == "label_check"
    assert off.decisions[-1].reason == "off_label: judged lost_or_stolen_card, asked card_arrival"
    assert [d.filter for d in ok.decisions] == ["label_check", "rubric"]
    assert ok.decisions[0].reason == "label_match: card_arrival"
    # The rejected one was asked once (the label check) and never graded.
    judged = sim.stats()["judged"]
    assert judged.count(planted.text) == 1 and judged.count(honest.text) == 2
    label_rows = [s for s in scores if s["criterion"] == "label"]
    assert {s["example_id"]: s["score"] for s in label_rows} == {planted.id: 0.0, honest.id: 1.0}
    store.close()


def test_several_samples_are_stored_and_their_mean_decides(sim_project, sim):
    judge_project(sim_project)
    c = _candidate(
        "my new card has still not arrived after two weeks, where is it", "card_arrival", 1
    )
    outcomes, scores, store = _judge(sim_project, [c], samples=4, label_check=False)
    grades = [s for s in scores if s["criterion"] in ("realism", "label_fidelity")]
    assert sorted({s["sample"] for s in grades}) == [0, 1, 2, 3]
    assert len(grades) == 8
    mean = {
        name: sum(s["score"] for s in grades if s["criterion"] == name) / 4
        for name in ("realism", "label_fidelity")
    }
    decision = outcomes[0].decisions[-1]
    assert decision.filter == "rubric"
    assert decision.score == pytest.approx((mean["realism"] + 2 * mean["label_fidelity"]) / 3)
    assert len(_judge_calls(store)) == 4
    # Later samples differ from the plain heuristic: the samples are not one reply four times.
    assert len({s["score"] for s in grades}) > 1
    store.close()


def test_an_invalid_judge_reply_is_retried_under_a_fresh_sample_index(sim_project, sim):
    judge_project(sim_project)
    c = _candidate("my new card has still not arrived after two weeks", "card_arrival", 1)
    sim.script(["garbled"])
    outcomes, _, store = _judge(sim_project, [c], label_check=False, retries=1, temperature=0.7)
    assert outcomes[0].verdict is Verdict.KEEP
    calls = _judge_calls(store)
    assert [(i, status) for i, status, _, _ in calls] == [(0, "invalid"), (1, "ok")]
    store.close()


def test_at_temperature_0_an_invalid_judge_reply_is_not_asked_again(sim_project, sim):
    # Greedy decoding ignores the seed a fresh sample index changes: a real model
    # would write the same reply again.
    judge_project(sim_project)
    c = _candidate("my new card has still not arrived after two weeks", "card_arrival", 1)
    sim.script(["garbled"])
    outcomes, _, store = _judge(sim_project, [c], label_check=False, retries=2, temperature=0)
    d = outcomes[0].decisions[-1]
    assert d.verdict is Verdict.REVIEW
    assert d.reason.startswith("judge_failed: sim-1 sample 0, 1 tries")
    assert [(i, status) for i, status, _, _ in _judge_calls(store)] == [(0, "invalid")]
    reasons = store.conn.execute("SELECT reason FROM llm_calls WHERE purpose = 'judge'")
    assert reasons.fetchall() == [("unparseable",)]
    assert sim.stats()["requests"] == 1
    store.close()


def test_a_judge_reply_with_a_slip_is_read_and_the_repair_recorded(sim_project, sim):
    judge_project(sim_project)
    c = _candidate("my new card has still not arrived after two weeks", "card_arrival", 1)
    sim.script(["malformed"])  # prose, a fence, a missing brace ... around the object
    outcomes, scores, store = _judge(sim_project, [c], label_check=False, retries=1)
    assert outcomes[0].verdict is Verdict.KEEP
    assert [status for _, status, _, _ in _judge_calls(store)] == ["ok"]
    (repairs,) = store.conn.execute(
        "SELECT repairs_json FROM llm_calls WHERE purpose = 'judge'"
    ).fetchone()
    assert json.loads(repairs)  # what was mended is named
    assert {s["criterion"] for s in scores} == {"realism", "label_fidelity"}
    store.close()


def test_a_judge_reply_invalid_after_every_retry_is_a_judge_failure_sent_to_review(
    sim_project, sim
):
    judge_project(sim_project)
    c = _candidate("my new card has still not arrived after two weeks", "card_arrival", 1)
    sim.script(["garbled", "truncate", "garbled"])
    outcomes, scores, store = _judge(
        sim_project, [c], label_check=False, retries=2, temperature=0.7
    )
    d = outcomes[0].decisions[-1]
    assert d.verdict is Verdict.REVIEW and d.reason.startswith(
        "judge_failed: sim-1 sample 0, 3 tries"
    )
    assert [status for _, status, _, _ in _judge_calls(store)] == ["invalid"] * 3
    assert scores == []
    store.close()


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ({"realism": {"score": 5, "rationale": "ok"}}, "criterion label_fidelity is missing"),
        (
            {
                "realism": {"score": 6, "rationale": "ok"},
                "label_fidelity": {"score": 5, "rationale": "x"},
            },
            "realism.score: 6 is not an integer from 1 to 5",
        ),
        (
            {
                "realism": {"score": True, "rationale": "ok"},
                "label_fidelity": {"score": 5, "rationale": "x"},
            },
            "realism.score: True",
        ),
        (
            {
                "realism": {"score": 4, "rationale": " "},
                "label_fidelity": {"score": 5, "rationale": "x"},
            },
            "realism.rationale is missing",
        ),
    ],
)
def test_grade_replies_are_validated(sim_project, reply, error):
    config = judge_project(sim_project)
    spec = next(f for f in config.filters if isinstance(f, RubricParams))
    with sim_project.store() as store:
        ctx = config.filter_context(all_labels(config, store.examples.cell_counts()))
        stage = JudgeStage(spec, config, store, SeedPool.from_rows(store.examples.seeds()), ctx)
    with pytest.raises(JudgeReplyError, match=error.replace("(", r"\(")):
        stage._parse_grade(reply, "m", 0, "c")


def test_a_second_judging_of_the_same_candidates_pays_nothing(sim_project, sim):
    judge_project(sim_project)
    cs = [_candidate("my new card has still not arrived after two weeks", "card_arrival", 1)]
    _, first, store = _judge(sim_project, cs)
    store.close()
    sent = sim.stats()["requests"]
    assert sent == 2
    _, again, store = _judge(sim_project, cs)
    assert sim.stats()["requests"] == sent
    assert [s["score"] for s in again] == [s["score"] for s in first]
    store.close()


# -- a whole run ------------------------------------------------------------------------


def test_a_run_shows_judge_and_off_label_rejections_and_borderline_rows_held(sim_project, sim):
    sim.configure(p_off_label=0.2, p_exact_dup=0.15, p_bad_item=0.15)
    config = judge_project(sim_project, STRICT)
    summary = run(config)
    assert summary.status == "finished", summary.stop_reason
    with sim_project.store() as store:
        funnel = store.reports.funnel()
        judged = store.reports.judged_examples()
        summary_j = store.reports.judge_summary()
        rejected = {
            f: sum(r["rejected"].get(f, 0) for r in funnel) for f in ("rubric", "label_check")
        }
        assert rejected["rubric"] > 0 and rejected["label_check"] > 0
        assert sum(r["held"] for r in funnel) > 0
        assert {"pass", "borderline", "below_threshold"} <= set(summary_j["decisions"]["rubric"])
        assert "off_label" in summary_j["decisions"]["label_check"]
        for row in judged:
            criteria = {s["criterion"] for s in store.reports.judge_scores_for(row["id"])}
            assert criteria == {"label", "slice", "realism", "label_fidelity", "specificity"}
    conn = sqlite3.connect(sim_project.root / "synth.db")
    cheap_rejected = [
        t
        for (t,) in conn.execute(
            "SELECT text FROM examples WHERE status = 'rejected'"
            " AND rejected_by NOT IN ('rubric', 'label_check')"
        )
    ]
    reached = {
        t
        for (t,) in conn.execute(
            "SELECT text FROM examples WHERE source != 'real'"
            " AND coalesce(rejected_by, '') IN ('', 'rubric', 'label_check')"
        )
    }
    judge_calls = conn.execute("SELECT count(*) FROM llm_calls WHERE purpose = 'judge'").fetchone()
    conn.close()
    # Asserted at the simulator: no candidate a cheap filter rejected was ever judged.
    served = sim.stats()["judged"]
    assert cheap_rejected
    assert not [t for t in cheap_rejected if t in served and t not in reached]
    assert len(served) == judge_calls[0]


def test_judge_calls_are_costed_at_the_judge_models_price(sim_project, sim):
    config = judge_project(sim_project, filter_extra='models = ["judge-2"]\n')
    text = sim_project.config_path.read_text().replace(
        '"sim-1" = { input = 1.0, output = 2.0 }',
        '"sim-1" = { input = 1.0, output = 2.0 }\n"judge-2" = { input = 10.0, output = 20.0 }',
    )
    sim_project.config_path.write_text(text)
    config = sim_project.config()
    assert run(config).status == "finished"
    conn = sqlite3.connect(sim_project.root / "synth.db")
    rows = conn.execute(
        "SELECT model, sum(cost_usd), sum(prompt_tokens), sum(completion_tokens) FROM llm_calls"
        " WHERE purpose = 'judge' GROUP BY model"
    ).fetchall()
    conn.close()
    assert [r[0] for r in rows] == ["judge-2"]
    assert rows[0][1] == pytest.approx((rows[0][2] * 10 + rows[0][3] * 20) / 1e6)


def test_synth_show_prints_scores_and_rationales(sim_project, sim):
    from click.testing import CliRunner

    from synth.cli import cli

    config = judge_project(sim_project)
    assert run(config).status == "finished"
    with sim_project.store() as store:
        example_id = store.reports.judged_examples()[0]["id"]
    out = CliRunner().invoke(
        cli, ["--config", str(sim_project.config_path), "show", example_id], catch_exceptions=False
    )
    assert out.exit_code == 0
    assert "judge scores (rubric prompts/rubrics/test.toml" in out.output
    assert "label_fidelity" in out.output and "content words appear" in out.output
    status = CliRunner().invoke(
        cli, ["--config", str(sim_project.config_path), "status"], catch_exceptions=False
    )
    assert "judge:" in status.output and "mean score per criterion: realism" in status.output
    missing = CliRunner().invoke(cli, ["--config", str(sim_project.config_path), "show", "ex_nope"])
    assert missing.exit_code == 1 and "ex_nope: no such example" in missing.output


def test_unknown_judge_setting_is_a_config_error(project):
    with pytest.raises(SynthError, match=r"config.toml: filters\[2\].sampels: Extra inputs"):
        judge_project(project, filter_extra="sampels = 3\n")


# -- calibration against humans -----------------------------------------------------

# (weighted score, judge verdict, realism, label_fidelity, human verdict)
HAND_MADE = [
    (4.6, "keep", 5, 5, "approve"),
    (4.4, "keep", 5, 5, "approve"),
    (4.2, "keep", 5, 4, "approve"),
    (4.0, "keep", 5, 4, "approve"),
    (3.9, "keep", 5, 4, "approve"),
    (3.8, "keep", 5, 3, "reject"),
    (3.6, "review", 5, 4, "approve"),
    (3.0, "reject", 5, 3, "reject"),
    (2.4, "reject", 5, 2, "reject"),
    (2.0, "reject", 5, 1, "reject"),
]


def _store_hand_made(project, rows=HAND_MADE) -> list[str]:
    """Ten judged rows in two cells, stored as a run would store them; a score of None
    is a row whose judge call failed."""
    from synth.records import Decision, Status

    store = project.store()
    run_row = store.runs.begin("{}", "test")
    call = {
        "request_sha": "r" * 64,
        "slice": "default",
        "label": "card_arrival",
        "sample_index": 0,
        "template": "t",
        "template_sha": "s",
        "model": "sim-1",
        "params": {},
        "messages": [],
        "parent_ids": [],
    }
    (row,) = store.calls.plan(run_row.id, [call])
    outcomes, statuses, scores = [], [], []
    for i, (score, verdict, realism, fidelity, _) in enumerate(rows):
        label = "card_arrival" if i % 2 else "exchange_rate"
        c = _candidate(f"hand made row number {i}", label, i).model_copy(
            update={"llm_call_id": row.id}
        )
        d = Decision(
            example_id=c.id,
            filter="rubric",
            filter_version="1",
            verdict=Verdict(verdict),
            score=score,
            reason=verdict if score is not None else "judge_failed: no JSON in the reply",
        )
        outcomes.append(Outcome(c, [d]))
        statuses.append(
            {"keep": Status.ACCEPTED, "review": Status.REVIEW_PENDING}.get(verdict, Status.REJECTED)
        )
        for name, value in (("realism", realism), ("label_fidelity", fidelity)) * (
            score is not None
        ):
            scores.append(
                {
                    "example_id": c.id,
                    "criterion": name,
                    "score": float(value),
                    "rationale": "hand made",
                    "judge_model": "sim-1",
                    "sample": 0,
                    "rubric": "test.toml",
                    "rubric_sha": "x" * 64,
                    "llm_call_id": None,
                    "run_id": run_row.id,
                }
            )
    store.examples.add_outcomes(run_row.id, outcomes, statuses, [row.id], scores)
    store.close()
    return [o.candidate.id for o in outcomes]


def _humans(project, ids, rows=HAND_MADE):
    import json

    path = project.root / "humans.jsonl"
    path.write_text(
        "".join(
            json.dumps({"example_id": i, "verdict": r[-1]}) + "\n"
            for i, r in zip(ids, rows, strict=True)
        )
    )
    return path


def test_kappa_against_hand_made_human_verdicts(project):
    from synth.judge.calibration import judge_agreement, render_calibration

    config = judge_project(
        project, GOOD_RUBRIC.replace("pass_threshold = 3.5", "pass_threshold = 3.8")
    )
    ids = _store_hand_made(project)
    report = judge_agreement(config, _humans(project, ids))
    # judge approves 6 (the keeps), humans 6; they agree on 8 of 10.
    # p_o = 0.8, p_e = 0.6 * 0.6 + 0.4 * 0.4 = 0.52, kappa = 0.28 / 0.48 = 7/12.
    assert report.overall.n == 10
    assert report.overall.observed == pytest.approx(0.8)
    assert report.overall.kappa == pytest.approx(7 / 12)
    assert report.overall.low and any("below 0.7" in w for w in report.warnings)
    # realism is 5 throughout: the judge approves all, chance agreement explains it all.
    assert report.by_criterion["realism"].kappa == pytest.approx(0.0)
    # label_fidelity >= its pass level 4 exactly where the humans approve.
    assert report.by_criterion["label_fidelity"].kappa == pytest.approx(1.0)
    assert set(report.by_cell) == {"default/card_arrival", "default/exchange_rate"}
    assert sum(a.n for a in report.by_cell.values()) == 10
    # At 3.9 only the 3.6 row disagrees: p_o 0.9, p_e 0.5, kappa 0.8 (3.6 gives 0.78).
    assert report.suggested == pytest.approx(3.9)
    assert report.suggested_agreement.kappa == pytest.approx(0.8)
    text = render_calibration(report)
    assert "3.90 maximises agreement (kappa 0.800)" in text
    assert "warning: judge vs humans: kappa 0.58" in text


def test_audit_and_judge_agreement_report_one_kappa_without_failed_judge_calls(project):
    from click.testing import CliRunner

    from synth.audit import audit_store
    from synth.cli import cli
    from synth.judge.calibration import judge_agreement
    from synth.store import NewReview

    config = judge_project(project)
    # A row whose judge call failed, reviewed and rejected: no judge verdict to compare.
    rows = [*HAND_MADE, (None, "review", 0, 0, "reject")]
    ids = _store_hand_made(project, rows)
    with project.store() as store:
        store.reviews.enqueue([(i, "sampled", 1) for i in ids])
        store.reviews.add(
            [NewReview(i, "ann", r[-1], "terminal") for i, r in zip(ids, rows, strict=True)]
        )
        audit = audit_store(config, store)["totals"]
    calibration = judge_agreement(config)
    assert calibration.overall.n == audit["agreement"]["n"] == 10
    assert calibration.overall.kappa == pytest.approx(7 / 12)
    assert audit["agreement"]["kappa"] == pytest.approx(calibration.overall.kappa)
    assert calibration.failed == audit["judge_failed_excluded"] == 1

    def run_cli(*args):
        out = CliRunner().invoke(
            cli, ["--config", str(project.config_path), *args], catch_exceptions=False
        )
        assert out.exit_code == 0, out.output
        return out.output

    agreement, audit_text = run_cli("judge", "agreement"), run_cli("audit")
    left_out = "1 reviewed row left out: the judge call failed"
    assert left_out in agreement and left_out in audit_text
    assert "kappa 0.583" in audit_text and "0.583" in agreement
    # Ten pairs is a small sample: both say so beside the figure.
    assert "only 10 rows: a rough figure" in agreement
    assert "only 10 rows: a rough figure" in audit_text


def test_agreement_through_the_cli_and_a_bad_humans_file(project):
    from click.testing import CliRunner

    from synth.cli import cli

    judge_project(project)
    ids = _store_hand_made(project)
    good = _humans(project, ids)
    out = CliRunner().invoke(
        cli,
        ["--config", str(project.config_path), "judge", "agreement", "--humans", str(good)],
        catch_exceptions=False,
    )
    assert out.exit_code == 0 and "overall" in out.output and "per criterion" in out.output
    bad = project.root / "bad.jsonl"
    bad.write_text(
        '{"example_id": "a", "verdict": "approve"}\n{"example_id": "b", "verdict": "maybe"}\n'
    )
    out = CliRunner().invoke(
        cli, ["--config", str(project.config_path), "judge", "agreement", "--humans", str(bad)]
    )
    assert out.exit_code == 1
    assert f"{bad}:2: verdict must be approve or reject, not 'maybe'" in out.output


def test_a_resumed_run_pays_the_judge_nothing_twice(sim_project, sim):
    sim.configure(p_off_label=0.2)
    config = judge_project(sim_project)
    assert run(config).status == "finished"
    db = sim_project.root / "synth.db"
    conn = sqlite3.connect(db)
    judged_before = conn.execute(
        "SELECT count(*) FROM decisions WHERE filter IN ('rubric', 'label_check')"
    ).fetchone()[0]
    # As if killed after every reply was committed, before any batch was stored.
    with conn:
        conn.execute("DELETE FROM judge_scores")
        conn.execute("DELETE FROM decisions")
        conn.execute("DELETE FROM edits")
        conn.execute("DELETE FROM examples WHERE source != 'real'")
        conn.execute("UPDATE llm_calls SET processed = 0 WHERE purpose = 'generate'")
        conn.execute("UPDATE runs SET status = 'running', finished_at = NULL")
    conn.close()
    sent = sim.stats()["requests"]
    summary = run(config)
    assert summary.resumed and summary.status == "finished"
    assert sim.stats()["requests"] == sent
    conn = sqlite3.connect(db)
    judged_after = conn.execute(
        "SELECT count(*) FROM decisions WHERE filter IN ('rubric', 'label_check')"
    ).fetchone()[0]
    scores = conn.execute("SELECT count(*) FROM judge_scores").fetchone()[0]
    conn.close()
    assert judged_after == judged_before > 0 and scores > 0


def test_in_batch_mode_judge_calls_go_through_the_batch_api_too(sim_project, sim):
    sim.configure(batch_delay_s=0.05)
    config = judge_project(sim_project).with_llm(mode="batch", batch_poll_s=0.05)
    assert run(config).status == "finished"
    conn = sqlite3.connect(sim_project.root / "synth.db")
    judge_calls = conn.execute(
        "SELECT count(*), sum(status = 'ok') FROM llm_calls WHERE purpose = 'judge'"
    ).fetchone()
    graded = conn.execute("SELECT count(*) FROM decisions WHERE filter = 'rubric'").fetchone()[0]
    conn.close()
    stats = sim.stats()
    assert stats["requests"] == 0  # nothing online
    assert judge_calls[0] == judge_calls[1] > 0 and graded > 0
    assert stats["batch_requests"] > judge_calls[0]  # generation lines and judge lines


def test_a_missing_rubric_file_is_named(tmp_path):
    with pytest.raises(RubricError) as e:
        load_rubric(tmp_path / "nope.toml", "prompts/rubrics/nope.toml")
    assert e.value.where == "prompts/rubrics/nope.toml"
    assert "No such file" in e.value.message


def test_an_undefined_name_in_a_judge_template_stops_the_run_before_any_request(sim_project, sim):
    from synth.errors import TemplateError

    config = judge_project(sim_project)
    template = sim_project.root / "prompts" / "judge" / "label.md.j2"
    template.write_text(template.read_text() + "\n{{ no_such_variable }}\n")
    with pytest.raises(TemplateError, match=r"prompts/judge/label.md.j2:\d+: .*no_such_variable"):
        run(config)
    assert sim.stats()["requests"] == 0


def test_check_slice_rejects_a_candidate_judged_in_another_slice(sim_project, sim):
    judge_project(sim_project, filter_extra="check_slice = true\n")
    fits = _candidate(
        "help, I'm panicked, my card was stolen at the station", "lost_or_stolen_card", 1, "urgent"
    )
    plain = _candidate(
        "I think my card was stolen at the station", "lost_or_stolen_card", 2, "urgent"
    )
    outcomes, _, store = _judge(sim_project, [fits, plain])
    store.close()
    assert outcomes[0].decisions[0].reason == "label_match: lost_or_stolen_card"
    assert outcomes[1].verdict is Verdict.REJECT
    assert outcomes[1].decisions[0].reason == "off_label: judged slice default, asked urgent"


def test_a_judge_on_its_own_endpoint_gets_every_judge_call_and_nothing_else(
    sim_project, sim, monkeypatch
):
    from synth.sim import SimConfig, Simulator

    monkeypatch.setenv("JUDGE_KEY", "judge-secret")
    with Simulator(SimConfig(seed=3)) as judge_sim:
        config = judge_project(
            sim_project,
            filter_extra=f'base_url = "{judge_sim.base_url}"\napi_key_env = "JUDGE_KEY"\n',
        )
        assert run(config).status == "finished"
        generation, judging = sim.stats(), judge_sim.stats()
    with sim_project.store() as store:
        calls = dict(
            store.conn.execute(
                "SELECT purpose, sum(attempts) FROM llm_calls GROUP BY purpose"
            ).fetchall()
        )
    assert calls["judge"] > 0 and calls["generate"] > 0
    assert judging["requests"] == calls["judge"] == len(judging["judged"])
    assert generation["requests"] == calls["generate"] and generation["judged"] == []


def test_the_judge_endpoint_key_must_be_set(sim_project, sim, monkeypatch):
    monkeypatch.delenv("JUDGE_KEY", raising=False)
    config = judge_project(
        sim_project,
        filter_extra='base_url = "https://judge.invalid/v1"\napi_key_env = "JUDGE_KEY"\n',
    )
    with pytest.raises(SynthError, match="JUDGE_KEY is not set"):
        run(config)
    assert sim.stats()["requests"] == 0
