from __future__ import annotations

import click
import pytest
from conftest import ROOT

from synth.cli import cli


def _commands(group: click.Group, prefix: str = "synth") -> list[tuple[str, click.Command]]:
    out = []
    for name, cmd in group.commands.items():
        full = f"{prefix} {name}"
        if isinstance(cmd, click.Group):
            out += _commands(cmd, full)
        else:
            out.append((full, cmd))
    return out


@pytest.mark.parametrize(("name", "command"), _commands(cli))
def test_every_command_is_documented_and_has_help(name, command):
    assert name in (ROOT / "README.md").read_text(), f"{name} is not in the README"
    assert command.help and command.help.strip()


def test_readme_two_commands_are_the_makefile_targets():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "$ make demo" in readme and "$ make test" in readme
    assert "\ndemo:" in makefile and "\ntest:" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_simulate_option_says_what_it_does():
    simulate = cli.commands["simulate"]
    bare = [p.name for p in simulate.params if isinstance(p, click.Option) and not p.help]
    assert not bare, f"synth simulate options without help: {bare}"
