"""Reading seed files (JSONL, CSV): each row validated against the schema.

A bad row is reported as ``FILE:LINE: reason``. By default one bad row refuses the
whole file, so a half-imported file never reaches the store; ``skip_invalid`` imports
the good rows and lists the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synth.config import Config, FieldSpec, SliceSettings
from synth.datafiles import read_rows
from synth.errors import SeedError
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
    for line, row in read_rows(path, SeedError, "seed"):
        where = f"{path}:{line}"
        try:
            if isinstance(row, str):
                raise ValueError(row)
            yield where, _seed(row, f"{origin}:{line}", config)
        except ValueError as e:
            yield where, str(e)


def _seed(row: dict[str, Any], origin: str, config: Config) -> Seed:
    schema = config.data_schema
    data = dict(row)
    for name, spec in schema.fields.items():
        if name not in data or data[name] in (None, ""):
            raise ValueError(f"missing field {name!r}")
        data[name] = _coerce(data[name], spec, name)
    label = str(data[schema.label])
    if schema.labels and label not in schema.labels:
        raise ValueError(f"label {label!r} is not one of schema.labels")
    text = data[schema.text]
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"field {schema.text!r} must be non-empty text")
    return Seed(
        text=text,
        label=label,
        slice=slice_of(data, config.slices),
        data=data,
        origin=origin,
    )


def _coerce(value: Any, spec: FieldSpec, name: str) -> Any:
    """CSV gives strings; turn them into the declared type, refuse what does not fit."""
    kind = spec.type
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
                return float(text)
        except ValueError:
            raise ValueError(f"field {name!r} must be {kind}, got {value!r}") from None
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"field {name!r} must be boolean, got {value!r}")
    ok = {
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
    }[kind]
    if not ok:
        raise ValueError(f"field {name!r} must be {kind}, got {value!r}")
    return value


def slice_of(data: dict[str, Any], slices: list[SliceSettings]) -> str:
    """The first named slice whose match rule the row meets, else the default slice."""
    for s in slices:
        if s.match and all(_matches(data.get(k), v) for k, v in s.match.items()):
            return s.name
    return DEFAULT_SLICE


def _matches(value: Any, wanted: Any) -> bool:
    options = wanted if isinstance(wanted, list) else [wanted]
    return any(value == o or (value is not None and str(value) == str(o)) for o in options)
