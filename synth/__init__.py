"""synth: quota-driven synthetic data with a provenance store.

The public API, one import away (``from synth import run, load_config, Store``).
Names are loaded on first use, so ``import synth`` and the command line start fast.
(The live export is ``synth.export.export``: a package attribute of that name is the
module itself.)

    config = load_config("config.toml")
    with Store(config.db_path) as store:
        store.examples.add_seeds(read_seeds("seeds/banking.jsonl", config).seeds)
    summary = run(config)                      # generate to quota, filters and judge
    with Store(config.db_path) as store:
        print(audit_store(config, store)["totals"])
        freeze(store, config, "v1")
        export_version(store, config, "v1", "data.jsonl")
        filter_file(config, store, "theirs.jsonl", source="synthetic", kept="clean.jsonl")
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Candidate": "synth.records",
    "CellKey": "synth.records",
    "Config": "synth.config",
    "Decision": "synth.records",
    "Filter": "synth.filters.base",
    "FilterParams": "synth.filters.base",
    "FilterProgress": "synth.filtering",
    "FilterReport": "synth.filtering",
    "RunSummary": "synth.runner",
    "Store": "synth.store",
    "SynthError": "synth.errors",
    "Verdict": "synth.records",
    "audit_file": "synth.audit",
    "audit_store": "synth.audit",
    "cohen_kappa": "synth.agreement",
    "export_version": "synth.export",
    "filter_file": "synth.filtering",
    "freeze": "synth.versions",
    "load_config": "synth.config",
    "plan_cells": "synth.plan",
    "read_seeds": "synth.seeds",
    "run": "synth.runner",
}

__all__ = [
    "Candidate",
    "CellKey",
    "Config",
    "Decision",
    "Filter",
    "FilterParams",
    "FilterProgress",
    "FilterReport",
    "RunSummary",
    "Store",
    "SynthError",
    "Verdict",
    "audit_file",
    "audit_store",
    "cohen_kappa",
    "export_version",
    "filter_file",
    "freeze",
    "load_config",
    "plan_cells",
    "read_seeds",
    "run",
]

if TYPE_CHECKING:
    from synth.agreement import cohen_kappa
    from synth.audit import audit_file, audit_store
    from synth.config import Config, load_config
    from synth.errors import SynthError
    from synth.export import export_version
    from synth.filtering import FilterProgress, FilterReport, filter_file
    from synth.filters.base import Filter, FilterParams
    from synth.plan import plan_cells
    from synth.records import Candidate, CellKey, Decision, Verdict
    from synth.runner import RunSummary, run
    from synth.seeds import read_seeds
    from synth.store import Store
    from synth.versions import freeze


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'synth' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
