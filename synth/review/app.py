"""The review web page: one row at a time, served by Starlette on uvicorn.

``synth review serve`` binds 127.0.0.1 and prints a URL carrying a random access
token. The page's script trades it for a session secret that it sends in a header
with every request; nothing is kept in a cookie (``gate.py`` says why, and what else
guards the server). Another host is served only with ``--allow-remote``: the page
shows seed data and records decisions, so it is not for the open network by accident.

    GET  /, /item/ID       the page's shell (no data) and its script, /app.js
    POST /session          the URL token (X-Synth-Token) -> a session secret
    GET  /view             the next row for this reviewer (or the name form, or "done")
    GET  /view/item/ID     one row
    POST /reviewer         set the session's reviewer name
    POST /decide           approve, reject (with a reason tag) or edit-then-approve

The store is opened on the server's event loop thread and used only there: every
handler is a coroutine and a store call is a few milliseconds of SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
)
from starlette.routing import Route
from starlette.types import ASGIApp

from synth.config import Config
from synth.errors import SynthError
from synth.review import ReviewError
from synth.review.gate import TOKEN_HEADER, Gate, Sessions, allowed_hosts
from synth.review.queue import decide, item_view, next_item, progress
from synth.serving import listening_socket
from synth.store import Store

TEMPLATES = Path(__file__).parent / "templates"

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    # Seed and generated text is untrusted data: everything is escaped.
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def create_app(
    config: Config,
    token: str,
    reviewer: str | None = None,
    hosts: frozenset[str] | None = None,
) -> ASGIApp:
    """The review page for ``config``'s store, behind ``token``. ``reviewer``: a
    default name for sessions that have not given one. ``hosts``: the ``Host``
    values served (see ``gate.allowed_hosts``); None serves any."""
    state: dict[str, Store] = {}
    sessions = Sessions(token, reviewer)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state["store"] = Store(config.db_path)
        try:
            yield
        finally:
            state.pop("store").close()

    def who(request: Request) -> str | None:
        return sessions.reviewer(request.scope["synth.session"])

    def page(**context: Any) -> str:
        return _env.get_template("review.html").render(
            project=config.project.name, reasons=config.review.reasons, **context
        )

    def render_item(
        request: Request,
        example_id: str | None,
        error: str | None = None,
        typed: str | None = None,
        skip: str = "",
    ) -> str:
        store = state["store"]
        name = who(request)
        queue = store.reviews.queue()
        cells = progress(queue)
        view = item_view(store, example_id) if example_id else None
        return page(
            reviewer=name,
            view=view,
            cells=cells,
            total=len(queue),
            done=sum(c.done for c in cells),
            mine=sum(1 for q in queue if name in q["reviewers"]),
            text_field=config.data_schema.text,
            error=error,
            skip=skip,
            typed=typed,
        )

    def next_page(request: Request, skip: str = "") -> Response:
        name = who(request)
        if not name:
            return HTMLResponse(page(reviewer=None, view=None, error=None))
        skipped = [s for s in skip.split(",") if s]
        example_id = next_item(state["store"], config.review, name, skipped)
        return HTMLResponse(render_item(request, example_id, skip=skip))

    async def shell(request: Request) -> Response:
        return HTMLResponse(_env.get_template("shell.html").render(project=config.project.name))

    async def script(request: Request) -> Response:
        return FileResponse(TEMPLATES / "app.js", media_type="text/javascript")

    async def open_session(request: Request) -> Response:
        secret = sessions.open(request.headers.get(TOKEN_HEADER, ""))
        if secret is None:
            return PlainTextResponse(
                "403: the access token is not the one `synth review serve` printed\n",
                status_code=403,
            )
        return JSONResponse({"session": secret})

    async def home(request: Request) -> Response:
        return next_page(request, request.query_params.get("skip", ""))

    async def item(request: Request) -> Response:
        if not who(request):
            return next_page(request)  # the name form first
        example_id = request.path_params["example_id"]
        skip = request.query_params.get("skip", "")
        try:
            return HTMLResponse(render_item(request, example_id, skip=skip))
        except ReviewError as e:
            return PlainTextResponse(str(e), status_code=404)

    async def set_reviewer(request: Request) -> Response:
        form = await _form(request)
        name = form.get("reviewer", "").strip()
        if name:
            sessions.set_reviewer(request.scope["synth.session"], name)
        return next_page(request)

    async def decide_route(request: Request) -> Response:
        name = who(request)
        form = await _form(request)
        example_id = form.get("example_id", "")
        try:
            decide(
                state["store"],
                config,
                example_id,
                name or "",
                form.get("action", ""),  # type: ignore[arg-type]
                reason=form.get("reason") or None,
                note=form.get("note"),
                text=form.get("text"),
                origin="web",
            )
        except SynthError as e:  # a bad decision, or a row that is not queued
            # A refused edit comes back with the text as typed, to correct, not retype.
            typed = form.get("text") if form.get("action") == "edit" else None
            try:
                body = render_item(request, example_id, error=str(e), typed=typed)
            except ReviewError:
                return PlainTextResponse(str(e), status_code=400)
            return HTMLResponse(body, status_code=400)
        return next_page(request)

    app = Starlette(
        routes=[
            Route("/", shell),
            Route("/item/{example_id}", shell),
            Route("/app.js", script),
            Route("/session", open_session, methods=["POST"]),
            Route("/view", home),
            Route("/view/item/{example_id}", item),
            Route("/reviewer", set_reviewer, methods=["POST"]),
            Route("/decide", decide_route, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    return Gate(app, sessions, hosts)


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form's fields (the page posts nothing else); last value wins."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ReviewServer:
    """The review page on uvicorn in a background thread (its own event loop).

    ``start`` returns once the socket listens; ``url`` then carries the token. Port
    0 picks a free port. A host that is not loopback needs ``allow_remote``.
    """

    def __init__(
        self,
        config: Config,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_remote: bool = False,
        reviewer: str | None = None,
        token: str | None = None,
    ) -> None:
        if not is_loopback(host) and not allow_remote:
            raise ReviewError(
                "--host",
                f"{host} is not a loopback address; the page shows your data and records"
                " decisions: pass --allow-remote to serve it to other machines",
            )
        self.host = host
        self.token = token or secrets.token_urlsafe(24)
        self.sock = listening_socket(host, port)
        self.port: int = self.sock.getsockname()[1]
        self.app = create_app(config, self.token, reviewer, allowed_hosts(host, self.port))
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                lifespan="on",
                log_level="warning",
                access_log=False,
                server_header=False,
                log_config=None,
            )
        )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/?token={self.token}"

    def run(self) -> None:
        """Serve in the foreground until Ctrl-C."""
        try:
            asyncio.run(self.server.serve(sockets=[self.sock]))
        finally:
            self.sock.close()

    def start(self) -> ReviewServer:
        self._thread = threading.Thread(target=self.run, name="synth-review", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the review page did not start on {self.host}:{self.port}")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> ReviewServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    config: Config,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    allow_remote: bool = False,
    reviewer: str | None = None,
    say: Callable[[str], None] = print,
) -> None:
    """Serve the review page in the foreground; ``say`` gets the URL to open."""
    server = ReviewServer(
        config, host=host, port=port, allow_remote=allow_remote, reviewer=reviewer
    )
    say(f"synth review page: {server.url}")
    say("(Ctrl-C stops it; the token in the URL is the only key to the page)")
    try:
        server.run()
    except KeyboardInterrupt:
        # Ctrl-C is how this page is meant to stop, not a failure: each decision was
        # committed as it was made.
        say("review page stopped; every decision made is stored")
