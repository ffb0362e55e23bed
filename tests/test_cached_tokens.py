"""Prompt caching: the cached prompt tokens a reply reports are stored per call and
priced at [llm.prices] cached_input, and status and the audit split them out."""

from __future__ import annotations

from typing import Any

import pytest

from synth.audit import audit_store
from synth.config import Price
from synth.llm.reply import read_usage
from synth.runner import run
from synth.seeds import read_seeds
from synth.status import render_status, status

# Instructions every call of the template repeats: the prefix a provider caches.
PREAMBLE = "Read these house rules before writing anything. " * 30 + "\n\n"


def test_cached_tokens_are_read_from_prompt_tokens_details() -> None:
    raw: dict[str, Any] = {"prompt_tokens": 900, "completion_tokens": 10}
    assert read_usage(raw, 0, 0).cached_tokens == 0
    raw["prompt_tokens_details"] = {"cached_tokens": 768}
    assert read_usage(raw, 0, 0).cached_tokens == 768
    # More cached than sent is not believed: fresh tokens would be priced as cached.
    raw["prompt_tokens_details"] = {"cached_tokens": 5000}
    assert read_usage(raw, 0, 0).cached_tokens == 900
    raw["prompt_tokens_details"] = {"cached_tokens": "lots"}
    assert read_usage(raw, 0, 0).cached_tokens == 0


def test_cached_input_defaults_to_the_input_price() -> None:
    assert Price(input=1.0, output=2.0).cached == 1.0
    assert Price(input=1.0, output=2.0, cached_input=0.25).cached == 0.25


def test_a_run_stores_the_cached_tokens_the_simulator_reports_and_prices_them_lower(
    sim_project, sim
):
    template = sim_project.root / "prompts" / "generate" / "classify.md.j2"
    template.write_text(PREAMBLE + template.read_text())
    text = sim_project.config_path.read_text()
    listed = '"sim-1" = { input = 1.0, output = 2.0 }'
    assert listed in text
    priced = '"sim-1" = { input = 1.0, output = 2.0, cached_input = 0.1 }'
    sim_project.config_path.write_text(text.replace(listed, priced))
    config = sim_project.config()
    with sim_project.store() as store:
        store.examples.add_seeds(read_seeds(sim_project.seeds, config).seeds)

    summary = run(config)
    assert summary.status == "finished", summary.stop_reason
    stats = sim.stats()
    assert stats["cached_tokens"] > 0
    with sim_project.store() as store:
        rows = store.conn.execute(
            "SELECT prompt_tokens, cached_tokens, completion_tokens, cost_usd, cached_usd"
            " FROM llm_calls WHERE status = 'ok'"
        ).fetchall()
        spend = store.calls.spend()
        report = status(config, store)
        totals = audit_store(config, store)["totals"]
    # The first call of a cell sends its prefix fresh; later ones find it cached, in
    # whole blocks of 128 tokens.
    assert any(c == 0 for _, c, _, _, _ in rows) and any(c > 0 for _, c, _, _, _ in rows)
    assert all(c % 128 == 0 and c <= p for p, c, _, _, _ in rows)
    for p, c, out, cost, cached_usd in rows:
        assert cost == pytest.approx(((p - c) * 1.0 + c * 0.1 + out * 2.0) / 1e6)
        assert cached_usd == pytest.approx(c * 0.1 / 1e6)
    assert spend.cached_tokens == stats["cached_tokens"]
    whole = (spend.prompt_tokens * 1.0 + spend.completion_tokens * 2.0) / 1e6
    assert spend.cost_usd < whole - spend.cached_tokens * 0.8 / 1e6
    fresh = spend.prompt_tokens - spend.cached_tokens
    line = f"{spend.prompt_tokens} ({fresh} fresh, {spend.cached_tokens} cached at $"
    assert line in render_status(report)
    assert (totals["fresh_tokens"], totals["cached_tokens"]) == (fresh, spend.cached_tokens)
    assert totals["cached_usd"] == pytest.approx(spend.cached_usd)
