"""What stands between the review page and everything else on the machine.

The page holds no ambient credential: no cookie, nothing a browser attaches by itself.
Cookies ignore ports, so a cookie set by ``127.0.0.1:PORT`` is sent to every other
service on 127.0.0.1 too, and ``SameSite`` does not tell two local ports apart.
Instead:

- ``synth review serve`` prints a URL with a random token. The page's script takes
  the token out of the address bar (``history.replaceState``) and trades it at
  ``POST /session`` for a session secret, which it keeps in ``sessionStorage``:
  readable by this origin (scheme, host *and* port) only.
- Every request for data or a decision carries the secret in the ``X-Synth-Session``
  header. That header is the per-session CSRF token as well: a page on another
  origin can neither read the secret nor add a custom header to a cross-origin
  request without a CORS preflight, which this server refuses.
- ``Host`` must be the address the server is bound to (a DNS-rebinding name is
  refused), and a request that changes state must come from this origin when the
  browser says where it comes from (``Origin``).
- Bodies over ``MAX_BODY`` get 413, by ``Content-Length`` before a byte is read, or
  as soon as a chunked body passes the limit.
- Every response says ``Referrer-Policy: no-referrer``, ``X-Frame-Options: DENY``
  and a CSP that allows only this origin's script and no framing.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import MutableMapping
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY = 1 << 20  # the page's largest post is one edited text
SESSION_HEADER = "x-synth-session"
TOKEN_HEADER = "x-synth-token"
SAFE_METHODS = ("GET", "HEAD")
# Only the page's shell and script, and the token exchange, are served without a
# session: the shell holds no data, and the exchange checks the URL token itself.
OPEN_PATHS = ("/", "/app.js")
EXCHANGE_PATH = "/session"

CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
    "img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
]


class Sessions:
    """Session secrets handed out for the URL token, each with its reviewer's name.

    Kept in memory: a restarted server forgets them, and the page then asks for the
    printed URL again. At most ``limit`` live; the oldest go first.
    """

    def __init__(self, token: str, default_reviewer: str | None = None, limit: int = 10_000):
        self._token = token.encode()
        self._default = default_reviewer
        self._limit = limit
        # Keyed by the secret's hash, so a lookup's timing says nothing of the secret.
        self._reviewers: dict[bytes, str | None] = {}

    def open(self, token: str) -> str | None:
        """A new session's secret for the URL token; None for a wrong token."""
        if not secrets.compare_digest(token.encode(), self._token):
            return None
        secret = secrets.token_urlsafe(32)
        self._reviewers[_key(secret)] = self._default
        while len(self._reviewers) > self._limit:
            del self._reviewers[next(iter(self._reviewers))]
        return secret

    def __contains__(self, secret: object) -> bool:
        return isinstance(secret, str) and _key(secret) in self._reviewers

    def reviewer(self, secret: str) -> str | None:
        return self._reviewers.get(_key(secret))

    def set_reviewer(self, secret: str, name: str) -> None:
        if secret in self:
            self._reviewers[_key(secret)] = name


def _key(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class Gate:
    """ASGI middleware: Host, Origin, session and body-size checks, and the security
    headers on every response (refusals included).

    ``hosts``: the ``Host`` values accepted (``127.0.0.1:8000``, ``localhost:8000``);
    None accepts any (a wildcard bind, where the machine's names are not known).
    The request's session secret is left in ``scope["synth.session"]``.
    """

    def __init__(
        self,
        app: ASGIApp,
        sessions: Sessions,
        hosts: frozenset[str] | None,
        max_body: int = MAX_BODY,
    ) -> None:
        self.app = app
        self.sessions = sessions
        self.hosts = hosts
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def secured(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).extend(SECURITY_HEADERS)
            await send(message)

        headers = Headers(scope=scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            status, text = refusal
            await PlainTextResponse(text + "\n", status_code=status)(scope, receive, secured)
            return
        scope["synth.session"] = headers.get(SESSION_HEADER, "")
        if scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, secured)
            return
        body = await self._body(receive)
        if body is None:
            text = f"413: the body is over {self.max_body} bytes\n"
            await PlainTextResponse(text, status_code=413)(scope, receive, secured)
            return
        await self.app(scope, _replay(body, receive), secured)

    def _refusal(self, scope: Scope, headers: Headers) -> tuple[int, str] | None:
        """(status, why) when the request is refused before it is read."""
        host = headers.get("host", "")
        if self.hosts is not None and host.lower() not in self.hosts:
            allowed = " or ".join(sorted(self.hosts))
            return 403, f"403: Host {host!r} is not this server's address ({allowed})"
        method, path = scope["method"], scope["path"]
        origin = headers.get("origin")
        if method not in SAFE_METHODS and origin is not None and origin != f"http://{host}":
            return 403, f"403: a request from {origin!r} may not change anything here"
        length = headers.get("content-length", "0")
        if not length.isdigit() or int(length) > self.max_body:
            return 413, f"413: the body is over {self.max_body} bytes"
        if _open(method, path):
            return None
        if headers.get(SESSION_HEADER, "") not in self.sessions:
            return 403, (
                "403: this page needs the access token in the URL `synth review serve`"
                " printed; open that URL again"
            )
        return None

    async def _body(self, receive: Receive) -> bytes | None:
        """The request body, or None once it passes ``max_body`` (the rest unread)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _open(method: str, path: str) -> bool:
    if method in SAFE_METHODS:
        return path in OPEN_PATHS or path.startswith("/item/")
    return method == "POST" and path == EXCHANGE_PATH


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body read already, then the connection's own messages (its disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def allowed_hosts(host: str, port: int) -> frozenset[str] | None:
    """The ``Host`` header values of a server bound to ``host:port``: the bound
    address, and ``localhost`` for a loopback one; None for a wildcard bind."""
    if host in ("0.0.0.0", "::", ""):
        return None
    name = f"[{host}]" if ":" in host else host
    hosts = {f"{name.lower()}:{port}"}
    if host in ("127.0.0.1", "::1", "localhost"):
        hosts |= {f"localhost:{port}", f"127.0.0.1:{port}" if host != "::1" else f"[::1]:{port}"}
    return frozenset(hosts)
