"""The simulator's front door: routing, the state the endpoints share, and serving.

Endpoints: ``POST /v1/chat/completions``, ``GET /v1/models``, ``POST /v1/files``,
``GET|DELETE /v1/files/{id}``, ``GET /v1/files/{id}/content``, ``GET|POST
/v1/batches``, ``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``, ``GET
/props`` (llama.cpp's, when ``n_ctx`` is set), ``GET /stats`` and, to steer a
simulator running in another process, ``POST /control/reset``, ``GET|POST
/control/config`` and ``POST /control/script``.

All state (counters, the script, how often each body arrived, files and batches) lives
on ``SimServer`` and is touched only on the event loop serving it, so no endpoint needs
a lock. A test steers a simulator it runs in a background thread through
``Simulator``, which carries each control call onto that loop; another process steers
one through ``/control/*``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import pydantic
import uvicorn

from synth.serving import listening_socket
from synth.sim.cache import PromptCache
from synth.sim.chat import ChatEndpoint, _idempotency_key, _Slots, model_not_found
from synth.sim.config import MODEL_ID, OUTCOMES, Scripted, SimConfig, parse_outcome
from synth.sim.files import FilesAndBatches, _Batch, _File
from synth.sim.items import ITEM_KINDS
from synth.sim.wire import Receive, Scope, Send, _error_body, _read, _reply


class SimServer(ChatEndpoint, FilesAndBatches):
    """The simulator as a raw ASGI application, with its state and statistics.

    All state lives on the event loop serving it; the control methods (``stats``,
    ``reset``, ``configure``, ``script``) are plain synchronous functions meant to run
    on that loop (``Simulator`` marshals calls from other threads onto it). The
    endpoints' handlers come from ``ChatEndpoint`` (chat.py) and ``FilesAndBatches``
    (files.py); this class holds the state they share and routes requests to them.
    """

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self._slots = _Slots(self.config.max_in_flight)
        self._script: deque[Scripted] = deque()
        self._occurrences: dict[bytes, int] = {}
        self._prompt_cache = PromptCache()
        self._closing = asyncio.Event()
        self._files: dict[str, _File] = {}
        self._batches: dict[str, _Batch] = {}
        self.in_flight = 0
        self.queued = 0
        self._zero()

    def _zero(self) -> None:
        self.requests = 0
        self.replayed = 0
        self.streamed = 0
        self._keys: set[bytes] = set()
        self.by_outcome = dict.fromkeys((*OUTCOMES, "bad_request", "context_full"), 0)
        self.by_item = dict.fromkeys(ITEM_KINDS, 0)
        self.request_times: list[float] = []
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cached_tokens = 0  # of prompt_tokens, reported as cached (synth.sim.cache)
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
        (the repeats are ``replayed``) unless ``ignore_idempotency_keys``, ``streamed``
        those that asked for a stream; ``in_flight`` are requests holding a slot,
        ``queued`` those waiting for one; ``items`` counts the items written, by kind.
        Batch traffic is counted apart, under ``batch*``:
        ``batches`` created, ``batch_requests`` lines answered (each line once, when
        its batch runs), their outcomes, items and tokens. ``judged`` lists the text
        of the candidate of every judge request answered (online), in order."""
        return {
            "requests": self.requests,
            "replayed": self.replayed,
            "streamed": self.streamed,
            "by_outcome": dict(self.by_outcome),
            "in_flight": self.in_flight,
            "queued": self.queued,
            "peak_in_flight": self.peak_in_flight,
            "request_times": list(self.request_times),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
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
        self._prompt_cache.clear()
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

    def _model(self, model_id: str) -> dict[str, Any]:
        model = {"id": model_id, "object": "model", "created": 0, "owned_by": "synth"}
        if self.config.n_ctx is not None:
            model["max_model_len"] = self.config.n_ctx  # as vLLM says it
        return model

    # -- ASGI ------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off; websockets are not served
        method, path = scope["method"], scope["path"]
        if len(path) > 1 and path.endswith("/"):
            path = path[:-1]
        if path.startswith("/v1/") and not _authorized(scope, self.config.require_key):
            await _reply(send, 401, _unauthorized(scope))
        elif method == "POST" and path == "/v1/chat/completions":
            await self._chat(receive, send, _idempotency_key(scope))
        elif method == "GET" and path == "/stats":
            await _reply(send, 200, json.dumps(self.stats()).encode())
        elif method == "GET" and path == "/v1/models":
            served = self.config.models or (MODEL_ID,)
            data = {"object": "list", "data": [self._model(m) for m in served]}
            await _reply(send, 200, json.dumps(data).encode())
        elif method == "GET" and path.startswith("/v1/models/"):
            name = path[len("/v1/models/") :]
            if self.config.models is not None and name not in self.config.models:
                await _reply(send, 404, model_not_found(name))
            else:
                await _reply(send, 200, json.dumps(self._model(name)).encode())
        elif method == "GET" and path == "/props" and self.config.n_ctx is not None:
            props = {"default_generation_settings": {"n_ctx": self.config.n_ctx}}
            await _reply(send, 200, json.dumps(props).encode())
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


def _authorized(scope: Scope, key: str | None) -> bool:
    if key is None:
        return True
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return bytes(value) == b"Bearer " + key.encode()
    return False


def _unauthorized(scope: Scope) -> bytes:
    """OpenAI's refusal of a wrong or missing key, word for word but for the key."""
    sent = next((bytes(v) for n, v in scope.get("headers", ()) if n == b"authorization"), b"")
    key = sent.decode("latin-1").removeprefix("Bearer ")
    if not key:
        msg = (
            "You didn't provide an API key. You need to provide your API key in an"
            " Authorization header."
        )
        return _error_body(msg, "invalid_request_error", None)
    shown = key[:3] + "*" * 10 + key[-4:] if len(key) > 8 else key
    msg = (
        f"Incorrect API key provided: {shown}. You can find your API key at"
        " https://platform.openai.com/account/api-keys."
    )
    return _error_body(msg, "invalid_request_error", "invalid_api_key")


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
        stats: dict[str, Any] = self._call(self.app.stats)
        return stats

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
