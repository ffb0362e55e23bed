"""Hard budget caps: the ledger's arithmetic, and runs with the judge on and many calls
in flight against the simulator, counted where the requests arrive."""

from __future__ import annotations

import pytest
from test_judge import judge_project

from synth.config import Price
from synth.llm.ledger import Ledger, Refused, prompt_bound, worst_cost
from synth.records import CellKey
from synth.runner import run
from synth.store import Store

# -- the ledger ----------------------------------------------------------------------


def test_a_hold_is_granted_whole_or_not_at_all() -> None:
    ledger = Ledger(max_calls=10, max_cost_usd=1.0)
    assert ledger.hold("a", 6, 0.5)
    assert not ledger.hold("b", 5, 0.1)  # 6 + 5 calls > 10
    assert not ledger.hold("b", 1, 0.6)  # 0.5 + 0.6 USD > 1.0
    assert (ledger.held_calls, ledger.held_usd) == (6, 0.5)
    assert ledger.affordable(2, 0.1) == 2


def test_an_attempt_takes_from_its_hold_then_from_what_is_free() -> None:
    ledger = Ledger(max_calls=3, max_cost_usd=None)
    assert ledger.hold("a", 1, 0.0)
    ledger.take("call1", "a", 0.0)  # the hold's
    ledger.take("call1", "a", 0.0)  # a retry: from what is free
    ledger.take("call2", "b", 0.0)  # no hold: free
    with pytest.raises(Refused, match=r"^budget: max_calls = 3 reached$"):
        ledger.take("call3", "b", 0.0)
    assert ledger.sent == 3 and ledger.refused == "budget: max_calls = 3 reached"


def test_a_reply_frees_the_difference_between_worst_case_and_cost() -> None:
    ledger = Ledger(max_calls=None, max_cost_usd=1.0)
    ledger.take("c", "k", 0.9)
    with pytest.raises(Refused, match="max_cost_usd = 1.0"):
        ledger.take("d", "k", 0.2)
    ledger.settle("c", 0.3)
    ledger.settle("c", 0.3)  # nothing in flight for it any more: no change
    assert ledger.cost == pytest.approx(0.3)
    ledger.take("d", "k", 0.2)
    ledger.settle("d", 0.0)  # failed: billed nothing
    assert ledger.cost == pytest.approx(0.3) and not ledger.busy()


def test_released_holds_come_back_and_groups_count_what_they_hold() -> None:
    cell = CellKey(slice="", label="a")
    ledger = Ledger(max_calls=4, max_cost_usd=None)
    assert ledger.hold("x", 4, 0.2, cell)
    assert ledger.group_usd[cell] == pytest.approx(0.2) and ledger.affordable(1, 0.0) == 0
    ledger.take("c", "x", 0.1)
    ledger.settle("c", 0.05)
    ledger.release("x")
    assert ledger.group_usd[cell] == pytest.approx(0.05)
    assert ledger.affordable(1, 0.0) == 3


def test_the_worst_case_bounds_the_prompt_by_its_bytes() -> None:
    messages = [{"role": "user", "content": "héllo"}]  # 6 bytes
    assert prompt_bound(messages) == 6 + 8 + 64
    price = Price(input=1.0, output=2.0)
    assert worst_cost(messages, 100, price) == pytest.approx((78 * 1.0 + 100 * 2.0) / 1e6)
    assert worst_cost(messages, 100, None) == 0.0


# -- runs against the simulator --------------------------------------------------------


def _busy_judged_project(sim_project, sim, caps: str, per_label: int = 200):
    """The judge on, 100 calls in flight, replies late and some refused (429, 500),
    so that retries and judge calls are in flight when a cap is reached."""
    config = judge_project(sim_project)
    text = sim_project.config_path.read_text()
    text = text.replace("max_concurrency = 8", "max_concurrency = 100")
    text = text.replace("per_label = 6", f"per_label = {per_label}")
    text = text.replace("max_calls = 200\n", caps + "\n")
    sim_project.config_path.write_text(text)
    sim.configure(latency_ms=30, latency_jitter_ms=25, p_429=0.05, p_500=0.05, retry_after_s=0)
    config = sim_project.config()
    assert config.llm.max_concurrency == 100
    return config


def test_max_calls_is_never_exceeded_with_the_judge_and_retries_in_flight(sim_project, sim):
    config = _busy_judged_project(sim_project, sim, "max_calls = 150")
    summary = run(config)
    stats = sim.stats()
    assert (summary.status, summary.stop_reason) == ("stopped", "budget: max_calls = 150 reached")
    with Store(config.db_path) as store:
        spend = store.calls.spend()
        judge_calls = store.conn.execute(
            "SELECT count(*) FROM llm_calls WHERE purpose = 'judge'"
        ).fetchone()[0]
    # Counted where the requests arrive: retries and judge calls included.
    assert stats["requests"] <= 150 and spend.attempts <= 150
    assert stats["by_outcome"]["429"] + stats["by_outcome"]["500"] > 0
    assert judge_calls > 0
    # The cap was used, not stopped far short of.
    assert stats["requests"] >= 120


def test_max_cost_usd_is_never_exceeded_with_the_judge_in_flight(sim_project, sim):
    config = _busy_judged_project(sim_project, sim, "max_calls = 5000\nmax_cost_usd = 0.05")
    summary = run(config)
    stats = sim.stats()
    assert (summary.status, summary.stop_reason) == (
        "stopped",
        "budget: max_cost_usd = 0.05 reached",
    )
    with Store(config.db_path) as store:
        spend = store.calls.spend()
    # At the simulator's own token counts (sim-1: $1 in, $2 out per million), and as
    # recorded.
    billed = (stats["prompt_tokens"] * 1.0 + stats["completion_tokens"] * 2.0) / 1e6
    assert billed <= 0.05 and spend.cost_usd <= 0.05
    assert spend.cost_usd == pytest.approx(billed)
    assert spend.cost_usd > 0.05 * 0.6


def test_a_cell_cap_stops_that_cell_and_leaves_the_others_running(sim_project, sim):
    config = judge_project(sim_project)
    text = sim_project.config_path.read_text()
    text = text.replace(
        'balance = "uniform"\nper_label = 6',
        'balance = "explicit"\n'
        "counts = { card_arrival = 200, lost_or_stolen_card = 4, exchange_rate = 4 }",
    )
    text = text.replace("max_calls = 200", "max_calls = 2000\nmax_cost_per_cell_usd = 0.02")
    sim_project.config_path.write_text(text)
    config = sim_project.config()
    summary = run(config)
    assert summary.status == "stopped"
    assert summary.stop_reason == (
        "cell budget: max_cost_per_cell_usd = 0.02 reached for default/card_arrival"
    )
    deficits = {str(p.cell): p.deficit for p in summary.cells}
    assert deficits["default/card_arrival"] > 0
    assert all(d == 0 for cell, d in deficits.items() if cell != "default/card_arrival")
    with Store(config.db_path) as store:
        by_cell = store.calls.cost_by_cell(summary.run_id)
        rows = store.examples.cell_counts()[CellKey(slice="default", label="card_arrival")]
    # Stopped before another call's worst case (its candidates' judging included)
    # could take the cell past its cap, having made rows.
    assert 0 < by_cell[CellKey(slice="default", label="card_arrival")] <= 0.02
    assert rows[1] > 0


# -- the stall rule counts what was asked for ------------------------------------------


@pytest.mark.parametrize(
    ("faults", "reason"),
    [
        ({"p_empty": 1.0}, "replies unusable (schema_mismatch"),
        ({"p_garbled": 1.0}, "replies unusable (unparseable"),
        ({"p_bad_item": 1.0}, "stalled: nothing accepted in 2 batches for "),
        # Some replies empty, the rest all rejected: no rule but the stall's applies.
        ({"p_empty": 0.6, "p_bad_item": 1.0}, "stalled: nothing accepted in 2 batches for "),
    ],
)
def test_empty_invalid_or_rejected_replies_stop_a_cell_within_its_idle_budget(
    sim_project, sim, faults, reason
):
    # {"examples": []}, prose with no JSON, or items every filter rejects: each call
    # asked for per_call examples and brought none, so a cell stops after
    # max_idle_batches steps that asked for as many full calls (or the run at its
    # first 8 replies, if none could be read), not at max_calls.
    from synth.seeds import read_seeds

    sim.configure(**faults)
    text = sim_project.config_path.read_text().replace(
        "max_calls = 200", "max_calls = 300\nmax_idle_batches = 2"
    )
    sim_project.config_path.write_text(text)
    config = sim_project.config()
    with sim_project.store() as store:
        store.examples.add_seeds(read_seeds(sim_project.seeds, config).seeds)
    summary = run(config)
    assert summary.status == "stopped" and reason in summary.stop_reason
    cells = len(summary.cells)
    assert cells == 4  # 3 labels and the slice's cell
    # Stopped by the rule, a few steps per cell in, far short of max_calls (each step
    # asks for deficit / yield, which grows as the yield seen falls: 20 to 64 here).
    assert sim.stats()["requests"] <= 100


# -- a spent quota stops the run ---------------------------------------------------------


@pytest.mark.parametrize(
    ("faults", "said"),
    [
        ({"p_quota": 1.0}, "You exceeded your current quota"),
        ({"p_429": 1.0, "retry_after_s": 7200}, "Rate limit reached"),  # wait 2 hours
    ],
)
def test_a_spent_quota_stops_the_run_with_the_reason_instead_of_retrying(
    sim_project, sim, faults, said
):
    from synth.seeds import read_seeds

    sim.configure(**faults)
    config = sim_project.config()
    with sim_project.store() as store:
        store.examples.add_seeds(read_seeds(sim_project.seeds, config).seeds)
    summary = run(config)
    assert summary.status == "stopped"
    assert summary.stop_reason.startswith("quota: HTTP 429 from POST http://127.0.0.1:")
    assert said in summary.stop_reason
    # No retries: the calls in flight when the first answer came, each sent once.
    assert sim.stats()["requests"] <= config.llm.max_concurrency
    with sim_project.store() as store:
        [r] = store.runs.all()
    assert (r.status, r.stop_reason) == ("stopped", summary.stop_reason)
    # Once the quota is back, `synth run` carries on to the end.
    sim.configure(p_quota=0.0, p_429=0.0)
    assert run(config).status == "finished"
