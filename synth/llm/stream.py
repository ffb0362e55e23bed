"""Receiving a chat completion as it is written, on clocks that fit the server.

A whole-request timeout cannot tell a slow server from a stuck one: on a CPU server a
reply can take minutes, queueing behind the server's slots included, and every attempt
cut off at a fixed limit is sent again and paid for again. So replies are asked for as
a stream of server-sent events and an attempt is cut off only when

- nothing arrives for ``idle_s`` seconds once the server has begun to answer (a
  stall: a server that is writing tokens is never cut off), or
- the whole takes longer than ``total_s``, which grows with ``max_tokens``
  (``LLMSettings.attempt_limit``), so a reply that is slow but steady has all the time
  its length needs.

The events are put back together into the chat.completion body a plain request gets,
which is what the store records: a cached, resumed or replayed reply reads the same
whichever way it arrived. A server that ignores ``stream`` answers with that body
itself, and it is passed on as it came.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx2
import openai

from synth.llm.reply import MAX_DEPTH, MAX_REPLY_CHARS, READ_LIMIT, one_line, parse, too_deep

# What turns streaming on; never part of a call's params, so the request hash (and
# every reply cached under it) is the same with streaming or without.
STREAM: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}}

# Message fields whose deltas are pieces of one string.
_TEXT_FIELDS = ("content", "refusal", "reasoning_content")


@dataclass
class InFlight:
    """Requests on the wire now, for progress displays."""

    waiting: int = 0  # sent; the server has not begun to answer (queued, reading the prompt)
    streaming: int = 0  # the reply is arriving


class ReplyTimeout(openai.APITimeoutError):
    """An attempt cut off by synth's clocks; the message says which and why."""

    def __init__(self, why: str, request: httpx2.Request) -> None:
        openai.APIConnectionError.__init__(self, message=why, request=request)


class UnreadableStream(openai.APIError):
    """A streamed reply whose events are not JSON synth can read."""


class Attempt:
    """One request's clocks and its place in ``InFlight``. ``sent`` is called by the
    transport's request hook once the request is paced and leaves: time spent waiting
    for the rate limit is not the server's."""

    def __init__(self, total_s: float, idle_s: float, in_flight: InFlight) -> None:
        self.total_s = total_s
        self.idle_s = idle_s
        self.in_flight = in_flight
        self.clock: asyncio.Timeout | None = None
        self.end = float("inf")
        self.state = ""  # "", "waiting", "streaming"

    def sent(self) -> None:
        loop = asyncio.get_running_loop()
        self.end = loop.time() + self.total_s
        if self.clock is not None:
            self.clock.reschedule(self.end)
        self._move("waiting")

    def progressed(self) -> None:
        """Something arrived: the stall clock starts again."""
        if self.clock is not None:
            self.clock.reschedule(min(self.end, asyncio.get_running_loop().time() + self.idle_s))

    def _move(self, state: str) -> None:
        if self.state:
            setattr(self.in_flight, self.state, getattr(self.in_flight, self.state) - 1)
        if state:
            setattr(self.in_flight, state, getattr(self.in_flight, state) + 1)
        self.state = state

    async def fetch(
        self,
        http: httpx2.AsyncClient,
        request: httpx2.Request,
        status_error: Callable[[httpx2.Response], openai.APIStatusError],
    ) -> bytes:
        """Send ``request`` and return the reply's chat.completion body.

        Raises ``ReplyTimeout`` when a clock runs out, the status error for an
        unsuccessful status, ``APIConnectionError`` for a stream that ends before its
        reply does, and ``APIError`` for an error event in the stream."""
        try:
            async with asyncio.timeout(None) as self.clock:
                response = await http.send(request, stream=True)
                try:
                    self._move("streaming")
                    self.progressed()
                    if not response.is_success:
                        raise status_error(await _error_response(response, request))
                    return await self._read(response, request)
                finally:
                    await response.aclose()
        except TimeoutError:
            if self.clock is None or not self.clock.expired():
                raise
            if self.state == "streaming" and self.clock.when() != self.end:
                why = f"nothing received for {self.idle_s:g} s (llm.idle_timeout)"
            else:
                why = (
                    f"no whole reply within {self.total_s:g} s"
                    " (llm.timeout + max_tokens / llm.min_tokens_per_s)"
                )
            raise ReplyTimeout(why, request) from None
        finally:
            self._move("")

    async def _read(self, response: httpx2.Response, request: httpx2.Request) -> bytes:
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith("text/event-stream"):
            return await _read_capped(response, READ_LIMIT, self.progressed)
        events = Reassembly()
        async for chunk in response.aiter_bytes():
            self.progressed()
            if events.feed(chunk):
                break
        if events.oversize is not None:
            return events.oversize  # the recorder refuses it as too large
        if events.error is not None:
            error = events.error
            message = error.get("message") if isinstance(error, dict) else None
            raise openai.APIError(
                one_line(f"error in the reply's stream: {message or error}"), request, body=error
            )
        if not events.complete():
            if events.unreadable is not None:
                # What the server wrote cannot be read: sent again, it would be again.
                raise UnreadableStream(
                    f"the reply's stream cannot be read: {events.unreadable}", request, body=None
                )
            raise openai.APIConnectionError(
                message="the reply's stream ended before the reply did", request=request
            )
        return events.body()


class Reassembly:
    """Server-sent ``chat.completion.chunk`` events, put back together into one
    chat.completion. Fields the chunks carry beyond the choices (``id``, ``model``,
    ``usage``, llama.cpp's ``timings``) are kept, the last value winning."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._data: list[bytes | bytearray] = []
        self._data_size = 0
        self.top: dict[str, Any] = {}
        self.choices: dict[int, dict[str, Any]] = {}
        self.done = False  # [DONE] seen
        self.error: Any = None
        # Characters of reply put together so far; past MAX_REPLY_CHARS, or with a line
        # or event longer than READ_LIMIT, reading stops and ``oversize`` holds what to
        # hand on: more than the limit, for the recorder to refuse as too large.
        self.size = 0
        self.oversize: bytes | None = None
        self.unreadable: str | None = None  # why an event could not be read, if one was

    def feed(self, chunk: bytes) -> bool:
        """Take the next bytes; True once the stream has said it is finished, or has
        grown past the limits."""
        self._buffer += chunk
        if b"\n" not in chunk:
            if len(self._buffer) > READ_LIMIT:
                self.oversize = bytes(self._buffer)
            return self.oversize is not None
        *lines, rest = self._buffer.split(b"\n")
        self._buffer = bytearray(rest)
        for line in lines:
            line = line.rstrip(b"\r")
            if not line:
                self._dispatch()
            elif line.startswith(b"data:"):
                self._data.append(line[5:].removeprefix(b" "))
                self._data_size += len(line)
                if self._data_size > READ_LIMIT:
                    self.oversize = b"\n".join(self._data)
            elif line.startswith(b"error:"):
                # llama.cpp's server reports a failure mid-stream on a line of its own.
                error = self._loads(line[6:])
                if not error or not self._keep(error):
                    error = one_line(line[6:].decode("utf-8", "replace"), 200)
                self.error = error
            if self.oversize is not None:
                return True
        if self.size > MAX_REPLY_CHARS:
            self.oversize = self.body()
        return self.done or self.error is not None or self.oversize is not None

    def _loads(self, data: bytes | bytearray) -> Any:
        # Only parsed here, not walked: a walk of every token's event would cost more
        # than the rest of reading it. The recorder checks the reply put together.
        try:
            return parse(data)
        except ValueError as e:
            self.unreadable = self.unreadable or str(e)
            return None

    def _keep(self, value: Any) -> bool:
        """Whether a value may go into the reply put together: not nested too deep
        to write out again (the rare objects, usage and the like, are checked)."""
        if isinstance(value, dict | list) and too_deep(value):
            self.unreadable = self.unreadable or f"JSON nested more than {MAX_DEPTH} deep"
            return False
        return True

    def _dispatch(self) -> None:
        if not self._data:
            return
        data, self._data, self._data_size = b"\n".join(self._data), [], 0
        if data.strip() == b"[DONE]":
            self.done = True
            return
        event = self._loads(data)
        if not isinstance(event, dict):
            return
        if "error" in event:
            error = event["error"]
            self.error = error if self._keep(error) else "an error nested too deep to read"
            return
        for key, value in event.items():
            if key not in ("choices", "object") and value is not None and self._keep(value):
                self.top[key] = value
        choices = event.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if isinstance(choice, dict):
                self._add(choice)

    def _add(self, choice: dict[str, Any]) -> None:
        index = choice.get("index", 0)
        index = index if isinstance(index, int) else 0
        if index not in self.choices:
            self.size += 100  # a choice of its own costs room even when empty
        whole = self.choices.setdefault(
            index, {"index": index, "message": {"role": "assistant"}, "finish_reason": None}
        )
        delta = choice.get("delta")
        if isinstance(delta, dict):
            message = whole["message"]
            for key, value in delta.items():
                if key in _TEXT_FIELDS and isinstance(value, str):
                    message[key] = (message.get(key) or "") + value
                    self.size += len(value)
                elif value is not None and key not in _TEXT_FIELDS and self._keep(value):
                    message[key] = value
        finish = choice.get("finish_reason")
        if finish is not None and self._keep(finish):
            whole["finish_reason"] = finish

    def complete(self) -> bool:
        """Whether the reply is whole: [DONE] came, or at least a finish reason (a
        server that closes the stream without [DONE])."""
        self._dispatch()
        finished = any(c["finish_reason"] is not None for c in self.choices.values())
        return self.done and bool(self.choices) or finished

    def body(self) -> bytes:
        choices = []
        for index in sorted(self.choices):
            choice = self.choices[index]
            choice["message"].setdefault("content", None)
            choices.append(choice)
        reply = {**self.top, "object": "chat.completion", "choices": choices}
        text = json.dumps(reply, ensure_ascii=False, separators=(",", ":"))
        try:
            return text.encode()
        except UnicodeEncodeError:
            # A lone surrogate (a "\\ud800" escape in a chunk) has no UTF-8: written
            # as the escape it came as, for the recorder to read.
            return json.dumps(reply, separators=(",", ":")).encode()


async def _read_capped(
    response: httpx2.Response, limit: int, progressed: Callable[[], None] | None = None
) -> bytes:
    """The response's body, or its first ``limit`` bytes and one chunk more when it is
    longer: enough to tell it is too long without holding all of it."""
    parts, size = [], 0
    async for chunk in response.aiter_bytes():
        if progressed is not None:
            progressed()
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(parts)


ERROR_BODY_LIMIT = 65536  # of an error reply, read for its message


async def _error_response(response: httpx2.Response, request: httpx2.Request) -> httpx2.Response:
    """An error reply with its body read, up to ``ERROR_BODY_LIMIT`` bytes: its
    message is all that is wanted of it, and it may be as large as the server likes."""
    body = await _read_capped(response, ERROR_BODY_LIMIT)
    # The body is decoded already: the headers that described its encoding go.
    headers = [
        (k, v)
        for k, v in response.headers.multi_items()
        if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    return httpx2.Response(
        response.status_code, headers=headers, content=body[:ERROR_BODY_LIMIT], request=request
    )
