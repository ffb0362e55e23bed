"""The README's five-minute tour, its commands as written, on a fresh project."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT


def tour_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## A five-minute tour", 1)[1]
    block = section.split("```console\n", 1)[1].split("```", 1)[0]
    return [line[2:].split("  #", 1)[0].strip() for line in block.splitlines() if line[:2] == "$ "]


def test_the_tour_is_what_this_test_runs():
    assert tour_commands()[:6] == [
        ". .venv/bin/activate",
        "synth seeds import seeds/banking.jsonl",
        "synth plan",
        "synth simulate --port 8000 &",
        "export OPENAI_BASE_URL=http://127.0.0.1:8000/v1",
        "synth run",
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_tour_meets_every_quota_with_exit_0(tmp_path, seed):
    """Every command of the tour in a folder `synth init` made, the simulator under
    another seed each time (and on a free port: the tour's 8000 may be taken)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "synth"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m synth "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SYNTH_"))}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    project = tmp_path / "project"
    subprocess.run(["synth", "init", str(project)], env=env, check=True, capture_output=True)

    servers: list[subprocess.Popen[str]] = []
    outputs: dict[str, subprocess.CompletedProcess[str]] = {}
    port = "8000"
    try:
        for command in tour_commands():
            if command.startswith(". "):  # the checkout's venv: PATH has synth already
                continue
            if command.startswith("export "):
                name, value = command.removeprefix("export ").split("=", 1)
                env[name] = value.replace(":8000/", f":{port}/")
                continue
            argv = shlex.split(command)
            if argv[-1] == "&":
                argv = [a if a != "8000" else "0" for a in argv[:-1]] + ["--seed", str(seed)]
                server = subprocess.Popen(
                    argv, stdout=subprocess.PIPE, text=True, env=env, cwd=project
                )
                servers.append(server)
                assert server.stdout is not None
                match = re.search(r"http://127\.0\.0\.1:(\d+)/v1", server.stdout.readline())
                assert match, command
                port = match.group(1)
                continue
            done = subprocess.run(
                argv, capture_output=True, text=True, env=env, cwd=project, timeout=300
            )
            assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
            outputs[command] = done
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=10)
            if server.stdout is not None:
                server.stdout.close()
    assert re.search(r": finished; .* 81 accepted", outputs["synth run"].stdout)
    status = subprocess.run(
        ["synth", "status", "--json"], capture_output=True, text=True, env=env, cwd=project
    )
    cells = json.loads(status.stdout)["cells"]
    assert len(cells) == 10 and all(c["deficit"] == 0 for c in cells)
    assert Path(project / "chat.jsonl").exists() and Path(project / "data.jsonl").exists()
