"""The review server against other local sites: a forged post from another 127.0.0.1
port in a real browser, and plain HTTP for the headers, the body limit, the Host and
Origin checks and the session header."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from test_review_page import session_client

from synth.review.app import ReviewServer
from synth.review.gate import MAX_BODY
from synth.review.queue import enroll
from synth.runner import run
from synth.seeds import read_seeds


@pytest.fixture
def queued(sim_project, sim):
    """A run's rows in the review queue, one reviewer each (before the browser
    fixture: playwright's sync API holds an event loop on this thread)."""
    sim_project.write_config("double_review = 0\n", base_url=sim.base_url)  # into [review]
    config = sim_project.config()
    with sim_project.store() as store:
        store.examples.add_seeds(read_seeds(sim_project.seeds, config).seeds)
    assert run(config).status == "finished"
    with sim_project.store() as store:
        enroll(store, config.review)
    return config


class OtherSite:
    """Another local web server (another port of 127.0.0.1): serves one page and
    records the headers of every request the browser makes to it."""

    def __init__(self, html: str) -> None:
        self.html = html.encode()
        self.requests: list[dict[str, str]] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.requests.append(dict(self.headers.items()))
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(site.html)))
                self.end_headers()
                self.wfile.write(site.html)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> OtherSite:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


FORGERY = """<!doctype html><html><body>
<form id="forged" method="post" action="{target}/decide">
  <input name="example_id" value="{example_id}"><input name="action" value="approve">
</form>
<script>
  const body = () => new URLSearchParams({{example_id: "{example_id}", action: "approve"}});
  window.storage = JSON.stringify(sessionStorage);
  window.done = Promise.all([
    // A simple post, as the old cookie let through, and one with the session's
    // secret itself in the header (as if it had leaked): a preflight the server refuses.
    fetch("{target}/decide", {{method: "POST", mode: "no-cors", credentials: "include",
                               body: body()}}).then(r => r.type, e => "error"),
    fetch("{target}/decide", {{method: "POST", credentials: "include", body: body(),
                               headers: {{"X-Synth-Session": "{secret}"}}}})
      .then(r => r.status, e => "blocked"),
    fetch("{target}/view", {{credentials: "include"}}).then(r => r.status, e => "blocked"),
  ]);
</script></body></html>"""


def test_a_post_forged_on_another_local_port_is_refused_and_the_session_stays_home(
    queued, sim_project, browser
):
    with sim_project.store() as store:
        example_id = store.reviews.queue()[0]["example_id"]
    with ReviewServer(queued) as server:
        target = f"http://127.0.0.1:{server.port}"
        context = browser.new_context()
        review = context.new_page()
        review.goto(server.url)
        review.fill("#name", "ana")
        review.click("text=Start reviewing")
        review.wait_for_selector("#item")
        secret = review.evaluate("sessionStorage.getItem('synth-review-session')")
        assert secret and context.cookies() == []

        page = FORGERY.format(target=target, example_id=example_id, secret=secret)
        with OtherSite(page) as other:
            attacker = context.new_page()
            attacker.goto(f"http://127.0.0.1:{other.port}/")
            simple, with_header, read = attacker.evaluate("window.done")
            assert (simple, with_header, read) == ("opaque", "blocked", "blocked")
            assert json.loads(attacker.evaluate("window.storage")) == {}
            with attacker.expect_navigation():
                attacker.evaluate("document.getElementById('forged').submit()")
            assert "403: a request from" in attacker.inner_text("body")
            # Nothing of the review page's session reached the other port's server.
            assert other.requests and all("Cookie" not in h for h in other.requests)

        with sim_project.store() as store:
            assert store.count("reviews") == 0
        # The page itself still decides: the refusals above were not the server failing.
        review.bring_to_front()
        review.click("#approve")
        review.wait_for_function(
            "() => document.querySelector('#progress')?.innerText.includes('1 by')"
        )
        context.close()
    with sim_project.store() as store:
        assert store.count("reviews") == 1


HEADERS = {
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
}


def test_every_response_carries_the_security_headers(project):
    with ReviewServer(project.config()) as server, session_client(server) as client:
        replies = [
            client.get("/"),
            client.get("/app.js"),
            client.get("/view"),
            httpx.get(f"http://127.0.0.1:{server.port}/view"),  # 403
            client.post("/decide", content=b"x" * (MAX_BODY + 1)),  # 413
        ]
    assert [r.status_code for r in replies] == [200, 200, 200, 403, 413]
    for r in replies:
        assert {k: r.headers.get(k) for k in HEADERS} == HEADERS
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert "set-cookie" not in r.headers
    assert "?token" not in replies[0].text and "synth-review-session" in replies[1].text


def _raw(port: int, head: bytes, body: bytes = b"") -> bytes:
    """Send a request by hand and return the reply's first line and headers."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body)
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    return reply


def test_a_body_over_the_limit_is_refused_unread(queued, sim_project):
    with ReviewServer(queued) as server, session_client(server) as client:
        secret = client.headers["X-Synth-Session"]
        host = f"127.0.0.1:{server.port}".encode()
        # 400 MB announced, none of it sent: the 413 comes back at once.
        started = time.monotonic()
        head = (
            b"POST /decide HTTP/1.1\r\nHost: "
            + host
            + b"\r\nX-Synth-Session: "
            + secret.encode()
            + b"\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 400000000\r\n\r\n"
        )
        reply = _raw(server.port, head, b"example_id=")
        assert reply.startswith(b"HTTP/1.1 413"), reply
        assert time.monotonic() - started < 5
        # Chunked, no length given: refused once it passes the limit.
        chunked = head.replace(b"Content-Length: 400000000", b"Transfer-Encoding: chunked")
        size = 64 * 1024
        chunks = (f"{size:x}\r\n".encode() + b"a" * size + b"\r\n") * (MAX_BODY // size + 2)
        reply = _raw(server.port, chunked, chunks)
        assert reply.startswith(b"HTTP/1.1 413"), reply
        # Under the limit it is read: a post the page makes is not refused for size.
        assert client.post("/reviewer", data={"reviewer": "ana" * 1000}).status_code == 200
    with sim_project.store() as store:
        assert store.count("reviews") == 0


def test_a_host_that_is_not_the_bound_address_is_refused(queued, sim_project):
    with sim_project.store() as store:
        example_id = store.reviews.queue()[0]["example_id"]
    approve = {"example_id": example_id, "action": "approve"}
    with ReviewServer(queued) as server, session_client(server) as client:
        client.post("/reviewer", data={"reviewer": "ana"})
        port = server.port
        # A DNS-rebinding name pointed at 127.0.0.1: the Host header gives it away.
        for host in (f"evil.example:{port}", f"127.0.0.1:{port + 1}", "127.0.0.1"):
            r = client.post("/decide", data=approve, headers={"Host": host})
            assert r.status_code == 403 and "is not this server's address" in r.text
            assert client.get("/", headers={"Host": host}).status_code == 403
        assert client.get("/view", headers={"Host": f"localhost:{port}"}).status_code == 200
    with sim_project.store() as store:
        assert store.count("reviews") == 0


def test_a_post_without_the_session_header_or_from_another_origin_is_refused(queued, sim_project):
    with sim_project.store() as store:
        first, second = [q["example_id"] for q in store.reviews.queue()[:2]]
    with ReviewServer(queued) as server, session_client(server) as client:
        base = f"http://127.0.0.1:{server.port}"
        assert client.post("/reviewer", data={"reviewer": "ana"}).status_code == 200
        approve = {"example_id": first, "action": "approve"}
        r = httpx.post(f"{base}/decide", data=approve)
        assert r.status_code == 403 and "access token" in r.text
        bad = httpx.post(f"{base}/decide", data=approve, headers={"X-Synth-Session": "guess"})
        assert bad.status_code == 403
        for origin in (f"http://127.0.0.1:{server.port + 1}", "http://evil.example", "null"):
            r = client.post("/decide", data=approve, headers={"Origin": origin})
            assert r.status_code == 403 and "may not change anything here" in r.text
        # The token exchange is a post too: another origin cannot open a session.
        r = httpx.post(
            f"{base}/session",
            headers={"X-Synth-Token": server.token, "Origin": "http://127.0.0.1:1"},
        )
        assert r.status_code == 403
        with sim_project.store() as store:
            assert store.count("reviews") == 0
        ok = client.post(
            "/decide", data={"example_id": second, "action": "approve"}, headers={"Origin": base}
        )
        assert ok.status_code == 200
    with sim_project.store() as store:
        assert [r["example_id"] for r in store.reviews.all()] == [second]
