"""The Files and Batch APIs, shaped as OpenAI's, for the batch client to meet.

synth's batch mode is tested against this, so it follows the protocol rather than
taking shortcuts: JSONL files go up through ``/v1/files``, a batch over one runs
through validating and in_progress to completed after ``batch_delay_s``, a whole batch
fails at validation if any line is bad, and its lines are answered by the same engine
as online requests (the same content for the same body), into an output file and an
error file. Files and batches are held in memory: they last as long as the simulator,
and ``reset`` drops them.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from synth.sim.chat import _body_sha, _completion, _digest, _draw, _rng
from synth.sim.config import MODEL_ID, Scripted, SimConfig
from synth.sim.task import read_task
from synth.sim.wire import Scope, Send, _error_body, _reply

BATCH_ENDPOINT = "/v1/chat/completions"
FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."
_STAMPS = (
    "in_progress_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
)


@dataclass
class _File:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def obj(self) -> dict[str, Any]:
        """The File object, as ``GET /v1/files/{id}`` returns it."""
        # Batch input and output files expire after 30 days; others are kept.
        batch = self.purpose in ("batch", "batch_output")
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "expires_at": self.created_at + 30 * 86400 if batch else None,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }


@dataclass
class _Batch:
    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, Any] | None
    created_at: int
    delay: float
    status: str = "validating"
    lines: list[dict[str, Any]] = field(default_factory=list)
    model: str | None = None
    errors: list[dict[str, Any]] | None = None
    times: dict[str, int] = field(default_factory=dict)
    output_file_id: str | None = None
    error_file_id: str | None = None
    counts: dict[str, int] = field(
        default_factory=lambda: {"total": 0, "completed": 0, "failed": 0}
    )
    usage: dict[str, Any] | None = None
    timers: list[asyncio.TimerHandle] = field(default_factory=list)

    def obj(self) -> dict[str, Any]:
        """The Batch object, as ``GET /v1/batches/{id}`` returns it."""
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "model": self.model,
            "errors": None if self.errors is None else {"object": "list", "data": self.errors},
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            **{k: self.times.get(k) for k in _STAMPS},
            "expires_at": self.created_at + 86400,
            "request_counts": dict(self.counts),
            "usage": self.usage,
            "metadata": self.metadata,
        }


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def _form(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """A multipart/form-data body: field name -> (file name or None, bytes)."""
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.lower().startswith("multipart/form-data") or m is None:
        raise ValueError("the body must be multipart/form-data")
    out: dict[str, tuple[str | None, bytes]] = {}
    for part in raw.split(b"--" + m.group(1).encode())[1:]:
        if part.startswith(b"--"):
            break  # the closing delimiter
        head, sep, data = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        disposition = next(
            (h for h in head.split(b"\r\n") if h.lower().startswith(b"content-disposition:")), b""
        )
        name = re.search(rb'\bname="([^"]*)"', disposition)
        if name is None:
            continue
        filename = re.search(rb'\bfilename="([^"]*)"', disposition)
        data = data[:-2] if data.endswith(b"\r\n") else data
        out[name.group(1).decode()] = (filename.group(1).decode() if filename else None, data)
    return out


def _read_batch_file(
    data: bytes, endpoint: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The input file's request lines, and what is wrong with them (OpenAI fails the
    whole batch at validation if any line is bad)."""
    lines: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    ids: set[str] = set()
    model: object = None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
        errors.append(_line_error(None, "invalid_file", "The file is not UTF-8 text.", None))
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            line = None
        if not isinstance(line, dict):
            errors.append(_line_error(n, "invalid_json_line", "This line is not valid JSON.", None))
            continue
        custom_id, body = line.get("custom_id"), line.get("body")
        problem: tuple[str, str, str] | None = None
        if not isinstance(custom_id, str) or not custom_id:
            problem = ("missing_required_parameter", "Missing 'custom_id'.", "custom_id")
        elif custom_id in ids:
            problem = ("duplicate_custom_id", "This custom_id is used twice.", "custom_id")
        elif line.get("method") != "POST":
            problem = ("invalid_method", "The method must be POST.", "method")
        elif line.get("url") != endpoint:
            problem = ("mismatched_endpoint", f"The url must be the batch's {endpoint}.", "url")
        elif not isinstance(body, dict):
            problem = ("missing_required_parameter", "Missing 'body'.", "body")
        elif lines and body.get("model") != model:
            problem = ("mismatched_model", "Every line must use the same model.", "body.model")
        if problem is not None:
            errors.append(_line_error(n, *problem))
            continue
        assert isinstance(custom_id, str) and isinstance(body, dict)  # checked just above
        ids.add(custom_id)
        model = body.get("model")
        lines.append(line)
    if not lines and not errors:
        errors.append(_line_error(None, "empty_file", "The input file has no requests.", None))
    return lines, errors


def _line_error(line: int | None, code: str, message: str, param: str | None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def _page(data: list[dict[str, Any]]) -> dict[str, Any]:
    """A list endpoint's page: everything on one page."""
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": False,
    }


class FilesAndBatches:
    """The Files and Batch endpoints of ``SimServer``, which owns the state declared
    here: the files, the batches, the batch counters and what online requests share
    with batch lines (the script and how often each body has arrived)."""

    config: SimConfig
    _files: dict[str, _File]
    _batches: dict[str, _Batch]
    _occurrences: dict[bytes, int]
    _script: deque[Scripted]
    batches: int
    batch_requests: int
    batch_by_outcome: dict[str, int]
    batch_items: dict[str, int]
    batch_prompt_tokens: int
    batch_completion_tokens: int

    async def _files_api(
        self, method: str, path: str, scope: Scope, raw: bytes, send: Send
    ) -> None:
        parts = path.split("/")  # "", "v1", "files"[, id[, "content"]]
        if len(parts) == 3 and method == "POST":
            await self._upload(scope, raw, send)
            return
        if len(parts) == 3 and method == "GET":
            files = sorted(self._files.values(), key=lambda f: f.created_at, reverse=True)
            data = [f.obj() for f in files]
            await _reply(send, 200, json.dumps(_page(data)).encode())
            return
        routes = {(4, "GET"), (4, "DELETE"), (5, "GET")}
        if (len(parts), method) not in routes or (len(parts) == 5 and parts[4] != "content"):
            msg = f"Invalid URL ({method} {path})"
            await _reply(send, 404, _error_body(msg, "invalid_request_error", "not_found"))
            return
        file = self._files.get(parts[3])
        if file is None:
            msg = f"No such File object: {parts[3]}"
            await _reply(send, 404, _error_body(msg, "invalid_request_error", None, "id"))
        elif len(parts) == 5:
            head = [
                (b"content-type", b"application/octet-stream"),
                (b"content-length", str(len(file.data)).encode()),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": head})
            await send({"type": "http.response.body", "body": file.data})
        elif method == "DELETE":
            del self._files[file.id]
            deleted = {"id": file.id, "object": "file", "deleted": True}
            await _reply(send, 200, json.dumps(deleted).encode())
        else:
            await _reply(send, 200, json.dumps(file.obj()).encode())

    async def _upload(self, scope: Scope, raw: bytes, send: Send) -> None:
        headers = dict(scope.get("headers", ()))
        try:
            form = _form(headers.get(b"content-type", b"").decode("latin-1"), raw)
            filename, data = form.get("file", (None, b""))
            purpose = form.get("purpose", (None, b""))[1].decode()
            if filename is None:
                raise ValueError("Missing required parameter: 'file'.")
            if purpose not in FILE_PURPOSES:
                raise ValueError(f"{purpose!r} is not one of {list(FILE_PURPOSES)} - 'purpose'")
            if purpose == "batch" and not filename.endswith(".jsonl"):
                raise ValueError("Invalid file format for Batch API. Must be .jsonl")
        except (ValueError, UnicodeDecodeError) as e:
            await _reply(send, 400, _error_body(str(e), "invalid_request_error", None))
            return
        file = _File(_new_id("file-"), filename, purpose, data, int(time.time()))
        self._files[file.id] = file
        await _reply(send, 200, json.dumps(file.obj()).encode())

    async def _batches_api(self, method: str, path: str, raw: bytes, send: Send) -> None:
        parts = path.split("/")  # "", "v1", "batches"[, id[, "cancel"]]
        if len(parts) == 3 and method == "POST":
            await self._create_batch(raw, send)
            return
        if len(parts) == 3 and method == "GET":
            batches = sorted(self._batches.values(), key=lambda b: b.created_at, reverse=True)
            data = [b.obj() for b in batches]
            await _reply(send, 200, json.dumps(_page(data)).encode())
            return
        if (len(parts), method) not in {(4, "GET"), (5, "POST")} or (
            len(parts) == 5 and parts[4] != "cancel"
        ):
            msg = f"Invalid URL ({method} {path})"
            await _reply(send, 404, _error_body(msg, "invalid_request_error", "not_found"))
            return
        batch = self._batches.get(parts[3])
        if batch is None:
            msg = f"No batch found with id '{parts[3]}'."
            await _reply(send, 404, _error_body(msg, "invalid_request_error", None, "batch_id"))
            return
        if len(parts) == 5:
            if batch.status in ("validating", "in_progress"):
                for timer in batch.timers:
                    timer.cancel()
                batch.status = "cancelling"
                batch.times["cancelling_at"] = int(time.time())
                loop = asyncio.get_running_loop()
                batch.timers = [loop.call_later(batch.delay / 4, self._cancelled, batch.id)]
            elif batch.status != "cancelling":
                msg = f"Cannot cancel a batch with status '{batch.status}'."
                await _reply(send, 409, _error_body(msg, "invalid_request_error", None))
                return
        await _reply(send, 200, json.dumps(batch.obj()).encode())

    async def _create_batch(self, raw: bytes, send: Send) -> None:
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            for key in ("input_file_id", "endpoint", "completion_window"):
                if not isinstance(body.get(key), str):
                    raise ValueError(f"Missing required parameter: '{key}'.")
            if body["endpoint"] != BATCH_ENDPOINT:
                raise ValueError(f"the simulator runs batches for {BATCH_ENDPOINT} only")
            if body["completion_window"] != "24h":
                raise ValueError("Invalid 'completion_window': only '24h' is supported.")
            file = self._files.get(body["input_file_id"])
            if file is None or file.purpose != "batch":
                raise ValueError(f"Invalid 'input_file_id': {body['input_file_id']!r}.")
        except ValueError as e:
            await _reply(send, 400, _error_body(str(e), "invalid_request_error", None))
            return
        metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else None
        batch = _Batch(
            id=_new_id("batch_"),
            input_file_id=file.id,
            endpoint=body["endpoint"],
            completion_window=body["completion_window"],
            metadata=metadata,
            created_at=int(time.time()),
            delay=self.config.batch_delay_s,
        )
        self._batches[batch.id] = batch
        self.batches += 1
        loop = asyncio.get_running_loop()
        batch.timers = [loop.call_later(batch.delay / 4, self._start_batch, batch.id)]
        await _reply(send, 200, json.dumps(batch.obj()).encode())

    def _start_batch(self, batch_id: str) -> None:
        """Validation over: the batch fails, or runs for the rest of its delay."""
        batch = self._batches.get(batch_id)
        if batch is None or batch.status != "validating":
            return
        file = self._files.get(batch.input_file_id)
        data = file.data if file is not None else b""
        lines, errors = _read_batch_file(data, batch.endpoint)
        if errors:
            batch.status, batch.errors = "failed", errors
            batch.times["failed_at"] = int(time.time())
            return
        batch.lines = lines
        batch.model = lines[0]["body"].get("model")
        batch.status = "in_progress"
        batch.times["in_progress_at"] = int(time.time())
        batch.counts["total"] = len(lines)
        loop = asyncio.get_running_loop()
        batch.timers = [loop.call_later(batch.delay * 3 / 4, self._finish_batch, batch_id)]

    def _finish_batch(self, batch_id: str) -> None:
        """Answer every line, write the output and error files, close the batch."""
        batch = self._batches.get(batch_id)
        if batch is None or batch.status != "in_progress":
            return
        out: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        tokens = [0, 0]
        for line in batch.lines:
            ok, record = self._answer_line(line)
            (out if ok else failed).append(record)
            if ok:
                usage = record["response"]["body"]["usage"]
                tokens[0] += usage["prompt_tokens"]
                tokens[1] += usage["completion_tokens"]
        ts = int(time.time())
        if out:
            batch.output_file_id = self._add_file(f"{batch.id}_output.jsonl", _jsonl(out))
        if failed:
            batch.error_file_id = self._add_file(f"{batch.id}_error.jsonl", _jsonl(failed))
        batch.counts.update(completed=len(out), failed=len(failed))
        batch.usage = {
            "input_tokens": tokens[0],
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": tokens[1],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": tokens[0] + tokens[1],
        }
        # A line that hung was never answered: the window ran out on it.
        expired = any((r["error"] or {}).get("code") == "batch_expired" for r in failed)
        batch.status = "expired" if expired else "completed"
        batch.times["finalizing_at"] = ts
        batch.times["expired_at" if expired else "completed_at"] = ts
        batch.timers = []

    def _cancelled(self, batch_id: str) -> None:
        batch = self._batches.get(batch_id)
        if batch is not None and batch.status == "cancelling":
            batch.status = "cancelled"
            batch.times["cancelled_at"] = int(time.time())
            batch.timers = []

    def _add_file(self, filename: str, data: bytes) -> str:
        file = _File(_new_id("file-"), filename, "batch_output", data, int(time.time()))
        self._files[file.id] = file
        return file.id

    def _answer_line(self, line: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        """One batch line through the online engine: (succeeded, its output line)."""
        body: dict[str, Any] = line["body"]
        config = self.config
        arrived = time.time()
        self.batch_requests += 1
        record: dict[str, Any] = {
            "id": _new_id("batch_req_"),
            "custom_id": line["custom_id"],
            "response": None,
            "error": None,
        }

        def failed(status: int, error: bytes) -> tuple[bool, dict[str, Any]]:
            response = {"status_code": status, "request_id": _new_id("req_")}
            record["response"] = {**response, "body": json.loads(error)}
            return False, record

        try:
            if body.get("stream"):
                raise ValueError("stream=true is not supported in a batch")
            task = read_task(body)
        except ValueError as e:
            self.batch_by_outcome["bad_request"] += 1
            return failed(400, _error_body(str(e), "invalid_request_error", None))
        body_sha = _body_sha(body)
        seen = self._occurrences.get(body_sha, 0)
        self._occurrences[body_sha] = seen + 1
        fault_rng = _rng(_digest(b"batch-fault", config.seed, seen, body_sha))
        scripted = self._script.popleft() if self._script else None
        if scripted is not None:
            outcome = scripted.outcome
        elif fault_rng.random() < config.p_batch_line_fail:
            outcome = "500"
        else:
            outcome = _draw(config, fault_rng.random())
        self.batch_by_outcome[outcome] += 1
        if outcome == "429":
            msg = f"Rate limit reached for requests on model {MODEL_ID}."
            return failed(429, _error_body(msg, "requests", "rate_limit_exceeded"))
        if outcome == "quota":
            msg = "You exceeded your current quota, please check your plan and billing details."
            return failed(429, _error_body(msg, "insufficient_quota", "insufficient_quota"))
        if outcome == "500":
            msg = "The server had an error while processing your request. Sorry about that!"
            return failed(500, _error_body(msg, "server_error", "server_error"))
        if outcome == "hang":
            record["error"] = {"code": "batch_expired", "message": EXPIRED_MESSAGE}
            return False, record
        reply, kinds = _completion(body, task, config, outcome, fault_rng, seen, body_sha, arrived)
        for k in kinds:
            self.batch_items[k] += 1
        self.batch_prompt_tokens += reply["usage"]["prompt_tokens"]
        self.batch_completion_tokens += reply["usage"]["completion_tokens"]
        record["response"] = {"status_code": 200, "request_id": _new_id("req_"), "body": reply}
        return True, record
