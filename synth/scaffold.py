"""`synth init`: a project to start from, written from the files synth ships.

A task is a set of starting files: a commented config.toml, the generation template,
the judge's templates and rubric, and seeds. The only task so far is
``classification`` (short texts, one label each: the demo's project); a task of
another shape (instructions and answers, say) is another entry of ``TASKS`` with its
own files.

The files are the checkout's own top-level ``config.toml``, ``prompts/`` and
``seeds/``: ``synth/bundled/`` holds symlinks to them, which a wheel carries as
files, so the repository keeps one copy and what ships is what the README shows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from synth.errors import SynthError


class ScaffoldError(SynthError):
    pass


@dataclass(frozen=True)
class Task:
    name: str
    about: str
    files: tuple[str, ...]  # relative to the bundled folder, and to the new project
    seeds: str  # the seed file to import first
    config: str = "config.toml"


TASKS: dict[str, Task] = {
    "classification": Task(
        name="classification",
        about="short texts with one label each (BANKING77 intents to start from)",
        files=(
            "config.toml",
            "prompts/generate/classify.md.j2",
            "prompts/judge/grade.md.j2",
            "prompts/judge/label.md.j2",
            "prompts/rubrics/banking.toml",
            "seeds/banking.jsonl",
            "seeds/eval.jsonl",
            "seeds/README.md",
        ),
        seeds="seeds/banking.jsonl",
    ),
}

# The [project] table of the bundled config.toml names the checkout's demo store; a new
# project gets its own name and a store beside its config.
_PROJECT_TABLE = re.compile(r"^\[project\]\n.*?\n(?=\n)", re.DOTALL | re.MULTILINE)


def bundled(relative: str) -> Traversable:
    """One file synth ships (``config.toml``, ``prompts/...``, ``seeds/...``)."""
    return files("synth").joinpath("bundled", *relative.split("/"))


def project_config(name: str, db: str = "synth.db") -> str:
    """The bundled config.toml with a [project] table for a new project."""
    text = bundled("config.toml").read_text(encoding="utf-8")
    table = (
        "[project]\n"
        f"{'name = ' + _toml_string(name):32} # in manifests, audits and the review page\n"
        f"{'db = ' + _toml_string(db):32} # the SQLite provenance store, beside this file\n"
    )
    new, found = _PROJECT_TABLE.subn(table, text, count=1)
    if not found:
        raise ScaffoldError("synth/bundled/config.toml", "has no [project] table to fill in")
    return new


def _toml_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Scaffold:
    folder: Path
    task: Task
    written: list[Path]


def init_project(
    folder: str | Path,
    task: str = "classification",
    *,
    force: bool = False,
    name: str | None = None,
) -> Scaffold:
    """Write ``task``'s starting files into ``folder``; an existing file is an error
    naming it, unless ``force`` (then it is replaced). Nothing is written when any
    file is refused."""
    if task not in TASKS:
        raise ScaffoldError(f"--task {task}", f"unknown task; known: {', '.join(TASKS)}")
    chosen = TASKS[task]
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ScaffoldError(str(folder), "is a file, not a folder")
    targets = [folder / rel for rel in chosen.files]
    taken = [t for t in targets if t.exists() or t.is_symlink()]
    if taken and not force:
        more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
        raise ScaffoldError(
            str(taken[0]), f"exists{more}; nothing written: pass --force to replace them"
        )
    contents = {
        rel: (
            project_config(name or folder.resolve().name).encode()
            if rel == chosen.config
            else bundled(rel).read_bytes()
        )
        for rel in chosen.files
    }
    for rel, data in contents.items():
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():
            target.unlink()
        target.write_bytes(data)
    return Scaffold(folder, chosen, targets)
