from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from synth.cli import cli


def invoke(project, *args):
    return CliRunner().invoke(cli, ["--config", str(project.config_path), *args])


def test_plan_status_run_export_through_the_cli(sim_project, sim, tmp_path):
    assert invoke(sim_project, "seeds", "import", str(sim_project.seeds)).exit_code == 0
    plan = invoke(sim_project, "plan")
    assert plan.exit_code == 0
    assert "default/exchange_rate" in plan.output and "total deficit: 13" in plan.output
    assert sim.stats()["requests"] == 0  # planning calls no LLM

    ran = invoke(sim_project, "run", "--quiet")
    assert ran.exit_code == 0, ran.output
    assert "finished" in ran.output and "13 accepted" in ran.output

    status = invoke(sim_project, "status")
    assert status.exit_code == 0
    assert "urgent/lost_or_stolen_card" in status.output
    # What the columns mean, held above all, and who rejected what: said under the table.
    words = " ".join(status.output.split())
    assert re.search(r"rej by: schema \d+, exact_dedup \d+, reviewers 0;", words)
    assert "held: sent to review by a filter, counted once approved" in words
    assert "calls: generation and judge calls" in words

    as_json = json.loads(invoke(sim_project, "status", "--json").output)
    assert sum(c["accepted"] for c in as_json["cells"]) == 13
    assert sum(c["sampled"] for c in as_json["cells"]) == 4
    lost = next(
        c
        for c in as_json["cells"]
        if c["label"] == "lost_or_stolen_card" and c["slice"] == "default"
    )
    assert lost["diversity"]["texts"] == 4 and 0 < lost["diversity"]["distinct_1"] <= 1
    assert "mean-NN-ROUGE-L" in status.output

    out = tmp_path / "out" / "data.jsonl"
    exported = invoke(sim_project, "export", "--out", str(out))
    assert exported.exit_code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 7 + 13
    chat = tmp_path / "chat.jsonl"
    assert invoke(sim_project, "export", "--out", str(chat), "--format", "chat").exit_code == 0
    first = json.loads(chat.read_text().splitlines()[0])
    assert [m["role"] for m in first["messages"]] == ["user", "assistant"]


def test_errors_are_one_line_with_where(project):
    project.config_path.write_text("[llm]\nmodle = 'x'\n")
    result = invoke(project, "plan")
    assert result.exit_code == 1
    assert result.output.strip() == "Error: config.toml: llm.modle: Extra inputs are not permitted"


@pytest.mark.parametrize(
    ("base_url", "what", "advice"),
    [
        ("http://127.0.0.1:{port}/v1", "connection refused", "is the server running"),
        ("http://no-such-host.invalid/v1", "host not found", "check the host name"),
    ],
)
def test_an_endpoint_that_cannot_be_reached_stops_the_run_at_once_in_one_line(
    project, base_url, what, advice
):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = base_url.format(port=s.getsockname()[1])
    project.write_config(base_url=url)
    assert invoke(project, "seeds", "import", str(project.seeds)).exit_code == 0
    started = time.monotonic()
    ran = subprocess.run(
        [sys.executable, "-m", "synth", "--config", str(project.config_path), "run"],
        capture_output=True,
        text=True,
        env={**os.environ, "OPENAI_API_KEY": "sk-test"},
        timeout=120,
    )
    elapsed = time.monotonic() - started
    assert ran.returncode == 1 and ran.stdout == ""
    # The preflight (synth.check) asks GET /models before the filters' indexes are
    # built: one line, and no call recorded, none paid.
    (line,) = ran.stderr.splitlines()
    assert line.startswith(f"Error: llm: generator endpoint {url}: {what}; {advice}")
    with project.store() as store:
        assert store.conn.execute("SELECT count(*) FROM llm_calls").fetchone()[0] == 0
    assert elapsed < 20, elapsed
