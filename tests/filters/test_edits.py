"""Token edit distance: the bit-parallel form against the textbook table."""

from __future__ import annotations

import random

import pytest

from synth.filters.edits import edit_distance, edit_share, within


def table(a: list[int], b: list[int]) -> int:
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def test_edit_distance_matches_the_table():
    rng = random.Random(3)
    for _ in range(500):
        a = [rng.randrange(4) for _ in range(rng.randrange(0, 80))]
        b = [rng.randrange(4) for _ in range(rng.randrange(0, 80))]
        assert edit_distance(a, b) == table(a, b)


def test_long_sequences_use_big_integers():
    a = list(range(300))
    b = a[:100] + [-1] + a[101:250] + a[251:]
    assert edit_distance(a, b) == 2
    assert edit_share(a, b) == pytest.approx(2 / 300)


@pytest.mark.parametrize(
    ("a", "b", "share", "expected"),
    [
        ([1] * 20, [1] * 17 + [2] * 3, 0.15, 0.15),  # 3 of 20: within, despite floats
        ([1] * 20, [1] * 16 + [2] * 4, 0.15, None),
        ([1] * 20, [1] * 10, 0.15, None),  # settled by the lengths alone
        ([], [], 0.15, 0.0),
    ],
)
def test_within(a, b, share, expected):
    assert within(a, b, share) == expected
