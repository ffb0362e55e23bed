from __future__ import annotations

import pytest

from synth.agreement import cohen_kappa, kappa_by_group


def test_kappa_of_a_known_table():
    # 50 items: both yes 20, a yes / b no 5, a no / b yes 10, both no 15.
    # p_o = 35/50 = 0.7; p_e = 0.5*0.6 + 0.5*0.4 = 0.5; kappa = 0.4.
    pairs = [("y", "y")] * 20 + [("y", "n")] * 5 + [("n", "y")] * 10 + [("n", "n")] * 15
    a = cohen_kappa(pairs)
    assert a.n == 50
    assert a.observed == pytest.approx(0.7)
    assert a.kappa == pytest.approx(0.4)
    assert a.low


def test_perfect_and_chance_and_undefined():
    assert cohen_kappa([("a", "a"), ("b", "b")]).kappa == pytest.approx(1.0)
    # Independent raters: kappa 0.
    assert cohen_kappa([("a", "a"), ("a", "b"), ("b", "a"), ("b", "b")]).kappa == 0
    one = cohen_kappa([("a", "a")] * 3)
    assert one.kappa is None and one.observed == 1.0 and not one.low
    assert cohen_kappa([]).kappa is None


def test_three_categories_known_value():
    # Confusion matrix rows a, columns b: [[10, 2, 0], [1, 8, 1], [0, 2, 6]] (n = 30).
    # p_o = 24/30 = 0.8; a marginals 12, 10, 8; b marginals 11, 12, 7;
    # p_e = (132 + 120 + 56) / 900 = 308/900; kappa = (0.8 - 308/900) / (1 - 308/900).
    cats = "xyz"
    m = [[10, 2, 0], [1, 8, 1], [0, 2, 6]]
    pairs = [(cats[i], cats[j]) for i in range(3) for j in range(3) for _ in range(m[i][j])]
    expected = (0.8 - 308 / 900) / (1 - 308 / 900)
    assert cohen_kappa(pairs).kappa == pytest.approx(expected)


def test_kappa_by_group():
    out = kappa_by_group([("g1", 1, 1), ("g1", 0, 0), ("g2", 1, 0), ("g2", 0, 1)])
    assert out["g1"].kappa == pytest.approx(1.0)
    assert out["g2"].kappa == pytest.approx(-1.0)
