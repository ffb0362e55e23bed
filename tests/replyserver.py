"""A raw-socket HTTP/1.1 endpoint on 127.0.0.1 that answers chat-completion requests
with whatever bytes a test scripts, well-formed or not, and forwards the rest to an
upstream (the simulator), so one bad reply can sit among good ones in a real run.

It speaks HTTP by hand on purpose: a framework would refuse to write a bad status
line, broken chunked encoding or a header over 8 KB, which are what the client must
survive.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import httpx

# One scripted answer: the raw bytes to write back, or a function of the request's
# JSON body that returns them (to answer in the request's own terms).
Answer = bytes | Callable[[dict[str, Any]], bytes]


def http(body: bytes, status: str = "200 OK", content_type: str = "application/json") -> bytes:
    """A whole HTTP/1.1 response with ``body``."""
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


def completion(content: Any, *, usage: Any = None, finish: Any = "stop", **top: Any) -> dict:
    """A chat.completion with ``content`` as its message's content, as it is given
    (any JSON value, not only a string)."""
    reply: dict[str, Any] = {
        "id": "chatcmpl-fuzz",
        "object": "chat.completion",
        "model": "sim-1",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish,
            }
        ],
        **top,
    }
    if usage is not None:
        reply["usage"] = usage
    return reply


def plain(reply: Any) -> bytes:
    """``reply`` as a whole JSON body (ensure_ascii: lone surrogates go as escapes)."""
    return http(json.dumps(reply).encode())


def sse(events: list[Any], done: bool = True) -> bytes:
    """Server-sent events, each a JSON value (or raw bytes as they are), then [DONE]."""
    out = b""
    for e in events:
        data = e if isinstance(e, bytes) else json.dumps(e).encode()
        out += b"data: " + data + b"\n\n"
    if done:
        out += b"data: [DONE]\n\n"
    return http(out, content_type="text/event-stream")


def chunks(reply: dict[str, Any]) -> list[dict[str, Any]]:
    """A chat.completion as the stream of chunks a server would send for it."""
    choice = reply["choices"][0]
    base = {"id": reply.get("id"), "object": "chat.completion.chunk", "model": reply.get("model")}
    out: list[dict[str, Any]] = [
        {**base, "choices": [{"index": 0, "delta": choice["message"], "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]},
    ]
    if "usage" in reply:
        out.append({**base, "choices": [], "usage": reply["usage"]})
    return out


class ReplyServer:
    """Serves scripted answers to chat-completion requests in arrival order; with none
    left, asks ``rule`` (request JSON -> answer, or None), and failing that forwards the
    request to ``upstream`` (a base URL ending in /v1) and relays its reply whole.
    ``requests`` counts the chat-completion requests, ``bodies`` keeps their JSON;
    other requests (the context probe) are forwarded, or answered 404."""

    def __init__(self, upstream: str | None = None) -> None:
        self.upstream = upstream
        self.script: deque[Answer] = deque()
        self.rule: Callable[[dict[str, Any]], bytes | None] | None = None
        self.requests = 0
        self.bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._http = httpx.Client(timeout=30)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def answer(self, *answers: Answer) -> None:
        with self._lock:
            self.script.extend(answers)

    def close(self) -> None:
        self._sock.close()
        self._http.close()

    def __enter__(self) -> ReplyServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                head, body = _read_request(conn)
            except (OSError, ValueError):
                return
            method, path = head.split(" ")[:2]
            answer: Answer | None = None
            if method == "POST" and path.endswith("/chat/completions"):
                request = json.loads(body)
                with self._lock:
                    self.requests += 1
                    self.bodies.append(request)
                    answer = self.script.popleft() if self.script else None
                if answer is None and self.rule is not None:
                    answer = self.rule(request)
            if answer is None:  # unscripted, or not a chat completion (the context probe)
                data = self._forward(method, path, body)
            else:
                data = answer(request) if callable(answer) else answer
            try:
                conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _forward(self, method: str, path: str, body: bytes) -> bytes:
        if self.upstream is None:
            return http(b'{"error": {"message": "nothing scripted"}}', "404 Not Found")
        url = self.upstream.removesuffix("/v1") + path
        headers = {"content-type": "application/json"}
        reply = self._http.request(method, url, content=body or None, headers=headers)
        kind = reply.headers.get("content-type", "application/json")
        return http(reply.content, f"{reply.status_code} X", kind)


def _read_request(conn: socket.socket) -> tuple[str, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        more = conn.recv(65536)
        if not more:
            raise ValueError("closed before the request's head")
        data += more
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:] if x)}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        more = conn.recv(65536)
        if not more:
            raise ValueError("closed before the request's body")
        rest += more
    return lines[0], rest[:length]


MESSAGES = [{"role": "user", "content": "write 1 example of a card that has not come"}]


def complete_one(
    store: Any, run_id: str, settings: Any, base_url: str, purpose: str = "generate"
) -> tuple[Any, dict[str, Any]]:
    """One call planned in ``store`` under ``run_id`` and sent by the real client to
    ``base_url`` (``MESSAGES``, ``max_tokens`` 50): its result and its stored row
    (every column)."""
    import asyncio
    import uuid

    from synth.llm.client import LLMClient

    planned = {
        "request_sha": uuid.uuid4().hex * 2,
        "slice": "default",
        "label": "card_arrival",
        "sample_index": 0,
        "template": "t",
        "template_sha": "0" * 64,
        "model": settings.model,
        "params": {"max_tokens": 50},
        "messages": MESSAGES,
        "parent_ids": [],
    }
    [call] = store.calls.plan(run_id, [planned], purpose=purpose, first_attempt=True)

    async def go() -> Any:
        async with LLMClient(settings, store.calls, api_key="x", base_url=base_url) as client:
            return await client.complete(call)

    result = asyncio.run(go())
    cursor = store.conn.execute("SELECT * FROM llm_calls WHERE id = ?", (call.id,))
    names = [d[0] for d in cursor.description]
    return result, dict(zip(names, cursor.fetchone(), strict=True))
