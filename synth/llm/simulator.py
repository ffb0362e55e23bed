"""synth's own OpenAI-compatible endpoint: realistic replies and faults on demand.

The offline demo, every test and the throughput benchmarks talk to it through the
real ``openai`` client over loopback, so it speaks the chat-completions protocol
faithfully (OpenAI-shaped errors, ``Retry-After`` on 429, ``finish_reason`` on cut
replies, ``usage``) and is cheap enough never to be the bottleneck: it is a bare ASGI
callable served by uvicorn with the httptools parser, latency is ``asyncio.sleep``,
and a reply costs well under a millisecond of CPU.

Replies paraphrase and recombine the few-shot examples found in the prompt (see
``_simtext``); judge requests are graded by documented heuristics (``_simjudge``).
Everything is deterministic for a seed: a reply's content is a function of (seed,
sha256 of the body's canonical JSON), so a retried request gets
the same content; the fault drawn also depends on how many times that body has
arrived, so a request that drew a 429 does not draw it forever.

The Batch API is there too, shaped as OpenAI's: JSONL files go up through
``/v1/files``, a batch over one runs through validating and in_progress to completed
after ``batch_delay_s``, and its lines are answered by the same engine as online
requests (the same content for the same body), into an output file and an error file.

Endpoints: ``POST /v1/chat/completions``, ``GET /v1/models``, ``POST /v1/files``,
``GET|DELETE /v1/files/{id}``, ``GET /v1/files/{id}/content``, ``GET|POST
/v1/batches``, ``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``, ``GET
/stats`` and, to steer a simulator running in another process, ``POST
/control/reset``, ``GET|POST /control/config`` and ``POST /control/script``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import math
import re
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from random import Random
from typing import Annotated, Any

import pydantic
import uvicorn
from pydantic import BaseModel, ConfigDict, Field

from synth.llm._simjudge import candidate_text, judge_kind
from synth.llm._simjudge import grade as judge_grade
from synth.llm._simtext import ITEM_KINDS, ItemWriter, Task, read_task
from synth.serving import listening_socket

Share = Annotated[float, Field(ge=0.0, le=1.0)]
OUTCOMES = ("ok", "429", "500", "hang", "truncate", "malformed")
MODEL_ID = "sim-1"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class SimConfig(BaseModel):
    """How the simulator behaves. Shares are probabilities in [0, 1].

    Whole-request faults (``p_429`` ... ``p_malformed``) are drawn once per request
    and must sum to at most 1; item faults (``p_exact_dup`` ... ``p_bad_item``) are
    drawn per item of a good reply and must also sum to at most 1.

    - ``latency_ms`` / ``latency_jitter_ms``: delay added to every reply, uniform
      within +- jitter, drawn deterministically per request.
    - ``max_in_flight``: server-side slots. Requests beyond it wait in a FIFO queue,
      as on an inference server; they are not rejected. 429s are answered by the
      front door without taking a slot.
    - ``p_hang``: the request is never answered (for ``hang_s``) unless the client
      goes away.
    - ``p_truncate``: content cut mid-JSON, ``finish_reason`` "length".
    - ``p_malformed``: content that is not valid JSON, ``finish_reason`` "stop".
    - ``retry_after_s``: sent with 429s as ``retry-after`` (whole seconds, rounded
      up) and ``retry-after-ms``.
    - ``batch_delay_s``: how long a batch takes from creation to completed (a
      quarter of it validating, the rest in progress).
    - ``p_batch_line_fail``: share of batch lines that fail with a 500, drawn per
      line before the whole-request shares, which apply to batch lines as the batch
      worker would meet them: a 429 or 500 fails the line, a hang leaves it
      unanswered (the batch ends ``expired``), truncate and malformed are replies.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    latency_ms: float = Field(0.0, ge=0.0)
    latency_jitter_ms: float = Field(0.0, ge=0.0)
    max_in_flight: int | None = Field(None, ge=1)
    p_429: Share = 0.0
    p_500: Share = 0.0
    p_hang: Share = 0.0
    p_truncate: Share = 0.0
    p_malformed: Share = 0.0
    retry_after_s: float = Field(1.0, ge=0.0)
    hang_s: float = Field(600.0, ge=0.0)
    p_exact_dup: Share = 0.0
    p_near_dup: Share = 0.0
    p_off_label: Share = 0.0
    p_pii: Share = 0.0
    p_bad_item: Share = 0.0
    batch_delay_s: float = Field(0.2, ge=0.0)
    p_batch_line_fail: Share = 0.0

    @pydantic.model_validator(mode="after")
    def _shares_fit(self) -> SimConfig:
        request = self.p_429 + self.p_500 + self.p_hang + self.p_truncate + self.p_malformed
        item = self.p_exact_dup + self.p_near_dup + self.p_off_label + self.p_pii + self.p_bad_item
        if request > 1 + 1e-9:
            raise ValueError(f"whole-request fault shares sum to {request:g}, more than 1")
        if item > 1 + 1e-9:
            raise ValueError(f"item fault shares sum to {item:g}, more than 1")
        return self

    def item_shares(self) -> dict[str, float]:
        """The item-fault shares keyed by item kind, as ``ItemWriter`` takes them."""
        return {
            "exact_dup": self.p_exact_dup,
            "near_dup": self.p_near_dup,
            "off_label": self.p_off_label,
            "pii": self.p_pii,
            "bad_item": self.p_bad_item,
        }


@dataclass(frozen=True)
class Scripted:
    """A forced outcome; ``retry_after`` overrides the config's for a 429."""

    outcome: str
    retry_after: float | None = None


def parse_outcome(word: str) -> Scripted:
    """Parse a scripted outcome: ``ok``, ``429``, ``429:retry-after=2`` (seconds, may
    be fractional), ``500``, ``hang``, ``truncate`` or ``malformed``."""
    if not isinstance(word, str):
        raise ValueError(f"outcome must be a string, not {type(word).__name__}")
    head, _, arg = word.strip().partition(":")
    if head not in OUTCOMES or (arg and head != "429"):
        raise ValueError(f"unknown outcome {word!r}; expected one of {', '.join(OUTCOMES)}")
    if not arg:
        return Scripted(head)
    key, _, value = arg.partition("=")
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if key.strip() != "retry-after" or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"bad outcome {word!r}; expected e.g. 429:retry-after=2")
    return Scripted(head, seconds)


class _Slots:
    """A FIFO semaphore whose size can change while requests wait on it."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.used = 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    def _free(self) -> bool:
        return self.limit is None or self.used < self.limit

    async def acquire(self) -> None:
        if not self.waiters and self._free():
            self.used += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was handed over just before the cancel
            raise

    def release(self) -> None:
        self.used -= 1
        self._wake()

    def _wake(self) -> None:
        while self.waiters and self._free():
            fut = self.waiters.popleft()
            if not fut.done():
                self.used += 1
                fut.set_result(None)

    def resize(self, limit: int | None) -> None:
        self.limit = limit
        self._wake()


def _digest(*parts: bytes | int | str) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
        h.update(b"|")
    return h.digest()


def _rng(digest: bytes) -> Random:
    return Random(int.from_bytes(digest[:8], "big"))


def _tokens(chars: int) -> int:
    return max(1, (chars + 3) // 4)


_JSON = (b"content-type", b"application/json")


def _error_body(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    error = {"message": message, "type": type_, "param": param, "code": code}
    return json.dumps({"error": error}).encode()


def _malform(content: str, rng: Random) -> str:
    """Content that is not valid JSON, the ways models get it wrong."""
    r = rng.randrange(6)
    if r == 0:
        return content[:-1]  # the closing brace is missing
    if r == 1:
        return content + "\n\nI hope these examples are helpful!"
    if r == 2:
        return "Here are the examples you asked for:\n" + content
    if r == 3:
        return content[:-2] + ",]}"  # trailing comma
    if r == 4:
        return "```json\n" + content + "\n```"
    if content.startswith('{"'):
        return "{" + content[2:].replace('"', "", 1)  # the first key unquoted
    return content[:-1]


# -- the Batch API's objects, held in memory ---------------------------------------

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


def _read_batch_file(data: bytes, endpoint: str) -> tuple[list[dict[str, Any]], list[dict]]:
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


class SimServer:
    """The simulator as a raw ASGI application, with its state and statistics.

    All state lives on the event loop serving it; the control methods (``stats``,
    ``reset``, ``configure``, ``script``) are plain synchronous functions meant to run
    on that loop (``Simulator`` marshals calls from other threads onto it).
    """

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self._slots = _Slots(self.config.max_in_flight)
        self._script: deque[Scripted] = deque()
        self._occurrences: dict[bytes, int] = {}
        self._closing = asyncio.Event()
        self._files: dict[str, _File] = {}
        self._batches: dict[str, _Batch] = {}
        self.in_flight = 0
        self.queued = 0
        self._zero()

    def _zero(self) -> None:
        self.requests = 0
        self.replayed = 0
        self._keys: set[bytes] = set()
        self.by_outcome = dict.fromkeys((*OUTCOMES, "bad_request"), 0)
        self.by_item = dict.fromkeys(ITEM_KINDS, 0)
        self.request_times: list[float] = []
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.peak_in_flight = self.in_flight
        self.batches = 0
        self.batch_requests = 0
        self.batch_by_outcome = dict.fromkeys((*OUTCOMES, "bad_request"), 0)
        self.batch_items = dict.fromkeys(ITEM_KINDS, 0)
        self.batch_prompt_tokens = 0
        self.batch_completion_tokens = 0
        self.judged: list[str] = []

    # -- control ---------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counts since the last reset. ``requests`` counts chat-completion POSTs on
        arrival (before any fault, hang or disconnect), a repeated Idempotency-Key once
        (the repeats are ``replayed``); ``in_flight`` are requests
        holding a slot, ``queued`` those waiting for one; ``items`` counts the items
        written, by kind. Batch traffic is counted apart, under ``batch*``:
        ``batches`` created, ``batch_requests`` lines answered (each line once, when
        its batch runs), their outcomes, items and tokens. ``judged`` lists the text
        of the candidate of every judge request answered (online), in order."""
        return {
            "requests": self.requests,
            "replayed": self.replayed,
            "by_outcome": dict(self.by_outcome),
            "in_flight": self.in_flight,
            "queued": self.queued,
            "peak_in_flight": self.peak_in_flight,
            "request_times": list(self.request_times),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "items": dict(self.by_item),
            "batches": self.batches,
            "batch_requests": self.batch_requests,
            "batch_by_outcome": dict(self.batch_by_outcome),
            "batch_items": dict(self.batch_items),
            "batch_prompt_tokens": self.batch_prompt_tokens,
            "batch_completion_tokens": self.batch_completion_tokens,
            "judged": list(self.judged),
        }

    def reset(self) -> None:
        """Zero the statistics, forget how often each body was seen, drop the script,
        the files and the batches. Requests in progress keep their slots
        (``in_flight`` is a live gauge)."""
        self._zero()
        self._occurrences.clear()
        self._script.clear()
        for batch in self._batches.values():
            for timer in batch.timers:
                timer.cancel()
        self._batches.clear()
        self._files.clear()

    def configure(self, changes: dict[str, Any]) -> SimConfig:
        """Change config fields; raises ``pydantic.ValidationError`` on unknown fields
        or bad values (nothing changes then). Requests already in progress keep the
        config they arrived with."""
        config = SimConfig.model_validate({**self.config.model_dump(), **changes})
        self.config = config
        self._slots.resize(config.max_in_flight)
        return config

    def script(self, outcomes: list[str]) -> None:
        """Queue forced outcomes for the next requests, in arrival order; they take
        precedence over the configured shares. A batch takes one per line, in file
        order, when it runs. All words are checked first."""
        parsed = [parse_outcome(w) for w in outcomes]
        self._script.extend(parsed)

    def close(self) -> None:
        """Release hanging requests (with a 503) so the server can shut down."""
        self._closing.set()

    def open(self) -> None:
        """Fresh loop-bound primitives, for a server (re)started on a new loop."""
        self._closing = asyncio.Event()
        self._slots = _Slots(self.config.max_in_flight)

    # -- ASGI ------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off; websockets are not served
        method, path = scope["method"], scope["path"]
        if len(path) > 1 and path.endswith("/"):
            path = path[:-1]
        if method == "POST" and path == "/v1/chat/completions":
            await self._chat(receive, send, _idempotency_key(scope))
        elif method == "GET" and path == "/stats":
            await _reply(send, 200, json.dumps(self.stats()).encode())
        elif method == "GET" and path == "/v1/models":
            data = {"object": "list", "data": [_model(MODEL_ID)]}
            await _reply(send, 200, json.dumps(data).encode())
        elif method == "GET" and path.startswith("/v1/models/"):
            await _reply(send, 200, json.dumps(_model(path[len("/v1/models/") :])).encode())
        elif path == "/v1/files" or path.startswith("/v1/files/"):
            await self._files_api(method, path, scope, await _read(receive), send)
        elif path == "/v1/batches" or path.startswith("/v1/batches/"):
            await self._batches_api(method, path, await _read(receive), send)
        elif path.startswith("/control/") and method in ("GET", "POST"):
            await self._control(method, path, await _read(receive), send)
        else:
            msg = f"Invalid URL ({method} {scope['path']})"
            await _reply(send, 404, _error_body(msg, "invalid_request_error", "not_found"))

    async def _control(self, method: str, path: str, raw: bytes, send: Send) -> None:
        try:
            body = json.loads(raw) if raw.strip() else {}
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
        except ValueError as e:
            await _reply(send, 400, _error_body(str(e), "invalid_request_error", None))
            return
        try:
            if path == "/control/reset" and method == "POST":
                self.reset()
                result: Any = {"ok": True}
            elif path == "/control/config" and method == "GET":
                result = self.config.model_dump()
            elif path == "/control/config" and method == "POST":
                result = self.configure(body).model_dump()
            elif path == "/control/script" and method == "POST":
                outcomes = body.get("outcomes")
                if not isinstance(outcomes, list) or set(body) != {"outcomes"}:
                    raise ValueError('body must be {"outcomes": [...]}')
                self.script(outcomes)
                result = {"ok": True, "pending": len(self._script)}
            else:
                msg = f"Invalid URL ({method} {path})"
                await _reply(send, 404, _error_body(msg, "invalid_request_error", "not_found"))
                return
        except pydantic.ValidationError as e:
            errors = [
                {"loc": list(err["loc"]), "msg": err["msg"], "type": err["type"]}
                for err in e.errors()
            ]
            await _reply(send, 422, json.dumps({"detail": errors}).encode())
            return
        except ValueError as e:
            await _reply(send, 422, json.dumps({"detail": [{"msg": str(e)}]}).encode())
            return
        await _reply(send, 200, json.dumps(result).encode())

    async def _chat(self, receive: Receive, send: Send, key: bytes | None = None) -> None:
        arrived = time.time()
        raw = await _read(receive)
        # An attempt sent again under the same Idempotency-Key (a client resuming after
        # a crash, unsure whether its request got through) is served, but counted once:
        # `requests` counts what a provider that honours the key would bill.
        if key is not None and key in self._keys:
            self.replayed += 1
        else:
            if key is not None:
                self._keys.add(key)
            self.requests += 1
            self.request_times.append(arrived)
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            if body.get("stream"):
                raise ValueError("stream=true is not supported by the simulator")
            task = read_task(body)
        except ValueError as e:  # includes JSONDecodeError
            self.by_outcome["bad_request"] += 1
            await _reply(send, 400, _error_body(str(e), "invalid_request_error", None))
            return
        config = self.config
        body_sha = _body_sha(body)
        seen = self._occurrences.get(body_sha, 0)
        self._occurrences[body_sha] = seen + 1
        fault_rng = _rng(_digest(b"fault", config.seed, seen, body_sha))
        scripted = self._script.popleft() if self._script else None
        outcome = scripted.outcome if scripted else _draw(config, fault_rng.random())
        self.by_outcome[outcome] += 1
        delay = config.latency_ms
        if config.latency_jitter_ms:
            delay += fault_rng.uniform(-config.latency_jitter_ms, config.latency_jitter_ms)
        delay = max(0.0, delay) / 1000.0

        if outcome == "429":
            if delay:
                await asyncio.sleep(delay)
            wait = scripted.retry_after if scripted and scripted.retry_after is not None else None
            await _rate_limited(send, config.retry_after_s if wait is None else wait)
            return

        self.queued += 1
        try:
            await self._slots.acquire()
        finally:
            self.queued -= 1
        self.in_flight += 1
        if self.in_flight > self.peak_in_flight:
            self.peak_in_flight = self.in_flight
        try:
            if delay:
                await asyncio.sleep(delay)
            if outcome == "500":
                msg = "The server had an error while processing your request. Sorry about that!"
                await _reply(send, 500, _error_body(msg, "server_error", "server_error"))
                return
            if outcome == "hang":
                why = await self._hang(receive, config.hang_s)
                if why == "disconnect":
                    return
                if why == "closing":
                    msg = "The simulator is shutting down."
                    await _reply(send, 503, _error_body(msg, "server_error", "unavailable"))
                    return
            reply, kinds = _completion(
                body, task, config, outcome, fault_rng, seen, body_sha, arrived
            )
            for k in kinds:
                self.by_item[k] += 1
            judged = candidate_text(body)
            if judged is not None:
                self.judged.append(judged)
            self.prompt_tokens += reply["usage"]["prompt_tokens"]
            self.completion_tokens += reply["usage"]["completion_tokens"]
            await _reply(send, 200, json.dumps(reply, ensure_ascii=False).encode())
        finally:
            self.in_flight -= 1
            self._slots.release()

    # -- the Batch API ---------------------------------------------------------

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

    async def _hang(self, receive: Receive, seconds: float) -> str:
        """Wait until the client goes away, the server closes, or ``seconds`` pass."""

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        watchers = [
            asyncio.ensure_future(disconnected()),
            asyncio.ensure_future(self._closing.wait()),
        ]
        try:
            done, _ = await asyncio.wait(
                watchers, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for w in watchers:
                w.cancel()
        if watchers[0] in done:
            return "disconnect"
        return "closing" if watchers[1] in done else "timeout"


def _idempotency_key(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == b"idempotency-key":
            return bytes(value)
    return None


def _body_sha(body: dict[str, Any]) -> bytes:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).digest()


def _completion(
    body: dict[str, Any],
    task: Task,
    config: SimConfig,
    outcome: str,
    fault_rng: Random,
    seen: int,
    body_sha: bytes,
    arrived: float,
) -> tuple[dict[str, Any], list[str]]:
    """The chat.completion answering ``body`` and the kind of each item written.

    The content depends only on (seed, body), whichever way the body arrived: an
    online request and a batch line with the same body get the same items."""
    content_rng = _rng(_digest(b"content", config.seed, body_sha))
    if judge_kind(body) is not None:
        content, kinds = judge_grade(body, content_rng), []
    else:
        items, kinds = ItemWriter(task, content_rng, config.item_shares()).items()
        content = json.dumps({"examples": items}, ensure_ascii=False)
    finish = "stop"
    if outcome == "truncate":
        content = content[: fault_rng.randint(max(1, len(content) // 4), len(content) - 2)]
        finish = "length"
    elif outcome == "malformed":
        content = _malform(content, fault_rng)
    prompt_tokens = _tokens(task.prompt_chars)
    completion_tokens = _tokens(len(content))
    reply = {
        "id": "chatcmpl-" + _digest(b"id", config.seed, seen, body_sha).hex()[:29],
        "object": "chat.completion",
        "created": int(arrived),
        "model": body.get("model") if isinstance(body.get("model"), str) else MODEL_ID,
        "system_fingerprint": "fp_synth_sim",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    return reply, kinds


def _draw(config: SimConfig, u: float) -> str:
    for outcome, share in (
        ("429", config.p_429),
        ("500", config.p_500),
        ("hang", config.p_hang),
        ("truncate", config.p_truncate),
        ("malformed", config.p_malformed),
    ):
        if u < share:
            return outcome
        u -= share
    return "ok"


def _page(data: list[dict[str, Any]]) -> dict[str, Any]:
    """A list endpoint's page: everything on one page."""
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": False,
    }


def _model(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "synth"}


async def _read(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _reply(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    head = [_JSON, (b"content-length", str(len(body)).encode())]
    if headers:
        head.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


async def _rate_limited(send: Send, seconds: float) -> None:
    msg = f"Rate limit reached for requests on model {MODEL_ID}. Please try again in {seconds:g}s."
    headers = [
        (b"retry-after", str(math.ceil(seconds)).encode()),
        (b"retry-after-ms", str(round(seconds * 1000)).encode()),
    ]
    body = _error_body(msg, "requests", "rate_limit_exceeded")
    await _reply(send, 429, body, headers)


# ---------------------------------------------------------------------------
# Serving


def _uvicorn_server(app: SimServer, *, own_logging: bool) -> uvicorn.Server:
    extra: dict[str, Any] = {} if own_logging else {"log_config": None}
    config = uvicorn.Config(
        app,
        http="httptools",
        loop="auto",
        ws="none",
        lifespan="off",
        interface="asgi3",
        log_level="warning",
        access_log=False,
        server_header=False,
        # Safety net only: close() releases hanging requests before shutdown.
        timeout_graceful_shutdown=5,
        **extra,
    )
    return uvicorn.Server(config)


def _url(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"


class Simulator:
    """Runs the simulator in a background thread (its own event loop) on
    127.0.0.1:``port`` (0 picks a free port).

    ``start`` returns once the socket is listening; ``stop`` releases hanging
    requests and shuts the server down. The control methods may be called from any
    thread: they run on the server's loop, so they never race a request.
    """

    def __init__(self, config: SimConfig | None = None, port: int = 0) -> None:
        self.app = SimServer(config)
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, for ``openai.AsyncOpenAI(base_url=...)``."""
        return _url("127.0.0.1", self.port)

    @property
    def config(self) -> SimConfig:
        return self.app.config

    def start(self) -> Simulator:
        """Bind, start serving in a background thread, return when listening."""
        if self._thread is not None:
            return self
        sock = listening_socket("127.0.0.1", self.port)
        self.port = sock.getsockname()[1]
        server = _uvicorn_server(self.app, own_logging=False)

        def run() -> None:
            try:
                with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
                    self._loop = runner.get_loop()
                    self._loop_thread = threading.get_ident()
                    self.app.open()
                    runner.run(server.serve(sockets=[sock]))
            finally:
                self._loop = None
                sock.close()

        self._server = server
        self._thread = threading.Thread(target=run, name=f"synth-sim-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._thread.join(timeout=1)
                self._thread = self._server = None
                raise RuntimeError(f"the simulator did not start on 127.0.0.1:{self.port}")
            time.sleep(0.002)
        return self

    def stop(self) -> None:
        """Shut down: hanging requests get a 503, in-flight replies finish."""
        thread, server, loop = self._thread, self._server, self._loop
        if thread is None or server is None:
            return
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self.app.close)
            except RuntimeError:  # the loop already closed
                pass
        server.should_exit = True
        thread.join(timeout=15)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5)
        self._thread = self._server = None
        self._loop_thread = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = self._loop
        if loop is None or self._thread is None or threading.get_ident() == self._loop_thread:
            return fn(*args)
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(fn(*args))
            except BaseException as e:
                done.set_exception(e)

        loop.call_soon_threadsafe(run)
        return done.result(timeout=30)

    def stats(self) -> dict[str, Any]:
        """The same JSON as ``GET /stats``."""
        return self._call(self.app.stats)

    def reset(self) -> None:
        """Zero the stats, forget per-body counters and drop any pending script."""
        self._call(self.app.reset)

    def configure(self, **changes: Any) -> None:
        """Change ``SimConfig`` fields at runtime; ``pydantic.ValidationError`` on an
        unknown field or a bad value, and then nothing changes."""
        self._call(self.app.configure, changes)

    def script(self, outcomes: list[str]) -> None:
        """Force the outcomes of the next requests, in arrival order (see
        ``parse_outcome``); ``ValueError`` on an unknown word, and then nothing is
        queued."""
        self._call(self.app.script, list(outcomes))


def serve(config: SimConfig, host: str = "127.0.0.1", port: int = 0) -> None:
    """Run the simulator in the foreground until SIGINT or SIGTERM.

    Once listening, prints exactly one line, ``synth simulator listening on
    http://HOST:PORT/v1``, to stdout and flushes it, so a parent process that passed
    port 0 can read the port.
    """
    app = SimServer(config)
    sock = listening_socket(host, port)
    bound = sock.getsockname()[1]
    server = _uvicorn_server(app, own_logging=True)

    async def main() -> None:
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.005)
        if server.started:
            sys.stdout.write(f"synth simulator listening on {_url(host, bound)}\n")
            sys.stdout.flush()
        # uvicorn's signal handler only sets a flag; release hanging requests then,
        # or shutdown would wait for them.
        while not task.done():
            if server.should_exit:
                app.close()
                break
            await asyncio.sleep(0.1)
        await task

    try:
        with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
            runner.run(main())
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the SIGINT it handled once it has shut down
    finally:
        sock.close()
