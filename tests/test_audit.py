"""The audit of the store and of external files, end to end against the simulator."""

from __future__ import annotations

import json

import pytest
from conftest import write_jsonl

from synth.audit import AuditFileError, audit_file, audit_store, render_audit
from synth.export import export_version
from synth.review.queue import decide, enroll
from synth.runner import run
from synth.seeds import read_seeds
from synth.versions import freeze

PII_AND_NEAR_DEDUP = """
[[filters]]
kind = "pii"
action = "redact"

[[filters]]
kind = "near_dedup"
# Above the default 0.5: a cell with one seed is otherwise stalled by the simulator's
# paraphrases of it, which overlap that much; planted near-duplicates are far closer.
threshold = 0.7
"""


def _ran(project, sim, **faults):
    project.write_config(base_url=sim.base_url, extra=PII_AND_NEAR_DEDUP)
    sim.configure(**faults)
    config = project.config()
    with project.store() as store:
        store.examples.add_seeds(read_seeds(project.seeds, config).seeds)
    assert run(config).status == "finished"
    return config


def _review_some(store, config):
    """Approve one sampled row, reject one, approve one with an edit, through the
    review queue (one reviewer each)."""
    enroll(store, config.review.model_copy(update={"double_review": 0.0}))
    pending = [r for r in store.reviews.reviewed_rows() if r["verdict"] is None]
    assert len(pending) >= 3, pending
    decide(store, config, pending[0]["example_id"], "ana", "approve")
    decide(store, config, pending[1]["example_id"], "ana", "reject", reason="off_label")
    row = next(r for r in store.examples.dataset() if r["id"] == pending[2]["example_id"])
    decide(
        store, config, pending[2]["example_id"], "bo", "edit", text=row["data"]["text"] + " please"
    )
    return pending[:3]


def test_import_run_review_freeze_export_edit_the_frozen_export_is_unchanged(
    sim_project, sim, tmp_path
):
    config = _ran(sim_project, sim, p_pii=0.3, p_exact_dup=0.15, p_near_dup=0.1)
    first, out = tmp_path / "first", tmp_path / "again"
    with sim_project.store() as store:
        reviewed = _review_some(store, config)
        version = freeze(store, config, "v1")
        assert version.leakage.clean
        for fmt in ("jsonl", "chat", "csv"):
            export_version(store, config, "v1", first / f"data.{fmt}", fmt)
        before = {p.name: p.read_bytes() for p in first.iterdir()}
        # After the freeze: edit a frozen synthetic row, reject an approved one.
        items = store.versions.items("v1")
        touched = {r["example_id"] for r in reviewed}
        target = next(
            it for it in items if it["source"] == "synthetic" and it["example_id"] not in touched
        )
        data = {**target["data"], "text": "changed after the freeze, completely"}
        store.examples.edit(target["example_id"], "reviewer:cy", data, data["text"])
        decide(store, config, reviewed[0]["example_id"], "cy", "reject", reason="other")
        assert any(
            r["id"] == target["example_id"] and r["data"] == data for r in store.examples.dataset()
        )
        for fmt in ("jsonl", "chat", "csv"):
            export_version(store, config, "v1", out / f"data.{fmt}", fmt)
        after = {p.name: p.read_bytes() for p in out.iterdir()}
        assert sorted(before) == [
            "data.chat",
            "data.chat.manifest.json",
            "data.csv",
            "data.csv.manifest.json",
            "data.jsonl",
            "data.jsonl.manifest.json",
        ]
        assert after == before  # exports and manifest, byte for byte

        report = audit_file(config, store, first / "data.jsonl")
        csv_report = audit_file(config, store, first / "data.csv")
    rows = [json.loads(line) for line in before["data.jsonl"].decode().splitlines()]
    assert len(rows) == version.rows == report["rows"]
    sources = [r["provenance"]["source"] for r in rows]
    assert {"real", "synthetic", "edited"} <= set(sources)  # PII redactions and a review edit
    assert [e["tag"] for e in report["items"]] == sources
    assert [e["id"] for e in report["items"]] == [r["provenance"]["id"] for r in rows]
    assert [e["tag"] for e in csv_report["items"]] == sources
    # The row edited after the freeze is recognised by its frozen content.
    edited_later = next(e for e in report["items"] if e["id"] == target["example_id"])
    assert edited_later["match"] == "frozen content" and edited_later["version"] == "v1"
    assert report["totals"]["unknown"] == 0
    assert sum(c["synthetic"] for c in report["cells"]) == sources.count("synthetic")
    manifest = json.loads(before["data.jsonl.manifest.json"])
    assert manifest["sha"] == version.sha and manifest["export"]["rows"] == len(rows)
    assert manifest["review"] == {
        "sampled": manifest["review"]["sampled"],
        "reviewed": 3,
        "approved": 2,
        "rejected": 1,
        "edited": 1,
        "pending": manifest["review"]["sampled"] - 3,
    }
    chat = [json.loads(line) for line in before["data.chat"].decode().splitlines()]
    assert [m["messages"][1]["content"] for m in chat] == [r["label"] for r in rows]


def test_an_external_file_is_tagged_by_content_text_and_near_duplicate(sim_project, sim, tmp_path):
    config = _ran(sim_project, sim, p_pii=0.3)
    with sim_project.store() as store:
        dataset = store.examples.dataset()
        seed = next(r for r in dataset if r["source"] == "real")
        synthetic = next(r for r in dataset if r["source"] == "synthetic")
        edited = next(r for r in dataset if r["source"] == "edited")
        words = synthetic["data"]["text"].split()
        near = " ".join([*words, "thanks"])
        path = write_jsonl(
            tmp_path / "elsewhere.jsonl",
            [
                seed["data"],  # the seed as imported: content hash
                {"text": seed["data"]["text"].upper(), "label": seed["label"]},  # text hash
                {"text": near, "label": synthetic["label"]},  # near duplicate
                edited["data"],
                {"text": "a sentence synth never stored anywhere at all", "label": "x"},
            ],
        )
        report = audit_file(config, store, path)
    tags = [(e["tag"], e["match"]) for e in report["items"]]
    assert tags == [
        ("real", "content"),
        ("real", "text"),
        ("synthetic", "near"),
        ("edited", "content"),
        ("unknown", None),
    ]
    assert report["items"][2]["id"] == synthetic["id"]
    assert report["items"][2]["model"] == "sim-1" and report["items"][2]["parent_ids"]
    assert report["items"][0]["origin"].endswith("seeds.jsonl:" + seed["origin"].split(":")[-1])
    assert report["totals"] == {"real": 2, "synthetic": 1, "edited": 1, "unknown": 1}
    assert {
        "slice": "?",
        "label": "x",
        "real": 0,
        "synthetic": 0,
        "edited": 0,
        "unknown": 1,
    } in report["cells"]


@pytest.mark.parametrize(
    ("name", "content", "where", "message"),
    [
        ("bad.jsonl", '{"text": "ok", "label": "a"}\n{"text": \n', "bad.jsonl:2", "invalid JSON"),
        ("list.jsonl", "[1, 2]\n", "list.jsonl:1", "JSON object"),
        ("nofield.jsonl", '{"body": "hello there"}\n', "nofield.jsonl:1", "no text field"),
        ("short.csv", "text,label\nhello there\n", "short.csv:2", "do not match the header"),
        ("data.parquet", "PAR1", "data.parquet", ".jsonl or .csv"),
    ],
)
def test_a_bad_file_is_refused_naming_the_file_and_line(
    project, tmp_path, name, content, where, message
):
    path = tmp_path / name
    path.write_text(content)
    with project.store() as store, pytest.raises(AuditFileError, match=message) as e:
        audit_file(project.config(), store, path)
    assert e.value.where.endswith(where)


def test_the_store_audit_adds_up(sim_project, sim):
    config = _ran(sim_project, sim, p_pii=0.3, p_exact_dup=0.2, p_near_dup=0.15)
    with sim_project.store() as store:
        _review_some(store, config)
        report = audit_store(config, store)
        dataset = store.examples.dataset()
        funnel = store.reports.funnel()
        spend = store.calls.spend()
    t = report["totals"]
    assert t["rows"] == len(dataset)
    assert (t["real"], t["synthetic"], t["edited"]) == tuple(
        sum(1 for r in dataset if r["source"] == s) for s in ("real", "synthetic", "edited")
    )
    assert abs(t["real_share"] + t["synthetic_share"] + t["edited_share"] - 1) < 1e-9
    for c in report["cells"]:
        assert c["after"] == c["before"] + c["synthetic"] + c["edited"]
        assert c["after"] == c["real"] + c["accepted"]
        if c["target"] is not None:
            assert c["after"] >= c["target"] or c["deficit"] > 0
        assert sum(sum(r.values()) for r in c["reasons"].values()) == sum(c["rejected"].values())
    stages = report["funnel"]
    assert stages[0]["rows"] == sum(f["generated"] for f in funnel)
    assert stages[-1]["rows"] == sum(f["accepted"] for f in funnel)
    assert {s["stage"] for s in stages} >= {"exact_dedup", "near_dedup"}
    assert sum(r["count"] for r in report["reasons"]) == sum(
        sum(f["rejected"].values()) for f in funnel
    )
    assert t["review"]["reviewed"] == 3 and t["review"]["approved"] == 2
    assert t["cost_per_accepted"] == pytest.approx(spend.cost_usd / t["accepted"])
    assert t["agreement"] is None and t["contamination_hits"] == 0
    assert any(c["diversity"]["synthetic"] for c in report["cells"])
    text = render_audit(report)
    assert "funnel: generated" in text and "review: 3 of" in text


def test_judge_human_agreement_pairs_rubric_decisions_with_reviews(sim_project, sim):
    # The rubric (judge) filter is not part of this chain: its decisions are stored as
    # the batch writer stores any filter's, beside human reviews of the same rows.
    from synth.records import Decision, Verdict

    config = _ran(sim_project, sim)
    with sim_project.store() as store:
        rows = [r for r in store.examples.dataset() if r["source"] != "real"][:6]
        judge = ["keep", "keep", "keep", "reject", "review", "keep"]
        human = ["approve", "approve", "reject", "reject", "reject", "approve"]
        decisions = [
            Decision(
                example_id=r["id"],
                filter="rubric",
                filter_version="1",
                verdict=Verdict(v),
                reason="rubric: planted",
            )
            for r, v in zip(rows, judge, strict=True)
        ]
        store.conn.executemany(
            "INSERT INTO decisions (example_id, filter, filter_version, verdict, reason,"
            " run_id, created_at) VALUES (?, ?, ?, ?, ?, ?, '2026-01-01T00:00:00')",
            [
                (d.example_id, d.filter, d.filter_version, d.verdict.value, d.reason, r["run_id"])
                for d, r in zip(decisions, rows, strict=True)
            ],
        )
        store.conn.commit()
        store.reviews.enqueue([(r["id"], "sampled", 1) for r in rows])
        for r, v in zip(rows, human, strict=True):
            decide(store, config, r["id"], "ana", v, reason="other" if v == "reject" else None)
        report = audit_store(config, store)
    ag = report["totals"]["agreement"]
    # judge approve/reject: a a a r r a; human: a a r r r a -> 5 of 6 agree.
    # p_e = (4/6)(3/6) + (2/6)(3/6) = 0.5, kappa = (5/6 - 0.5) / 0.5 = 2/3.
    assert ag["n"] == 6 and ag["observed"] == pytest.approx(5 / 6)
    assert ag["kappa"] == pytest.approx(2 / 3) and ag["low"]
    assert sum(c["agreement"]["n"] for c in report["cells"] if c["agreement"]) == 6
    assert "kappa 0.667" in render_audit(report) and "below 0.7" in render_audit(report)


def test_contamination_hits_of_a_real_run_are_counted_and_named_in_the_manifest(sim_project, sim):
    # The eval set is the seed file itself: the simulator's near copies of seeds pass
    # exact dedup and are caught as copies of eval items.
    sim_project.write_config(
        base_url=sim.base_url,
        extra=f"""
        [[filters]]
        kind = "contamination"
        eval_sets = [{{ name = "own-seeds", path = "{sim_project.seeds}", field = "text" }}]
        """,
    )
    sim.configure(p_near_dup=0.6)
    config = sim_project.config()
    with sim_project.store() as store:
        store.examples.add_seeds(read_seeds(sim_project.seeds, config).seeds)
    run(config)
    with sim_project.store() as store:
        decided = store.reports.filter_decisions("contamination")
        report = audit_store(config, store)
        manifest = freeze(store, config, "v1").manifest
    rejected = [d for d in decided if d["verdict"] == "reject"]
    assert rejected, "near copies of the seeds must hit the eval set"
    assert report["totals"]["contamination_hits"] == len(rejected)
    assert sum(c["contamination_hits"] for c in report["cells"]) == len(rejected)
    assert {h["example_id"] for h in report["contamination"]} == {d["example_id"] for d in rejected}
    assert all("own-seeds" in h["reason"] for h in report["contamination"])
    [eval_set] = manifest["eval_sets"]
    assert eval_set["name"] == "own-seeds" and len(eval_set["sha256"]) == 64
    assert eval_set["rows_checked"] == len(decided) and eval_set["hits"] == len(rejected)
