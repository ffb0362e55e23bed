"""`synth check` and the run's preflight, against the simulator on loopback (healthy,
a wrong key, a model it does not serve, a response_format it refuses), a closed port
and a port that never answers: one line each, and the right exit status."""

from __future__ import annotations

import asyncio
import socket
import time

from click.testing import CliRunner
from test_judge import judge_project

from synth.check import PREFLIGHT_S, preflight
from synth.cli import cli
from synth.runner import run
from synth.seeds import read_seeds


def _check(project):
    result = CliRunner().invoke(cli, ["--config", str(project.config_path), "check"])
    return result.exit_code, result.output.splitlines()


def _calls(project) -> int:
    with project.store() as store:
        return store.conn.execute("SELECT count(*) FROM llm_calls").fetchone()[0]


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def test_a_healthy_endpoint_passes_every_check_and_nothing_is_recorded(sim_project, sim):
    status, lines = _check(sim_project)
    assert status == 0, lines
    url = sim.base_url
    assert lines[0].startswith(f"ok   generator endpoint {url}: reachable (GET /models: HTTP 200")
    assert lines[1] == "ok   generator key: taken (OPENAI_API_KEY)"
    assert lines[2] == "ok   generator model sim-1: served (listed at GET /models)"
    assert lines[3].startswith("ok   generation (prompts/generate/classify.md.j2, cell ")
    assert lines[3].endswith(", response_format json_schema): 1 example(s) read")
    assert lines[4:6] == [
        "ok   response_format json_object: works",
        "ok   response_format none: works",
    ]
    # One tiny request per mode, reported, and kept out of the project's store.
    assert sim.stats()["requests"] == 3
    assert lines[6].startswith("3 requests, ") and lines[6].endswith("(not recorded in the store)")
    assert not sim_project.config().db_path.exists() or _calls(sim_project) == 0


def test_a_closed_port_fails_in_one_line(project):
    url = _closed_port()
    project.write_config(base_url=url)
    status, lines = _check(project)
    assert status == 1
    assert lines[0] == (
        f"FAIL generator endpoint {url}: connection refused; is the server running, and are"
        " llm.base_url (or OPENAI_BASE_URL) and its port right?"
    )
    assert lines[-1] == f"Error: check failed: generator endpoint {url}"


def test_a_wrong_key_fails_on_the_401_before_any_request_is_paid(sim_project, sim, monkeypatch):
    sim.configure(require_key="sk-right-key-0000")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-1234")
    status, lines = _check(sim_project)
    assert status == 1
    assert lines[1] == (
        "FAIL generator key: the key was refused: HTTP 401: Incorrect API key provided:"
        " sk-**********1234. You can find your API key at"
        " https://platform.openai.com/account/api-keys.; set OPENAI_API_KEY"
        " (llm.api_key_env) to a key this endpoint takes"
    )
    assert sim.stats()["requests"] == 0
    monkeypatch.setenv("OPENAI_API_KEY", "sk-right-key-0000")
    assert _check(sim_project)[0] == 0


def test_a_model_the_server_does_not_know_fails_and_names_the_ones_it_serves(sim_project, sim):
    sim.configure(models=["sim-2", "sim-3"])
    status, lines = _check(sim_project)
    assert status == 1
    assert lines[2] == (
        "FAIL generator model sim-1: not served: The model `sim-1` does not exist or you do"
        " not have access to it.; set llm.model to one the server lists (sim-2, sim-3)"
    )
    assert sim.stats()["requests"] == 0


def test_a_refused_response_format_says_which_to_set(sim_project, sim):
    sim.configure(refuse_formats=["json_schema"])
    status, lines = _check(sim_project)
    assert status == 1
    assert lines[3].startswith("FAIL generation (prompts/generate/classify.md.j2, cell ")
    assert lines[3].endswith(
        "Invalid parameter: 'response_format' of type 'json_schema' is not supported with"
        ' this model.; llm.response_format = "json_object": this server refused json_schema'
    )
    text = sim_project.config_path.read_text().replace(
        'model = "sim-1"', 'model = "sim-1"\nresponse_format = "json_object"'
    )
    sim_project.config_path.write_text(text)
    status, lines = _check(sim_project)
    assert status == 0, lines
    assert "??   response_format json_schema: not usable: HTTP 400" in "\n".join(lines)


def test_the_judge_endpoint_is_checked_too(sim_project, sim):
    config = judge_project(sim_project)
    assert [spec.kind for spec in config.filters][-1] == "rubric"
    status, lines = _check(sim_project)
    assert status == 0, lines
    assert "ok   judge model sim-1: answered a JSON object" in lines
    closed = _closed_port()
    text = sim_project.config_path.read_text()
    sim_project.config_path.write_text(
        text.replace(
            'rubric = "prompts/rubrics/test.toml"',
            f'rubric = "prompts/rubrics/test.toml"\nbase_url = "{closed}"',
        )
    )
    status, lines = _check(sim_project)
    assert status == 1
    assert f"FAIL judge endpoint {closed}: connection refused; is the server running" in "\n".join(
        lines
    )


def test_a_run_stops_at_its_preflight_on_a_wrong_key_or_model(sim_project, sim, monkeypatch):
    config = sim_project.config()
    with sim_project.store() as store:
        store.examples.add_seeds(read_seeds(sim_project.seeds, config).seeds)
    sim.configure(require_key="sk-right-key-0000")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-1234")
    result = CliRunner().invoke(cli, ["--config", str(sim_project.config_path), "run"])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith(
        "Error: llm: generator key: the key was refused: HTTP 401: Incorrect API key"
    )
    sim.configure(require_key=None, models=["sim-2"])
    result = CliRunner().invoke(cli, ["--config", str(sim_project.config_path), "run"])
    assert result.exit_code == 1
    assert "Error: llm: generator model sim-1: not served" in result.output
    assert sim.stats()["requests"] == 0 and _calls(sim_project) == 0
    sim.configure(models=None)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-right-key-0000")
    assert run(config).status == "finished"


def test_the_preflight_takes_well_under_its_second_or_is_skipped(sim_project, sim):
    config = sim_project.config()
    started = time.monotonic()
    assert asyncio.run(preflight(config)) is None
    assert time.monotonic() - started < PREFLIGHT_S / 2
    # A port that takes the connection and never answers: the run does not wait.
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen()
        url = f"http://127.0.0.1:{mute.getsockname()[1]}/v1"
        sim_project.write_config(base_url=url)
        started = time.monotonic()
        note = asyncio.run(preflight(sim_project.config()))
        waited = time.monotonic() - started
    assert note == f"preflight skipped: {url} did not answer GET /models within 1 s"
    assert PREFLIGHT_S <= waited < PREFLIGHT_S + 1
