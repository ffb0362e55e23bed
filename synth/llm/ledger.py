"""Hard caps on a run's spend: every request holds its worst case before it leaves.

    a call planned       hold(key, calls, usd)   the call, and the judge calls its
                                                 candidates will need, held together
    an attempt leaves    take(call_id, key, usd) 1 request and its worst cost, from the
                                                 key's hold, else from what is free;
                                                 refused (``Refused``): not sent
    its reply lands      settle(call_id, usd)    the worst case swapped for the cost
    a hold not needed    release(key)            back to what is free

What is free is the cap less the requests sent, the worst case of those in flight,
the cost of those answered and everything held. A hold is granted whole or not at
all, and only from what is free, so ``sent + held <= max_calls`` and ``cost + worst
in flight + held <= max_cost_usd`` always: no retry, judge call or call in flight
can take a run past a cap. A request's worst case is its prompt's UTF-8 bytes (no
byte-level tokenizer makes more tokens than bytes) plus the chat template's tokens,
plus ``max_tokens``, at the listed price; the difference is freed when the reply's
usage lands.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import openai

from synth.config import LLMSettings, Price
from synth.errors import SynthError
from synth.store.rows import CallRow

# Tokens a chat template adds around each message (role markers) and around the
# whole prompt (the default system prompt some models' templates put in).
MESSAGE_TOKENS = 8
TEMPLATE_TOKENS = 64
# Float sums of many prices drift in the last digits: a cap is reached within this.
EPSILON = 1e-12


# A Retry-After this long says a quota is spent for the day (or month), not that the
# endpoint is busy: waiting it out inside a run helps nobody.
QUOTA_WAIT_S = 3600.0


class QuotaSpent(SynthError):
    """The provider says the account's quota is spent: the run stops with the reason
    (``runs.stop_reason``) instead of retrying for hours; ``synth run`` resumes it
    once the quota is topped up or renewed."""

    def __init__(self, reason: str) -> None:
        super().__init__("llm", reason)
        self.reason = reason


def quota_spent(exc: BaseException, retry_after: float | None) -> bool:
    """Whether a refusal says the quota is spent: OpenAI's 429 ``insufficient_quota``,
    or a 429 whose Retry-After is an hour or more."""
    if not isinstance(exc, openai.APIStatusError) or exc.status_code != 429:
        return False
    body: dict[str, Any] = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error")
    inner: dict[str, Any] = error if isinstance(error, dict) else body
    if "insufficient_quota" in (inner.get("code"), inner.get("type")):
        return True
    return retry_after is not None and retry_after >= QUOTA_WAIT_S


class Refused(Exception):
    """An attempt a cap does not allow: it is not sent. The message is the run's
    stop reason, e.g. ``budget: max_calls = 400 reached``."""


def prompt_bound(messages: list[dict[str, Any]]) -> int:
    """Tokens the prompt cannot exceed: one per byte of its text, plus the template's."""
    text = sum(len(str(m.get("content", "")).encode()) for m in messages)
    return text + MESSAGE_TOKENS * len(messages) + TEMPLATE_TOKENS


def worst_cost(
    messages: list[dict[str, Any]], max_tokens: int, price: Price | None, factor: float = 1.0
) -> float:
    """USD a request cannot exceed: its prompt's bound and a full reply, at ``price``
    (times ``factor``, the Batch API's discount); 0 for a model with no price."""
    if price is None:
        return 0.0
    # A cached prompt token is billed at cached_input, which is meant to be lower but
    # may be set higher: the worst case takes the dearer of the two.
    p_in = max(price.input, price.cached)
    return (prompt_bound(messages) * p_in + max_tokens * price.output) / 1e6 * factor


@dataclass
class _Hold:
    calls: int
    usd: float
    group: Hashable | None  # the cell it is spent for, when one is


class Ledger:
    """A run's requests and USD against ``max_calls`` and ``max_cost_usd`` (None: no
    cap), as the module docstring tells. ``group`` (a cell) keeps what each group has
    spent and holds, for per-cell caps."""

    def __init__(self, max_calls: int | None, max_cost_usd: float | None) -> None:
        self.max_calls = max_calls
        self.max_cost_usd = max_cost_usd
        self.sent = 0  # requests sent, by this run's earlier invocations too
        self.cost = 0.0  # USD: answered requests' cost plus the worst case of those in flight
        self.held_calls = 0
        self.held_usd = 0.0
        self.holds: dict[str, _Hold] = {}
        # Attempts in flight: call id -> worst case, group, key.
        self.open: dict[str, tuple[float, Hashable | None, str]] = {}
        # USD spent, in flight and held, per group.
        self.group_usd: defaultdict[Hashable, float] = defaultdict(float)
        self.refused: str | None = None  # the first cap that refused a request
        # Per key: what was held for it in all, and what its attempts took (the worst
        # case while one is in flight, the cost once it landed); what released keys
        # took, summed. Planning reads these (see ``plan_free``).
        self.granted: dict[str, list[float]] = {}
        self.used: dict[str, list[float]] = {}
        self.closed = [0.0, 0.0]
        self.base = (0, 0.0)

    def begin(self, sent: int, cost: float, by_group: dict[Any, float] | None = None) -> None:
        """What the run had spent before this invocation (a resumed run)."""
        self.sent, self.cost = sent, cost
        self.base = (sent, cost)
        for group, usd in (by_group or {}).items():
            self.group_usd[group] += usd

    # -- what is free -----------------------------------------------------------------

    def free_calls(self) -> float:
        if self.max_calls is None:
            return math.inf
        return self.max_calls - self.sent - self.held_calls

    def free_usd(self) -> float:
        if self.max_cost_usd is None:
            return math.inf
        return self.max_cost_usd - self.cost - self.held_usd

    def affordable(self, calls: int, usd: float, *, planning: bool = False) -> float:
        """How many holds of ``calls`` requests and ``usd`` fit in what is free (as
        planning sees it, with ``planning``)."""
        if planning:
            free_calls, free_usd = self.plan_free()
        else:
            free_calls, free_usd = self.free_calls(), self.free_usd()
        n = math.inf
        if calls > 0:
            n = free_calls // calls
        if usd > 0:
            n = min(n, (free_usd + EPSILON) // usd)
        return max(0.0, n)

    def reason(self, calls: int, usd: float) -> str:
        """The cap that a hold of ``calls`` and ``usd`` does not fit."""
        if calls > self.free_calls():
            return f"budget: max_calls = {self.max_calls} reached"
        return f"budget: max_cost_usd = {self.max_cost_usd} reached"

    def plan_free(self) -> tuple[float, float]:
        """Calls and USD free as planning sees them: every key not yet released at the
        larger of what was held for it and what it took, so that a plan does not
        depend on which replies happened to land before it (their costs only count
        once the quota loop has filtered them, in plan order)."""
        calls = self.base[0] + self.closed[0]
        usd = self.base[1] + self.closed[1]
        for key in self.granted.keys() | self.used.keys():
            g = self.granted.get(key, (0, 0.0))
            u = self.used.get(key, (0, 0.0))
            calls += max(g[0], u[0])
            usd += max(g[1], u[1])
        free_calls = math.inf if self.max_calls is None else self.max_calls - calls
        free_usd = math.inf if self.max_cost_usd is None else self.max_cost_usd - usd
        return free_calls, free_usd

    def busy(self) -> bool:
        """Whether anything is held or in flight: a cap reached now may not be later."""
        return bool(self.holds or self.open)

    # -- the events -------------------------------------------------------------------

    def hold(self, key: str, calls: int, usd: float, group: Hashable | None = None) -> bool:
        """Hold ``calls`` requests and ``usd`` for ``key``, whole or not at all."""
        if calls > self.free_calls() or usd > self.free_usd() + EPSILON:
            return False
        h = self.holds.setdefault(key, _Hold(0, 0.0, group))
        h.calls += calls
        h.usd += usd
        g = self.granted.setdefault(key, [0, 0.0])
        g[0] += calls
        g[1] += usd
        self.held_calls += calls
        self.held_usd += usd
        if group is not None:
            self.group_usd[group] += usd
        return True

    def release(self, key: str) -> None:
        """Free what ``key`` still holds (its calls were answered, or never made)."""
        self.granted.pop(key, None)
        used = self.used.pop(key, None)
        if used is not None:
            self.closed[0] += used[0]
            self.closed[1] += used[1]
        h = self.holds.pop(key, None)
        if h is None:
            return
        self.held_calls -= h.calls
        self.held_usd -= h.usd
        if h.group is not None:
            self.group_usd[h.group] -= h.usd

    def take(self, call_id: str, key: str, usd: float) -> None:
        """An attempt of ``call_id`` leaving, its worst case ``usd``: from ``key``'s hold
        as far as it goes, the rest from what is free; ``Refused`` if that is short."""
        h = self.holds.get(key)
        calls_held = min(1, h.calls) if h else 0
        usd_held = min(usd, h.usd) if h else 0.0
        if 1 - calls_held > self.free_calls():
            self.refused = self.refused or self.reason(1, 0.0)
            raise Refused(self.reason(1, 0.0))
        if usd - usd_held > self.free_usd() + EPSILON:
            self.refused = self.refused or self.reason(0, usd)
            raise Refused(self.reason(0, usd))
        group = None
        if h is not None:
            h.calls -= calls_held
            h.usd -= usd_held
            self.held_calls -= calls_held
            self.held_usd -= usd_held
            group = h.group
            if group is not None:
                self.group_usd[group] += usd - usd_held
        self.sent += 1
        self.cost += usd
        self.open[call_id] = (usd, group, key)
        u = self.used.setdefault(key, [0, 0.0])
        u[0] += 1
        u[1] += usd

    def settle(self, call_id: str, usd: float) -> None:
        """The attempt of ``call_id`` in flight ended, costing ``usd`` (0 for a failure:
        none is recorded); nothing happens for a call with none in flight."""
        taken = self.open.pop(call_id, None)
        if taken is None:
            return
        worst, group, key = taken
        self.cost += usd - worst
        if key in self.used:
            self.used[key][1] += usd - worst
        if group is not None:
            self.group_usd[group] += usd - worst


def take_call(ledger: Ledger, call: CallRow, settings: LLMSettings, factor: float = 1.0) -> None:
    """An attempt of ``call`` leaving through a client of ``settings``: its worst case
    taken from the hold it draws on (a generation call's own, by its request sha; a
    judge call's candidate's, its parent), else from what is free; ``Refused`` if the
    caps do not allow it."""
    max_tokens = call.params.get("max_tokens")
    worst = worst_cost(
        call.messages,
        max_tokens if isinstance(max_tokens, int) else settings.max_tokens,
        settings.price(call.model),
        factor,
    )
    key = call.parent_ids[0] if call.purpose == "judge" and call.parent_ids else call.request_sha
    ledger.take(call.id, key, worst)
