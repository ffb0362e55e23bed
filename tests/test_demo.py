from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT

from synth.demo import run_demo


def test_demo_runs_offline_and_both_filters_reject_something(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    lines: list[str] = []
    result = run_demo(tmp_path / "demo", say=lines.append)
    assert result.summary.status == "finished"
    rejected = {f for cell in result.status.cells for f, n in cell["rejected"].items() if n}
    assert {"schema", "exact_dedup"} <= rejected
    assert all(cell["deficit"] == 0 for cell in result.status.cells)
    rows = [json.loads(line) for line in result.export.path.read_text().splitlines()]
    assert len(rows) == result.export.rows
    synthetic = [r for r in rows if r["provenance"]["source"] == "synthetic"]
    assert synthetic and all(r["provenance"]["template_sha"] for r in synthetic)
    assert {r["provenance"]["slice"] for r in synthetic} >= {"default", "urgent"}
    text = "\n".join(lines)
    assert "plan (deficit per cell)" in text and "exported" in text
    html = result.audit_html.read_text()
    assert html.startswith("<!doctype html>") and "class balance" in html


def test_demo_funnel_shows_the_judge_rejecting_off_label_and_holding_borderline_rows(tmp_path):
    result = run_demo(tmp_path / "demo", say=lambda _: None)
    assert result.summary.status == "finished"
    cells = result.status.cells
    assert sum(c["rejected"].get("rubric", 0) for c in cells) > 0
    assert sum(c["rejected"].get("label_check", 0) for c in cells) > 0
    assert sum(c["held"] for c in cells) > 0
    judge = result.status.judge
    assert {"pass", "borderline", "below_threshold"} <= set(judge["decisions"]["rubric"])
    assert "off_label" in judge["decisions"]["label_check"]
    assert set(judge["criteria"]) == {"realism", "label_fidelity", "specificity", "slice_fit"}
    # Columns in the order the chain decides: the label check before the grade.
    assert result.status.filters[-2:] == ["label_check", "rubric"]


def test_demo_command_through_python_m(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "synth", "demo", "--workdir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "d" / "export.jsonl").exists()
    assert "exact_dedup" in out.stdout
