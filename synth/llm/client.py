"""The LLM client: the official openai package, with synth's own accounting.

It owns bounded concurrency, retries (tenacity, one place: the openai client's own
retries are off) with backoff that honours ``Retry-After``, timeouts, validation of
the reply, and usage and cost. Every attempt is counted in the store before the
request leaves and every reply is committed the moment it arrives, so a killed run
has paid for nothing it cannot find again.

Requests go out through the openai client's own HTTP client (its aiohttp transport,
its URL, auth and default headers, its error types), as the prepared JSON the store
recorded; free concurrency slots go to calls in the order they were first sent.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import httpx2
import openai
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)

from synth.config import LLMSettings
from synth.errors import SynthError
from synth.llm.endpoints import Endpoints
from synth.llm.ledger import Ledger, QuotaSpent, Refused, quota_spent, take_call
from synth.llm.limits import AdaptiveSlots, Pacer, estimate_tokens
from synth.llm.reply import BadReply, Usage, capped, one_line, read_completion
from synth.llm.stream import STREAM, Attempt, InFlight, ReplyTimeout, UnreadableStream
from synth.llm.structured import ReplyError, read_examples, read_object
from synth.llm.unanswered import AttemptLedger, estimate
from synth.records import Unusable
from synth.store.calls import Calls
from synth.store.rows import CallRow

# How long an idle connection is kept for the next request. Servers close one idle for
# a few seconds (llama.cpp's and uvicorn's, which vLLM runs, at 5 s; gunicorn's at 2),
# and a request written onto a connection as the server closes it fails before it
# leaves. Kept as long as theirs, as the openai client's 5 s are, a connection is
# handed out just as it is closed; kept a second, it is gone first. Opening another
# costs a round trip (a TLS handshake on https), small beside a reply's seconds.
IDLE_CONNECTION_S = 1.0

# Errors no retry can mend: the run stops and says why, instead of recording the
# same failure for every call it had planned.
FATAL = (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)


@dataclass(frozen=True)
class CallResult:
    call: CallRow
    status: str  # ok | invalid | failed
    content: str | None
    error: str | None
    items: list[dict[str, Any]] | None = None  # the reply's examples, once validated
    repairs: tuple[str, ...] = ()  # how the reply's shape was mended (structured.py)
    reason: str | None = None  # why it is unusable: a synth.records.Unusable word


def retryable(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIStatusError):
        # A prompt longer than the context is as long the next time, whatever the
        # status a server files it under; a spent quota stays spent for hours.
        if context_exceeded(exc) or quota_spent(exc, retry_after(exc)):
            return False
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return isinstance(exc, openai.APIConnectionError)  # includes timeouts


# How servers say a request does not fit the context: llama.cpp's error type and
# message, OpenAI's error code, vLLM's message.
_CONTEXT_TYPES = ("exceed_context_size_error", "context_length_exceeded")
_CONTEXT_WORDS = ("exceeds the available context size", "maximum context length")


def context_exceeded(exc: BaseException) -> bool:
    """Whether the server refused the request as longer than its context."""
    if not isinstance(exc, openai.APIStatusError):
        return False
    body: dict[str, Any] = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error")
    inner: dict[str, Any] = error if isinstance(error, dict) else body
    if any(inner.get(k) in _CONTEXT_TYPES for k in ("type", "code")):
        return True
    message = str(inner.get("message") or exc.message).lower()
    return any(w in message for w in _CONTEXT_WORDS)


def failure_reason(exc: BaseException) -> Unusable:
    """The word a call that failed with ``exc`` is counted under."""
    if context_exceeded(exc):
        return Unusable.CONTEXT_FULL
    if isinstance(exc, openai.APIStatusError):
        return Unusable.HTTP_ERROR
    if isinstance(exc, openai.APIConnectionError):
        return Unusable.CONNECTION
    if isinstance(exc, UnreadableStream):
        return Unusable.UNPARSEABLE
    return Unusable.FAILED


def retry_after(exc: BaseException | None) -> float | None:
    """Seconds the server asked us to wait, from retry-after-ms or retry-after."""
    if not isinstance(exc, openai.APIStatusError):
        return None
    headers = exc.response.headers
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) / scale)
        except ValueError:
            continue
    return None


class _Wait:
    """Wait what the server asked, else exponential backoff (0.5 s, 1 s, 2 s ...) with
    full jitter, so that a crowd of callers rejected together does not return together."""

    def __init__(self, cap: float) -> None:
        self.cap = cap

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = retry_after(exc)
        if asked is not None:
            return min(asked, self.cap)
        return random.uniform(0, min(self.cap, 0.5 * 2 ** (state.attempt_number - 1)))


class Completer(Protocol):
    """What a run needs of a client: the online one (``LLMClient``) or the Batch API's
    (``synth.llm.batch.BatchClient``)."""

    fatal: SynthError | None  # the error that stopped it: every later call is refused
    in_flight: InFlight  # its requests on the wire now, for progress displays

    async def complete_all(
        self,
        calls: Sequence[CallRow],
        on_result: Callable[[int, CallResult], None] | None = None,
    ) -> list[CallResult]: ...


class LLMClient:
    """Sends planned calls and records every attempt and reply in the store."""

    def __init__(
        self,
        settings: LLMSettings,
        calls: Calls,
        *,
        api_key: str,
        base_url: str | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        self.settings = settings
        self.calls = calls
        # The run's caps: each attempt takes its worst case from it before it leaves.
        self.ledger = ledger
        self.replies = ReplyRecorder(settings, calls)
        self.replies.ledger = ledger
        self.slots = AdaptiveSlots(settings.max_concurrency, settings.adaptive_concurrency)
        self._ranks = itertools.count()
        self.requests = Pacer(settings.rpm)
        self.tokens = Pacer(settings.tpm)
        self.in_flight = InFlight()
        # The request limit is kept in the transport's request hook, the last moment
        # before the request goes out: work done after pacing (building the request,
        # opening a connection) would otherwise bunch requests up on the wire.
        self.http = openai.DefaultAioHttpClient(
            limits=httpx2.Limits(
                max_connections=1000,  # the openai client's own limits, but for the idle time
                max_keepalive_connections=100,
                keepalive_expiry=IDLE_CONNECTION_S,
            ),
            event_hooks={"request": [self._pace_request]},
        )
        self.client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url or settings.base_url or None,
            max_retries=0,
            timeout=settings.timeout,
            http_client=self.http,
        )
        # What the openai client puts on every request, taken from it once: its URL
        # (or llm.base_urls), its auth and default headers (User-Agent, X-Stainless-*).
        urls = settings.base_urls if base_url is None and settings.base_urls else []
        self.endpoints = Endpoints(urls or [str(self.client.base_url)], settings.cooldown_s)
        # Parsed and normalised once here, not for every request.
        self._urls = {e.url: httpx2.URL(e.url) for e in self.endpoints.all}
        self._headers = httpx2.Headers(
            {
                **{k: v for k, v in self.client.default_headers.items() if isinstance(v, str)},
                **self.client.auth_headers,
            }
        )
        # Reading has no socket timeout: the attempt's own clocks (stream.py) watch it.
        self._timeout = httpx2.Timeout(settings.timeout, read=None).as_dict()

        self.fatal: SynthError | None = None
        self._replied: dict[str, AttemptLedger] = {}  # replies read, not yet stored
        # Whether the endpoint has answered anything yet (an error status counts).
        self.answered = False

    async def _pace_request(self, request: Any) -> None:
        await self.requests.acquire()
        attempt = request.extensions.get("synth_attempt")
        if attempt is not None:
            attempt.sent()
        ledger = request.extensions.get("synth_ledger")
        if ledger is not None:
            ledger.sent()

    async def close(self) -> None:
        await self.client.close()

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def complete_all(
        self,
        calls: Sequence[CallRow],
        on_result: Callable[[int, CallResult], None] | None = None,
    ) -> list[CallResult]:
        """Send every call (answered ones come from the store), in parallel up to the
        concurrency bound; ``on_result(index, result)`` hears of each as it comes.
        Results in the order of ``calls``."""

        async def one(index: int, call: CallRow) -> CallResult:
            result = await self.complete(call)
            if on_result is not None:
                on_result(index, result)
            return result

        results = await asyncio.gather(*(one(i, c) for i, c in enumerate(calls)))
        if self.fatal is not None:
            raise self.fatal
        return list(results)

    async def complete(self, call: CallRow) -> CallResult:
        if call.status == "ok" and call.response_json is not None:
            return _cached(call)
        if self.fatal is not None:
            not_sent = "not sent: the run is stopping"
            return CallResult(call, "failed", None, not_sent, reason=Unusable.NOT_SENT)
        started = time.perf_counter()
        try:
            body = await self._send(call)
        except Refused as e:
            not_sent = f"not sent: {e}"
            self._record(call, "failed", None, not_sent, started, reason=Unusable.OVER_BUDGET)
            return CallResult(call, "failed", None, not_sent, reason=Unusable.OVER_BUDGET)
        except (openai.APIError, openai.OpenAIError) as e:
            if quota_spent(e, retry_after(e)):
                self.fatal = self.fatal or QuotaSpent(f"quota: {_describe(e)}")
            elif isinstance(e, FATAL) or (not self.answered and unreachable(e)):
                self.fatal = SynthError("llm", f"{_describe(e)}; {advice(e)}")
            why = failure_reason(e)
            self._record(call, "failed", None, _describe(e), started, reason=why)
            return CallResult(call, "failed", None, _describe(e), reason=why)
        # Its estimate is taken back as the reply is stored, in one statement.
        answered = self._replied.pop(call.id, None)
        return self.replies.accept(call, body, _since(started), answered)

    async def _send(self, call: CallRow) -> str:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.retries + 1),
            wait=_Wait(cap=60.0),
            retry=retry_if_exception(self._retryable),
            reraise=True,
        )
        estimate = (
            estimate_tokens(call.messages, int(call.params.get("max_tokens", 0)))
            if self.tokens.limit
            else 0
        )
        # A call left pending by a killed process has a last recorded attempt whose fate
        # is unknown: it is sent again under the same Idempotency-Key, so an endpoint
        # that honours the key bills it once. Only later attempts are counted anew.
        number = call.attempts if call.status == "pending" and call.attempts else 0
        recount = number == 0
        # Calls take slots in the order they were first sent, retries included: a
        # retry queued behind every later call would hold up all their replies,
        # which are filtered in plan order.
        rank = next(self._ranks)
        async for attempt in retrying:
            with attempt:
                await self.slots.acquire(rank)
                try:
                    await self.tokens.acquire(estimate)
                    if self.ledger is not None:  # the caps' hold, before it leaves
                        take_call(self.ledger, call, self.settings)
                    if recount:
                        self.calls.record_attempt(call.id)
                        number += 1
                    recount = True
                    try:
                        raw = await self._post(call, f"{call.request_sha[:32]}-{number}")
                    except BaseException as e:
                        if self.ledger is not None:
                            self.ledger.settle(call.id, 0.0)  # a failure is billed nothing
                        if isinstance(e, openai.RateLimitError):
                            self.slots.rate_limited()
                        raise
                    self.answered = True
                    self.slots.succeeded()
                    # JSON is UTF-8 (RFC 8259): no charset sniffing.
                    body = raw.decode("utf-8", errors="replace")
                    if self.tokens.limit:
                        self.tokens.correct(_used_tokens(body) - estimate)
                    return body
                finally:
                    self.slots.release()
        raise AssertionError("unreachable: tenacity reraises")

    def _retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, openai.APIStatusError):
            self.answered = True
        # An endpoint that never answered is more likely misnamed than restarting:
        # waiting out every retry would only delay saying so, unless another can serve.
        if not retryable(exc):
            return False
        return self.answered or not unreachable(exc) or self.endpoints.any_ready()

    async def _post(self, call: CallRow, idempotency_key: str) -> bytes:
        """POST the call's request, already plain JSON, through the openai client's
        HTTP client, and return the reply's chat.completion body (put back together
        from the stream, stream.py); errors are the openai package's own
        (``RateLimitError``, ``APITimeoutError`` ...), with the response attached.

        Going round the openai client's request builder (it merges options, headers
        and URLs, walks the body against its TypedDicts and parses the reply into
        models) halves the CPU a call costs, the most of any part of a run."""
        payload = {"model": call.model, "messages": call.messages, **call.params}
        if self.settings.stream:
            payload.update(STREAM)
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        max_tokens = call.params.get("max_tokens")
        attempt = Attempt(
            self.settings.attempt_limit(max_tokens if isinstance(max_tokens, int) else None),
            self.settings.idle_timeout,
            self.in_flight,
        )
        # The attempt's estimated cost stands from the moment it leaves until the
        # server answers: a reply lost to a kill or a timeout keeps it (ledger.py).
        ledger = AttemptLedger(self.calls, call.id, estimate(call, self.cost))
        endpoint = self.endpoints.take()
        headers = self._headers.copy()
        headers["Idempotency-Key"] = idempotency_key
        request = httpx2.Request(
            "POST",
            self._urls[endpoint.url],
            content=body,
            headers=headers,
            extensions={"timeout": self._timeout, "synth_attempt": attempt, "synth_ledger": ledger},
        )
        failure: BaseException | None = None
        try:
            raw = await self._fetch(attempt, request)
        except openai.APIConnectionError as e:
            failure = e
            if unreachable(e):
                ledger.answered()  # it never reached a server
            raise
        except openai.APIError as e:
            failure = e
            ledger.answered()  # an error status, or an error in the stream: answered
            raise
        finally:
            self.endpoints.give_back(endpoint, failure)
        # Taken back with the reply, in the statement that stores it (``complete``):
        # a kill leaves both or neither, never a lost reply without its estimate.
        self._replied[call.id] = ledger
        return raw

    async def _fetch(self, attempt: Attempt, request: httpx2.Request) -> bytes:
        """``attempt.fetch``, every failure an openai error."""
        try:
            return await attempt.fetch(
                self.http, request, self.client._make_status_error_from_response
            )
        except httpx2.TimeoutException as e:
            raise openai.APITimeoutError(request=request) from e
        except (httpx2.HTTPError, aiohttp.ClientError) as e:
            # aiohttp's own errors come through the transport unmapped when the reply
            # breaks HTTP itself (a bad status line or chunk, a header over 8 KB): a
            # connection failure like any other, retried and recorded.
            raise openai.APIConnectionError(request=request) from e

    def _record(
        self,
        call: CallRow,
        status: str,
        body: str | None,
        error: str | None,
        started: float,
        usage: Usage | None = None,
        reason: str | None = None,
    ) -> None:
        self.replies.record(call, status, body, error, _since(started), usage, reason=reason)

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        return self.replies.cost(model, prompt_tokens, completion_tokens)


class ReplyRecorder:
    """Validates a reply and records it with its usage and cost: what a reply means is
    decided here, whichever client fetched it. ``price_factor`` scales the listed
    prices (the Batch API bills at a discount)."""

    def __init__(self, settings: LLMSettings, calls: Calls, *, price_factor: float = 1.0) -> None:
        self.settings = settings
        self.calls = calls
        self.price_factor = price_factor
        self.ledger: Ledger | None = None  # told each reply's cost (synth.llm.ledger)
        # The context a prompt and its reply share: llm.context_tokens, or what the
        # server said (synth.llm.context); None when neither is known.
        self.context_tokens = settings.context_tokens

    def accept(
        self,
        call: CallRow,
        body: str,
        latency_ms: float | None,
        attempt: AttemptLedger | None = None,
    ) -> CallResult:
        """Validate the reply's shape and finish reason; record it either way, and why
        it is unusable if it is (an ``Unusable`` word), taking back the estimate of
        the ``attempt`` it answers in the same statement.

        A generation reply cut off at ``max_tokens`` keeps the complete examples
        written before the cut (they were paid for, and each is filtered like any
        other), recorded with the repair ``cut_off``; one with none is invalid. A
        judge reply must be whole. A cut is put down to a full context rather than to
        ``max_tokens`` when prompt and reply together reached the context size
        (``llm.context_tokens``, else the server's when it said)."""
        try:
            reply = read_completion(body, estimate_tokens(call.messages, 0))
        except BadReply as e:
            self.record(call, "invalid", body, str(e), latency_ms, reason=e.reason, attempt=attempt)
            return CallResult(call, "invalid", None, str(e), reason=e.reason)
        content, finish, usage = reply.content, reply.finish, reply.usage
        error = None
        reason: Unusable | None = None
        items = None
        repairs: tuple[str, ...] = ()
        cut, cut_reason = self._cut(finish, usage)
        if finish == "content_filter":
            error = "finish_reason=content_filter: the provider withheld the reply"
            reason = Unusable.CONTENT_FILTER
        elif call.purpose == "generate":
            try:
                found = read_examples(content)
                items, repairs = found.items, found.repairs
                if finish == "length":
                    repairs = ("cut_off", *repairs)
            except ReplyError as e:
                error, reason = (cut, cut_reason) if finish == "length" else (str(e), e.reason)
        elif finish == "length":
            error, reason = cut, cut_reason
        else:
            try:
                repairs = read_object(content).repairs  # the judge validates the rest
            except ReplyError as e:
                error, reason = str(e), e.reason
        repairs = (*repairs, *reply.fixes)
        status = "invalid" if error else "ok"
        self.record(
            call,
            status,
            body,
            error,
            latency_ms,
            usage,
            reply.served_model,
            repairs,
            reason,
            attempt,
        )
        if status != "ok":
            return CallResult(call, status, None, error, repairs=repairs, reason=reason)
        return CallResult(call, status, content, None, items, repairs)

    def _cut(self, finish: object, usage: Usage) -> tuple[str, Unusable]:
        """What a reply that ended with ``finish_reason=length`` ran into: the context
        or ``max_tokens``, and the message that says so."""
        prompt, reply = usage.prompt_tokens, usage.completion_tokens
        context = self.context_tokens
        if context and reply and prompt + reply >= context:
            return (
                f"finish_reason={finish}: the context is full (prompt {prompt} + reply"
                f" {reply} tokens of a {context}-token context)",
                Unusable.CONTEXT_FULL,
            )
        return f"finish_reason={finish}: the reply was cut off at max_tokens", Unusable.CUT_OFF

    def record(
        self,
        call: CallRow,
        status: str,
        body: str | None,
        error: str | None,
        latency_ms: float | None,
        usage: Usage | None = None,
        served_model: str | None = None,
        repairs: tuple[str, ...] = (),
        reason: str | None = None,
        attempt: AttemptLedger | None = None,
    ) -> None:
        """Commit the call's outcome with its tokens and what they cost; an unusable
        one with why (``Unusable.FAILED`` when the caller could not say), and the
        taking back of the estimate of the ``attempt`` it answers. The body is stored
        up to ``MAX_REPLY_CHARS`` (its whole length beside it when cut), the error as
        one line."""
        usage = usage or Usage()
        prompt_tokens, completion_tokens = usage.prompt_tokens, usage.completion_tokens
        if status in ("invalid", "failed") and reason is None:
            reason = Unusable.FAILED
        stored, whole = capped(body)
        cached = usage.cached_tokens
        cost = self.cost(call.model, prompt_tokens, completion_tokens, cached)
        estimate = attempt.taken_back() if attempt is not None else None
        self.calls.record_reply(
            call.id,
            status=status,
            response_json=stored,
            error=None if error is None else one_line(error),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=cost,
            cached_tokens=cached,
            cached_usd=self.cost(call.model, cached, 0, cached),
            latency_ms=latency_ms,
            served_model=served_model,
            repairs=repairs,
            reason=reason,
            answered=None if estimate is None else (estimate.tokens, estimate.usd),
        )
        if whole is not None:
            self.calls.record_cut_body(call.id, whole)
        if self.ledger is not None:
            self.ledger.settle(call.id, cost)

    def cost(
        self, model: str, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0
    ) -> float:
        """USD for the tokens at the model's price, the ``cached_tokens`` of the prompt
        at its cached rate; 0 for a model with no price."""
        price = self.settings.price(model)
        if price is None:
            return 0.0
        fresh = prompt_tokens - cached_tokens
        listed = (
            fresh * price.input + cached_tokens * price.cached + completion_tokens * price.output
        ) / 1e6
        return listed * self.price_factor


def _since(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.perf_counter`` reading)."""
    return (time.perf_counter() - started) * 1000


def _used_tokens(body: str) -> int:
    try:
        return read_completion(body).usage.total
    except BadReply:
        return 0


def _cached(call: CallRow) -> CallResult:
    """A reply answered before, read again as it was the first time."""
    try:
        content = read_completion(call.response_json or "").content
    except BadReply as e:  # stored by a synth that read replies less strictly
        return CallResult(call, "invalid", None, str(e), reason=e.reason)
    return CallResult(call, "ok", content, None)


def _describe(e: BaseException) -> str:
    """One line saying what went wrong, for the call's ``error`` and the run's stop
    reason. A connection that failed says why and names the URL: the HTTP layer
    reports a refused connection as a connect timeout, with the refusal in its
    cause."""
    if context_exceeded(e):
        assert isinstance(e, openai.APIStatusError)
        return f"context full: HTTP {e.status_code}: {_server_message(e)}"
    if isinstance(e, openai.APIStatusError):
        # Which URL answered is half the story (a 404 is mostly the whole of it).
        request = e.response.request
        return f"HTTP {e.status_code} from {request.method} {request.url}: {_server_message(e)}"
    if isinstance(e, openai.APIConnectionError):
        url = str(e.request.url) if getattr(e, "request", None) is not None else "?"
        if isinstance(e, ReplyTimeout):
            return f"timed out: {url}: {e.message}"
        cause = _os_error(e)
        if isinstance(cause, ConnectionRefusedError):
            return f"connection refused: {url}"
        if isinstance(cause, socket.gaierror):
            return f"host not found: {url} ({cause.strerror or cause})"
        if cause is not None:
            return f"cannot connect: {url} ({cause.strerror or cause})"
        if isinstance(e, openai.APITimeoutError):
            return f"timed out: {url}"
        if isinstance(e.__cause__, aiohttp.ClientResponseError):
            return f"broken HTTP reply from {url}: {one_line(e.__cause__.message, 200)}"
        return f"connection failed: {url} ({one_line(str(e.__cause__ or e), 200)})"
    return f"{type(e).__name__}: {e}"


def unreachable(e: BaseException) -> bool:
    """A refused connection or a host name that does not resolve."""
    if not isinstance(e, openai.APIConnectionError):
        return False
    return isinstance(_os_error(e), ConnectionRefusedError | socket.gaierror)


def advice(e: BaseException) -> str:
    """What to do about an error that stops a run, after ``_describe``'s account."""
    if isinstance(e, openai.APIConnectionError):
        if isinstance(_os_error(e), socket.gaierror):
            return "check the host name in llm.base_url (or OPENAI_BASE_URL)"
        return (
            "is the server running, and are llm.base_url (or OPENAI_BASE_URL) and its port right?"
        )
    if isinstance(e, openai.AuthenticationError):
        return "the endpoint refused the key: set the variable llm.api_key_env names"
    if isinstance(e, openai.PermissionDeniedError):
        return "the key may not use this model or endpoint: check its project and permissions"
    if isinstance(e, openai.NotFoundError) and "model" in _server_message(e).lower():
        return "the server does not serve llm.model: set one it lists at GET /v1/models"
    return "check llm.base_url (it usually ends in /v1) and llm.model"


def _server_message(e: openai.APIStatusError) -> str:
    """What the server said, without the openai package's "Error code: N - " prefix."""
    body = e.body
    if isinstance(body, dict):
        inner = body.get("error")
        message = inner.get("message") if isinstance(inner, dict) else body.get("message")
        if isinstance(message, str) and message:
            return message
    text = e.response.text.strip()
    return text[:200] if text else e.message


def _os_error(e: BaseException) -> OSError | None:
    """The operating system's error behind a connection failure, if any: the first
    ``OSError`` down the chain of causes (aiohttp's connector errors are OSErrors
    too; what they wrap says more)."""
    found: OSError | None = None
    seen: set[int] = set()
    cause: BaseException | None = e
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError):
            found = cause
            if type(cause).__module__ in ("builtins", "socket", "ssl"):
                return cause  # ConnectionRefusedError, socket.gaierror ...
        cause = cause.__cause__ or cause.__context__
    return found
