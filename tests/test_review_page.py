"""The review page end to end: a real synth run against the simulator fills the queue,
uvicorn serves the page on loopback, Debian's chromium (through playwright) reviews."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import httpx
import pytest
from click.testing import CliRunner

from synth.cli import cli
from synth.review import ReviewError
from synth.review.app import ReviewServer
from synth.review.queue import enroll
from synth.runner import run
from synth.seeds import read_seeds


@pytest.fixture
def queued(sim_project, sim):
    """A project whose run filled the review queue (one reviewer per row). A fixture,
    so it runs before the browser's: playwright's sync API holds an event loop on this
    thread."""
    sim_project.write_config("double_review = 0\n", base_url=sim.base_url)  # into [review]
    config = sim_project.config()
    with sim_project.store() as store:
        store.examples.add_seeds(read_seeds(sim_project.seeds, config).seeds)
    assert run(config).status == "finished"
    return config


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def _moved_on(page, previous: str) -> None:
    """Wait for the page to show another row than ``previous``. A function, not an
    expression: the page's CSP has no 'unsafe-eval' for playwright to poll with."""
    page.wait_for_function(
        "previous => document.querySelector('#item')?.dataset.id !== previous", arg=previous
    )


def test_review_page_approve_reject_edit_in_a_real_browser(queued, sim_project, browser, tmp_path):
    config = queued
    with sim_project.store() as store:
        assert enroll(store, config.review) >= 3
        queue = store.reviews.queue()
    with ReviewServer(config) as server:
        base = f"http://127.0.0.1:{server.port}"
        assert _get(base + "/view") == 403

        page = browser.new_page(viewport={"width": 1360, "height": 1000})
        page.goto(base + "/?token=wrong")
        page.wait_for_selector("#denied")
        assert "not the one `synth review serve` printed" in page.inner_text("#denied")
        page.goto(server.url)
        page.fill("#name", "ana")
        # The token is gone from the address bar, and no cookie holds the session.
        assert page.url == base + "/"
        assert page.context.cookies() == []
        page.click("text=Start reviewing")
        assert page.inner_text("#reviewer") == "ana"

        first = page.get_attribute("#item", "data-id")
        page.click("#approve")
        _moved_on(page, first)

        second = page.get_attribute("#item", "data-id")
        page.keyboard.press("r")
        page.fill("#reject-panel input[name=note]", "reads like a template")
        page.click("#reject-form button[value=off_label]")
        _moved_on(page, second)

        third = page.get_attribute("#item", "data-id")
        page.keyboard.press("e")
        # Too short for the schema: refused, the typed text kept and the reason shown.
        page.fill("#edit-text", "stolen")
        page.keyboard.press("Control+Enter")
        page.wait_for_selector("#error")
        assert "fails the schema filter" in page.inner_text("#error")
        assert page.get_attribute("#item", "data-id") == third
        assert page.input_value("#edit-text") == "stolen"
        assert page.is_visible("#edit-text")
        page.fill("#edit-text", "my card was stolen this morning, please block it now")
        page.screenshot(path=str(tmp_path / "review-page.png"), full_page=True)
        page.keyboard.press("Control+Enter")
        _moved_on(page, third)
        assert "3 by you" in page.inner_text("#progress")
        # A reload keeps the tab's session; the data needs it, the shell does not.
        page.reload()
        page.wait_for_selector("#item")
        assert "3 by you" in page.inner_text("#progress")
        skipped = page.get_attribute("#item", "data-id")
        page.keyboard.press("s")
        _moved_on(page, skipped)
        assert page.url == base + "/?skip=" + skipped
        page.close()
        assert _get(base + f"/view/item/{first}") == 403
        assert _get(base + f"/item/{first}") == 200  # the shell: no data in it
        assert first not in urllib.request.urlopen(base + f"/item/{first}").read().decode()

    with sim_project.store() as store:
        reviews = {r["example_id"]: r for r in store.reviews.all()}
        rows = {r["id"]: r for r in store.examples.by_id([first, second, third])}
        edits = store.examples.edits(third)
    assert set(reviews) == {first, second, third}
    assert {i: r["reviewer"] for i, r in reviews.items()} == dict.fromkeys(reviews, "ana")
    assert reviews[first]["verdict"] == "approve" and reviews[first]["edited_data"] is None
    assert (reviews[second]["verdict"], reviews[second]["reason"]) == ("reject", "off_label")
    assert reviews[second]["note"] == "reads like a template"
    assert reviews[third]["verdict"] == "approve"
    assert all(r["origin"] == "web" for r in reviews.values())

    assert all(q["reviews_needed"] == 1 for q in queue)
    assert rows[first]["status"] == "approved"
    assert rows[second]["status"] == "review_rejected"
    assert rows[third]["source"] == "edited"
    assert rows[third]["text"] == "my card was stolen this morning, please block it now"
    assert rows[third]["data"]["text"] == rows[third]["text"]
    [edit] = edits
    assert edit["editor"] == "reviewer:ana"
    assert edit["after"]["text"] == rows[third]["text"]
    assert edit["before"]["text"] != rows[third]["text"]  # the original is kept


def test_review_page_refuses_a_non_loopback_host_without_the_flag(project):
    with pytest.raises(ReviewError, match="--allow-remote"):
        ReviewServer(project.config(), host="0.0.0.0")


def test_synth_review_serve_prints_a_token_url_and_refuses_requests_without_it(project):
    proc = subprocess.Popen(
        [sys.executable, "-m", "synth", "--config", str(project.config_path), "review", "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:(\d+))/\?token=(\S+)", line)
        assert match, line
        base, token = match.group(1), match.group(3)
        assert len(token) >= 24
        deadline = time.monotonic() + 20
        while True:  # the URL is printed just before uvicorn starts listening
            try:
                status = _get(f"{base}/?token={token}")
                break
            except urllib.error.URLError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert status == 200
        assert _get(f"{base}/view") == 403
        assert (
            httpx.post(f"{base}/session", headers={"X-Synth-Token": token[:-1]}).status_code == 403
        )
        assert httpx.post(f"{base}/session", headers={"X-Synth-Token": token}).status_code == 200
        # Ctrl-C is the way to stop it: exit 0 and one line, no "Aborted!".
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert out.strip().splitlines()[-1] == "review page stopped; every decision made is stored"
        assert "Aborted" not in err and "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)


def test_synth_review_serve_on_another_host_needs_the_flag(project):
    result = CliRunner().invoke(
        cli, ["--config", str(project.config_path), "review", "serve", "--host", "0.0.0.0"]
    )
    assert result.exit_code != 0
    assert "--host: 0.0.0.0 is not a loopback address" in result.output
    assert "--allow-remote" in result.output


def test_the_page_shows_judge_rationales_and_escapes_untrusted_text():
    from synth.review.app import _env
    from synth.review.queue import CellProgress

    example = {
        "id": "ex_1",
        "source": "synthetic",
        "slice": "default",
        "label": "card_arrival",
        "data": {"text": "<script>alert(1)</script> where is my card", "label": "card_arrival"},
        "text": "<script>alert(1)</script> where is my card",
        "status": "review_pending",
        "template": "prompts/generate/classify.md.j2",
        "template_sha": "ab" * 32,
        "model": "sim-1",
        "run_id": "run_1",
    }
    view = {
        "example": example,
        "seeds": [
            {
                "id": "seed_1",
                "text": "<b>bold</b> seed",
                "slice": "default",
                "label": "card_arrival",
                "origin": "seeds.jsonl:3",
            }
        ],
        "decisions": [
            {
                "filter": "schema",
                "filter_version": "1",
                "verdict": "keep",
                "score": None,
                "reason": "",
            }
        ],
        "judge": [
            {
                "criterion": "faithful",
                "score": 2.0,
                "judge_model": "judge-1",
                "sample": 0,
                "rationale": "mentions a card the customer never had",
            }
        ],
        "edits": [],
        "reviews": [],
        "queue": {"reason": "filter", "reviews_needed": 2, "reviewers": []},
    }
    html = _env.get_template("review.html").render(
        project="p",
        reasons=["off_label"],
        reviewer="ana",
        view=view,
        cells=[CellProgress("default", "card_arrival", 3, 1)],
        total=3,
        done=1,
        mine=0,
        text_field="text",
        error=None,
        skip="",
    )
    assert "mentions a card the customer never had" in html and "faithful" in html
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;bold&lt;/b&gt; seed" in html
    assert "held by a filter" in html and "double review · 0/2" in html


def session_client(server: ReviewServer) -> httpx.Client:
    """A client holding a session of ``server``, as the page's script does."""
    reply = httpx.post(
        f"http://127.0.0.1:{server.port}/session", headers={"X-Synth-Token": server.token}
    )
    assert reply.status_code == 200, reply.text
    return httpx.Client(
        base_url=f"http://127.0.0.1:{server.port}",
        headers={"X-Synth-Session": reply.json()["session"]},
    )


def test_a_bad_post_gets_400_with_the_reason_and_stores_nothing(queued, sim_project):
    with sim_project.store() as store:
        enroll(store, queued.review)
        example_id = store.reviews.queue()[0]["example_id"]
    with ReviewServer(queued) as server, session_client(server) as client:
        assert client.post("/reviewer", data={"reviewer": "ana"}).status_code == 200
        no_reason = {"example_id": example_id, "action": "reject"}
        r = client.post("/decide", data=no_reason)
        assert r.status_code == 400 and "reject reason None is not in review.reasons" in r.text
        unknown = {"example_id": "ex_nope", "action": "approve"}
        r = client.post("/decide", data=unknown)
        assert r.status_code == 400 and "ex_nope" in r.text
        r = httpx.post(f"http://127.0.0.1:{server.port}/decide", data=unknown)
        assert r.status_code == 403
        short = {"example_id": example_id, "action": "edit", "text": "refund"}
        r = client.post("/decide", data=short)
        assert r.status_code == 400 and "fails the schema filter: too_short" in r.text
        assert '<textarea name="text" id="edit-text">refund</textarea>' in r.text
    with sim_project.store() as store:
        assert store.count("reviews") == 0
