"""`synth estimate`: the Wilson interval and the rare-cell rule on tables, and a preview
against the simulator whose projection a full run then checks."""

from __future__ import annotations

import math

import pytest
from test_judge import judge_project

from synth.estimate import estimate, flag_rare, project_cell, report_lines, wilson
from synth.records import CellKey
from synth.runner import run
from synth.store import Store


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (0, 10, 0.0, 0.2775),  # not zero wide at 0
        (10, 10, 0.7225, 1.0),
        (5, 10, 0.2366, 0.7634),
        (40, 100, 0.3094, 0.4980),
    ],
)
def test_wilson_interval(k, n, low, high):
    i = wilson(k, n)
    assert i.point == pytest.approx(k / n)
    assert (i.low, i.high) == (pytest.approx(low, abs=1e-4), pytest.approx(high, abs=1e-4))


def _cell(label: str, accepted: int, usd: float, calls: int = 4):
    return project_cell(CellKey(slice="s", label=label), 50, 10, calls, 20, accepted, 4000, usd)


def test_a_cell_projects_deficit_over_rows_per_call_and_the_bounds_swap():
    c = _cell("a", accepted=10, usd=0.04)
    # 40 rows short, 5 candidates a call at a yield of 0.5: 16 calls at $0.01.
    assert c.calls_left.point == pytest.approx(16)
    assert c.calls_left.low < 16 < c.calls_left.high
    assert c.usd_left.point == pytest.approx(0.16)
    assert c.tokens_left.point == pytest.approx(16_000)
    assert c.usd_per_row == pytest.approx(0.004)


def test_cells_far_dearer_than_the_median_or_with_nothing_accepted_are_flagged():
    cells = flag_rare(
        [
            _cell("a", 10, 0.04),
            _cell("b", 8, 0.04),
            _cell("c", 9, 0.04),
            _cell("dear", 2, 0.04),  # 5x the median's cost per row
            _cell("none", 0, 0.04),
            _cell("idle", 0, 0.0, calls=0),  # no preview call: nothing to compare
        ]
    )
    assert [c.cell.label for c in cells if c.rare] == ["dear", "none"]
    assert math.isinf(cells[4].calls_left.point)


def _explicit(project, counts: str) -> None:
    text = project.config_path.read_text().replace(
        'balance = "uniform"\nper_label = 6', f'balance = "explicit"\ncounts = {{ {counts} }}'
    )
    project.config_path.write_text(text.replace("max_calls = 200", "max_calls = 5000"))


def test_estimate_predicts_the_run_and_the_run_pays_for_no_preview_call_again(sim_project, sim):
    judge_project(sim_project)
    _explicit(sim_project, "card_arrival = 40, lost_or_stolen_card = 40, exchange_rate = 40")
    config = sim_project.config()
    est = estimate(config, preview=3)
    assert est.preview.status == "stopped"
    assert est.preview.stop_reason == "preview: 3 calls per cell"
    served_by_preview = sim.stats()["requests"]
    with Store(config.db_path) as store:
        assert store.calls.spend().calls == served_by_preview
    summary = run(config)
    assert summary.status == "finished"
    with Store(config.db_path) as store:
        calls = store.calls.spend()
        actual = calls.cost_usd
        # Every request the simulator served is one recorded call: none was sent twice.
        assert calls.calls == calls.attempts == sim.stats()["requests"]
    predicted = est.usd_total
    assert predicted.point == pytest.approx(actual, rel=0.25)
    assert predicted.low <= actual <= predicted.high


def test_a_cell_of_one_seed_under_a_tight_near_dedup_is_flagged_rare(sim_project, sim):
    # exchange_rate has one seed: its few-shot block is always that seed, and the
    # simulator's paraphrases of it are near duplicates of each other.
    from synth.seeds import read_seeds

    sim_project.write_config(
        '\n[[filters]]\nkind = "near_dedup"\nthreshold = 0.3\ncalibrate = false\n',
        base_url=sim.base_url,
    )
    _explicit(sim_project, "card_arrival = 30, lost_or_stolen_card = 30, exchange_rate = 30")
    config = sim_project.config()
    with sim_project.store() as store:
        store.examples.add_seeds(read_seeds(sim_project.seeds, config).seeds)
    est = estimate(config, preview=3)
    rare = {str(c.cell) for c in est.cells if c.rare}
    # The slice no seed belongs to borrows its shots and fares as badly; the cells of
    # several seeds do not.
    assert "default/exchange_rate" in rare
    assert not rare & {"default/card_arrival", "default/lost_or_stolen_card"}
    assert "rare/expensive: default/exchange_rate" in "\n".join(report_lines(est))


def test_the_command_prints_each_cell_and_the_total(sim_project, sim):
    from click.testing import CliRunner

    from synth.cli import cli
    from synth.seeds import read_seeds

    config = sim_project.config()
    with sim_project.store() as store:
        store.examples.add_seeds(read_seeds(sim_project.seeds, config).seeds)
    result = CliRunner().invoke(
        cli, ["--config", str(sim_project.config_path), "estimate", "--preview", "1"]
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("preview: run ")
    assert "default/card_arrival" in out and "\nto quota: " in out
    assert sim.stats()["requests"] == 4  # one call for each of the four cells
