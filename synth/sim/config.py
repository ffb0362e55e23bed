"""What a simulator can be told to do, checked before it does any of it.

``SimConfig`` is the one way in, from a test, ``synth simulate``'s flags and
``POST /control/config`` alike, so an unknown field or shares that sum above 1 fail
there with the field named, never as a run that silently draws other faults than
asked. A script of outcomes is parsed here for the same reason: all of it is checked
before any of it is queued.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

Share = Annotated[float, Field(ge=0.0, le=1.0)]
OUTCOMES = ("ok", "429", "500", "hang", "truncate", "malformed", "garbled", "empty", "quota")
MODEL_ID = "sim-1"


class SimConfig(BaseModel):
    """How the simulator behaves. Shares are probabilities in [0, 1].

    Whole-request faults (``p_429`` ... ``p_garbled``) are drawn once per request
    and must sum to at most 1; item faults (``p_exact_dup`` ... ``p_bad_item``) are
    drawn per item of a good reply and must also sum to at most 1.

    - ``latency_ms`` / ``latency_jitter_ms``: delay added to every reply, uniform
      within +- jitter, drawn deterministically per request: for a streamed reply
      (``stream: true``), the time to its first token.
    - ``token_latency_ms``: time per completion token (4 characters). A streamed
      reply sends a token at a time; a plain one comes after all of them.
    - ``max_in_flight``: server-side slots. Requests beyond it wait in a FIFO queue,
      as on an inference server; they are not rejected. 429s are answered by the
      front door without taking a slot.
    - ``p_hang``: the request is never answered (for ``hang_s``) unless the client
      goes away; a streamed reply stops halfway instead, the connection left open.
    - ``p_truncate``: content cut mid-JSON, ``finish_reason`` "length".
    - ``p_malformed``: content that is not valid JSON, ``finish_reason`` "stop", the
      slips models make (prose around it, a fence, a missing brace): synth reads
      the examples in it.
    - ``p_garbled``: prose with no JSON in it at all, ``finish_reason`` "stop": a
      model that ignored the format, whose reply nothing can be read from.
    - ``p_empty``: a well-formed reply with no examples in it (``{"examples": []}``),
      ``finish_reason`` "stop": a model that answers and says nothing.
    - ``p_quota``: a 429 with OpenAI's ``insufficient_quota`` code (the account's
      quota is spent), no Retry-After.
    - ``retry_after_s``: sent with 429s as ``retry-after`` (whole seconds, rounded
      up) and ``retry-after-ms``.
    - ``n_ctx``: the context one request gets, in tokens (about 4 characters each),
      reported as llama.cpp's server does at ``GET /props`` and as vLLM's does at
      ``GET /v1/models`` (``max_model_len``). A prompt longer than it is refused with
      llama.cpp's 400 (``exceed_context_size_error``); a reply that would run past it
      is cut there, ``finish_reason`` "length". None: no limit, and neither is said.
    - ``ignore_idempotency_keys``: bill (count in ``requests``) every request,
      a repeated Idempotency-Key too, as most providers do; by default a repeat is
      served but counted once (``replayed``), as a provider that honours keys bills.
    - ``require_key``: the API key every ``/v1`` request must carry (``Authorization:
      Bearer KEY``); one without it is refused with OpenAI's 401
      (``invalid_api_key``). None: any key, or none, is taken.
    - ``models``: the models served, listed at ``GET /v1/models``; a request for
      another is refused with OpenAI's 404 (``model_not_found``). None: any name is
      answered (as a local server answers), and ``sim-1`` is listed.
    - ``refuse_formats``: ``response_format`` types (``json_schema``,
      ``json_object``) refused with a 400, as a server or model without structured
      outputs or JSON mode refuses them.
    - ``batch_delay_s``: how long a batch takes from creation to completed (a
      quarter of it validating, the rest in progress).
    - ``p_batch_line_fail``: share of batch lines that fail with a 500, drawn per
      line before the whole-request shares, which apply to batch lines as the batch
      worker would meet them: a 429 or 500 fails the line, a hang leaves it
      unanswered (the batch ends ``expired``), truncate, malformed and garbled are
      replies.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    latency_ms: float = Field(0.0, ge=0.0)
    latency_jitter_ms: float = Field(0.0, ge=0.0)
    token_latency_ms: float = Field(0.0, ge=0.0)
    max_in_flight: int | None = Field(None, ge=1)
    p_429: Share = 0.0
    p_500: Share = 0.0
    p_hang: Share = 0.0
    p_truncate: Share = 0.0
    p_malformed: Share = 0.0
    p_garbled: Share = 0.0
    p_empty: Share = 0.0
    p_quota: Share = 0.0
    retry_after_s: float = Field(1.0, ge=0.0)
    hang_s: float = Field(600.0, ge=0.0)
    p_exact_dup: Share = 0.0
    p_near_dup: Share = 0.0
    p_off_label: Share = 0.0
    p_pii: Share = 0.0
    p_bad_item: Share = 0.0
    batch_delay_s: float = Field(0.2, ge=0.0)
    p_batch_line_fail: Share = 0.0
    n_ctx: int | None = Field(None, ge=1)
    ignore_idempotency_keys: bool = False
    require_key: str | None = None
    models: tuple[str, ...] | None = None
    refuse_formats: tuple[Literal["json_schema", "json_object"], ...] = ()

    @pydantic.model_validator(mode="after")
    def _shares_fit(self) -> SimConfig:
        request = (
            self.p_429
            + self.p_500
            + self.p_hang
            + self.p_truncate
            + self.p_malformed
            + self.p_garbled
            + self.p_empty
            + self.p_quota
        )
        item = self.p_exact_dup + self.p_near_dup + self.p_off_label + self.p_pii + self.p_bad_item
        if request > 1 + 1e-9:
            raise ValueError(f"whole-request fault shares sum to {request:g}, more than 1")
        if item > 1 + 1e-9:
            raise ValueError(f"item fault shares sum to {item:g}, more than 1")
        return self

    def item_shares(self) -> dict[str, float]:
        """The item-fault shares keyed by item kind, as ``ItemWriter`` takes them."""
        return {
            "exact_dup": self.p_exact_dup,
            "near_dup": self.p_near_dup,
            "off_label": self.p_off_label,
            "pii": self.p_pii,
            "bad_item": self.p_bad_item,
        }


@dataclass(frozen=True)
class Scripted:
    """A forced outcome; ``retry_after`` overrides the config's for a 429."""

    outcome: str
    retry_after: float | None = None


def parse_outcome(word: str) -> Scripted:
    """Parse a scripted outcome: ``ok``, ``429``, ``429:retry-after=2`` (seconds, may
    be fractional), ``500``, ``hang``, ``truncate``, ``malformed``, ``garbled``,
    ``empty`` or ``quota``."""
    if not isinstance(word, str):
        raise ValueError(f"outcome must be a string, not {type(word).__name__}")
    head, _, arg = word.strip().partition(":")
    if head not in OUTCOMES or (arg and head != "429"):
        raise ValueError(f"unknown outcome {word!r}; expected one of {', '.join(OUTCOMES)}")
    if not arg:
        return Scripted(head)
    key, _, value = arg.partition("=")
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if key.strip() != "retry-after" or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"bad outcome {word!r}; expected e.g. 429:retry-after=2")
    return Scripted(head, seconds)
