"""synth's own OpenAI-compatible endpoint: realistic replies and faults on demand.

The offline demo, every test and the throughput benchmarks talk to it through the
real ``openai`` client over loopback, so it speaks the chat-completions protocol
faithfully (OpenAI-shaped errors, ``Retry-After`` on 429, ``finish_reason`` on cut
replies, ``usage``) and is cheap enough never to be the bottleneck: it is a bare ASGI
callable served by uvicorn with the httptools parser, latency is ``asyncio.sleep``,
and a reply costs well under a millisecond of CPU.

Replies paraphrase and recombine the few-shot examples found in the prompt (see
``_simtext``). Everything is deterministic for a seed: a reply's content is a
function of (seed, sha256 of the body's canonical JSON), so a retried request gets
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
import socket
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

from synth.llm._simtext import ITEM_KINDS, ItemWriter, Task, read_task

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
    return content.replace('"examples"', "examples", 1)  # unquoted key


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

    # -- control ---------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counts since the last reset. ``requests`` counts chat-completion POSTs on
        arrival (before any fault, hang or disconnect), a repeated Idempotency-Key once
        (the repeats are ``replayed``); ``in_flight`` are requests
        holding a slot, ``queued`` those waiting for one; ``items`` counts the items
        written, by kind. Batch traffic is counted apart, under ``batch*``:
        ``batches`` created, ``batch_requests`` lines answered (each line once, when
        its batch runs), their outcomes, items and tokens."""
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
            reply, kinds = _completion(body, task, config, outcome, fault_rng, seen, body_sha, arrived)
            for k in kinds:
                self.by_item[k] += 1
            self.prompt_tokens += reply["usage"]["prompt_tokens"]
            self.completion_tokens += reply["usage"]["completion_tokens"]
            await _reply(send, 200, json.dumps(reply, ensure_ascii=False).encode())
        finally:
            self.in_flight -= 1
            self._slots.release()

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


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket; binding it ourselves is how port 0 reveals its port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        # Hundreds of clients connect at once at the start of a benchmark.
        sock.listen(4096)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


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
        sock = _bind("127.0.0.1", self.port)
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
    sock = _bind(host, port)
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
