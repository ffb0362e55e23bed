"""Label Studio and Argilla round trips, on files shaped as those tools write them, and
the terminal review."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from synth.cli import cli
from synth.review import ReviewError
from synth.review.interchange import import_argilla, import_label_studio
from synth.review.queue import enroll
from synth.runner import run
from synth.seeds import read_seeds


@pytest.fixture
def queued(sim_project, sim):
    # Appended to the test config's last table, [review]: every row reviewed twice.
    sim_project.write_config("double_review = 1\n", base_url=sim.base_url)
    config = sim_project.config()
    with sim_project.store() as store:
        store.examples.add_seeds(read_seeds(sim_project.seeds, config).seeds)
    assert run(config).status == "finished"
    return config


def _cli(project, *args):
    result = CliRunner().invoke(cli, ["--config", str(project.config_path), *args])
    return result


# What each reviewer decides, by position in the export: (verdict, reason, edit, note).
PLAN = [
    [("approve", None, None, None), ("approve", None, None, "fine")],
    [("reject", "off_label", None, "that is a card_arrival"), ("approve", None, None, None)],
    [("approve", None, "my card got stolen at the bus stop", None), ("reject", "pii", None, None)],
    [("reject", "unnatural", None, None), ("reject", "near_duplicate", None, "again")],
]


def _expected(ids, reviewers):
    out = set()
    for example_id, decisions in zip(ids, PLAN, strict=False):
        for who, (verdict, reason, edit, note) in zip(reviewers, decisions, strict=True):
            out.add((example_id, who, verdict, reason, edit, note))
    return out


def _stored(store):
    return {
        (
            r["example_id"],
            r["reviewer"],
            r["verdict"],
            r["reason"],
            r["edited_data"]["text"] if r["edited_data"] else None,
            r["note"],
        )
        for r in store.reviews.all()
    }


def _ls_result(name, kind, value):
    key = "choices" if kind == "choices" else "text"
    return {
        "value": {key: [value]},
        "id": f"r{abs(hash((name, value))) % 10**6}",
        "from_name": name,
        "to_name": "text",
        "type": kind,
        "origin": "manual",
    }


def _ls_annotation(n, task_id, user, decision):
    verdict, reason, edit, note = decision
    result = [_ls_result("verdict", "choices", verdict)]
    if reason:
        result.append(_ls_result("reason", "choices", reason))
    if edit:
        result.append(_ls_result("edited", "textarea", edit))
    if note:
        result.append(_ls_result("note", "textarea", note))
    return {
        "id": n,
        "completed_by": user,
        "result": result,
        "was_cancelled": False,
        "ground_truth": False,
        "created_at": "2026-12-01T08:00:00.000000Z",
        "updated_at": "2026-12-01T08:00:00.000000Z",
        "draft_created_at": None,
        "lead_time": 6.4,
        "prediction": {},
        "result_count": 0,
        "unique_id": f"u{n}",
        "import_id": None,
        "last_action": None,
        "task": task_id,
        "project": 3,
        "updated_by": user if isinstance(user, int) else user["id"],
        "parent_prediction": None,
        "parent_annotation": None,
        "last_created_by": None,
    }


def _label_studio_export(tasks):
    """What Label Studio's "Export > JSON" gives after two annotators worked the tasks."""
    out = []
    for i, task in enumerate(tasks):
        task_id = 40 + i
        decisions = PLAN[i] if i < len(PLAN) else []
        users = [7, {"id": 9, "email": "mo@example.org", "first_name": "", "last_name": ""}]
        annotations = [
            _ls_annotation(500 + 2 * i + j, task_id, users[j], d) for j, d in enumerate(decisions)
        ]
        if i == 0:  # a skipped task is not a review
            cancelled = _ls_annotation(999, task_id, 11, ("approve", None, None, None))
            annotations.append({**cancelled, "was_cancelled": True, "result": []})
        out.append(
            {
                "id": task_id,
                "annotations": annotations,
                "file_upload": "c0ffee-queue.json",
                "drafts": [],
                "predictions": [],
                "data": task["data"],
                "meta": {},
                "created_at": "2026-12-01T07:50:00.000000Z",
                "updated_at": "2026-12-01T08:00:00.000000Z",
                "inner_id": i + 1,
                "total_annotations": len(decisions),
                "cancelled_annotations": int(i == 0),
                "total_predictions": 0,
                "comment_count": 0,
                "unresolved_comment_count": 0,
                "last_comment_updated_at": None,
                "project": 3,
                "updated_by": 7,
                "comment_authors": [],
            }
        )
    return out


def test_label_studio_round_trip_keeps_every_decision(queued, sim_project, tmp_path):
    out = tmp_path / "queue.json"
    result = _cli(sim_project, "review", "export", "--format", "label-studio", "--out", str(out))
    assert result.exit_code == 0, result.output
    tasks = json.loads(out.read_text())
    assert len(tasks) >= len(PLAN)
    xml = ET.fromstring((tmp_path / "queue.label_config.xml").read_text())
    names = {el.get("name"): el for el in xml.iter() if el.get("name")}
    assert {"text", "seeds", "verdict", "reason", "edited", "note"} <= set(names)
    assert [c.get("value") for c in names["reason"]] == list(queued.review.reasons)
    for el in xml.iter():  # every $variable of the config is in every task's data
        value = el.get("value") or ""
        for var in [w[1:].rstrip(":,") for w in value.split() if w.startswith("$")]:
            assert all(var in t["data"] for t in tasks), var
    with sim_project.store() as store:
        texts = {
            r["id"]: r["text"]
            for r in store.examples.by_id([t["data"]["example_id"] for t in tasks])
        }
    assert all(t["data"]["text"] == texts[t["data"]["example_id"]] for t in tasks)

    exported = tmp_path / "project-3-at-2026-12-01.json"
    exported.write_text(json.dumps(_label_studio_export(tasks), indent=2))
    result = _cli(sim_project, "review", "import", "--format", "label-studio", str(exported))
    assert result.exit_code == 0, result.output
    assert "8 reviews added, 0 already stored" in result.output
    ids = [t["data"]["example_id"] for t in tasks]
    with sim_project.store() as store:
        assert _stored(store) == _expected(ids, ["label-studio:7", "mo@example.org"])
        rows = {r["id"]: r for r in store.examples.by_id(ids[: len(PLAN)])}
        assert store.examples.edits(ids[2])[0]["editor"] == "reviewer:label-studio:7"
    assert [rows[i]["status"] for i in ids[: len(PLAN)]] == [
        "approved",
        "review_rejected",
        "review_rejected",
        "review_rejected",
    ]
    assert rows[ids[2]]["source"] == "edited"
    again = _cli(sim_project, "review", "import", "--format", "label-studio", str(exported))
    assert "0 reviews added, 8 already stored" in again.output


def test_argilla_round_trip_keeps_every_decision(queued, sim_project, tmp_path):
    out = tmp_path / "records.json"
    result = _cli(sim_project, "review", "export", "--format", "argilla", "--out", str(out))
    assert result.exit_code == 0, result.output
    records = json.loads(out.read_text())
    assert len(records) >= len(PLAN)
    assert set(records[0]) == {
        "id",
        "fields",
        "metadata",
        "suggestions",
        "responses",
        "vectors",
        "status",
        "_server_id",
    }
    users = ["5f0c1d1e-8f5e-4c55-9d0b-0a7f2b6c1e11", "a3c2b1d0-1111-4e2f-8a9b-c0d1e2f3a4b5"]
    for i, record in enumerate(records):
        responses: dict[str, list] = {}
        for user, (verdict, reason, edit, note) in zip(
            users, PLAN[i] if i < len(PLAN) else [], strict=False
        ):
            for question, value in (
                ("verdict", verdict),
                ("reason", reason),
                ("edited", edit),
                ("note", note),
            ):
                if value is not None:
                    responses.setdefault(question, []).append({"value": value, "user_id": user})
        if i == 1:  # a draft is not a review yet
            responses["verdict"].append({"value": "reject", "user_id": "d1", "status": "draft"})
        record.update(
            responses=responses,
            status="completed" if responses else "pending",
            _server_id=f"0b6e7f3a-0000-4000-8000-{i:012d}",
        )
    exported = tmp_path / "argilla-records.json"
    exported.write_text(json.dumps(records))
    result = _cli(sim_project, "review", "import", "--format", "argilla", str(exported))
    assert result.exit_code == 0, result.output
    assert "8 reviews added, 0 already stored" in result.output
    ids = [r["id"] for r in records]
    with sim_project.store() as store:
        assert _stored(store) == _expected(ids, [f"argilla:{u}" for u in users])
        assert all(r["origin"] == "argilla" for r in store.reviews.all())
        assert store.examples.by_id([ids[2]])[0]["text"] == "my card got stolen at the bus stop"
    again = _cli(sim_project, "review", "import", "--format", "argilla", str(exported))
    assert "0 reviews added, 8 already stored" in again.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"tasks": []}', "not a Label Studio JSON export"),
        ("[{", "not valid JSON"),
        ('[{"id": 1, "data": {"example_id": "ex_nope"}}]', "task[1] (id 1): ex_nope is not in"),
        ('[{"id": 1, "data": {}}]', "task[1] (id 1): no example id"),
        ("BAD_VERDICT", "task[1] (id 2): annotations[0]: verdict 'maybe'"),
        ("NO_REASON", "task[1] (id 2): annotations[0]: reject reason None"),
    ],
)
def test_a_bad_label_studio_file_names_the_task_and_stores_nothing(
    queued, sim_project, tmp_path, content, message
):
    with sim_project.store() as store:
        enroll(store, queued.review)
        first, second = [q["example_id"] for q in store.reviews.queue()[:2]]
    good = {
        "id": 1,
        "data": {"example_id": first},
        "annotations": [
            {"completed_by": 1, "result": [_ls_result("verdict", "choices", "approve")]}
        ],
    }
    if content in ("BAD_VERDICT", "NO_REASON"):
        verdict = "maybe" if content == "BAD_VERDICT" else "reject"
        bad = {
            "id": 2,
            "data": {"example_id": second},
            "annotations": [
                {"completed_by": 1, "result": [_ls_result("verdict", "choices", verdict)]}
            ],
        }
        content = json.dumps([good, bad])
    elif content.startswith('[{"id": 1'):
        content = json.dumps([good, {**json.loads(content)[0]}])
    path = tmp_path / "export.json"
    path.write_text(content)
    with sim_project.store() as store, pytest.raises(ReviewError, match=re.escape(message)) as e:
        import_label_studio(store, queued, path)
    assert "export.json" in str(e.value)
    with sim_project.store() as store:
        assert store.count("reviews") == 0  # the good first task was not stored either


def test_a_bad_argilla_file_names_the_record(queued, sim_project, tmp_path):
    path = tmp_path / "records.json"
    path.write_text(json.dumps([{"id": "ex_missing", "fields": {}, "responses": {}}]))
    with (
        sim_project.store() as store,
        pytest.raises(ReviewError, match=r"records.json: record\[0\]"),
    ):
        import_argilla(store, queued, path)


def test_terminal_review_approves_rejects_and_edits(queued, sim_project):
    answers = "a\nr\n9\n2\nwrong slice for it\ne\nthe card I ordered never came\nq\n"
    result = CliRunner().invoke(
        cli,
        ["--config", str(sim_project.config_path), "review", "next", "--reviewer", "tom"],
        input=answers,
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "made from:" in result.output and "filter schema: keep" in result.output
    assert "reason: a number from 1 to 7" in result.output  # 9 was refused
    assert "3 decisions recorded" in result.output
    with sim_project.store() as store:
        reviews = store.reviews.all()
    assert [(r["reviewer"], r["verdict"], r["reason"], r["origin"]) for r in reviews] == [
        ("tom", "approve", None, "terminal"),
        ("tom", "reject", "wrong_slice", "terminal"),
        ("tom", "approve", None, "terminal"),
    ]
    assert reviews[1]["note"] == "wrong slice for it"
    assert reviews[2]["edited_data"]["text"] == "the card I ordered never came"


def test_a_refused_terminal_edit_says_why_and_asks_again_with_the_typed_text(queued, sim_project):
    from synth.review.terminal import KEYS, review_in_terminal

    answers = iter(["e", "refund", "q", "e", "refund", "the card I ordered never came", "q"])
    asked, said = [], []

    def ask(prompt, default):
        asked.append((prompt, default))
        return next(answers)

    with sim_project.store() as store:
        made = review_in_terminal(store, queued, "tom", ask=ask, say=said.append)
        current = store.reviews.queue()[0]
    assert made == 1
    refusal = "  refused: the edited text fails the schema filter: too_short"
    assert said.count(next(s for s in said if s.startswith(refusal))) == 2
    # Re-asked with what was typed, not a blank line; q leaves the edit, not the session.
    assert asked[2] == ("new text (q: back to the choices)", "refund")
    assert asked[3] == asked[6] == (KEYS, "a")
    assert current["reviewers"] == ["tom"]

    via_cli = CliRunner().invoke(
        cli,
        ["--config", str(sim_project.config_path), "review", "next", "--reviewer", "ivy"],
        input="e\nrefund\nmy new card has still not come\nq\n",
        catch_exceptions=False,
    )
    assert via_cli.exit_code == 0, via_cli.output
    assert "refused: the edited text fails the schema filter" in via_cli.output
    assert "1 decisions recorded" in via_cli.output
