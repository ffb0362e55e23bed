from __future__ import annotations

import subprocess
import sys

import synth


def test_the_public_api_is_pinned():
    assert synth.__all__ == [
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
    assert sorted(synth._EXPORTS) == synth.__all__
    for name in synth.__all__:
        assert getattr(synth, name).__module__.startswith("synth."), name


def _loaded_after(statement: str) -> str:
    code = (
        f"import sys; {statement}; print(sorted(m for m in"
        " ('numpy', 'sklearn', 'openai', 'datasketch', 'synth.store') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_importing_synth_loads_nothing_until_a_name_is_used():
    assert _loaded_after("import synth") == "[]"
    assert "synth.store" in _loaded_after("import synth; synth.Store")
