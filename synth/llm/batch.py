"""The Batch API client: the same surface as ``LLMClient``, at the batch price.

Planned calls become lines of a JSONL file (``custom_id`` = the call's id, ``body`` =
the request the online client would send), uploaded through ``/v1/files`` and run as
a batch over ``/v1/chat/completions``. The batch id is committed to the store before
anything waits on it, so a killed run polls the same batch when it resumes instead of
paying for its calls again. Replies go through the online client's validation and
bookkeeping (``ReplyRecorder``), priced at ``batch_discount``.

Each line counts one attempt. A line that fails is recorded failed; nothing is
retried inside a batch, because the quota loop plans more calls for a cell that is
still short.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Final

import openai
from openai.types import Batch
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from synth.config import LLMSettings
from synth.errors import SynthError
from synth.llm.client import (
    FATAL,
    CallResult,
    ReplyRecorder,
    _cached,
    _describe,
    _Wait,
    failure_reason,
    retryable,
)
from synth.llm.ledger import Ledger, Refused, take_call
from synth.llm.reply import loads, one_line
from synth.llm.stream import InFlight
from synth.records import Unusable
from synth.store.batch_jobs import BatchJobs
from synth.store.calls import Calls
from synth.store.rows import BatchJob, CallRow

ENDPOINT: Final = "/v1/chat/completions"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
# OpenAI's limits per batch: 50,000 requests and a 200 MB input file.
MAX_LINES = 50_000
MAX_BYTES = 190 * 1024 * 1024


class BatchClient:
    """Sends planned calls as Batch API jobs and records every line's reply."""

    def __init__(
        self,
        settings: LLMSettings,
        calls: Calls,
        jobs: BatchJobs,
        *,
        api_key: str,
        base_url: str | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        self.settings = settings
        self.calls = calls
        self.jobs = jobs
        self.ledger = ledger  # the run's caps: each line holds its worst case
        # Uploads, polls and downloads may be repeated safely, so the openai client's
        # own retries serve them; creating a batch is retried here (see _create). A
        # batch lives on the server that took it: the first of llm.base_urls.
        first = settings.base_urls[0] if settings.base_urls else None
        self.client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url or settings.base_url or first,
            max_retries=settings.retries,
            timeout=settings.timeout,
        )
        self.replies = ReplyRecorder(settings, calls, price_factor=settings.batch_discount)
        self.replies.ledger = ledger
        self.in_flight = InFlight()  # a batch's requests wait on the server, not on the wire
        self.fatal: SynthError | None = None

    async def close(self) -> None:
        """Close the HTTP client; open batches stay open on the server and in the store."""
        await self.client.close()

    async def __aenter__(self) -> BatchClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def complete_all(
        self,
        calls: Sequence[CallRow],
        on_result: Callable[[int, CallResult], None] | None = None,
    ) -> list[CallResult]:
        """Answer every call: answered ones from the store, calls an open batch job
        already carries from that job, the rest through new batches. Returns once
        every batch involved has ended; ``on_result(index, result)`` hears of each
        result as its batch is collected. Results in the order of ``calls``."""
        results: list[CallResult | None] = [None] * len(calls)
        where: dict[str, list[int]] = {}
        todo: dict[str, CallRow] = {}

        def settle(found: dict[str, CallResult]) -> None:
            for call_id, result in found.items():
                for i in where.get(call_id, ()):
                    if results[i] is None:
                        results[i] = result
                        if on_result is not None:
                            on_result(i, result)

        for i, call in enumerate(calls):
            where.setdefault(call.id, []).append(i)
            if call.status == "ok" and call.response_json is not None:
                settle({call.id: _cached(call)})
            else:
                todo[call.id] = call
        jobs = self._open_jobs(set(todo))
        carried = {i for job in jobs for i in job["call_ids"]}
        fresh = [c for c in todo.values() if c.id not in carried]
        refused = self._over_budget(fresh)
        settle(refused)
        created, failures = await self._submit([c for c in fresh if c.id not in refused])
        settle(failures)

        async def collect(batch_id: str, call_ids: list[str]) -> None:
            settle(await self._collect(batch_id, call_ids))

        waits = [(job["id"], job["call_ids"]) for job in jobs] + created
        # Every batch is waited for even if collecting one fails: its job stays open
        # in the store, and a resumed run collects it.
        ended = await asyncio.gather(*(collect(b, ids) for b, ids in waits), return_exceptions=True)
        errors = [e for e in ended if isinstance(e, BaseException)]
        if errors:
            raise errors[0]
        lost = "not answered: its batch was not collected"
        settle({c.id: CallResult(c, "failed", None, lost) for c in todo.values()})
        if self.fatal is not None:
            raise self.fatal
        return [r for r in results if r is not None]

    def _over_budget(self, calls: list[CallRow]) -> dict[str, CallResult]:
        """Take each line's worst case from the run's caps; the lines they do not
        allow are recorded not sent, and returned, by call id, to be left out."""
        refused: dict[str, CallResult] = {}
        if self.ledger is None:
            return refused
        for call in calls:
            try:
                take_call(self.ledger, call, self.settings, self.settings.batch_discount)
            except Refused as e:
                error = f"not sent: {e}"
                self.replies.record(call, "failed", None, error, None, reason=Unusable.OVER_BUDGET)
                refused[call.id] = CallResult(
                    call, "failed", None, error, reason=Unusable.OVER_BUDGET
                )
        return refused

    async def submit(self, calls: Sequence[CallRow]) -> list[str]:
        """Create batches for ``calls`` and record them in the store, without waiting
        for them; returns the batch ids. Calls that could not be submitted are
        recorded failed."""
        created, _ = await self._submit(calls)
        if self.fatal is not None:
            raise self.fatal
        return [batch_id for batch_id, _ in created]

    # -- submitting ----------------------------------------------------------------

    def _open_jobs(self, wanted: set[str]) -> list[BatchJob]:
        """Open jobs carrying any of the wanted calls. A job whose calls were all
        recorded before a crash cut its bookkeeping short is closed here."""
        jobs = []
        for job in self.jobs.jobs(open_only=True):
            rows = self.calls.by_id(job["call_ids"])
            if not any(c.status == "pending" for c in rows):
                self.jobs.update(job["id"], status=job["status"], finished=True)
            elif wanted & set(job["call_ids"]):
                jobs.append(job)
        return jobs

    async def _submit(
        self, calls: Sequence[CallRow]
    ) -> tuple[list[tuple[str, list[str]]], dict[str, CallResult]]:
        """(batch id, call ids) of each batch created, and results for calls that
        could not be submitted (already recorded failed)."""
        created: list[tuple[str, list[str]]] = []
        failures: dict[str, CallResult] = {}
        for chunk, data in _chunks(calls):
            ids = [c.id for c in chunk]
            if self.fatal is not None:
                for c in chunk:
                    failures[c.id] = CallResult(c, "failed", None, "not sent: the run is stopping")
                continue
            started = time.perf_counter()
            # Counted before anything leaves: a kill mid-upload still counts the lines.
            self.jobs.record_attempts(ids)
            try:
                upload = await self.client.files.create(
                    file=(f"synth-{uuid.uuid4().hex[:12]}.jsonl", data, "application/jsonl"),
                    purpose="batch",
                )
                batch = await self._create(upload.id, chunk[0].run_id)
            except (openai.APIError, openai.OpenAIError) as e:
                if isinstance(e, openai.NotFoundError):
                    self.fatal = SynthError(
                        "llm.mode",
                        "batch mode needs the Batch API (/v1/files and /v1/batches), and this"
                        f' endpoint has none: {_describe(e)}; set llm.mode = "online"',
                    )
                elif isinstance(e, FATAL):
                    self.fatal = SynthError("llm", f"{type(e).__name__}: {_describe(e)}")
                latency = (time.perf_counter() - started) * 1000
                for c in chunk:
                    reason = failure_reason(e)
                    self.replies.record(c, "failed", None, _describe(e), latency, reason=reason)
                    failures[c.id] = CallResult(c, "failed", None, _describe(e), reason=reason)
                continue
            self.jobs.add(
                batch.id,
                run_id=chunk[0].run_id,
                input_file_id=upload.id,
                status=batch.status,
                call_ids=ids,
            )
            created.append((batch.id, ids))
        return created, failures

    async def _create(self, input_file_id: str, run_id: str | None) -> Batch:
        """Create the batch, retrying as the online client does. Before a retry, look
        for a batch over the same input file: a create whose reply was lost may have
        gone through, and a second one would bill every line twice."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.retries + 1),
            wait=_Wait(cap=60.0),
            retry=retry_if_exception(retryable),
            reraise=True,
        )
        creator = self.client.with_options(max_retries=0)
        async for attempt in retrying:
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    page = await self.client.batches.list(limit=100)
                    for batch in page.data:
                        if batch.input_file_id == input_file_id:
                            return batch
                return await creator.batches.create(
                    input_file_id=input_file_id,
                    endpoint=ENDPOINT,
                    completion_window=self.settings.batch_window,  # type: ignore[arg-type]
                    metadata={"synth_run_id": run_id} if run_id else openai.omit,
                )
        raise AssertionError("unreachable: tenacity reraises")

    # -- collecting ----------------------------------------------------------------

    async def _collect(self, batch_id: str, call_ids: list[str]) -> dict[str, CallResult]:
        """Wait for the batch to end, record a reply for each of its calls still
        pending, close the job. Results by call id."""
        try:
            batch = await self._wait(batch_id)
        except FATAL as e:
            if not isinstance(e, openai.NotFoundError):
                # Left open: with the key or permissions mended, a resumed run collects it.
                self.fatal = SynthError("llm", f"{type(e).__name__}: {_describe(e)}")
                return {}
            return self._close_lost(batch_id, call_ids, f"batch {batch_id}: {_describe(e)}")
        lines: dict[str, dict[str, Any]] = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            content = await self.client.files.content(file_id)
            for raw in content.text.splitlines():
                if raw.strip():
                    try:
                        line = loads(raw)
                    except ValueError:
                        continue  # unreadable: its call is one the batch did not answer
                    if isinstance(line, dict):
                        lines[str(line.get("custom_id"))] = line
        latency = max(0.0, time.time() - batch.created_at) * 1000
        missing = _ended_without_reply(batch)
        results: dict[str, CallResult] = {}
        for call in self.calls.by_id(call_ids):
            if call.status != "pending":
                results[call.id] = _stored(call)
                continue
            line = lines.get(call.id)
            if line is None:
                self.replies.record(call, "failed", None, missing, latency)
                results[call.id] = CallResult(call, "failed", None, missing)
                continue
            body, error = _line_reply(line)
            if body is None:
                self.replies.record(call, "failed", None, error, latency)
                results[call.id] = CallResult(call, "failed", None, error)
            else:
                results[call.id] = self.replies.accept(call, body, latency)
        counts = batch.request_counts.model_dump() if batch.request_counts else None
        self.jobs.update(
            batch_id,
            status=batch.status,
            output_file_id=batch.output_file_id,
            error_file_id=batch.error_file_id,
            request_counts=counts,
            finished=True,
        )
        return results

    async def _wait(self, batch_id: str) -> Batch:
        """Poll every ``batch_poll_s`` until the batch ends. A poll the openai client's
        retries could not get through is tried again at the next tick, up to
        ``retries`` times in a row: a batch runs for hours and a short outage costs
        nothing, while a longer one stops the run with the job still open, to be
        collected when the run is resumed."""
        last = None
        failures = 0
        while True:
            try:
                batch = await self.client.batches.retrieve(batch_id)
            except FATAL:
                raise
            except (openai.APIError, openai.OpenAIError) as e:
                failures += 1
                if not retryable(e) or failures > self.settings.retries:
                    raise
            else:
                failures = 0
                if batch.status != last:
                    self.jobs.update(batch_id, status=batch.status)
                    last = batch.status
                if batch.status in TERMINAL:
                    return batch
            await asyncio.sleep(self.settings.batch_poll_s)

    def _close_lost(self, batch_id: str, call_ids: list[str], error: str) -> dict[str, CallResult]:
        results: dict[str, CallResult] = {}
        for call in self.calls.by_id(call_ids):
            if call.status == "pending":
                self.replies.record(call, "failed", None, error, None)
                results[call.id] = CallResult(call, "failed", None, error)
            else:
                results[call.id] = _stored(call)
        self.jobs.update(batch_id, status="lost", finished=True)
        return results


def _line(call: CallRow) -> dict[str, Any]:
    """The call as a batch input line: the body is what the online client sends."""
    body = {"model": call.model, "messages": call.messages, **call.params}
    return {"custom_id": call.id, "method": "POST", "url": ENDPOINT, "body": body}


def _chunks(calls: Sequence[CallRow]) -> list[tuple[list[CallRow], bytes]]:
    """Calls grouped into input files: one model per batch, within the size limits."""
    by_model: dict[str, list[CallRow]] = {}
    for call in calls:
        by_model.setdefault(call.model, []).append(call)
    out: list[tuple[list[CallRow], bytes]] = []
    for group in by_model.values():
        chunk: list[CallRow] = []
        data: list[bytes] = []
        size = 0
        for call in group:
            line = (json.dumps(_line(call), ensure_ascii=False) + "\n").encode()
            if chunk and (len(chunk) >= MAX_LINES or size + len(line) > MAX_BYTES):
                out.append((chunk, b"".join(data)))
                chunk, data, size = [], [], 0
            chunk.append(call)
            data.append(line)
            size += len(line)
        if chunk:
            out.append((chunk, b"".join(data)))
    return out


def _line_reply(line: dict[str, Any]) -> tuple[str | None, str | None]:
    """(the chat completion's JSON, None) for an answered line, else (None, why)."""
    error = line.get("error")
    if error:
        if not isinstance(error, dict):
            return None, one_line(f"error: {error}")
        return None, one_line(f"{error.get('code')}: {error.get('message')}")
    response = line.get("response")
    response = response if isinstance(response, dict) else {}
    status = response.get("status_code")
    body = response.get("body")
    if status == 200 and isinstance(body, dict):
        return json.dumps(body, ensure_ascii=False), None
    detail = (body or {}).get("error") if isinstance(body, dict) else None
    message = detail.get("message") if isinstance(detail, dict) else json.dumps(body)
    return None, f"HTTP {status}: {message}"


def _ended_without_reply(batch: Batch) -> str:
    """Why a call of an ended batch has no line in either file."""
    why = f"batch {batch.id} ended {batch.status} without answering this call"
    errors = batch.errors.data if batch.errors and batch.errors.data else []
    if errors:
        first = errors[0]
        where = f" (line {first.line})" if first.line is not None else ""
        why += f": {first.code}: {first.message}{where}"
    return why


def _stored(call: CallRow) -> CallResult:
    """A call recorded before: what the store says of it."""
    if call.status == "ok" and call.response_json is not None:
        return _cached(call)
    return CallResult(call, call.status, None, f"recorded {call.status} before")
