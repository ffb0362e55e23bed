"""`synth init`, and synth as a pip user gets it: a wheel in a fresh venv, an empty folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ROOT

from synth.cli import cli
from synth.config import load_config
from synth.scaffold import TASKS, ScaffoldError, bundled, init_project

FILES = TASKS["classification"].files


def test_bundled_files_are_the_checkouts_own():
    # synth/bundled/ links to the top-level files; a copy put in place of a link
    # would drift from what the README shows.
    for rel in FILES:
        assert bundled(rel).read_bytes() == (ROOT / rel).read_bytes(), rel
    for link in ("config.toml", "prompts", "seeds"):
        assert (ROOT / "synth" / "bundled" / link).is_symlink(), link


def test_init_writes_a_project_that_loads_and_names_its_own_store(tmp_path):
    made = init_project(tmp_path / "bank")
    assert [p.relative_to(tmp_path / "bank").as_posix() for p in made.written] == list(FILES)
    config = load_config(tmp_path / "bank" / "config.toml")
    assert config.db_path == (tmp_path / "bank" / "synth.db").resolve()
    assert config.project.name == "bank"
    assert config.generate.template == "prompts/generate/classify.md.j2"
    # Every other line is the bundled file's, comments included.
    bundled_lines = set(bundled("config.toml").read_text().splitlines())
    written = (tmp_path / "bank" / "config.toml").read_text().splitlines()
    assert [line for line in written if line not in bundled_lines] == [
        'name = "bank"                    # in manifests, audits and the review page',
        'db = "synth.db"                  # the SQLite provenance store, beside this file',
    ]


def test_init_refuses_to_overwrite_and_writes_nothing_unless_forced(tmp_path):
    (tmp_path / "seeds").mkdir()
    (tmp_path / "seeds" / "eval.jsonl").write_text("mine\n")
    runner = CliRunner()
    result = runner.invoke(cli, ["init", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {tmp_path}/seeds/eval.jsonl: exists; nothing written:"
        " pass --force to replace them\n"
    )
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["eval.jsonl", "seeds"]
    result = runner.invoke(cli, ["init", str(tmp_path), "--force"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "seeds" / "eval.jsonl").read_bytes() == (
        ROOT / "seeds/eval.jsonl"
    ).read_bytes()
    assert f"wrote {tmp_path}/config.toml" in result.output
    with pytest.raises(ScaffoldError, match=r"exists \(and 7 more\)"):
        init_project(tmp_path)
    unknown = runner.invoke(cli, ["init", str(tmp_path), "--task", "nosuch"])
    assert unknown.exit_code == 2
    assert "'nosuch' is not one of 'chat', 'classification'," in unknown.output


@pytest.mark.parametrize("task", sorted(set(TASKS) - {"classification"}))
def test_init_of_a_shape_writes_its_config_at_the_top_reaching_the_same_files(tmp_path, task):
    chosen = TASKS[task]
    made = init_project(tmp_path / "p", task)
    assert [p.relative_to(tmp_path / "p").as_posix() for p in made.written] == list(chosen.files)
    config = load_config(tmp_path / "p" / "config.toml")
    assert config.db_path == (tmp_path / "p" / "synth.db").resolve()
    assert config.project.name == "p"
    # Each file the bundled config names, it names from the project folder too.
    original = load_config(ROOT / chosen.config_source)
    assert config.generate.template != original.generate.template
    assert (
        config.resolve(config.generate.template).read_bytes()
        == original.resolve(original.generate.template).read_bytes()
    )
    for mine, theirs in zip(config.filters, original.filters, strict=True):
        for key in ("rubric", "template"):
            if isinstance(getattr(theirs, key, None), str):
                assert config.resolve(getattr(mine, key)).read_bytes() == (
                    original.resolve(getattr(theirs, key)).read_bytes()
                )
        for mine_set, their_set in zip(
            getattr(mine, "eval_sets", ()), getattr(theirs, "eval_sets", ()), strict=True
        ):
            assert config.resolve(mine_set.path).read_bytes() == (
                original.resolve(their_set.path).read_bytes()
            )
    # Apart from [project] and the paths, the file is the bundled one, comments kept.
    assert config.data_schema == original.data_schema
    written = (tmp_path / "p" / "config.toml").read_text().splitlines()
    source = (ROOT / chosen.config_source).read_text().splitlines()
    changed = [(a, b) for a, b in zip(source, written, strict=True) if a != b]
    assert len(written) == len(source) and changed
    assert all(
        b.startswith(("name = ", "db = ")) or "prompts/" in b or "seeds/" in b for _, b in changed
    )
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "q"), "--task", task])
    assert result.exit_code == 0, result.output
    assert f"synth seeds import {chosen.seeds}" in result.output


def _clean_env(**extra: str) -> dict[str, str]:
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "SYNTH_CONFIG")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("OPENAI_")}
    return {**env, **extra}


def test_a_wheel_in_a_fresh_venv_runs_init_demo_and_a_run_in_an_empty_folder(tmp_path):
    # The sources the wheel is built from, away from the checkout (links kept as links:
    # the build must turn synth/bundled/ into files).
    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "demo", "build", "*.egg-info", "__pycache__", ".*_cache", "tests"
        ),
    )
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(src)],
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("synth-*.whl")

    # A venv of its own with the dependencies this interpreter already has (no
    # download): its site-packages is read after the venv's, and only as a path, so an
    # editable install of the checkout there is not seen.
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "deps.pth").write_text("".join(f"{d}\n" for d in sorted(deps)))
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
        + ["--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=300,
    )
    assert install.returncode == 0, install.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    env = _clean_env(PYTHONUNBUFFERED="1")
    synth_bin = str(env_dir / "bin" / "synth")

    def synth(*args: str, **more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [synth_bin, *args],
            capture_output=True,
            text=True,
            cwd=empty,
            env={**env, **more},
            timeout=300,
        )

    where = subprocess.run(
        [str(python), "-c", "import synth; print(synth.__file__)"],
        capture_output=True,
        text=True,
        cwd=empty,
        env=env,
        check=True,
    ).stdout
    assert where.startswith(str(env_dir)), where

    init = synth("init")
    assert init.returncode == 0, init.stderr
    assert (empty / "config.toml").exists() and (empty / "prompts" / "rubrics").is_dir()
    demo = synth("demo")
    assert demo.returncode == 0, demo.stderr
    assert "imported 171 seeds from demo/seeds/banking.jsonl" in demo.stdout
    assert ": finished, " in demo.stdout and (empty / "demo" / "audit.html").exists()

    imported = synth("seeds", "import", "seeds/banking.jsonl")
    assert imported.stdout == "seeds/banking.jsonl: 171 added, 0 already stored, 0 skipped\n"
    sim = subprocess.Popen(
        [synth_bin, "simulate", "--port", "0"], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert sim.stdout is not None
        match = re.search(r"(http://127\.0\.0\.1:\d+/v1)", sim.stdout.readline())
        assert match
        ran = synth("run", OPENAI_BASE_URL=match.group(1))
    finally:
        sim.terminate()
        sim.wait(timeout=10)
        assert sim.stdout is not None
        sim.stdout.close()
    assert ran.returncode == 0, ran.stderr
    assert re.search(r": finished; \d+ calls, \d+ candidates, 81 accepted", ran.stdout)
    cells = json.loads(synth("status", "--json").stdout)["cells"]
    assert len(cells) == 10 and all(c["deficit"] == 0 for c in cells)
    assert (empty / "synth.db").exists()
