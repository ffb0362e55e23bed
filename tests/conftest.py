"""Shared fixtures: real files in tmp_path, a real SQLite store, and the simulator on
loopback driven by the real openai client."""

from __future__ import annotations

import json
import signal
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from synth.config import Config, load_config
from synth.store import Store

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"

# A shell starts a background job with SIGINT ignored, and a child process inherits
# that (Python then keeps ignoring it): the tests that press Ctrl-C on a `synth`
# process need it delivered, as from a terminal. A handled signal is reset to the
# default in a child.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

SEEDS = [
    {"text": "my card still has not arrived after two weeks", "label": "card_arrival"},
    {"text": "when will the new card I ordered get here", "label": "card_arrival"},
    {"text": "how long does card delivery usually take", "label": "card_arrival"},
    {"text": "is there any way to track my card in the post", "label": "card_arrival"},
    {"text": "I think my card was stolen at the station", "label": "lost_or_stolen_card"},
    {"text": "I lost my wallet with the card inside it", "label": "lost_or_stolen_card"},
    {"text": "what exchange rate do you use for euros", "label": "exchange_rate"},
]

CONFIG = """
[project]
name = "test"
db = "synth.db"

[llm]
model = "sim-1"
base_url = "{base_url}"
max_concurrency = 8
timeout = 5
retries = 5

[llm.prices]
"sim-1" = {{ input = 1.0, output = 2.0 }}

[schema]
text = "text"
label = "label"
fields.text = {{ type = "string", min_length = 3 }}
fields.label = {{ type = "string" }}

[targets]
balance = "uniform"
per_label = 6

[[slices]]
name = "urgent"
description = "short, panicked messages"
match = {{ tone = "urgent" }}
target = 2
labels = ["lost_or_stolen_card"]

[generate]
template = "prompts/generate/classify.md.j2"
few_shot = 3
contrast = 1
per_call = 3
max_calls = 200

[[filters]]
kind = "schema"
min_words = 2

[[filters]]
kind = "exact_dedup"

[review]
fraction = 0.25
"""


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


class Project:
    """A project folder: config.toml, the real generation template, a seed file."""

    def __init__(self, root: Path, base_url: str = "http://127.0.0.1:9/v1") -> None:
        self.root = root
        (root / "prompts" / "generate").mkdir(parents=True, exist_ok=True)
        template = ROOT / "prompts" / "generate" / "classify.md.j2"
        (root / "prompts" / "generate" / "classify.md.j2").write_text(template.read_text())
        self.seeds = write_jsonl(root / "seeds.jsonl", SEEDS)
        self.write_config(base_url=base_url)

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    def write_config(self, extra: str = "", base_url: str = "http://127.0.0.1:9/v1") -> None:
        text = CONFIG.format(base_url=base_url) + textwrap.dedent(extra)
        self.config_path.write_text(text, encoding="utf-8")

    def config(self) -> Config:
        return load_config(self.config_path)

    def store(self) -> Store:
        return Store(self.root / "synth.db")


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


@pytest.fixture(scope="session")
def sim_server() -> Iterator[object]:
    from synth.sim import SimConfig, Simulator

    with Simulator(SimConfig(seed=1)) as sim:
        yield sim


@pytest.fixture
def sim(sim_server: object) -> object:
    """The session's simulator, with clean stats and default (fault-free) behaviour."""
    sim_server.reset()  # type: ignore[attr-defined]
    sim_server.configure(  # type: ignore[attr-defined]
        **{k: v for k, v in _defaults().items() if k != "seed"}
    )
    return sim_server


def _defaults() -> dict:
    from synth.sim import SimConfig

    return SimConfig().model_dump()


@pytest.fixture
def sim_project(tmp_path: Path, sim: object) -> Project:
    return Project(tmp_path, base_url=sim.base_url)  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def llama() -> Iterator[object]:
    """llama.cpp's server with SmolLM2-135M-Instruct, one for the session. Missing
    packages skip the real-server tests on a developer's machine (`make test-real`
    installs them) and fail them where CI is set, which must have installed them."""
    import llamacpp

    why = llamacpp.missing()
    if why is not None:
        if llamacpp.in_ci():
            pytest.fail(why)
        pytest.skip(why)
    with llamacpp.llama_server() as server:
        yield server


CHROMIUM = Path("/usr/bin/chromium")
# Flags for a root user on a machine with no network but loopback: no sandbox (root),
# and no background connections (they are refused here, many at a time).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser() -> Iterator[object]:
    """Debian's headless Chromium driven by playwright (``make test`` installs it).

    One per test: playwright's sync API keeps an event loop running on the main
    thread while it is open, and any later ``asyncio.run`` in the test run would fail.
    """
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make test`, which installs Debian's chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
