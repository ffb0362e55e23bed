"""``POST /v1/chat/completions``, with the faults a provider serves, on demand.

The client's retries, pacing and reply validation are only tested if the faults they
handle arrive, so every request draws one outcome (ok, 429 with ``Retry-After``, 500,
hang, truncate, malformed or garbled) from the configured shares, unless a script forces it.
The draw depends on (seed, body, how many times that body has arrived), so a retried
request is not doomed to the same fault; the content depends on (seed, body) only, so
a retry, or a batch line with the same body (``files.py`` answers lines through
``_completion``), gets the same items.

Requests beyond ``max_in_flight`` wait for a slot in FIFO order, as on an inference
server, instead of being rejected; a 429 is answered at the door without a slot.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from collections import deque
from random import Random
from typing import Any

from synth.records import SIMULATOR_FINGERPRINT
from synth.sim.cache import PromptCache
from synth.sim.config import MODEL_ID, Scripted, SimConfig
from synth.sim.items import ItemWriter
from synth.sim.judge import candidate_text, judge_kind
from synth.sim.judge import grade as judge_grade
from synth.sim.respond import respond, respond_field
from synth.sim.stream import send_stream
from synth.sim.task import Task, read_task
from synth.sim.wire import Receive, Scope, Send, _error_body, _read, _reply


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


# Replies with no JSON in them, as models that ignore the format write them.
_GARBLED = (
    "I'm sorry, but I can't help with writing those examples.",
    "Sure! Here are some ideas: ask about the card, the fee, and the exchange rate.",
    "What's the question?",
)


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


def _idempotency_key(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == b"idempotency-key":
            return bytes(value)
    return None


def _body_sha(body: dict[str, Any]) -> bytes:
    """The body's digest, whether it asked for a stream or not: a streamed reply holds
    the same content as a plain one."""
    body = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
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
        content, kinds = judge_grade(body, content_rng), list[str]()
    elif (field := respond_field(body)) is not None:
        content, kinds = respond(body, field, content_rng), list[str]()
    else:
        items, kinds = ItemWriter(task, content_rng, config.item_shares()).items()
        content = json.dumps({"examples": items}, ensure_ascii=False)
    finish = "stop"
    if outcome == "truncate":
        content = content[: fault_rng.randint(max(1, len(content) // 4), len(content) - 2)]
        finish = "length"
    elif outcome == "malformed":
        content = _malform(content, fault_rng)
    elif outcome == "garbled":
        content = fault_rng.choice(_GARBLED)
    elif outcome == "empty":
        content = '{"examples": []}' if judge_kind(body) is None else "{}"
    prompt_tokens = _tokens(task.prompt_chars)
    completion_tokens = _tokens(len(content))
    if config.n_ctx is not None and prompt_tokens + completion_tokens > config.n_ctx:
        # The reply runs into the end of the context, as a slot's does on llama.cpp.
        completion_tokens = config.n_ctx - prompt_tokens
        content = content[: completion_tokens * 4]
        finish = "length"
    reply = {
        "id": "chatcmpl-" + _digest(b"id", config.seed, seen, body_sha).hex()[:29],
        "object": "chat.completion",
        "created": int(arrived),
        "model": body.get("model") if isinstance(body.get("model"), str) else MODEL_ID,
        "system_fingerprint": SIMULATOR_FINGERPRINT,
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
        ("garbled", config.p_garbled),
        ("empty", config.p_empty),
        ("quota", config.p_quota),
    ):
        if u < share:
            return outcome
        u -= share
    return "ok"


def _context_error(prompt_tokens: int, n_ctx: int) -> bytes:
    """llama.cpp's refusal of a prompt longer than the context, word for word."""
    message = (
        f"request ({prompt_tokens} tokens) exceeds the available context size"
        f" ({n_ctx} tokens), try increasing it"
    )
    error = {"code": 400, "message": message, "type": "exceed_context_size_error"}
    return json.dumps(
        {"error": {**error, "n_prompt_tokens": prompt_tokens, "n_ctx": n_ctx}}
    ).encode()


def model_not_found(model: str) -> bytes:
    """OpenAI's answer for a model it does not serve, word for word."""
    msg = f"The model `{model}` does not exist or you do not have access to it."
    return _error_body(msg, "invalid_request_error", "model_not_found")


def _refused(body: dict[str, Any], config: SimConfig) -> tuple[int, bytes] | None:
    """The status and error for a request for a model not served or a response_format
    refused (``SimConfig.models``, ``refuse_formats``); None for one answered."""
    model = body.get("model")
    if config.models is not None and model not in config.models:
        return 404, model_not_found(str(model))
    fmt = body.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind in config.refuse_formats:
        msg = (
            f"Invalid parameter: 'response_format' of type '{kind}' is not supported"
            " with this model."
        )
        return 400, _error_body(msg, "invalid_request_error", None, "response_format")
    return None


async def _rate_limited(send: Send, seconds: float) -> None:
    msg = f"Rate limit reached for requests on model {MODEL_ID}. Please try again in {seconds:g}s."
    headers = [
        (b"retry-after", str(math.ceil(seconds)).encode()),
        (b"retry-after-ms", str(round(seconds * 1000)).encode()),
    ]
    body = _error_body(msg, "requests", "rate_limit_exceeded")
    await _reply(send, 429, body, headers)


async def _quota_spent(send: Send) -> None:
    """OpenAI's answer once an account's quota is spent, word for word."""
    msg = "You exceeded your current quota, please check your plan and billing details."
    await _reply(send, 429, _error_body(msg, "insufficient_quota", "insufficient_quota"))


class ChatEndpoint:
    """The chat-completions endpoint of ``SimServer``, which owns the state declared
    here: the counters it adds to, the script, the slots and the closing flag."""

    config: SimConfig
    requests: int
    replayed: int
    streamed: int
    _keys: set[bytes]
    request_times: list[float]
    by_outcome: dict[str, int]
    by_item: dict[str, int]
    judged: list[str]
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    _prompt_cache: PromptCache
    in_flight: int
    queued: int
    peak_in_flight: int
    _occurrences: dict[bytes, int]
    _script: deque[Scripted]
    _slots: _Slots
    _closing: asyncio.Event

    async def _chat(self, receive: Receive, send: Send, key: bytes | None = None) -> None:
        arrived = time.time()
        raw = await _read(receive)
        # An attempt sent again under the same Idempotency-Key (a client resuming after
        # a crash, unsure whether its request got through) is served, but counted once:
        # `requests` counts what a provider that honours the key would bill; one that
        # ignores keys (ignore_idempotency_keys) bills every request.
        if key is not None and key in self._keys and not self.config.ignore_idempotency_keys:
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
            task = read_task(body)
        except ValueError as e:  # includes JSONDecodeError
            self.by_outcome["bad_request"] += 1
            await _reply(send, 400, _error_body(str(e), "invalid_request_error", None))
            return
        config = self.config
        refused = _refused(body, config)
        if refused is not None:
            self.by_outcome["bad_request"] += 1
            await _reply(send, *refused)
            return
        if config.n_ctx is not None and _tokens(task.prompt_chars) > config.n_ctx:
            self.by_outcome["context_full"] += 1
            await _reply(send, 400, _context_error(_tokens(task.prompt_chars), config.n_ctx))
            return
        streamed = body.get("stream") is True
        self.streamed += streamed
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

        if outcome == "quota":
            await _quota_spent(send)
            return
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
            if outcome == "hang" and not streamed:  # a streamed reply hangs halfway
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
            cached = self._prompt_cache.cached_tokens(body["messages"])
            if cached:
                usage = reply["usage"]
                usage["prompt_tokens_details"] = {"cached_tokens": cached}
                self.cached_tokens += cached
            judged = candidate_text(body)
            if judged is not None:
                self.judged.append(judged)
            self.prompt_tokens += reply["usage"]["prompt_tokens"]
            self.completion_tokens += reply["usage"]["completion_tokens"]
            token_s = config.token_latency_ms / 1000.0
            if streamed:
                options = body.get("stream_options")
                await send_stream(
                    send,
                    receive,
                    reply,
                    usage=isinstance(options, dict) and options.get("include_usage") is True,
                    token_s=token_s,
                    hang_s=config.hang_s if outcome == "hang" else None,
                    closing=self._closing,
                )
                return
            if token_s:  # the server writes the whole reply before it answers
                await asyncio.sleep(token_s * reply["usage"]["completion_tokens"])
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
