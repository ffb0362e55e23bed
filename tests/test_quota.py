"""The quota arithmetic on plain numbers: a run end to end only shows the sum of these
rules, so a wrong remainder or an off-by-one in the stall floor would hide there."""

from __future__ import annotations

from collections import Counter

import pytest

from synth.quota import (
    MIN_YIELD,
    PRIOR_WEIGHT,
    PRIOR_YIELD,
    CellTracker,
    call_sizes,
    examples_needed,
    observed_yield,
    share,
    spread,
)
from synth.records import CellKey, CellPlan

A = CellKey(slice="default", label="a")
B = CellKey(slice="default", label="b")

# -- deficits and what a cell still needs ---------------------------------------------


@pytest.mark.parametrize(
    ("target", "real", "synthetic", "deficit"),
    [
        (30, 10, 15, 5),
        (30, 0, 0, 30),
        (30, 30, 0, 0),
        (6, 0, 6, 0),
        (30, 40, 0, 0),  # more real rows than the target: nothing to make, not negative
        (30, 25, 10, 0),
    ],
)
def test_deficit_is_target_less_real_and_accepted_synthetic(
    target: int, real: int, synthetic: int, deficit: int
) -> None:
    plan = CellPlan(cell=A, target=target, real=real, synthetic=synthetic)
    assert plan.deficit == deficit


@pytest.mark.parametrize(
    ("deficit", "yield_", "ahead", "needed"),
    [
        (10, 1.0, 0, 10),
        (10, 0.8, 0, 13),  # 12.5 rounds up: a fraction of an example is still asked for
        (10, 0.5, 0, 20),
        (10, 0.5, 12, 8),  # calls already planned for the cell count
        (10, 0.5, 20, 0),
        (10, 0.5, 30, -10),  # more than enough ahead: nothing (call_sizes drops it)
        (1, MIN_YIELD, 0, 20),
    ],
)
def test_examples_needed_is_deficit_over_yield_less_what_is_ahead(
    deficit: int, yield_: float, ahead: int, needed: int
) -> None:
    assert examples_needed(deficit, yield_, ahead) == needed


# -- yields ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "kept", "expected"),
    [
        (0, 0, PRIOR_YIELD),  # no history: the prior
        (PRIOR_WEIGHT, 0, PRIOR_YIELD / 2),  # the prior weighs as much as 5 examples
        (PRIOR_WEIGHT, PRIOR_WEIGHT, (1 + PRIOR_YIELD) / 2),
        (95, 19, 0.23),  # (19 + 4) / (95 + 5)
        (995, 995, (995 + 4) / 1000),  # plenty of history: close to what was observed
        (1000, 0, MIN_YIELD),  # everything rejected: the floor, not 0.004
    ],
)
def test_observed_yield_with_a_prior(asked: int, kept: int, expected: float) -> None:
    assert observed_yield(asked, kept) == pytest.approx(expected)


def test_tracker_yield_is_per_cell_and_starts_at_the_prior() -> None:
    tracker = CellTracker(max_idle=4, per_call=5)
    assert tracker.yield_of(A) == tracker.yield_of(B) == PRIOR_YIELD
    tracker.asked[A] += 45
    tracker.kept[A] += 9
    assert tracker.yield_of(A) == pytest.approx((9 + 4) / 50)
    assert tracker.yield_of(B) == PRIOR_YIELD


def test_tracker_reads_the_counters_it_is_given() -> None:
    """The runner's filtering fills its own counters; the yield must follow them."""
    asked: Counter[CellKey] = Counter()
    kept: Counter[CellKey] = Counter()
    tracker = CellTracker(4, 5, asked, kept)
    asked[A] += 10
    kept[A] += 10
    assert tracker.yield_of(A) == pytest.approx(14 / 15)


# -- sharing a short allowance, spreading a cell's examples over its calls -------------


@pytest.mark.parametrize(
    ("wanted", "allowed", "shares"),
    [
        ({"a": 4, "b": 2}, 3, {"a": 2, "b": 1}),  # exact shares, nothing to round
        ({"a": 5, "b": 3, "c": 2}, 5, {"a": 3, "b": 1, "c": 1}),  # 2.5 1.5 1.0
        ({"a": 7, "b": 2}, 3, {"a": 2, "b": 1}),  # 2.33 0.67: b has the larger remainder
        ({"a": 2, "b": 7}, 3, {"a": 1, "b": 2}),  # 0.67 2.33: a has it
        ({"a": 10, "b": 1}, 4, {"a": 4}),  # 3.64 0.36: b rounds to nothing, dropped
        ({"a": 3, "b": 1}, 2, {"a": 2}),  # 1.5 0.5: a tie goes by name; b dropped
        ({"a": 1, "b": 1, "c": 1}, 2, {"a": 1, "b": 1}),
        ({"a": 1, "b": 1, "c": 1}, 1, {"a": 1}),
        ({"a": 9}, 4, {"a": 4}),
    ],
)
def test_share_uses_the_whole_allowance_by_largest_remainders(
    wanted: dict[str, int], allowed: int, shares: dict[str, int]
) -> None:
    got = share(wanted, allowed)
    assert got == shares
    assert sum(got.values()) == allowed
    assert all(n > 0 for n in got.values())


def test_share_by_cell_breaks_ties_by_the_cell_name() -> None:
    later = CellKey(slice="urgent", label="a")
    assert share({later: 1, A: 1}, 1) == {A: 1}


@pytest.mark.parametrize(
    ("total", "parts", "sizes"),
    [
        (7, 3, [3, 2, 2]),
        (6, 3, [2, 2, 2]),
        (10, 4, [3, 3, 2, 2]),
        (5, 1, [5]),
        (2, 3, [1, 1, 1]),  # fewer examples than calls: each call asks for one
        (0, 2, [1, 1]),
    ],
)
def test_spread_splits_a_total_into_parts_differing_by_at_most_one(
    total: int, parts: int, sizes: list[int]
) -> None:
    assert spread(total, parts) == sizes


# -- how many calls a step asks for, per cell -----------------------------------------


@pytest.mark.parametrize(
    ("cells", "per_call", "allowed", "sizes"),
    [
        # (deficit, yield, examples ahead) per cell -> examples asked for by each call
        ({"a": (10, 0.8, 0)}, 5, 100, {"a": [5, 4, 4]}),  # 13 in 3 calls, not 5, 5, 3
        ({"a": (1, 0.8, 0)}, 5, 100, {"a": [2]}),  # a cell near its target: one small call
        ({"a": (4, 1.0, 0)}, 5, 100, {"a": [4]}),
        ({"a": (10, 0.5, 12)}, 5, 100, {"a": [4, 4]}),  # 20 wanted, 12 already asked for
        ({"a": (10, 0.5, 20)}, 5, 100, {}),  # what is ahead will do: no call
        ({"a": (10, 0.5, 0)}, 20, 100, {"a": [20]}),
        ({"a": (10, 0.5, 0), "b": (5, 0.5, 0)}, 5, 100, {"a": [5, 5, 5, 5], "b": [5, 5]}),
        # six calls wanted, three allowed: shared 2 : 1, each call still full
        ({"a": (10, 0.5, 0), "b": (5, 0.5, 0)}, 5, 3, {"a": [5, 5], "b": [5]}),
        # five calls wanted, four allowed: 3.2 : 0.8, b's one call has the larger remainder
        ({"a": (10, 0.5, 0), "b": (1, 1.0, 0)}, 5, 4, {"a": [5, 5, 5], "b": [1]}),
    ],
)
def test_call_sizes_per_cell(
    cells: dict[str, tuple[int, float, int]],
    per_call: int,
    allowed: int,
    sizes: dict[str, list[int]],
) -> None:
    needed = {c: examples_needed(d, y, ahead) for c, (d, y, ahead) in cells.items()}
    got = call_sizes(needed, per_call, allowed)
    assert got == sizes
    assert sum(len(s) for s in got.values()) <= allowed
    assert all(0 < n <= per_call for s in got.values() for n in s)


# -- stalls ---------------------------------------------------------------------------


def _steps(tracker: CellTracker, asked_per_step: int, steps: int, accepted: bool = False) -> None:
    """``steps`` steps of cell A, each asking for ``asked_per_step`` examples."""
    for _ in range(steps):
        before = {A: (0, 3)}
        tracker.asked[A] += asked_per_step
        after = {A: (0, 4)} if accepted else before
        tracker.record_step({A}, before, after)


def test_a_cell_with_nothing_accepted_for_limit_full_steps_stalls() -> None:
    tracker = CellTracker(max_idle=4, per_call=5)
    _steps(tracker, asked_per_step=5, steps=3)
    assert A not in tracker.stalled
    _steps(tracker, asked_per_step=5, steps=1)
    assert A in tracker.stalled


def test_a_cell_of_small_calls_near_its_target_is_not_stalled_before_the_floor() -> None:
    tracker = CellTracker(max_idle=4, per_call=5)  # the floor: 4 * 5 = 20 examples
    _steps(tracker, asked_per_step=2, steps=4)
    assert tracker.idle[A] == 4 and A not in tracker.stalled  # 8 asked, not 20
    _steps(tracker, asked_per_step=2, steps=5)
    assert A not in tracker.stalled  # 18 asked
    _steps(tracker, asked_per_step=2, steps=1)
    assert A in tracker.stalled  # 20 asked over 10 idle steps


def test_an_accept_resets_the_idle_steps_and_the_examples_asked_since() -> None:
    tracker = CellTracker(max_idle=4, per_call=5)
    _steps(tracker, asked_per_step=50, steps=3)
    _steps(tracker, asked_per_step=5, steps=1, accepted=True)
    assert tracker.idle[A] == 0
    _steps(tracker, asked_per_step=5, steps=3)
    assert A not in tracker.stalled  # 3 idle steps
    _steps(tracker, asked_per_step=5, steps=1)
    assert A in tracker.stalled  # 4 idle steps, 20 asked since the accept


def test_examples_asked_before_the_last_accept_do_not_count_towards_the_floor() -> None:
    tracker = CellTracker(max_idle=4, per_call=5)
    _steps(tracker, asked_per_step=50, steps=1)
    _steps(tracker, asked_per_step=2, steps=1, accepted=True)
    _steps(tracker, asked_per_step=2, steps=4)
    assert A not in tracker.stalled  # 4 idle steps, but 8 asked since the accept
    _steps(tracker, asked_per_step=2, steps=6)
    assert A in tracker.stalled


def test_only_the_steps_cells_are_counted_and_a_real_row_is_not_an_accept() -> None:
    tracker = CellTracker(max_idle=1, per_call=1)
    tracker.asked[A] += 1
    tracker.asked[B] += 1
    # A's real count rose (it does not, in a run; only synthetic rows are accepted).
    tracker.record_step({A}, {A: (0, 0)}, {A: (1, 0), B: (0, 0)})
    assert tracker.stalled == {A}
    assert tracker.idle[B] == 0
