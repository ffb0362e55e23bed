"""Generation templates: Jinja2 files in prompts/, sandboxed, undefined names are errors.

Seed text reaches a template only as the value of a variable, never as template code,
and the sandbox keeps even a hostile template from reaching Python internals. The
template's name and the sha256 of its text go on every call and every example.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
from jinja2.sandbox import SandboxedEnvironment

from synth.errors import TemplateError, not_utf8
from synth.records import sha256_text


@dataclass(frozen=True)
class Template:
    name: str  # the path as written in config.toml
    path: Path
    source: str
    sha: str
    compiled: jinja2.Template
    # The names the template reads: a variable it never mentions (the attribute grid
    # of a template written before it) is added to the prompt by the caller instead.
    uses: frozenset[str] = frozenset()

    def render(self, **variables: Any) -> str:
        """Render; a runtime error (an undefined name, a bad filter) names file:line."""
        try:
            return self.compiled.render(**variables)
        except jinja2.TemplateError as e:
            raise TemplateError(f"{self.name}:{_template_line(e, self.path)}", _msg(e)) from None


def _env(folder: Path) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(folder),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # Jinja's own tojson escapes quotes and <>& for HTML; prompts want plain JSON.
    env.filters["json"] = lambda value: json.dumps(value, ensure_ascii=False)
    return env


def load_template(path: Path, name: str | None = None) -> Template:
    """Read and compile a template; a syntax error names file and line."""
    name = name or str(path)
    try:
        source = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line, why = not_utf8(e)
        raise TemplateError(f"{name}:{line}", why) from None
    except OSError as e:
        raise TemplateError(name, e.strerror or str(e)) from None
    env = _env(path.parent)
    try:
        compiled = env.get_template(path.name)
        uses = jinja2.meta.find_undeclared_variables(env.parse(source))
    except jinja2.TemplateSyntaxError as e:
        raise TemplateError(f"{name}:{e.lineno}", e.message or str(e)) from None
    return Template(
        name=name,
        path=path,
        source=source,
        sha=sha256_text(source),
        compiled=compiled,
        uses=frozenset(uses),
    )


def _template_line(error: BaseException, path: Path) -> int | str:
    # Jinja rewrites tracebacks so that frames of template code carry the template's
    # file name and line: the last such frame is where the error happened.
    lines = [
        frame.lineno
        for frame in traceback.extract_tb(error.__traceback__)
        if Path(frame.filename).name == path.name and frame.lineno is not None
    ]
    return lines[-1] if lines else "?"


def _msg(e: jinja2.TemplateError) -> str:
    return e.message or type(e).__name__
