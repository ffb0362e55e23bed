"""Rubrics: what "good" means, written down, so a judge grades against it and not taste.

A rubric is a TOML file in ``prompts/rubrics/``::

    name = "banking-intent"
    description = "Customer messages to a bank's support, labelled by intent."
    pass_threshold = 3.5      # weighted mean score (1-5) at or above it: keep
    borderline = 0.5          # scores in [pass_threshold - borderline, pass_threshold):
                              # verdict review, routed to a human instead of dropped

    [[criteria]]
    name = "realism"
    checks = "Reads like a message a real customer would send."
    weight = 1.0              # share of the weighted mean (default 1)
    pass_level = 3            # a score at or above it passes this criterion (default 3)
    levels = [                # the anchors: exactly five sentences, for scores 1..5
        "...", "...", "...", "...", "...",
    ]

Criterion names are identifiers (letters, digits, ``_``), unique, and not ``label`` or
``slice`` (the label-consistency check stores its answers under those names). The
rubric's sha256 goes on every decision and every stored score.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from synth.errors import SynthError, not_utf8
from synth.records import sha256_text

LEVELS = 5
RESERVED = ("label", "slice")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class RubricError(SynthError):
    """A rubric file that cannot be used; ``where`` is ``file: key``."""


class Criterion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    checks: str = Field(min_length=1)
    weight: float = Field(default=1.0, gt=0)
    pass_level: int = Field(default=3, ge=1, le=LEVELS)
    levels: tuple[str, ...]

    @field_validator("name")
    @classmethod
    def _identifier(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("must start with a letter and hold only letters, digits and _")
        if v in RESERVED:
            raise ValueError(f"{v!r} is reserved for the label-consistency check")
        return v

    @field_validator("levels")
    @classmethod
    def _five_anchors(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(v) != LEVELS:
            raise ValueError(f"needs exactly {LEVELS} anchor sentences (scores 1-5), got {len(v)}")
        if any(not s.strip() for s in v):
            raise ValueError("an anchor sentence is empty")
        return v


class RubricSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    description: str = ""
    pass_threshold: float = Field(ge=1, le=LEVELS)
    borderline: float = Field(default=0.0, ge=0, le=LEVELS)
    criteria: tuple[Criterion, ...] = Field(min_length=1)

    @field_validator("criteria")
    @classmethod
    def _unique_names(cls, v: tuple[Criterion, ...]) -> tuple[Criterion, ...]:
        names = [c.name for c in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"criterion names must be unique: {', '.join(dupes)}")
        return v


@dataclass(frozen=True)
class Rubric:
    """A validated rubric and the file it came from."""

    spec: RubricSpec
    path: str  # as named in config.toml
    source: str  # the file's text
    sha: str  # its sha256

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def criteria(self) -> tuple[Criterion, ...]:
        return self.spec.criteria

    def weighted(self, scores: dict[str, float]) -> float:
        """The weighted mean of one score per criterion."""
        total = sum(c.weight for c in self.criteria)
        return sum(c.weight * scores[c.name] for c in self.criteria) / total

    def verdict(self, score: float) -> str:
        """``pass`` at or above the threshold, ``borderline`` within the band below
        it, ``fail`` under that."""
        if score >= self.spec.pass_threshold - 1e-9:
            return "pass"
        if score >= self.spec.pass_threshold - self.spec.borderline - 1e-9:
            return "borderline"
        return "fail"


def load_rubric(path: Path, name: str | None = None) -> Rubric:
    """Read and validate a rubric file; errors name the file and the key
    (``prompts/rubrics/x.toml: criteria[1].levels: ...``)."""
    name = name or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line, why = not_utf8(e)
        raise RubricError(f"{name}:{line}", why) from None
    except OSError as e:
        raise RubricError(name, e.strerror or str(e)) from None
    try:
        raw = tomllib.loads(text)
    except (ValueError, RecursionError) as e:  # TOMLDecodeError is a ValueError
        raise RubricError(name, f"not valid TOML: {str(e).split(';')[0]}") from None
    try:
        spec = RubricSpec.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        raise RubricError(f"{name}: {_dotted(first['loc'])}", first["msg"]) from None
    return Rubric(spec=spec, path=name, source=text, sha=sha256_text(text))


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top level)"
