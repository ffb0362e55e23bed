"""Batch mode end to end: the real openai client against the simulator's Batch API on
loopback, a real SQLite store in tmp_path."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest
from conftest import Project
from openai.types import Batch, FileObject
from openai.types.chat import ChatCompletion

from synth.generate import SeedPool, build_call
from synth.llm.batch import BatchClient
from synth.plan import plan_cells
from synth.prompts import load_template
from synth.runner import run, run_async
from synth.seeds import read_seeds
from synth.store import CallRow, Store

BATCH = 'mode = "batch"\nbatch_poll_s = 0.05\n'


def _seeded(project: Project, *, batch: bool = True):
    if batch:
        text = project.config_path.read_text()
        project.config_path.write_text(text.replace("retries = 5\n", "retries = 5\n" + BATCH))
    config = project.config()
    with project.store() as store:
        store.examples.add_seeds(read_seeds(project.seeds, config).seeds)
    return config


def _planned(config, store: Store, n: int) -> list[CallRow]:
    """``n`` real generation calls, planned under a run as the quota loop would."""
    template = load_template(config.resolve(config.generate.template), config.generate.template)
    pool = SeedPool.from_rows(store.examples.seeds())
    plans = [p for p in plan_cells(config, store.examples.cell_counts()) if p.deficit]
    run_row = store.runs.begin(config.as_json(), config.sha)
    calls = [build_call(config, template, plans[i % len(plans)], pool, i, 2) for i in range(n)]
    return store.calls.plan(run_row.id, calls)


def _calls(store: Store) -> list[tuple]:
    return store.conn.execute(
        "SELECT id, status, attempts, error, cost_usd FROM llm_calls ORDER BY rowid"
    ).fetchall()


def _synthetic(store: Store) -> list[tuple]:
    rows = [r for r in store.examples.dataset() if r["source"] != "real"]
    return sorted((r["slice"], r["label"], json.dumps(r["data"], sort_keys=True)) for r in rows)


# -- runs ------------------------------------------------------------------------------


def test_batch_mode_fills_every_cell_to_its_target(sim_project, sim):
    config = _seeded(sim_project)
    summary = run(config)
    assert summary.status == "finished", summary.stop_reason
    with sim_project.store() as store:
        plans = plan_cells(config, store.examples.cell_counts())
        jobs = store.batch_jobs.jobs()
        calls = _calls(store)
    assert all(p.deficit == 0 for p in plans) and summary.accepted == 13
    stats = sim.stats()
    assert stats["requests"] == 0, "batch mode sends no online request"
    assert stats["batches"] == len(jobs) == len(summary.steps)
    assert all(j["status"] == "completed" and j["finished_at"] for j in jobs)
    assert {c for j in jobs for c in j["call_ids"]} == {c[0] for c in calls}
    assert all(attempts == 1 for _, _, attempts, _, _ in calls)
    assert stats["batch_requests"] == len(calls)


def test_batch_and_online_accept_the_same_examples_at_half_the_cost(tmp_path, sim):
    online = Project(tmp_path / "online", base_url=sim.base_url)
    batch = Project(tmp_path / "batch", base_url=sim.base_url)
    assert run(_seeded(online, batch=False)).status == "finished"
    assert run(_seeded(batch)).status == "finished"
    assert sim.stats()["batches"] > 0
    with online.store() as a, batch.store() as b:
        assert _synthetic(a) == _synthetic(b) and len(_synthetic(a)) == 13
        spend_online, spend_batch = a.calls.spend(), b.calls.spend()
    assert spend_batch.calls == spend_online.calls
    assert spend_batch.prompt_tokens == spend_online.prompt_tokens > 0
    assert spend_batch.completion_tokens == spend_online.completion_tokens > 0
    assert spend_batch.cost_usd == pytest.approx(spend_online.cost_usd / 2, rel=1e-9)


def test_failed_lines_are_recorded_failed_and_the_run_still_finishes(sim_project, sim):
    sim.configure(p_batch_line_fail=0.3)
    config = _seeded(sim_project)
    summary = run(config)
    assert summary.status == "finished", summary.stop_reason
    with sim_project.store() as store:
        calls = _calls(store)
        attempts = store.calls.spend().attempts
    failed = [c for c in calls if c[1] == "failed"]
    assert failed, "the simulator failed about a third of the lines"
    assert all(c[3].startswith("HTTP 500: ") and c[4] == 0 for c in failed)
    assert all(c[2] == 1 for c in calls), "a line is one attempt; nothing retried in a batch"
    stats = sim.stats()
    assert stats["batch_by_outcome"]["500"] == len(failed)
    assert stats["batch_requests"] == attempts == len(calls)


def test_a_run_cut_off_while_waiting_resumes_by_polling_the_same_batch(sim_project, sim):
    sim.configure(batch_delay_s=1.0)
    config = _seeded(sim_project)

    async def cut_off() -> None:
        """Start a run and cancel it once its first batch is recorded, mid-wait."""
        with sim_project.store() as store:
            task = asyncio.ensure_future(run_async(config, store))
            deadline = time.monotonic() + 10
            while not store.batch_jobs.jobs() and not task.done() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(cut_off())
    with sim_project.store() as store:
        [job] = store.batch_jobs.jobs()
        [cut] = store.runs.all()
    assert job["finished_at"] is None and cut.status == "running"
    assert sim.stats()["batches"] == 1 and sim.stats()["batch_requests"] == 0
    sim.configure(batch_delay_s=0.2)
    summary = run(config)
    assert summary.status == "finished" and summary.resumed
    with sim_project.store() as store:
        jobs = store.batch_jobs.jobs()
        calls = _calls(store)
    assert jobs[0]["id"] == job["id"] and jobs[0]["status"] == "completed"
    stats = sim.stats()
    assert stats["batches"] == len(jobs)  # later jobs only for cells still short
    assert stats["batch_requests"] == len(calls) and all(c[2] == 1 for c in calls)


def test_a_batch_submitted_before_a_crash_is_collected_not_sent_again(sim_project, sim):
    config = _seeded(sim_project)

    async def submit() -> list[str]:
        with sim_project.store() as store:
            calls = _planned(config, store, 4)
            async with BatchClient(
                config.llm, store.calls, store.batch_jobs, api_key="unused"
            ) as client:
                return await client.submit(calls)

    [batch_id] = asyncio.run(submit())
    assert sim.stats()["batches"] == 1
    summary = run(config)
    assert summary.status == "finished" and summary.resumed
    with sim_project.store() as store:
        jobs = store.batch_jobs.jobs()
        calls = _calls(store)
    assert jobs[0]["id"] == batch_id and len(jobs[0]["call_ids"]) == 4
    stats = sim.stats()
    assert stats["batches"] == len(jobs), "the submitted batch was polled, not created again"
    assert stats["batch_requests"] == len(calls) and all(c[2] == 1 for c in calls)


def test_client_records_ok_failed_and_expired_lines_then_resends_only_the_unanswered(
    sim_project, sim
):
    sim.script(["ok", "500", "hang", "garbled"])
    config = _seeded(sim_project)
    heard: list[int] = []

    async def go() -> tuple[list, list]:
        with sim_project.store() as store:
            calls = _planned(config, store, 4)
            async with BatchClient(
                config.llm, store.calls, store.batch_jobs, api_key="unused"
            ) as client:
                first = await client.complete_all(calls)
                again = await client.complete_all(
                    store.calls.by_id([c.id for c in calls]),
                    on_result=lambda i, _: heard.append(i),
                )
            return first, again

    first, again = asyncio.run(go())
    assert [r.status for r in first] == ["ok", "failed", "failed", "invalid"]
    assert first[1].error.startswith("HTTP 500: The server had an error")
    assert first[2].error.startswith("batch_expired: ")
    assert first[3].error.startswith("no JSON in the reply")
    assert [r.status for r in again] == ["ok"] * 4 and sorted(heard) == [0, 1, 2, 3]
    assert again[0].content == first[0].content
    with sim_project.store() as store:
        jobs = store.batch_jobs.jobs()
        rows = store.conn.execute(
            "SELECT prompt_tokens, completion_tokens, cost_usd, attempts FROM llm_calls"
            " ORDER BY rowid"
        ).fetchall()
    assert [j["status"] for j in jobs] == ["expired", "completed"]
    assert jobs[0]["request_counts"] == {"total": 4, "completed": 2, "failed": 2}
    assert len(jobs[1]["call_ids"]) == 3, "the answered call was not sent again"
    assert [r[3] for r in rows] == [1, 2, 2, 2]
    for pt, ct, cost, _ in rows:  # sim-1 at $1 / $2 per million tokens, halved
        assert cost == pytest.approx((pt * 1.0 + ct * 2.0) / 1e6 * 0.5) and cost > 0
    stats = sim.stats()
    assert stats["batches"] == 2 and stats["batch_requests"] == 7


# -- the simulator's Batch API, as OpenAI shapes it ------------------------------------


def _line(custom_id: str, i: int, url: str = "/v1/chat/completions") -> dict:
    prompt = (
        "Label: card_arrival\n\nReal examples of this label, one JSON object per line:\n"
        '{"text": "my card still has not arrived after two weeks", "label": "card_arrival"}\n'
        '{"text": "when will the new card I ordered get here", "label": "card_arrival"}\n\n'
        f'Write 2 new examples with label "card_arrival". (line {i})'
    )
    body = {"model": "sim-1", "messages": [{"role": "user", "content": prompt}]}
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def _jsonl(lines: list[dict]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def _raw(sim, path: str) -> dict:
    return httpx.get(sim.base_url + path, timeout=5).json()


def test_files_batches_and_result_lines_have_openai_shapes(sim):
    sim.script(["ok", "500", "ok"])

    async def go() -> None:
        client = openai.AsyncOpenAI(base_url=sim.base_url, api_key="sim", max_retries=0)
        try:
            lines = [_line(f"req-{i}", i) for i in range(3)]
            upload = await client.files.create(
                file=("in.jsonl", _jsonl(lines), "application/jsonl"), purpose="batch"
            )
            assert upload.purpose == "batch" and upload.bytes == len(_jsonl(lines))
            FileObject.model_validate(_raw(sim, f"/files/{upload.id}"))
            batch = await client.batches.create(
                input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
            seen = [batch.status]
            while batch.status not in ("completed", "failed", "expired", "cancelled"):
                await asyncio.sleep(0.02)
                batch = await client.batches.retrieve(batch.id)
                Batch.model_validate(_raw(sim, f"/batches/{batch.id}"))
                if batch.status != seen[-1]:
                    seen.append(batch.status)
            assert seen == ["validating", "in_progress", "completed"]
            counts = batch.request_counts
            assert counts and (counts.total, counts.completed, counts.failed) == (3, 2, 1)
            assert batch.usage and batch.usage.total_tokens > 0 and batch.completed_at
            assert batch.output_file_id and batch.error_file_id
            out = (await client.files.content(batch.output_file_id)).text.splitlines()
            err = (await client.files.content(batch.error_file_id)).text.splitlines()
            assert [json.loads(x)["custom_id"] for x in out] == ["req-0", "req-2"]
            for raw in out:
                line = json.loads(raw)
                assert set(line) == {"id", "custom_id", "response", "error"}
                assert line["id"].startswith("batch_req_") and line["error"] is None
                assert line["response"]["status_code"] == 200
                assert line["response"]["request_id"].startswith("req_")
                reply = ChatCompletion.model_validate(line["response"]["body"])
                body = lines[int(line["custom_id"].removeprefix("req-"))]["body"]
                online = await client.chat.completions.create(**body)
                assert reply.choices[0].message.content == online.choices[0].message.content
            [failed] = [json.loads(x) for x in err]
            assert failed["custom_id"] == "req-1" and failed["error"] is None
            assert failed["response"]["status_code"] == 500
            assert failed["response"]["body"]["error"]["type"] == "server_error"
            output_file = await client.files.retrieve(batch.output_file_id)
            assert output_file.purpose == "batch_output"
            listed = await client.batches.list()
            assert [b.id for b in listed.data] == [batch.id]
        finally:
            await client.close()

    asyncio.run(go())
    stats = sim.stats()
    assert stats["batches"] == 1 and stats["batch_requests"] == 3
    assert stats["requests"] == 2, "only the online requests count as requests"


def test_bad_input_fails_validation_and_a_batch_can_be_cancelled(sim):
    sim.configure(batch_delay_s=2.0)

    async def go() -> None:
        client = openai.AsyncOpenAI(base_url=sim.base_url, api_key="sim", max_retries=0)
        try:
            good = _jsonl([_line("a", 0), _line("b", 1)])
            bad = _jsonl([_line("a", 0), _line("b", 1, url="/v1/embeddings")])
            ids = []
            for data in (good, bad):
                f = await client.files.create(file=("x.jsonl", data), purpose="batch")
                b = await client.batches.create(
                    input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
                )
                ids.append(b.id)
            cancelling = await client.batches.cancel(ids[0])
            assert cancelling.status == "cancelling" and cancelling.cancelling_at
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                done = [await client.batches.retrieve(i) for i in ids]
                if [b.status for b in done] == ["cancelled", "failed"]:
                    break
                await asyncio.sleep(0.05)
            cancelled, failed = done
            assert cancelled.status == "cancelled" and cancelled.output_file_id is None
            assert failed.status == "failed" and failed.errors and failed.errors.data
            assert failed.errors.data[0].line == 2 and failed.errors.data[0].param == "url"
            with pytest.raises(openai.NotFoundError):
                await client.batches.retrieve("batch_missing")
            with pytest.raises(openai.BadRequestError):
                await client.batches.create(
                    input_file_id="file-missing",
                    endpoint="/v1/chat/completions",
                    completion_window="24h",
                )
        finally:
            await client.close()

    asyncio.run(go())
    assert sim.stats()["batch_requests"] == 0
