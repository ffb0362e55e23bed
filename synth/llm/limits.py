"""Request and token rate limits, kept by pacing rather than by bursts.

Each limit is a GCRA (generic cell rate algorithm) schedule: a request may start at
its theoretical arrival time, which advances by ``cost * period / limit`` for every
request let through. Requests are therefore spread evenly: in any window of w seconds
at most ``limit * w / period`` (plus one) start, which is also how providers such as
OpenAI enforce a per-minute limit over shorter intervals. A token limit charges the
estimated tokens before the call and corrects the schedule from the reply's usage.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from typing import Any

# Pace this much under the limit: the server sees arrival times, and a request that
# left on schedule can arrive a few milliseconds late next to one that did not.
MARGIN = 0.02


class Pacer:
    """Spaces acquisitions so that at most ``limit`` units start per ``period`` seconds.

    ``burst`` units may start back to back after an idle spell; 1 keeps the schedule
    strict. A limit of 0 means no limit.
    """

    def __init__(self, limit: float, period: float = 60.0, burst: float = 1.0) -> None:
        self.limit = limit
        self.period = period
        self.burst = burst
        self._tat = 0.0  # theoretical arrival time of the next unit
        self._lock = asyncio.Lock()

    @property
    def interval(self) -> float:
        return self.period / self.limit * (1 + MARGIN) if self.limit else 0.0

    async def acquire(self, cost: float = 1.0) -> None:
        if not self.limit:
            return
        async with self._lock:
            now = time.monotonic()
            # Allow `burst` units of slack after idling, never more.
            start = max(self._tat, now - (self.burst - 1) * self.interval)
            wait = start - now
            self._tat = start + cost * self.interval
            if wait > 0:
                await asyncio.sleep(wait)

    def correct(self, delta: float) -> None:
        """Charge (or refund, if negative) units after the fact: actual - estimated."""
        if self.limit:
            self._tat = max(time.monotonic() - self.interval, self._tat + delta * self.interval)


def estimate_tokens(messages: list[dict[str, Any]], max_tokens: int) -> int:
    """Tokens a request may use: about 4 characters a token for the prompt, plus the
    completion's ceiling (providers reserve max_tokens against TPM the same way)."""
    chars = sum(len(str(m.get("content", ""))) for m in messages)
    return chars // 4 + 4 * len(messages) + max_tokens


class AdaptiveSlots:
    """Bounds the requests in flight. With ``adaptive``, a storm of 429s (at least
    ``storm_share`` of the recent replies, over a window as long as the bound) halves
    the bound, at most once per ``cooldown`` seconds so one storm is one cut; each run
    of as many successes as the bound allows adds one back, up to ``maximum``
    (additive increase, multiplicative decrease, as TCP does). A steady trickle of
    429s below the share is left to the retries: cutting on each one would starve a
    run against an endpoint that sheds a little load all the time."""

    def __init__(
        self,
        maximum: int,
        adaptive: bool = True,
        cooldown: float = 1.0,
        storm_share: float = 0.25,
    ) -> None:
        self.maximum = maximum
        self.limit = maximum
        self.adaptive = adaptive
        self.cooldown = cooldown
        self.storm_share = storm_share
        self.in_use = 0
        self._recent: deque[bool] = deque(maxlen=max(8, maximum))  # True: a 429
        self._successes = 0
        self._last_cut = -cooldown
        # Waiters by rank, then in the order they came. A freed slot is handed to the
        # first of them directly: waking several to race for it (as a Condition does)
        # sends a loser to the back of the queue, and a call starved that way holds up
        # every reply after it, since replies are filtered and stored in plan order.
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []  # a heap
        self._arrivals = itertools.count()

    async def __aenter__(self) -> AdaptiveSlots:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    async def acquire(self, rank: int = 0) -> None:
        """Wait for a slot. A lower ``rank`` goes first: a retry ranks its call by its
        place in the plan, so it does not queue behind calls planned after it."""
        if self.in_use < self.limit and not self._waiters:
            self.in_use += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (rank, next(self._arrivals), waiter))
        try:
            await waiter  # the slot is counted as ours once this resolves
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot while being cancelled: pass it on
            # else: left in the heap, done; a release skips it
            raise

    def release(self) -> None:
        self.in_use -= 1
        self._hand_over()

    def _hand_over(self) -> None:
        # A bound raised since the last release frees more than one slot.
        while self._waiters and self.in_use < self.limit:
            _, _, waiter = heapq.heappop(self._waiters)
            if not waiter.done():  # a cancelled waiter takes nothing
                self.in_use += 1
                waiter.set_result(None)

    def rate_limited(self) -> None:
        self._recent.append(True)
        if not self.adaptive:
            return
        window = list(self._recent)[-max(8, self.limit) :]
        now = time.monotonic()
        if sum(window) / len(window) >= self.storm_share and now - self._last_cut >= self.cooldown:
            self.limit = max(1, self.limit // 2)
            self._last_cut = now
            self._successes = 0

    def succeeded(self) -> None:
        self._recent.append(False)
        if not self.adaptive or self.limit >= self.maximum:
            return
        self._successes += 1
        if self._successes >= self.limit:
            self._successes = 0
            self.limit += 1
            self._hand_over()


# Characters per token assumed when fitting a prompt into a context: fewer than the
# ~4 of English prose (JSON, label names and numbers split finer), so an estimate
# errs long; a prompt that does not fit costs a whole call.
FIT_CHARS_PER_TOKEN = 3
# Tokens a chat template adds around the messages: roles, markers, and the default
# system prompt some models' templates put in.
TEMPLATE_TOKENS = 64


def fits(messages: list[dict[str, Any]], max_tokens: int, context: int | None) -> bool:
    """Whether the prompt and a reply of ``max_tokens`` fit a ``context``-token window,
    by a deliberately long estimate of the prompt; any prompt fits an unknown one."""
    if not context:
        return True
    chars = sum(len(str(m.get("content", ""))) for m in messages)
    return -(-chars // FIT_CHARS_PER_TOKEN) + TEMPLATE_TOKENS + max_tokens <= context
