"""Reading seed files (JSONL, CSV): each row validated against the schema.

A bad row is reported as ``FILE:LINE: reason``. By default one bad row refuses the
whole file, so a half-imported file never reaches the store; ``skip_invalid`` imports
the good rows and lists the rest.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synth.config import Config, FieldSpec, SliceSettings
from synth.datafiles import read_rows
from synth.errors import SeedError
from synth.messages import check_messages
from synth.records import DEFAULT_SLICE, Seed


@dataclass
class SeedFile:
    seeds: list[Seed] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "FILE:LINE: reason"


def read_seeds(path: str | Path, config: Config, *, skip_invalid: bool = False) -> SeedFile:
    """Parse and validate a seed file; raise SeedError on the first bad row unless
    ``skip_invalid``."""
    result = SeedFile()
    for where, item in iter_seeds(path, config):
        if isinstance(item, Seed):
            result.seeds.append(item)
        elif not skip_invalid:
            raise SeedError(where, item)
        else:
            result.problems.append(f"{where}: {item}")
    if not result.seeds and not result.problems:
        # Almost always the wrong file or a failed export: an import of nothing that
        # exits 0 would hide it. (A file imported before still has rows: "0 added".)
        raise SeedError(str(path), "the file has no rows: there is nothing to import")
    return result


def iter_seeds(path: str | Path, config: Config) -> Iterator[tuple[str, Seed | str]]:
    """``("FILE:LINE", seed)`` for each row of a seed file, in file order, or
    ``("FILE:LINE", what is wrong)`` for a row that does not validate. One row at a
    time, so a file of any size can be checked in bounded memory; a file that cannot
    be read at all raises SeedError naming it."""
    path = Path(path)
    # Stored origins name the file relative to the project (config.toml's folder)
    # when it is inside it, so they read the same whatever folder the import ran from.
    try:
        origin = path.resolve().relative_to(config.root.resolve())
    except ValueError:
        origin = path
    header_checked = path.suffix.lower() not in (".csv", ".tsv")
    for line, row in read_rows(path, SeedError, "seed"):
        where = f"{path}:{line}"
        if not header_checked and isinstance(row, dict):
            _check_header(path, list(row), config)
            header_checked = True
        try:
            if isinstance(row, str):
                raise ValueError(row)
            yield where, _seed(row, f"{origin}:{line}", config)
        except ValueError as e:
            yield where, str(e)


def _check_header(path: Path, columns: list[str], config: Config) -> None:
    """A CSV without a schema field's column fails every row alike: one error for the
    header, not one per row, whatever ``skip_invalid`` says."""
    schema = config.data_schema
    missing = [n for n in schema.fields if n not in schema.optional and n not in columns]
    if missing:
        names = ", ".join(repr(m) for m in missing)
        raise SeedError(
            f"{path}:1",
            f"the header has no column {names} (it has {', '.join(columns)});"
            f" [schema] fields need one each",
        )


def _seed(row: dict[str, Any], origin: str, config: Config) -> Seed:
    schema = config.data_schema
    data = dict(row)
    for name, spec in schema.fields.items():
        if name not in data or data[name] in (None, ""):
            if name in schema.optional:
                data[name] = ""
                continue
            raise ValueError(f"missing field {name!r}")
        data[name] = _coerce(data[name], spec, name)
        _check_length(data[name], spec, name)
    label = schema.cell_of(data)
    if schema.labels and label not in schema.labels:
        what = "label" if schema.label else "cell"
        raise ValueError(f"{what} {_shown(label)} is not one of schema.labels")
    text = schema.text_of(data)
    if not text.strip():
        raise ValueError(f"field {schema.text!r} must be non-empty text")
    return Seed(
        text=text,
        label=label,
        slice=slice_of(data, config.slices),
        data=data,
        origin=origin,
    )


def _check_length(value: Any, spec: FieldSpec, name: str) -> None:
    """The schema's string lengths hold for seeds as for generated rows: a seed
    outside them is a few-shot example of what the schema filter would reject."""
    if not isinstance(value, str):
        return
    n = len(value)
    if spec.min_length is not None and n < spec.min_length:
        raise ValueError(
            f"field {name!r} has {n} characters, fewer than schema.fields.{name}.min_length"
            f" = {spec.min_length}"
        )
    if spec.max_length is not None and n > spec.max_length:
        raise ValueError(
            f"field {name!r} has {n} characters, more than schema.fields.{name}.max_length"
            f" = {spec.max_length}"
        )


def _coerce(value: Any, spec: FieldSpec, name: str) -> Any:
    """CSV gives strings; turn them into the declared type, refuse what does not fit."""
    kind = spec.type
    if kind == "messages":
        if isinstance(value, str):  # a CSV cell holds the list as JSON
            try:
                value = json.loads(value)
            except ValueError:
                raise ValueError(f"field {name!r} must be a JSON list of messages") from None
        try:
            return check_messages(value, spec.min_length, spec.max_length)
        except ValueError as e:
            raise ValueError(f"field {name!r}: {e}") from None
    if kind == "string":
        if isinstance(value, str):
            return value
        raise ValueError(f"field {name!r} must be a string, not {type(value).__name__}")
    if isinstance(value, str):
        text = value.strip()
        try:
            if kind == "integer":
                return int(text)
            if kind == "number":
                return _finite(float(text), name)
        except ValueError as e:
            # int() refuses more than 4,300 digits: say so rather than "not an integer".
            why = f" ({str(e).split(';')[0]})" if "digits" in str(e) else ""
            raise ValueError(f"field {name!r} must be {kind}, got {_shown(value)}{why}") from None
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"field {name!r} must be boolean, got {_shown(value)}")
    ok = {
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
    }[kind]
    if not ok:
        raise ValueError(f"field {name!r} must be {kind}, got {_shown(value)}")
    return value


def _finite(value: float, name: str) -> float:
    if math.isfinite(value):
        return value
    raise ValueError(f"field {name!r} must be a finite number, got {value}")


def _shown(value: Any) -> str:
    """A value as an error message quotes it: a 5,000-digit number or a whole
    document in one message helps nobody."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:50]}... ({len(text)} characters)"


def slice_of(data: dict[str, Any], slices: list[SliceSettings]) -> str:
    """The first named slice whose match rule the row meets, else the default slice."""
    for s in slices:
        if s.match and all(_matches(data.get(k), v) for k, v in s.match.items()):
            return s.name
    return DEFAULT_SLICE


def _matches(value: Any, wanted: Any) -> bool:
    options = wanted if isinstance(wanted, list) else [wanted]
    return any(value == o or (value is not None and str(value) == str(o)) for o in options)
