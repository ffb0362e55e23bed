"""A preflight against the configured endpoints, before any money is spent on a run.

``check`` asks each endpoint (the generator's, and the judge's when it has its own
``base_url`` or key) what a run will need of it, one question a line:

- reachable and the key taken: ``GET /models``, which every OpenAI-compatible server
  answers cheaply. A 401 or 403 is a wrong key; a 404 there only means the server has
  no model list, so the key and the model are "unknown" until a request says;
- the model served: listed there, or ``GET /models/{model}``; only a
  ``model_not_found`` is a failure (a local server lists one name and answers any);
- which ``response_format`` works: the project's generation template rendered for a
  cell with one example asked for, sent once in each mode (json_schema, json_object,
  none) and read by the run's own client and reply parsing. The configured mode's
  request is the tiny generation the check makes;
- each judge model answers a JSON object, read as the judge reads it.

The requests are recorded in a store of their own that is thrown away: they are not
part of any run, and the project's store keeps only what runs paid for. ``preflight``
is the cheap part (reachability, key, model), which ``synth run`` does before it
builds anything, within ``PREFLIGHT_S``; a server slower than that is not waited for.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx2

from synth.config import Config
from synth.errors import SynthError
from synth.filters.rubric import judge_llm_changes, split_judge
from synth.generate import SeedPool, build_call
from synth.llm.client import CallResult, LLMClient
from synth.plan import plan_cells
from synth.prompts import load_template
from synth.records import DEFAULT_SLICE, CellKey, CellPlan, canonical_json, sha256_text
from synth.store import Store
from synth.store.rows import CallRow, PlannedCall

PREFLIGHT_S = 1.0  # what a run waits for its preflight before going on without it
CHECK_S = 10.0  # what `synth check` waits for GET /models
MODES = ("json_schema", "json_object", "none")
CHECK_MAX_TOKENS = 512  # one example fits; a tiny request stays tiny

Status = Literal["ok", "fail", "unknown"]


@dataclass(frozen=True)
class Verdict:
    """One line of the check: what was asked, the answer, and what to set if it is off."""

    what: str
    status: Status
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = {"ok": "ok  ", "fail": "FAIL", "unknown": "??  "}[self.status]
        return f"{mark} {self.what}: {self.detail}" + (f"; {self.fix}" if self.fix else "")


@dataclass
class CheckReport:
    verdicts: list[Verdict]
    requests: int = 0
    tokens: int = 0
    cost_usd: float = 0.0

    @property
    def ok(self) -> bool:
        return all(v.status != "fail" for v in self.verdicts)


@dataclass(frozen=True)
class Endpoint:
    """An endpoint to check: who uses it, its config, and the models asked of it."""

    role: str  # "generator" or "judge"
    config: Config
    models: tuple[str, ...]


def endpoints(config: Config) -> list[Endpoint]:
    """The generator's endpoint, and the judge's (its own config when it has its own
    base_url or key, with its models)."""
    _, judge = split_judge(config.filters, config.source.name)
    urls = config.llm.base_urls
    if len(urls) > 1:  # each asked on its own: a run uses the ones that answer
        out = [
            Endpoint("generator", config.with_llm(base_urls=[u]), (config.llm.model,)) for u in urls
        ]
    else:
        out = [Endpoint("generator", config, (config.llm.model,))]
    if judge is not None:
        judge_config = config.with_llm(**judge_llm_changes(judge))
        out.append(Endpoint("judge", judge_config, tuple(judge.models) or (config.llm.model,)))
    return out


# -- reachable, key, model -----------------------------------------------------------


async def probe_models(endpoint: Endpoint, timeout: float) -> list[Verdict]:
    """Reachable, key taken, models served, from ``GET /models`` (and ``GET
    /models/{model}`` for a model not listed). Raises ``httpx2.TimeoutException``
    when the server does not answer within ``timeout``."""
    config = endpoint.config
    api = config.endpoint().rstrip("/")
    key = config.api_key()
    where = f"{endpoint.role} endpoint {api}"
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx2.AsyncClient(timeout=timeout, headers=headers) as http:
        started = time.perf_counter()
        try:
            response = await http.get(api + "/models")
        except httpx2.TimeoutException:
            raise  # the caller decides: a run goes on without the answer
        except httpx2.HTTPError as e:
            return [Verdict(where, "fail", *_unreached(e))]
        ms = (time.perf_counter() - started) * 1000
        reached = Verdict(
            where, "ok", f"reachable (GET /models: HTTP {response.status_code}, {ms:.0f} ms)"
        )
        key_env = config.llm.api_key_env
        if response.status_code in (401, 403):
            fix = f"set {key_env} (llm.api_key_env) to a key this endpoint takes"
            detail = f"the key was refused: HTTP {response.status_code}: {_message(response)}"
            return [reached, Verdict(f"{endpoint.role} key", "fail", detail, fix)]
        if not response.is_success:
            why = f"GET /models answered HTTP {response.status_code}: the server lists no models"
            return [
                reached,
                Verdict(f"{endpoint.role} key", "unknown", why),
                *(Verdict(f"{endpoint.role} model {m}", "unknown", why) for m in endpoint.models),
            ]
        out = [reached, Verdict(f"{endpoint.role} key", "ok", f"taken ({key_env})")]
        listed = _model_ids(response)
        for model in endpoint.models:
            out.append(await _model_verdict(http, api, endpoint.role, model, listed))
    return out


async def _model_verdict(
    http: httpx2.AsyncClient, api: str, role: str, model: str, listed: list[str]
) -> Verdict:
    what = f"{role} model {model}"
    if model in listed:
        return Verdict(what, "ok", "served (listed at GET /models)")
    try:
        response = await http.get(f"{api}/models/{model}")
    except httpx2.HTTPError:
        response = None
    if response is not None and response.is_success:
        return Verdict(what, "ok", f"served (GET /models/{model})")
    shown = ", ".join(listed[:5]) + (" ..." if len(listed) > 5 else "")
    if response is not None and _code(response) == "model_not_found":
        key = "llm.model" if role == "generator" else "the rubric filter's models"
        fix = f"set {key} to one the server lists ({shown})" if listed else ""
        return Verdict(what, "fail", f"not served: {_message(response)}", fix)
    # A local server lists the model it loaded and answers whatever name it is asked by.
    return Verdict(what, "unknown", f"not listed (the server lists {shown or 'none'})")


def _model_ids(response: httpx2.Response) -> list[str]:
    try:
        data = response.json().get("data")
    except (ValueError, AttributeError):
        return []
    if not isinstance(data, list):
        return []
    return [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]


def _error(response: httpx2.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    inner = body.get("error") if isinstance(body, dict) else None
    return inner if isinstance(inner, dict) else {}


def _message(response: httpx2.Response) -> str:
    message = _error(response).get("message")
    if isinstance(message, str) and message:
        return " ".join(message.split())[:200]
    return " ".join(response.text.split())[:200] or response.reason_phrase


def _code(response: httpx2.Response) -> str | None:
    code = _error(response).get("code")
    return code if isinstance(code, str) else None


def _unreached(e: httpx2.HTTPError) -> tuple[str, str]:
    """What kept the request from the server, and what to look at."""
    cause: BaseException | None = e
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused", (
                "is the server running, and are llm.base_url (or OPENAI_BASE_URL) and its"
                " port right?"
            )
        if isinstance(cause, socket.gaierror):
            return "host not found", "check the host name in llm.base_url (or OPENAI_BASE_URL)"
        cause = cause.__cause__ or cause.__context__
    why = " ".join(str(e).split()) or type(e).__name__
    return f"cannot connect ({why})", "check llm.base_url (or OPENAI_BASE_URL)"


# -- the run's preflight -------------------------------------------------------------


async def preflight(config: Config) -> str | None:
    """The cheap part of the check, for ``synth run``: raises ``SynthError`` with the
    first failure's line; returns a note when an endpoint was too slow to ask within
    ``PREFLIGHT_S`` (the run goes on without it), None when all is well."""
    asked = endpoints(config)
    failed: list[tuple[Endpoint, Verdict]] = []
    for endpoint in asked:
        try:
            verdicts = await probe_models(endpoint, PREFLIGHT_S)
        except httpx2.TimeoutException:
            return (
                f"preflight skipped: {endpoint.config.endpoint()} did not answer GET /models"
                f" within {PREFLIGHT_S:g} s"
            )
        failed += [(endpoint, v) for v in verdicts if v.status == "fail"][:1]
    generators = sum(e.role == "generator" for e in asked)
    down = [e for e, _ in failed if e.role == "generator"]
    notes = []
    for endpoint, v in failed:
        line = f"{v.what}: {v.detail}" + (f"; {v.fix}" if v.fix else "")
        if endpoint.role == "generator" and len(down) < generators:
            # Another endpoint of the list answers; the run puts this one aside.
            notes.append(f"preflight: {line}; the run goes on with the other endpoints")
            continue
        raise SynthError("llm", line)
    return "\n".join(notes) or None


# -- the check -----------------------------------------------------------------------


def check(config: Config) -> CheckReport:
    """Every check against every endpoint the config names (see the module's doc)."""
    return asyncio.run(check_async(config))


async def check_async(config: Config) -> CheckReport:
    report = CheckReport([])
    with tempfile.TemporaryDirectory(prefix="synth-check-") as folder:
        with Store(Path(folder) / "check.db") as scratch:
            run_id = scratch.runs.begin(config.as_json(), config.sha).id
            for endpoint in endpoints(config):
                try:
                    verdicts = await probe_models(endpoint, CHECK_S)
                except httpx2.TimeoutException:
                    where = f"{endpoint.role} endpoint {endpoint.config.endpoint()}"
                    verdicts = [
                        Verdict(where, "fail", f"no answer to GET /models within {CHECK_S:g} s")
                    ]
                report.verdicts += verdicts
                if any(v.status == "fail" for v in verdicts):
                    continue  # a request would fail the same way
                if endpoint.role == "generator":
                    report.verdicts += await _formats(endpoint.config, scratch, run_id)
                else:
                    for model in endpoint.models:
                        report.verdicts.append(
                            await _judge(endpoint.config, model, scratch, run_id)
                        )
            spend = scratch.calls.spend()
            report.requests = spend.attempts
            report.tokens = spend.prompt_tokens + spend.completion_tokens
            report.cost_usd = spend.cost_usd
            scratch.runs.finish(run_id, "finished")
    return report


async def _formats(config: Config, store: Store, run_id: str) -> list[Verdict]:
    """The generation template sent once per response_format mode, the configured one
    first: which modes this server and model answer in a form synth reads."""
    template = load_template(config.resolve(config.generate.template), config.generate.template)
    store.calls.add_template(template.name, template.source, template.sha)
    plan, pool = _cell(config)
    configured = config.llm.response_format
    results: dict[str, CallResult] = {}
    fatal: dict[str, SynthError | None] = {}
    for mode in (configured, *(m for m in MODES if m != configured)):
        tiny = config.with_llm(
            response_format=mode, retries=0, max_tokens=min(config.llm.max_tokens, CHECK_MAX_TOKENS)
        )
        call = build_call(tiny, template, plan, pool, 0, 1)
        row = store.calls.plan(run_id, [call])[0]
        results[mode], fatal[mode] = await _send(tiny, store, row)
    cell = f"{plan.cell.slice}/{plan.cell.label}"
    works = [m for m in MODES if _read(results[m])]
    out = []
    mine = results[configured]
    what = f"generation ({config.generate.template}, cell {cell}, response_format {configured})"
    if _read(mine):
        n = len(mine.items or [])
        out.append(Verdict(what, "ok", f"{n} example(s) read" + _repaired(mine)))
    elif works:
        fix = f'llm.response_format = "{works[0]}": this server refused {configured}'
        if mine.status == "invalid":
            fix = f'llm.response_format = "{works[0]}": replies in {configured} could not be read'
        out.append(Verdict(what, "fail", mine.error or mine.status, fix))
    else:
        error = fatal[configured]
        detail = str(error.message) if error is not None else (mine.error or mine.status)
        out.append(Verdict(what, "fail", detail))
    for mode in MODES:
        r = results[mode]
        if mode == configured:
            continue
        if _read(r):
            out.append(Verdict(f"response_format {mode}", "ok", "works" + _repaired(r)))
        else:
            out.append(Verdict(f"response_format {mode}", "unknown", f"not usable: {r.error}"))
    return out


async def _judge(config: Config, model: str, store: Store, run_id: str) -> Verdict:
    """One tiny judge-shaped request: a JSON object, read as the judge reads replies."""
    params: dict[str, Any] = {"temperature": 0.0, "max_tokens": 32}
    if config.llm.response_format != "none":
        params["response_format"] = {"type": "json_object"}
    messages = [{"role": "user", "content": 'Reply with the JSON object {"ok": true} only.'}]
    identity = {"model": model, "messages": messages, "params": params}
    call: PlannedCall = {
        "request_sha": sha256_text(canonical_json(identity)),
        "slice": None,
        "label": None,
        "sample_index": 0,
        "template": "check",
        "template_sha": sha256_text("check"),
        "model": model,
        "params": params,
        "messages": messages,
        "parent_ids": [],
    }
    store.calls.add_template("check", "check", sha256_text("check"))
    row = store.calls.plan(run_id, [call], purpose="judge")[0]
    result, fatal = await _send(config.with_llm(retries=0), store, row)
    what = f"judge model {model}"
    if result.status == "ok":
        return Verdict(what, "ok", "answered a JSON object")
    detail = fatal.message if fatal is not None else (result.error or result.status)
    return Verdict(what, "fail", detail)


async def _send(config: Config, store: Store, row: CallRow) -> tuple[CallResult, SynthError | None]:
    async with LLMClient(config.llm, store.calls, api_key=config.api_key()) as client:
        result = await client.complete(row)
        return result, client.fatal


def _read(result: CallResult) -> bool:
    return result.status == "ok" and bool(result.items)


def _repaired(result: CallResult) -> str:
    return f" (mended: {', '.join(result.repairs)})" if result.repairs else ""


def _cell(config: Config) -> tuple[CellPlan, SeedPool]:
    """The first cell a run would plan, and the seeds to show: the project's store's,
    when it has one (read only), else none."""
    seeds: Sequence[Any] = []
    counts: dict[CellKey, tuple[int, int]] = {}
    if config.db_path.exists():
        with Store(config.db_path, readonly=True) as store:
            seeds = store.examples.seeds()
            counts = store.examples.cell_counts()
    plans = plan_cells(config, counts)
    if plans:
        plan = plans[0]
    else:
        label = next(iter(config.data_schema.labels or ["example"]), "example")
        plan = CellPlan(
            cell=CellKey(slice=DEFAULT_SLICE, label=label), target=1, real=0, synthetic=0
        )
    return plan, SeedPool.from_rows(seeds)
