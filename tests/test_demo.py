from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from conftest import ROOT

from synth.demo import run_demo
from synth.errors import SynthError
from synth.records import Seed
from synth.status import render_status
from synth.store import Store


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
    # The funnel of the bundled project fits a 100-column terminal, every note included.
    shown = render_status(result.status)
    assert max(len(line) for line in shown.splitlines()) <= 100
    assert shown in text
    # Per cell, calls, tokens and cost are every call's, the judge's included: the
    # cells add up to the totals the status prints under them.
    cells, spend = result.status.cells, result.status.spend
    assert result.status.judge is not None
    assert sum(c["judge_calls"] for c in cells) == result.status.judge["calls"] > 0
    assert sum(c["calls"] for c in cells) == spend.calls
    assert sum(c["prompt_tokens"] for c in cells) == spend.prompt_tokens
    assert sum(c["cost_usd"] for c in cells) == pytest.approx(spend.cost_usd)
    # Every reply came from the simulator: its cost is said to be no bill, wherever shown.
    assert spend.cost_usd > 0 and result.status.simulated_usd == pytest.approx(spend.cost_usd)
    note = "simulated: the cost is the simulator's token counts at [llm.prices], not a bill"
    assert note in text.splitlines()
    html = result.audit_html.read_text()
    assert html.startswith("<!doctype html>") and "class balance" in html
    assert "cost per accepted row (simulated)" in html


def test_demo_command_in_an_empty_folder_never_replaces_a_store_it_did_not_make(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}

    def synth(*args: str, cwd=tmp_path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "synth", *args],
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=300,
            env=env,
        )

    out = synth("demo", "--workdir", "d")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "d" / "export.jsonl").exists()
    assert "exact_dedup" in out.stdout
    # The demo's folder is a project: its config.toml names the demo's store.
    frozen = synth("freeze", "v1", cwd=tmp_path / "d")
    assert frozen.returncode == 0
    # The README's figures of the demo are these commands' output, word for word.
    readme = " ".join((ROOT / "README.md").read_text().split())
    ran = re.search(
        r"finished, (\d+ calls, \d+ candidates, \d+ accepted, \d+ sampled for review)", out.stdout
    )
    assert ran and f"prints `finished, {ran.group(1)}`" in readme
    judged = re.search(r"^judge: (\d+) calls", out.stdout, re.MULTILINE)
    assert judged and f"(with {judged.group(1)} judge calls beside the " in readme
    version = frozen.stdout.split(", sha ")[0]
    assert f"prints `{version}`" in readme
    test_rows = re.search(r"test (\d+)", version)
    assert test_rows and f"`v1` has {test_rows.group(1)} of its" in readme
    again = synth("demo", "--workdir", "d")
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr == (
        "Error: d/synth.db: a store is already there, and the demo never replaces one it"
        " did not make: pass --force to replace it, or --workdir for another folder\n"
    )
    assert synth("versions", cwd=tmp_path / "d").stdout.startswith("v1\t")


def test_demo_with_force_replaces_the_store_and_shows_the_judge_at_work(tmp_path):
    workdir = tmp_path / "demo"
    workdir.mkdir()
    (workdir / "config.toml").write_text("edited")
    with Store(workdir / "synth.db") as store:
        store.examples.add_seeds(
            [Seed(text="an old row", label="old", slice="default", data={}, origin="x:1")]
        )
    with pytest.raises(SynthError, match="a store is already there"):
        run_demo(workdir, say=lambda _: None)
    assert (workdir / "config.toml").read_text() == "edited"
    result = run_demo(workdir, say=lambda _: None, force=True)
    assert result.summary.status == "finished"
    assert "old" not in {c["label"] for c in result.status.cells}
    assert (workdir / "config.toml").read_text().startswith("# synth project configuration")
    # The funnel shows the judge rejecting off-label rows and holding borderline ones.
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


def test_demo_of_the_instruction_shape_fills_its_missing_task_type_and_shows_a_row(tmp_path):
    lines: list[str] = []
    result = run_demo(tmp_path / "d", say=lines.append, task="instruction")
    assert result.summary.status == "finished"
    cells = {(c["slice"], c["label"]): c for c in result.status.cells}
    assert cells["default", "classification"]["real"] == 0
    assert all(c["deficit"] == 0 for c in cells.values())
    alpaca, chat = result.shaped
    last = json.loads(alpaca.path.read_text().splitlines()[-1])
    assert set(last) == {"instruction", "input", "output"}
    exported = [json.loads(line) for line in result.export.path.read_text().splitlines()]
    assert exported[-1]["provenance"]["source"] == "synthetic"
    assert last["instruction"] == exported[-1]["instruction"]
    roles = [m["role"] for m in json.loads(chat.path.read_text().splitlines()[-1])["messages"]]
    assert roles == ["system", "user", "assistant"]
    text = "\n".join(lines)
    assert f"alpaca: {alpaca.path}; its last line, a synthetic row:\n  {json.dumps(last)}" in text
