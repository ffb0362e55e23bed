"""synth's own OpenAI-compatible endpoint: realistic replies and faults on demand.

The offline demo, every test and the throughput benchmarks talk to it through the
real ``openai`` client over loopback, so it speaks the chat-completions protocol
faithfully (OpenAI-shaped errors, ``Retry-After`` on 429, ``finish_reason`` on cut
replies, ``usage``) and is cheap enough never to be the bottleneck: it is a bare ASGI
callable served by uvicorn with the httptools parser, latency is ``asyncio.sleep``,
and a reply costs well under a millisecond of CPU.

Replies paraphrase and recombine the few-shot examples found in the prompt; judge
requests are graded by documented heuristics. Everything is deterministic for a seed:
a reply's content is a function of (seed, sha256 of the body's canonical JSON), so a
retried request gets the same content; the fault drawn also depends on how many times
that body has arrived, so a request that drew a 429 does not draw it forever.

It is a package of its own, beside ``synth.llm`` rather than in it, because it is no
part of the production path: only ``synth demo``, ``synth simulate``, the tests and
the benchmarks start it, and it imports nothing of the run path (store, runner,
client).

    app.py      routing, the state the endpoints share, ``/stats`` and
                ``/control/*``; ``Simulator`` (a background thread) and ``serve``
    config.py   ``SimConfig`` (latency, slots, fault shares) and scripted outcomes
    wire.py     ASGI plumbing: request bodies, JSON replies, OpenAI-shaped errors
    chat.py     ``/v1/chat/completions``: slots, fault draws, the completion
    files.py    the Files and Batch APIs, answered by the same engine as chat
    task.py     reading what a generation request asks for
    text.py     paraphrases of the shots, near duplicates, woven-in PII
    items.py    a reply's items, normal or planted faults, every field filled
    vocab.py    the synonym, phrase, opener and closer tables
    judge.py    grading judge requests (``rubric_grade``, ``label_check``)
"""

from __future__ import annotations

from synth.sim.app import SimServer, Simulator, serve
from synth.sim.config import SimConfig, parse_outcome

__all__ = ["SimConfig", "SimServer", "Simulator", "parse_outcome", "serve"]
