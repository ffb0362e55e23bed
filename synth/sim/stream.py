"""Streamed replies: a chat.completion sent as server-sent ``chat.completion.chunk``
events, the way OpenAI and llama.cpp's server send them: a first chunk with the role,
the content a token (4 characters) at a time, a chunk with the finish reason, the
usage in a last chunk with no choices when ``stream_options.include_usage`` asks for
it, then ``data: [DONE]``.

Unpaced (``token_latency_ms`` 0), the events go out in one write, which costs little
more CPU than a plain reply. A "hang" stops mid-reply with the connection left open,
as a stuck server does, which only a client watching for progress notices.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from synth.sim.wire import Receive, Send

_HEAD = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
TOKEN_CHARS = 4  # the simulator's token, as its usage counts them


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"


def events(reply: dict[str, Any], usage: bool, token_chars: int | None) -> list[bytes]:
    """The events of ``reply``; the content in pieces of ``token_chars`` characters,
    or whole when None."""
    head = {
        "id": reply["id"],
        "object": "chat.completion.chunk",
        "created": reply["created"],
        "model": reply["model"],
        "system_fingerprint": reply["system_fingerprint"],
    }
    choice = reply["choices"][0]
    content: str = choice["message"]["content"]
    step = token_chars or max(1, len(content))
    pieces = [content[i : i + step] for i in range(0, len(content), step)]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _event({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": p}) for p in pieces]
    out.append(chunk({}, choice["finish_reason"]))
    if usage:
        out.append(_event({**head, "choices": [], "usage": reply["usage"]}))
    out.append(b"data: [DONE]\n\n")
    return out


async def send_stream(
    send: Send,
    receive: Receive,
    reply: dict[str, Any],
    *,
    usage: bool,
    token_s: float,
    hang_s: float | None,
    closing: asyncio.Event,
) -> None:
    """Send ``reply`` as events, a token each ``token_s`` seconds; with ``hang_s``,
    stop halfway through for that long (or until the client goes away or the server
    closes), then end the response without finishing the reply."""
    chunks = events(reply, usage, TOKEN_CHARS if token_s else None)
    stall_at = len(chunks) // 2 if hang_s is not None else None
    await send({"type": "http.response.start", "status": 200, "headers": _HEAD})
    if not token_s and stall_at is None:
        await send({"type": "http.response.body", "body": b"".join(chunks)})
        return

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    gone = asyncio.ensure_future(disconnected())
    try:
        for i, data in enumerate(chunks):
            if i == stall_at:
                shut = asyncio.ensure_future(closing.wait())
                try:
                    await asyncio.wait(
                        [gone, shut], timeout=hang_s, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    shut.cancel()
                break
            if gone.done():
                return
            await send({"type": "http.response.body", "body": data, "more_body": True})
            if token_s and i + 1 < len(chunks):
                await asyncio.sleep(token_s)
        await send({"type": "http.response.body", "body": b""})
    finally:
        gone.cancel()
