"""The quota loop end to end: the real openai client against the simulator on loopback,
a real SQLite store in tmp_path."""

from __future__ import annotations

import asyncio
import json

import pytest

from synth.audit import audit_store, render_audit
from synth.errors import SynthError, TemplateError
from synth.llm.client import LLMClient
from synth.plan import plan_cells
from synth.quota import UNUSABLE_STOP
from synth.runner import run
from synth.seeds import read_seeds
from synth.status import render_status, status


def _seeded(project):
    config = project.config()
    with project.store() as store:
        store.examples.add_seeds(read_seeds(project.seeds, config).seeds)
    return config


def _attempts(project) -> int:
    with project.store() as store:
        return store.calls.spend().attempts


def test_run_fills_every_cell_to_its_target_exactly(sim_project, sim):
    sim.configure(p_exact_dup=0.2, p_bad_item=0.3)
    config = _seeded(sim_project)
    with sim_project.store() as store:
        before = {p.cell: p for p in plan_cells(config, store.examples.cell_counts())}
    assert sum(p.deficit for p in before.values()) == 2 + 4 + 5 + 2
    summary = run(config)
    assert summary.status == "finished", summary.stop_reason
    with sim_project.store() as store:
        after = {p.cell: p for p in plan_cells(config, store.examples.cell_counts())}
        assert {c: p.synthetic for c, p in after.items()} == {
            c: p.deficit for c, p in before.items()
        }
        funnel = store.reports.funnel()
        statuses = store.examples.statuses()
    assert all(p.deficit == 0 for p in after.values())
    assert summary.accepted == 13
    # Both filters had work: the simulator planted duplicates and bad items.
    rejected = {f for row in funnel for f in row["rejected"]}
    assert rejected == {"schema", "exact_dedup"}
    assert statuses["review_pending"] >= 4  # at least one per cell with accepted rows


def test_funnel_adds_up_to_the_candidates_generated(sim_project, sim):
    sim.configure(p_exact_dup=0.2, p_near_dup=0.1, p_bad_item=0.1)
    config = _seeded(sim_project)
    summary = run(config)
    with sim_project.store() as store:
        funnel = store.reports.funnel()
        decisions = store.count("decisions")
    generated = sum(r["generated"] for r in funnel)
    assert generated == summary.candidates
    parts = sum(
        sum(r["rejected"].values())
        + r["accepted"]
        + r["held"]
        + r["review_rejected"]
        + r["surplus"]
        for r in funnel
    )
    assert parts == generated
    assert decisions >= generated  # keeps are stored too


def test_a_second_run_with_quotas_met_sends_no_request(sim_project, sim):
    config = _seeded(sim_project)
    assert run(config).status == "finished"
    sent = sim.stats()["requests"]
    assert sent > 0
    second = run(config)
    assert second.status == "finished" and second.calls == 0
    assert sim.stats()["requests"] == sent


def test_replies_with_slips_are_read_and_replies_without_json_are_recorded(sim_project, sim):
    sim.script(["malformed", "garbled", "truncate", "malformed", "garbled"])
    config = _seeded(sim_project)
    summary = run(config)
    assert summary.status == "finished"
    with sim_project.store() as store:
        rows = store.conn.execute(
            "SELECT status, error, repairs_json, response_json FROM llm_calls ORDER BY rowid"
        ).fetchall()
    bad = [r for r in rows if r[0] == "invalid"]
    repaired = [json.loads(r[2]) for r in rows if r[0] == "ok" and r[2]]
    # The two garbled replies hold no JSON: invalid, with the reason and the paid reply.
    assert sum(error.startswith("no JSON in the reply, which begins") for _, error, *_ in bad) == 2
    assert all(body for *_, body in bad)
    # The malformed ones (prose, fences, a missing brace ...) are read, and say how.
    assert len(repaired) >= 2
    # The cut one keeps the examples written before the cut, or is invalid if it has none.
    cut = [r for r in rows if r[2] and "cut_off" in json.loads(r[2])]
    cut_invalid = [r for r in bad if "finish_reason=length" in r[1]]
    assert len(cut) + len(cut_invalid) == 1
    assert len(bad) == 2 + len(cut_invalid)


def test_latency_and_faults_every_call_answered_or_failed_and_attempts_add_up(sim_project, sim):
    sim.configure(latency_ms=100, p_429=0.15, p_500=0.15, retry_after_s=0.05)
    config = _seeded(sim_project)
    summary = run(config)
    assert summary.status == "finished"
    with sim_project.store() as store:
        statuses = dict(
            store.conn.execute("SELECT status, count(*) FROM llm_calls GROUP BY status").fetchall()
        )
        retried = store.conn.execute("SELECT count(*) FROM llm_calls WHERE attempts > 1").fetchone()
    assert set(statuses) <= {"ok", "invalid", "failed"}
    stats = sim.stats()
    assert stats["by_outcome"].get("429", 0) + stats["by_outcome"].get("500", 0) > 0
    assert retried[0] > 0
    assert stats["requests"] == _attempts(sim_project)


def test_a_call_failing_every_retry_is_recorded_failed(sim_project, sim):
    text = sim_project.config_path.read_text().replace("retries = 5", "retries = 2")
    sim_project.config_path.write_text(text)
    sim.configure(p_500=1.0, retry_after_s=0.01)
    config = _seeded(sim_project)

    async def one_call():
        with sim_project.store() as store:
            run_row = store.runs.begin(config.as_json(), config.sha)
            [call] = store.calls.plan(run_row.id, [_planned(config, "failing")])
            async with LLMClient(config.llm, store.calls, api_key="unused") as client:
                return await client.complete(call)

    result = asyncio.run(one_call())
    assert result.status == "failed" and "HTTP 500" in result.error
    with sim_project.store() as store:
        assert store.conn.execute("SELECT status, attempts FROM llm_calls").fetchall() == [
            ("failed", 3)
        ]
    assert sim.stats()["requests"] == 3


def _planned(config, sha: str) -> dict:
    return {
        "request_sha": sha,
        "slice": "default",
        "label": "card_arrival",
        "sample_index": 0,
        "template": "t",
        "template_sha": "0" * 64,
        "model": config.llm.model,
        "params": {"max_tokens": 50},
        "messages": [{"role": "user", "content": "write 1 example"}],
        "parent_ids": [],
    }


def test_a_run_whose_every_call_fails_stops_and_says_why(sim_project, sim):
    text = sim_project.config_path.read_text().replace("retries = 5", "retries = 0")
    sim_project.config_path.write_text(text)
    sim.configure(p_500=1.0)
    config = _seeded(sim_project)
    with pytest.raises(SynthError, match="every call of a batch failed; the first: HTTP 500"):
        run(config)
    with sim_project.store() as store:
        [r] = store.runs.all()
    assert r.status == "failed" and "HTTP 500" in r.stop_reason


def test_a_template_error_stops_before_any_request(sim_project, sim):
    template = sim_project.root / "prompts" / "generate" / "classify.md.j2"
    template.write_text("Label {{ label }}\n{{ no_such_variable }}\n")
    config = _seeded(sim_project)
    with pytest.raises(TemplateError) as e:
        run(config)
    assert e.value.where == "prompts/generate/classify.md.j2:2"
    assert sim.stats()["requests"] == 0
    with sim_project.store() as store:
        assert store.count("llm_calls") == 0 and store.count("runs") == 0


def test_budget_cap_stops_the_run_cleanly_with_the_reason(sim_project, sim):
    text = sim_project.config_path.read_text().replace("max_calls = 200", "max_calls = 2")
    sim_project.config_path.write_text(text)
    config = _seeded(sim_project)
    summary = run(config)
    assert summary.status == "stopped"
    assert summary.stop_reason == "budget: max_calls = 2 reached"
    with sim_project.store() as store:
        assert store.count("llm_calls") == 2
        [r] = store.runs.all()
        assert (r.status, r.stop_reason) == ("stopped", "budget: max_calls = 2 reached")


def test_missing_slice_rows_carry_the_slice_match_and_provenance(sim_project, sim):
    config = _seeded(sim_project)
    run(config)
    with sim_project.store() as store:
        rows = [r for r in store.examples.dataset() if r["slice"] == "urgent"]
        call = store.conn.execute(
            "SELECT template_sha, messages_json FROM llm_calls WHERE slice = 'urgent' LIMIT 1"
        ).fetchone()
    assert len(rows) == 2
    assert all(r["data"]["tone"] == "urgent" and r["source"] == "synthetic" for r in rows)
    assert all(r["parent_ids"] and r["template_sha"] == call[0] for r in rows)
    prompt = json.loads(call[1])[0]["content"]
    assert "short, panicked messages" in prompt


def test_usage_and_cost_are_recorded_per_call(sim_project, sim):
    config = _seeded(sim_project)
    run(config)
    with sim_project.store() as store:
        rows = store.conn.execute(
            "SELECT prompt_tokens, completion_tokens, cost_usd FROM llm_calls"
        ).fetchall()
    assert rows and all(p > 0 and c > 0 for p, c, _ in rows)
    # sim-1 is priced at $1 / $2 per million tokens in the test config
    assert all(abs(cost - (p * 1 + c * 2) / 1e6) < 1e-12 for p, c, cost in rows)


def test_pii_redaction_is_an_edit_kept_out_of_exports(sim_project, sim, tmp_path):
    from synth.export import export
    from synth.filters.pii import find_pii

    sim_project.write_config(
        base_url=sim.base_url,
        extra="""
        [[filters]]
        kind = "pii"
        action = "redact"
        """,
    )
    sim.configure(p_pii=0.6)
    config = _seeded(sim_project)
    assert run(config).status == "finished"
    with sim_project.store() as store:
        edits = store.conn.execute(
            "SELECT e.example_id, e.editor, e.before_json, e.after_json, x.source, x.data_json"
            " FROM edits e JOIN examples x ON x.id = e.example_id"
        ).fetchall()
        exported = export(store, config, tmp_path / "out.jsonl")
    assert edits, "the simulator planted PII; some rows must have been redacted"
    for _, editor, before, after, source, data in edits:
        assert editor == "filter:pii" and source == "edited"
        assert find_pii(json.loads(before)["text"])  # the original is kept, in edits only
        assert not find_pii(json.loads(after)["text"]) and data == after
    text = exported.path.read_text()
    assert not any(find_pii(json.loads(line)["text"]) for line in text.splitlines())
    assert "[" in text  # placeholders such as [EMAIL] took the PII's place


def test_rpm_limit_holds_at_the_simulator_in_every_window(sim_project, sim):
    # 600 requests a minute = 10 a second; the run needs about 25 calls.
    text = sim_project.config_path.read_text().replace(
        "max_concurrency = 8", "max_concurrency = 8\nrpm = 600"
    )
    text = text.replace("per_label = 6", "per_label = 20").replace("per_call = 3", "per_call = 2")
    sim_project.config_path.write_text(text)
    config = _seeded(sim_project)
    run(config)
    times = sorted(sim.stats()["request_times"])
    assert len(times) >= 20
    # Windows of 2 s and more: over a provider's real minute the pacing margin is 1.2 s
    # of slack, here 40 ms, enough for a loop busy filtering a chunk of replies.
    for window, limit in ((2.0, 20), (3.0, 30)):
        busiest = max(sum(1 for u in times[i:] if u - t < window) for i, t in enumerate(times))
        assert busiest <= limit, (window, busiest)


def test_a_model_whose_replies_cannot_be_read_stops_the_run_early(sim_project, sim):
    """No reply of the run could be read: it stops at the end of the step that
    brought the UNUSABLE_STOP-th, saying how many and why, before any cell's idle
    steps run out."""
    sim.configure(p_garbled=1.0)
    config = _seeded(sim_project)
    summary = run(config)
    with sim_project.store() as store:
        statuses = dict(
            store.conn.execute(
                "SELECT status || ':' || reason, count(*) FROM llm_calls GROUP BY 1"
            ).fetchall()
        )
    n = statuses["invalid:unparseable"]
    assert set(statuses) == {"invalid:unparseable"}
    assert summary.status == "stopped"
    assert summary.stop_reason == f"{n} of {n} replies unusable (unparseable {n})"
    calls = [step.calls for step in summary.steps]
    assert sum(calls) == n and sum(calls[:-1]) < UNUSABLE_STOP <= n
    # Status and the audit say per cell why nothing came of the calls.
    with sim_project.store() as store:
        shown = render_status(status(config, store))
        audited = render_audit(audit_store(config, store))
        (cells,) = store.conn.execute(
            "SELECT count(DISTINCT slice || '/' || label) FROM llm_calls"
        ).fetchone()
    lines = shown[shown.index("unusable replies, by why:") :].splitlines()[1 : 1 + cells]
    assert [line.split()[1] for line in lines] == ["unparseable"] * cells
    assert sum(int(line.split()[2]) for line in lines) == n
    assert audited.count(": unparseable ") == cells


def test_a_stalled_cell_says_why_its_replies_were_unusable(sim_project, sim):
    """Usable replies keep the run going; a cell whose replies were all cut off
    stalls after its idle steps, and the stop reason names the cut."""
    text = sim_project.config_path.read_text()
    long = "short, panicked messages" + ", written in a hurry" * 120  # 2,400 characters
    text = text.replace("max_calls = 200", "max_calls = 200\nmax_idle_batches = 2")
    sim_project.config_path.write_text(text.replace("short, panicked messages", long))
    config = _seeded(sim_project)
    # The urgent cell's prompts (about 850 tokens) are refused as longer than the
    # context; the others' (about 250) fit with their replies.
    sim.configure(n_ctx=600)
    summary = run(config)
    assert summary.status == "stopped"
    assert summary.stop_reason.startswith("stalled: nothing accepted in 2 batches for ")
    assert "urgent/lost_or_stolen_card (" in summary.stop_reason
    assert "replies unusable: context_full " in summary.stop_reason
    with sim_project.store() as store:
        rows = store.conn.execute(
            "SELECT status, reason, attempts, error FROM llm_calls WHERE slice = 'urgent'"
        ).fetchall()
    # Refused once each: a prompt too long is as long the next time.
    assert rows and {r[:3] for r in rows} == {("failed", "context_full", 1)}
    assert rows[0][3].startswith("context full: HTTP 400: request (")
    assert "exceeds the available context size (600 tokens)" in rows[0][3]
