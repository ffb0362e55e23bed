from __future__ import annotations

import asyncio
import time

from synth.llm.limits import AdaptiveSlots, Pacer, estimate_tokens


def _starts(pacer: Pacer, n: int, cost: float = 1.0) -> list[float]:
    async def go() -> list[float]:
        times: list[float] = []

        async def one() -> None:
            await pacer.acquire(cost)
            times.append(time.monotonic())

        await asyncio.gather(*(one() for _ in range(n)))
        return sorted(times)

    return asyncio.run(go())


def _max_in_window(times: list[float], window: float) -> int:
    best = 0
    for i, t in enumerate(times):
        best = max(best, sum(1 for u in times[i:] if u - t < window))
    return best


def test_pacer_never_exceeds_its_rate_in_any_window():
    # 600 per minute = 10 per second; 25 requests take about 2.4 s.
    times = _starts(Pacer(600), 25)
    assert _max_in_window(times, 1.0) <= 10
    assert _max_in_window(times, 0.5) <= 5
    assert times[-1] - times[0] >= 2.4


def test_pacer_without_limit_does_not_wait():
    started = time.monotonic()
    _starts(Pacer(0), 100)
    assert time.monotonic() - started < 0.5


def test_token_pacer_corrects_from_actual_usage():
    pacer = Pacer(60_000, period=60.0)  # 1,000 tokens a second
    _starts(pacer, 1, cost=500)
    before = pacer._tat
    pacer.correct(-400)  # the reply used 100 tokens, not 500
    assert abs((before - pacer._tat) - 0.4 * 1.02) < 1e-6


def test_estimate_counts_prompt_and_completion_ceiling():
    assert estimate_tokens([{"role": "user", "content": "x" * 400}], 256) == 100 + 4 + 256


def test_adaptive_slots_halve_on_a_storm_and_grow_back():
    async def go() -> list[int]:
        slots = AdaptiveSlots(16, adaptive=True, cooldown=0.05)
        seen = [slots.limit]
        for _ in range(8):  # a storm: every reply a 429
            slots.rate_limited()
        seen.append(slots.limit)  # cut once, not eight times
        await asyncio.sleep(0.06)
        for _ in range(4):
            slots.rate_limited()
        seen.append(slots.limit)
        for _ in range(4 + 5 + 6):  # a window of successes per step: 4 -> 5 -> 6 -> 7
            slots.succeeded()
        seen.append(slots.limit)
        return seen

    assert asyncio.run(go()) == [16, 8, 4, 7]


def test_a_trickle_of_429s_is_not_a_storm():
    slots = AdaptiveSlots(16, adaptive=True, cooldown=0.0)
    for i in range(200):  # one reply in ten is a 429
        slots.rate_limited() if i % 10 == 0 else slots.succeeded()
    assert slots.limit == 16


def test_adaptive_slots_bound_what_is_in_flight():
    async def go() -> int:
        slots = AdaptiveSlots(8, adaptive=True, cooldown=0.0)
        for _ in range(8):
            slots.rate_limited()  # 8 -> 4 -> 2 ... cut once per window of 429s
        slots.limit = 4
        peak = 0

        async def one() -> None:
            nonlocal peak
            async with slots:
                peak = max(peak, slots.in_use)
                await asyncio.sleep(0.01)

        await asyncio.gather(*(one() for _ in range(20)))
        return peak

    assert asyncio.run(go()) == 4


def test_fixed_slots_ignore_429s():
    slots = AdaptiveSlots(8, adaptive=False)
    slots.rate_limited()
    assert slots.limit == 8


def test_slots_are_given_in_the_order_they_were_asked_for():
    # Holders that finish together free several slots at once: each must go to the
    # next waiter in line, never to whichever task wins a race for it.
    async def go() -> list[int]:
        slots = AdaptiveSlots(4, adaptive=False)
        order: list[int] = []

        async def one(i: int) -> None:
            async with slots:
                order.append(i)
                await asyncio.sleep(0.002)

        await asyncio.gather(*(one(i) for i in range(60)))
        return order

    assert asyncio.run(go()) == list(range(60))


def test_a_waiter_cancelled_in_line_takes_no_slot():
    async def go() -> tuple[int, list[str]]:
        slots = AdaptiveSlots(1, adaptive=False)
        got: list[str] = []

        async def one(name: str) -> None:
            async with slots:
                got.append(name)
                await asyncio.sleep(0.01)

        first = asyncio.ensure_future(one("first"))
        await asyncio.sleep(0)
        cancelled = asyncio.ensure_future(one("cancelled"))
        last = asyncio.ensure_future(one("last"))
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.gather(first, last)
        return slots.in_use, got

    assert asyncio.run(go()) == (0, ["first", "last"])


def test_a_lower_rank_is_served_before_calls_queued_earlier():
    # A retry ranks by its call's place in the plan: it does not wait behind the
    # calls planned after it, whose replies would all wait for it anyway.
    async def go() -> list[str]:
        slots = AdaptiveSlots(1, adaptive=False)
        order: list[str] = []

        async def one(name: str, rank: int) -> None:
            await slots.acquire(rank)
            try:
                order.append(name)
                await asyncio.sleep(0.002)
            finally:
                slots.release()

        first = asyncio.ensure_future(one("holder", 0))
        await asyncio.sleep(0)
        later = [asyncio.ensure_future(one(f"call {r}", r)) for r in (5, 6, 7)]
        await asyncio.sleep(0)
        retry = asyncio.ensure_future(one("retry of call 1", 1))
        await asyncio.gather(first, retry, *later)
        return order

    assert asyncio.run(go()) == ["holder", "retry of call 1", "call 5", "call 6", "call 7"]
