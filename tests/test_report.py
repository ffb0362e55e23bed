"""The HTML audit report in headless Chromium: it renders offline, and every figure on
the page equals the JSON audit's."""

from __future__ import annotations

import json
from typing import Any

from test_audit import PII_AND_NEAR_DEDUP, _review_some

from synth.audit import audit_store
from synth.report import render_html
from synth.runner import run
from synth.seeds import read_seeds


def _field(cell: dict, dotted: str):
    value: Any = cell
    for part in dotted.split("."):
        value = None if value is None else value.get(part)
    return value


def _report(project, sim):
    project.write_config(base_url=sim.base_url, extra=PII_AND_NEAR_DEDUP)
    sim.configure(p_pii=0.3, p_exact_dup=0.2, p_near_dup=0.15)
    config = project.config()
    with project.store() as store:
        store.examples.add_seeds(read_seeds(project.seeds, config).seeds)
    assert run(config).status == "finished"
    with project.store() as store:
        _review_some(store, config)
        return audit_store(config, store)


def test_the_html_report_renders_offline_and_its_numbers_equal_the_json_audit(
    sim_project, sim, request, tmp_path
):
    report = _report(sim_project, sim)
    # Only now: while playwright runs, its event loop blocks the run's asyncio.run().
    browser = request.getfixturevalue("browser")
    # What `synth audit --json` prints, read back as a consumer would.
    expected = json.loads(json.dumps(report))
    path = tmp_path / "audit.html"
    path.write_text(render_html(report), encoding="utf-8")

    page = browser.new_page(viewport={"width": 1200, "height": 900})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    shot = page.screenshot(path=str(tmp_path / "audit.png"), full_page=True)
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 20_000
    assert requests == [path.as_uri()]  # no asset, font or script fetched

    assert page.inner_text("h1") == f"Audit of {expected['project']}"
    cells = {f"{c['slice']}/{c['label']}": c for c in expected["cells"]}
    compared = 0
    for table in ("cells", "quality"):
        rows = page.query_selector_all(f'table[data-table="{table}"] tr[data-cell]')
        assert sorted(r.get_attribute("data-cell") for r in rows) == sorted(cells)
        for row in rows:
            cell = cells[row.get_attribute("data-cell")]
            for td in row.query_selector_all("td[data-field]"):
                field = td.get_attribute("data-field")
                value = json.loads(td.get_attribute("data-value"))
                assert value == _field(cell, field), (row.get_attribute("data-cell"), field)
                if isinstance(value, int):
                    assert td.inner_text() == str(value)
                elif field.endswith("_share"):
                    assert td.inner_text() == f"{100 * value:.1f}%"
                compared += 1
    assert compared >= len(cells) * 20

    totals = expected["totals"]
    for card in page.query_selector_all("[data-total]"):
        key = card.get_attribute("data-total")
        value = json.loads(card.get_attribute("data-value"))
        want = {
            "reviewed": totals["review"]["reviewed"],
            "kappa": (totals["agreement"] or {}).get("kappa"),
        }.get(key, totals.get(key))
        assert value == want, key

    # The charts draw the same numbers: balance before/after/target per cell, the
    # funnel's stages, the composition of each slice.
    bars = page.query_selector_all('svg[data-chart="balance"] [data-before]')
    assert [int(b.get_attribute("data-before")) for b in bars] == [
        c["before"] for c in expected["cells"]
    ]
    after = page.query_selector_all('svg[data-chart="balance"] [data-after]')
    assert [int(b.get_attribute("data-after")) for b in after] == [
        c["after"] for c in expected["cells"]
    ]
    ticks = page.query_selector_all('svg[data-chart="balance"] [data-target]')
    assert [int(t.get_attribute("data-target")) for t in ticks] == [
        c["target"] for c in expected["cells"] if c["target"] is not None
    ]
    stages = page.query_selector_all('svg[data-chart="funnel"] [data-stage]')
    assert [(s.get_attribute("data-stage"), int(s.get_attribute("data-rows"))) for s in stages] == [
        (s["stage"], s["rows"]) for s in expected["funnel"]
    ]
    widths = page.eval_on_selector_all(
        'svg[data-chart="share"] rect', "els => els.map(e => e.getBBox().width)"
    )
    assert len(widths) == 3 * len(expected["slices"]) and sum(widths) > 0
    reasons = page.query_selector_all('table[data-table="reasons"] tr[data-reason]')
    assert [int(r.query_selector("td[data-field]").inner_text()) for r in reasons] == [
        r["count"] for r in expected["reasons"]
    ]
    # Each similarity threshold, with the seeds' scores it was calibrated on.
    thresholds = {
        (f["filter"], t["name"]): t
        for f in expected["calibration"]["filters"]
        for t in f["thresholds"]
    }
    rows = page.query_selector_all('table[data-table="calibration"] tr[data-threshold]')
    shown = {(r.get_attribute("data-filter"), r.get_attribute("data-threshold")): r for r in rows}
    assert set(shown) == set(thresholds) and ("near_dedup", "other cell") in shown
    for key, row in shown.items():
        for td in row.query_selector_all("td[data-field]"):
            value = json.loads(td.get_attribute("data-value"))
            field = td.get_attribute("data-field")
            t = thresholds[key]
            if field.startswith("scores.quantiles."):
                want = t["scores"]["quantiles"][field.removeprefix("scores.quantiles.")]
            else:
                want = _field(t, field)
            assert value == want, (key, field)
    page.close()
