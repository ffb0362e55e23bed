"""The simulator over real sockets: the real openai client on loopback, no mocks."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import openai
import pydantic
import pytest

from synth.sim import SimConfig, Simulator

ROOT = Path(__file__).resolve().parent.parent

SHOTS = [
    {"text": "my card still has not arrived after two weeks", "label": "card_arrival"},
    {"text": "when will the new card I ordered get here", "label": "card_arrival"},
    {"text": "how long does card delivery usually take", "label": "card_arrival"},
    {"text": "is there any way to track my card in the post", "label": "card_arrival"},
    {"text": "I ordered a card last month and I am still waiting for it", "label": "card_arrival"},
]
# "euros" appears in no shot and has no synonym: an item carrying it came from here.
CONTRAST = [{"text": "what exchange rate do you use for euros", "label": "exchange_rate"}]


def prompt(shots=SHOTS, contrast=CONTRAST, n=5, label="card_arrival", extra="") -> str:
    lines = "\n".join(json.dumps(s, ensure_ascii=False) for s in shots)
    others = "\n".join(json.dumps(s, ensure_ascii=False) for s in contrast)
    return (
        f"You write realistic, varied examples.\n\nLabel: {label}\n\n"
        f"Real examples of this label, one JSON object per line:\n{lines}\n\n"
        f"These belong to other labels:\n{others}\n\n"
        f'Write {n} new examples with label "{label}".{extra}'
    )


def schema_format(n=5, label="card_arrival") -> dict[str, Any]:
    item = {
        "type": "object",
        "additionalProperties": False,
        "required": ["text", "label"],
        "properties": {"text": {"type": "string"}, "label": {"type": "string", "enum": [label]}},
    }
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["examples"],
        "properties": {"examples": {"type": "array", "minItems": n, "maxItems": n, "items": item}},
    }
    return {
        "type": "json_schema",
        "json_schema": {"name": "examples", "strict": True, "schema": schema},
    }


def request(i: int = 0, n: int = 5, fmt: Any = "schema", **kw: Any) -> dict[str, Any]:
    """A chat-completions request like synth's; ``i`` makes the body unique."""
    body: dict[str, Any] = {
        "model": "sim-test",
        "messages": [{"role": "user", "content": prompt(n=n, extra=f" (batch {i})", **kw)}],
        "temperature": 1.0,
    }
    if fmt == "schema":
        body["response_format"] = schema_format(n)
    elif fmt is not None:
        body["response_format"] = fmt
    return body


async def ask(sim: Simulator | str, bodies: list[dict[str, Any]], **client_kw: Any) -> list[Any]:
    """Send bodies concurrently to a simulator (or a base URL); exceptions are
    returned, not raised."""
    url = sim if isinstance(sim, str) else sim.base_url
    client = openai.AsyncOpenAI(base_url=url, api_key="sim", max_retries=0, **client_kw)
    try:
        return await asyncio.gather(
            *(client.chat.completions.create(**b) for b in bodies), return_exceptions=True
        )
    finally:
        await client.close()


def one(sim: Simulator, body: dict[str, Any], **client_kw: Any) -> Any:
    result = asyncio.run(ask(sim, [body], **client_kw))[0]
    if isinstance(result, BaseException):
        raise result
    return result


def examples(reply: Any) -> list[dict[str, Any]]:
    return json.loads(reply.choices[0].message.content)["examples"]


def http(sim_url: str, path: str, body: Any = None) -> tuple[int, Any]:
    """GET (or POST with a JSON body) on the server root; returns status and JSON."""
    root = sim_url.removesuffix("/v1")
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(root + path, data=data, method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read())


# -- good replies ------------------------------------------------------------------


def test_a_good_reply_is_a_valid_chat_completion(sim):
    reply = one(sim, request())
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    assert reply.model == "sim-test"  # any model name is echoed
    choice = reply.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    items = examples(reply)
    assert len(items) == 5
    shots = {s["text"] for s in SHOTS}
    for item in items:
        assert set(item) == {"text", "label"} and item["label"] == "card_arrival"
        assert isinstance(item["text"], str) and len(item["text"].split()) >= 3
        assert item["text"] not in shots
    assert len({i["text"] for i in items}) == 5
    content = choice.message.content
    assert reply.usage.prompt_tokens == pytest.approx(len(prompt(extra=" (batch 0)")) / 4, abs=2)
    assert reply.usage.completion_tokens == pytest.approx(len(content) / 4, abs=2)


def test_same_seed_and_body_give_the_same_content_another_seed_other_content(sim):
    body = request(7)
    first = one(sim, body).choices[0].message.content
    assert one(sim, body).choices[0].message.content == first  # a retry gets the same
    seed = sim.config.seed
    with Simulator(SimConfig(seed=seed)) as same, Simulator(SimConfig(seed=seed + 1)) as other:
        assert one(same, body).choices[0].message.content == first
        assert one(other, body).choices[0].message.content != first
    assert one(sim, request(8)).choices[0].message.content != first


def test_json_object_reads_fields_and_label_from_the_prompt(sim):
    shots = [dict(s, tone="calm") for s in SHOTS]
    contrast = [dict(CONTRAST[0], tone="urgent")]
    body = request(n=4, fmt={"type": "json_object"}, shots=shots, contrast=contrast)
    items = examples(one(sim, body))
    assert len(items) == 4
    for item in items:
        assert set(item) == {"text", "label", "tone"}
        assert item["label"] == "card_arrival" and item["tone"] == "calm"


def test_without_response_format_the_count_comes_from_the_prompt(sim):
    body = request(n=3, fmt=None)
    items = examples(one(sim, body))
    assert len(items) == 3 and all(i["label"] == "card_arrival" for i in items)


def test_other_languages_are_recombined(sim):
    zh = [
        {"text": "我的银行卡还没收到，已经两周了", "label": "card_arrival"},
        {"text": "请问新卡什么时候能寄到？", "label": "card_arrival"},
        {"text": "我怎么查询卡片的快递进度", "label": "card_arrival"},
    ]
    es = [
        {"text": "mi tarjeta todavía no ha llegado", "label": "card_arrival"},
        {
            "text": "¿cuándo llegará mi nueva tarjeta? ya pasaron dos semanas",
            "label": "card_arrival",
        },
    ]
    for shots, script in ((zh, re.compile(r"[\u4e00-\u9fff]")), (es, re.compile(r"tarjeta"))):
        items = examples(one(sim, request(shots=shots, contrast=[])))
        assert len(items) == 5
        assert all(script.search(i["text"]) for i in items)
        assert sum(i["text"] in {s["text"] for s in shots} for i in items) == 0


def test_items_are_paraphrases_not_copies(sim):
    replies = asyncio.run(ask(sim, [request(i) for i in range(40)]))
    texts = [i["text"] for r in replies for i in examples(r)]

    def grams(text: str) -> set[tuple[str, ...]]:
        words = re.sub(r"[\W_]+", " ", text.lower()).split()
        return {tuple(words[i : i + 5]) for i in range(max(1, len(words) - 4))}

    shot_grams = [grams(s["text"]) for s in SHOTS]
    copies = sum(t in {s["text"] for s in SHOTS} for t in texts)
    similar = [max(len(grams(t) & g) / len(grams(t) | g) for g in shot_grams) for t in texts]
    assert len(texts) == 200 and copies <= 0.05 * len(texts)
    assert sum(s >= 0.8 for s in similar) <= 0.1 * len(texts)
    assert sorted(similar)[len(similar) // 2] < 0.5


# -- whole-request faults ------------------------------------------------------------


def test_429_raises_rate_limit_error_with_retry_after(sim):
    sim.configure(p_429=1.0, retry_after_s=0.2)
    with pytest.raises(openai.RateLimitError) as caught:
        one(sim, request())
    headers = caught.value.response.headers
    assert headers["retry-after"] == "1" and headers["retry-after-ms"] == "200"
    assert caught.value.body["code"] == "rate_limit_exceeded"
    sim.configure(p_429=0.0)
    sim.script(["429:retry-after=2.5"])
    with pytest.raises(openai.RateLimitError) as caught:
        one(sim, request())
    headers = caught.value.response.headers
    assert headers["retry-after"] == "3" and headers["retry-after-ms"] == "2500"


def test_500_raises_internal_server_error(sim):
    sim.configure(p_500=1.0)
    with pytest.raises(openai.InternalServerError) as caught:
        one(sim, request())
    assert caught.value.status_code == 500


def test_scripted_outcomes_come_in_arrival_order_then_the_config_again(sim):
    sim.script(["500", "429", "truncate", "malformed", "ok"])
    client_errors: list[str] = []

    async def in_order() -> list[Any]:
        client = openai.AsyncOpenAI(base_url=sim.base_url, api_key="sim", max_retries=0)
        out = []
        try:
            for i in range(6):
                try:
                    out.append(await client.chat.completions.create(**request(i)))
                except openai.APIStatusError as e:
                    client_errors.append(type(e).__name__)
        finally:
            await client.close()
        return out

    replies = asyncio.run(in_order())
    assert client_errors == ["InternalServerError", "RateLimitError"]
    assert [r.choices[0].finish_reason for r in replies] == ["length", "stop", "stop", "stop"]
    stats = sim.stats()
    assert stats["by_outcome"] == {
        "ok": 2,
        "429": 1,
        "500": 1,
        "hang": 0,
        "truncate": 1,
        "malformed": 1,
        "garbled": 0,
        "empty": 0,
        "quota": 0,
        "bad_request": 0,
        "context_full": 0,
    }
    with pytest.raises(ValueError, match="unknown outcome"):
        sim.script(["ok", "teapot"])


def test_truncated_content_is_cut_json_with_finish_reason_length(sim):
    sim.configure(p_truncate=1.0)
    for reply in asyncio.run(ask(sim, [request(i) for i in range(10)])):
        assert reply.choices[0].finish_reason == "length"
        content = reply.choices[0].message.content
        assert content.startswith('{"examples": [')
        with pytest.raises(json.JSONDecodeError):
            json.loads(content)


def test_malformed_content_is_not_json(sim):
    sim.configure(p_malformed=1.0)
    for reply in asyncio.run(ask(sim, [request(i) for i in range(20)])):
        assert reply.choices[0].finish_reason == "stop"
        with pytest.raises(json.JSONDecodeError):
            json.loads(reply.choices[0].message.content)


def test_garbled_content_holds_no_json_at_all(sim):
    sim.configure(p_garbled=1.0)
    for reply in asyncio.run(ask(sim, [request(i) for i in range(5)])):
        assert reply.choices[0].finish_reason == "stop"
        content = reply.choices[0].message.content
        assert "{" not in content and "[" not in content


def test_a_hung_request_times_out_at_the_client_and_is_counted(sim):
    sim.configure(p_hang=1.0)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        one(sim, request(), timeout=0.5)
    assert time.monotonic() - started < 3
    stats = sim.stats()
    assert stats["requests"] == 1 and stats["by_outcome"]["hang"] == 1
    # The server notices the client leaving and frees the slot.
    deadline = time.monotonic() + 3
    while sim.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sim.stats()["in_flight"] == 0


def test_faults_depend_on_the_occurrence_of_a_body_not_only_on_the_body(sim):
    sim.configure(p_429=0.5)
    body = request(3)

    async def repeat(times: int) -> list[Any]:
        client = openai.AsyncOpenAI(base_url=sim.base_url, api_key="sim", max_retries=0)
        out = []
        try:
            for _ in range(times):
                try:
                    out.append(await client.chat.completions.create(**body))
                except openai.RateLimitError as e:
                    out.append(e)
        finally:
            await client.close()
        return out

    first = asyncio.run(repeat(16))
    kinds = [isinstance(r, openai.RateLimitError) for r in first]
    assert 0 < sum(kinds) < 16  # a body that drew a 429 does not draw it forever
    contents = {r.choices[0].message.content for r in first if not isinstance(r, Exception)}
    assert len(contents) == 1  # and every good reply to it is the same
    sim.reset()  # forgets the occurrences: the same sequence again
    again = asyncio.run(repeat(16))
    assert [isinstance(r, openai.RateLimitError) for r in again] == kinds


# -- stats, queueing, control --------------------------------------------------------


def test_stats_count_requests_outcomes_and_tokens(sim):
    before = time.time()
    replies = asyncio.run(ask(sim, [request(i) for i in range(6)]))
    stats = sim.stats()
    assert stats["requests"] == 6 and stats["by_outcome"]["ok"] == 6
    assert len(stats["request_times"]) == 6
    assert all(before - 1 <= t <= time.time() for t in stats["request_times"])
    assert stats["prompt_tokens"] == sum(r.usage.prompt_tokens for r in replies)
    assert stats["completion_tokens"] == sum(r.usage.completion_tokens for r in replies)
    assert stats["in_flight"] == 0 and stats["peak_in_flight"] >= 1
    assert stats["items"]["normal"] == 30
    status, over_http = http(sim.base_url, "/stats")
    assert status == 200 and over_http["requests"] == 6
    sim.reset()
    assert sim.stats()["requests"] == 0 and sim.stats()["request_times"] == []


def test_max_in_flight_queues_requests_instead_of_rejecting_them(sim):
    sim.configure(max_in_flight=3, latency_ms=60)
    started = time.monotonic()
    replies = asyncio.run(ask(sim, [request(i) for i in range(12)]))
    elapsed = time.monotonic() - started
    assert all(not isinstance(r, Exception) for r in replies)
    stats = sim.stats()
    assert stats["peak_in_flight"] == 3 and stats["by_outcome"]["ok"] == 12
    assert elapsed >= 4 * 0.06 * 0.9  # four waves of three


def test_item_fault_shares_are_roughly_honoured(sim):
    shares = dict(p_exact_dup=0.1, p_near_dup=0.1, p_off_label=0.1, p_pii=0.1, p_bad_item=0.1)
    sim.configure(**shares)
    replies = asyncio.run(ask(sim, [request(i) for i in range(60)]))
    items = [i for r in replies for i in examples(r)]
    assert len(items) == 300
    counts = sim.stats()["items"]
    assert sum(counts.values()) == 300
    for kind in ("exact_dup", "near_dup", "off_label", "pii", "bad_item"):
        assert 15 <= counts[kind] <= 45, (kind, counts)

    shots = {s["text"] for s in SHOTS}
    bad = [i for i in items if set(i) != {"text", "label"} or len(i["text"].split()) <= 2]
    copies = [i for i in items if i not in bad and i["text"] in shots]
    off_label = [i for i in items if i not in bad and "euros" in i["text"].lower()]
    pii = [i for i in items if i not in bad and has_pii(i["text"])]
    assert len(bad) == counts["bad_item"]
    assert len(copies) == counts["exact_dup"]
    assert len(off_label) == counts["off_label"]
    assert all(i["label"] == "card_arrival" for i in off_label)
    assert len(pii) == counts["pii"]


def luhn(number: str) -> bool:
    digits = [int(d) for d in number][::-1]
    total = sum(
        d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(digits)
    )
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    compact = iban.replace(" ", "")
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def has_pii(text: str) -> bool:
    if re.search(r"\b[\w.+-]+@[\w-]+\.[\w.]+\b", text):
        return True
    if re.search(r"\+\d{1,2} (?:\(\d{3}\) \d{3}-\d{4}|7\d{3} \d{6})", text):
        return True
    if re.search(r"\b\d{3}-\d{2}-\d{4}\b", text):
        return True
    if re.search(r"\b(?:\d{1,3}\.){3}\d{1,3}\b", text):
        return True
    for m in re.finditer(r"\b(?:\d{4} ?){3}\d{4}\b", text):
        if luhn(m.group(0).replace(" ", "")):
            return True
    return any(
        iban_ok(m.group(0))
        for m in re.finditer(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4})+(?: ?[A-Z0-9]{1,3})?\b", text)
    )


def test_configure_validates_and_rejects_unknown_fields(sim):
    with pytest.raises(pydantic.ValidationError, match="latency_msec"):
        sim.configure(latency_msec=5)
    with pytest.raises(pydantic.ValidationError):
        sim.configure(p_429=1.5)
    with pytest.raises(pydantic.ValidationError, match="sum"):
        sim.configure(p_429=0.6, p_500=0.6)
    assert sim.config.p_429 == 0.0 and sim.config.latency_ms == 0.0
    status, body = http(sim.base_url, "/control/config", {"p_hang": 0.1, "bogus": 1})
    assert status == 422 and body["detail"][0]["loc"] == ["bogus"]
    status, body = http(sim.base_url, "/control/config", {"latency_ms": 1.5})
    assert status == 200 and body["latency_ms"] == 1.5 and sim.config.latency_ms == 1.5
    assert http(sim.base_url, "/control/script", {"outcomes": ["nope"]})[0] == 422
    assert http(sim.base_url, "/control/script", {"outcomes": ["500"]})[0] == 200
    with pytest.raises(openai.InternalServerError):
        one(sim, request())
    assert http(sim.base_url, "/control/reset", {})[0] == 200
    assert sim.stats()["requests"] == 0


def test_models_and_unknown_paths(sim):
    status, models = http(sim.base_url, "/v1/models")
    assert status == 200 and models["object"] == "list" and models["data"][0]["id"] == "sim-1"
    status, error = http(sim.base_url, "/v1/embeddings", {"input": "x"})
    assert status == 404 and set(error["error"]) >= {"message", "type", "code"}
    with pytest.raises(openai.BadRequestError):
        one(sim, dict(request(), stream=False, messages=[]))


async def _streamed(sim: Simulator, body: dict[str, Any]) -> tuple[list[Any], list[float]]:
    """The openai client's own stream of chunks, and when each arrived."""
    client = openai.AsyncOpenAI(base_url=sim.base_url, api_key="sim", max_retries=0)
    chunks, times = [], []
    try:
        stream = await client.chat.completions.create(
            **body, stream=True, stream_options={"include_usage": True}
        )
        async for chunk in stream:
            chunks.append(chunk)
            times.append(time.monotonic())
    finally:
        await client.close()
    return chunks, times


@pytest.mark.parametrize("token_ms", [0, 20])
def test_a_streamed_reply_holds_the_plain_reply_a_token_at_a_time(sim, token_ms):
    plain = one(sim, request(7))
    sim.configure(token_latency_ms=token_ms, latency_ms=100)
    started = time.monotonic()
    chunks, times = asyncio.run(_streamed(sim, request(7)))
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == plain.choices[0].message.content  # the same body, streamed or not
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and not any(finishes[:-1])
    # The same counts; the prompt sent a second time is reported cached, as a
    # provider's prompt cache would serve it.
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None and plain.usage is not None
    assert usage.model_dump(exclude={"prompt_tokens_details"}) == plain.usage.model_dump(
        exclude={"prompt_tokens_details"}
    )
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == usage.prompt_tokens // 128 * 128
    assert times[0] - started >= 0.1  # latency_ms is the time to the first token
    pieces = sum(1 for c in chunks if c.choices and c.choices[0].delta.content)
    if token_ms:
        assert pieces == -(-len(content) // 4)  # a token (4 characters) per chunk
        assert times[-1] - times[0] >= 0.02 * pieces * 0.9
    else:
        assert pieces == 1
    assert sim.stats()["streamed"] == 1


def test_a_streamed_hang_stops_halfway_and_leaves_the_connection_open(sim):
    sim.configure(p_hang=1.0, token_latency_ms=1)
    received: list[bytes] = []

    async def read() -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            body = {**request(3), "stream": True}
            async with client.stream("POST", sim.base_url + "/chat/completions", json=body) as r:
                async for data in r.aiter_bytes():
                    received.append(data)

    with pytest.raises(TimeoutError):
        asyncio.run(asyncio.wait_for(read(), 0.5))
    text = b"".join(received).decode()
    assert '"role": "assistant"' in text and '"content": "' in text
    assert '"finish_reason": "stop"' not in text and "[DONE]" not in text
    deadline = time.monotonic() + 3  # the server sees the client go and frees the slot
    while sim.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sim.stats()["in_flight"] == 0


# -- the foreground server -----------------------------------------------------------


def test_serve_prints_the_listening_line_and_obeys_the_control_endpoints():
    code = "from synth.sim import SimConfig, serve; serve(SimConfig(seed=3, p_500=1.0))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(r"synth simulator listening on (http://127\.0\.0\.1:(\d+)/v1)\n", line)
        assert match, line
        url = match.group(1)
        assert http(url, "/control/config", {"p_500": 0.0})[0] == 200
        assert http(url, "/control/script", {"outcomes": ["429:retry-after=0.1", "ok"]})[0] == 200

        # One at a time: scripted outcomes go by arrival order.
        assert isinstance(asyncio.run(ask(url, [request(1)]))[0], openai.RateLimitError)
        assert len(examples(asyncio.run(ask(url, [request(1)]))[0])) == 5
        status, stats = http(url, "/stats")
        assert status == 200 and stats["requests"] == 2 and stats["by_outcome"]["429"] == 1
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    assert proc.returncode == 0, err
