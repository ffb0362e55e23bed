"""A bundled dataset shape's project (prompts/<shape>/config.toml and its seeds) laid
out in a temporary folder as in the checkout, and the CLI run against it."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from click.testing import CliRunner
from conftest import ROOT

from synth.cli import cli


def bundled_project(tmp_path: Path, shape: str, seeds: Sequence[str], base_url: str) -> Path:
    """The shape's files under ``tmp_path``, its config pointed at ``base_url``."""
    shutil.copytree(ROOT / "prompts" / shape, tmp_path / "prompts" / shape)
    (tmp_path / "seeds").mkdir()
    for name in seeds:
        shutil.copy(ROOT / "seeds" / name, tmp_path / "seeds" / name)
    config = tmp_path / "prompts" / shape / "config.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("[llm]\n", f'[llm]\nbase_url = "{base_url}"\n', 1))
    return config


def synth_cli(config: Path) -> Callable[..., str]:
    """``synth(*args)``: the CLI on ``config``, asserting exit status 0; its output."""

    def synth(*args: str) -> str:
        result = CliRunner().invoke(cli, ["--config", str(config), *args])
        assert result.exit_code == 0, result.output
        return result.output

    return synth
