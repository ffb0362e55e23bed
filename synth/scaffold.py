"""`synth init`: a project to start from, written from the files synth ships.

A task is a set of starting files: a commented config.toml, the generation template,
the judge's templates and rubric, and seeds. ``classification`` (short texts, one
label each) is the demo's project; each other shape (``instruction``: instruction ->
response) keeps its example config beside its templates in ``prompts/<shape>/``, and a
new project gets it as its top-level ``config.toml``, the paths in it rewritten to
point where they pointed from there.

The files are the checkout's own top-level ``config.toml``, ``prompts/`` and
``seeds/``: ``synth/bundled/`` holds symlinks to them, which a wheel carries as
files, so the repository keeps one copy and what ships is what the README shows.
"""

from __future__ import annotations

import posixpath
import re
import tomllib
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from synth.errors import SynthError


class ScaffoldError(SynthError):
    pass


@dataclass(frozen=True)
class Task:
    name: str
    about: str
    files: tuple[str, ...]  # relative to the bundled folder, and to the new project
    seeds: str  # the seed file to import first
    config: str = "config.toml"  # where the project's config goes
    # The bundled file the project's config is written from; one in a subfolder has
    # its relative paths rebased onto the project folder.
    config_source: str = "config.toml"
    # Export formats the demo writes besides jsonl: the ones this shape is loaded in.
    formats: tuple[str, ...] = ()


def _shape(name: str, about: str, formats: tuple[str, ...], *, eval_set: bool = True) -> Task:
    """A dataset shape laid out as every one is: ``prompts/<name>/`` (its config,
    templates and rubric) and ``seeds/<name>.jsonl`` (and its eval set)."""
    seeds = f"seeds/{name}.jsonl"
    return Task(
        name=name,
        about=about,
        files=(
            "config.toml",
            f"prompts/{name}/generate.md.j2",
            f"prompts/{name}/grade.md.j2",
            f"prompts/{name}/rubric.toml",
            seeds,
            *((f"seeds/{name}_eval.jsonl",) if eval_set else ()),
            "seeds/README.md",
        ),
        seeds=seeds,
        config_source=f"prompts/{name}/config.toml",
        formats=formats,
    )


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
    "instruction": _shape(
        "instruction",
        "instruction -> response pairs, Alpaca style (Self-Instruct tasks to start from)",
        ("alpaca", "chat"),
    ),
    "qa": _shape(
        "qa",
        "a context, a question about it and the answer it supports (grounded Q&A)",
        ("chat", "alpaca"),
    ),
    "chat": _shape(
        "chat",
        "multi-turn dialogues of 2 to 8 turns, user and assistant alternating",
        ("chat",),
        eval_set=False,
    ),
}

# The [project] table of the bundled config.toml names the checkout's demo store; a new
# project gets its own name and a store beside its config.
_PROJECT_TABLE = re.compile(r"^\[project\]\n.*?\n(?=\n)", re.DOTALL | re.MULTILINE)


def bundled(relative: str) -> Traversable:
    """One file synth ships (``config.toml``, ``prompts/...``, ``seeds/...``)."""
    return files("synth").joinpath("bundled", *relative.split("/"))


def project_config(name: str, db: str = "synth.db", source: str = "config.toml") -> str:
    """The bundled config ``source`` with a [project] table for a new project, its
    paths made relative to the project folder."""
    text = rebase_paths(bundled(source).read_text(encoding="utf-8"), posixpath.dirname(source))
    table = (
        "[project]\n"
        f"{'name = ' + _toml_string(name):32} # in manifests, audits and the review page\n"
        f"{'db = ' + _toml_string(db):32} # the SQLite provenance store, beside this file\n"
    )
    new, found = _PROJECT_TABLE.subn(table, text, count=1)
    if not found:
        raise ScaffoldError(f"synth/bundled/{source}", "has no [project] table to fill in")
    return new


def config_paths(raw: dict[str, Any]) -> list[str]:
    """The relative file paths a parsed config names (templates, rubrics, eval sets)."""
    found = [raw.get("generate", {}).get("template")]
    for spec in raw.get("filters", []):
        found += [spec.get(key) for key in ("rubric", "template", "label_template")]
        found += [e.get("path") for e in spec.get("eval_sets", []) if isinstance(e, dict)]
    return [p for p in found if isinstance(p, str) and p and not posixpath.isabs(p)]


def rebase_paths(text: str, folder: str) -> str:
    """A config's text moved from ``folder`` to the project folder: each relative path
    value it names, rewritten to reach the same file. Comments and layout are kept,
    so the written file reads as the bundled one."""
    if not folder:
        return text
    before = config_paths(tomllib.loads(text))
    for path in dict.fromkeys(before):
        moved = posixpath.normpath(posixpath.join(folder, path))
        quoted = re.compile(r'(=\s*)"' + re.escape(path) + '"')
        text = quoted.sub(lambda m: f'{m.group(1)}"{moved}"', text)  # noqa: B023 - used at once
    after = config_paths(tomllib.loads(text))
    wanted = [posixpath.normpath(posixpath.join(folder, p)) for p in before]
    if after != wanted:  # a path written in a way the rewrite did not reach
        raise ScaffoldError(f"synth/bundled/{folder}/config.toml", "a path could not be rebased")
    return text


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
            project_config(name or folder.resolve().name, source=chosen.config_source).encode()
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
