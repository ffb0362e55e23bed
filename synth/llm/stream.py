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
                        await response.aread()
                        raise status_error(response)
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
            parts = []
            async for chunk in response.aiter_bytes():
                self.progressed()
                parts.append(chunk)
            return b"".join(parts)
        events = Reassembly()
        async for chunk in response.aiter_bytes():
            self.progressed()
            if events.feed(chunk):
                break
        if events.error is not None:
            error = events.error
            message = error.get("message") if isinstance(error, dict) else None
            raise openai.APIError(
                f"error in the reply's stream: {message or error}", request, body=error
            )
        if not events.complete():
            raise openai.APIConnectionError(
                message="the reply's stream ended before the reply did", request=request
            )
        return events.body()


class Reassembly:
    """Server-sent ``chat.completion.chunk`` events, put back together into one
    chat.completion. Fields the chunks carry beyond the choices (``id``, ``model``,
    ``usage``, llama.cpp's ``timings``) are kept, the last value winning."""

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []
        self.top: dict[str, Any] = {}
        self.choices: dict[int, dict[str, Any]] = {}
        self.done = False  # [DONE] seen
        self.error: Any = None

    def feed(self, chunk: bytes) -> bool:
        """Take the next bytes; True once the stream has said it is finished."""
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            line = line.rstrip(b"\r")
            if not line:
                self._dispatch()
            elif line.startswith(b"data:"):
                self._data.append(line[5:].removeprefix(b" "))
            elif line.startswith(b"error:"):
                # llama.cpp's server reports a failure mid-stream on a line of its own.
                self.error = _loads(line[6:]) or line[6:].decode("utf-8", "replace").strip()
        return self.done or self.error is not None

    def _dispatch(self) -> None:
        if not self._data:
            return
        data, self._data = b"\n".join(self._data), []
        if data.strip() == b"[DONE]":
            self.done = True
            return
        event = _loads(data)
        if not isinstance(event, dict):
            return
        if "error" in event:
            self.error = event["error"]
            return
        for key, value in event.items():
            if key not in ("choices", "object") and value is not None:
                self.top[key] = value
        for choice in event.get("choices") or ():
            if isinstance(choice, dict):
                self._add(choice)

    def _add(self, choice: dict[str, Any]) -> None:
        index = choice.get("index", 0)
        whole = self.choices.setdefault(
            index if isinstance(index, int) else 0,
            {"index": index, "message": {"role": "assistant"}, "finish_reason": None},
        )
        delta = choice.get("delta")
        if isinstance(delta, dict):
            message = whole["message"]
            for key, value in delta.items():
                if key in _TEXT_FIELDS and isinstance(value, str):
                    message[key] = (message.get(key) or "") + value
                elif value is not None and key not in _TEXT_FIELDS:
                    message[key] = value
        if choice.get("finish_reason") is not None:
            whole["finish_reason"] = choice["finish_reason"]

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
        return json.dumps(reply, ensure_ascii=False, separators=(",", ":")).encode()


def _loads(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None
