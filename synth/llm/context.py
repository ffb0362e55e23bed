"""How many tokens a request may fill on the server, when the server says.

llama.cpp's server says it at ``GET /props`` (``default_generation_settings.n_ctx``:
the context of one slot, which is what one request gets), vLLM at ``GET /v1/models``
(each model's ``max_model_len``). Hosted APIs mostly say neither: a 404, a refused
connection or a reply of another shape means "unknown", never an error. A run asks
once, before its first call, with a short timeout: a server too busy to answer that
fast is unknown too, and the run goes on as it would have without asking.
"""

from __future__ import annotations

from typing import Any

import httpx2

from synth.config import Config

# Seconds for each of the two requests.
PROBE_TIMEOUT = 5.0


async def context_size(config: Config) -> int | None:
    """``llm.context_tokens`` when set, else what the endpoint says, else None."""
    if config.llm.context_tokens:
        return config.llm.context_tokens
    return await probe_context(config.endpoint(), config.api_key(), config.llm.model)


async def probe_context(base_url: str, api_key: str, model: str) -> int | None:
    """The context size the server at ``base_url`` (``.../v1``) reports, or None."""
    api = base_url.rstrip("/")
    # /props sits beside /v1 on llama.cpp's server, not under it.
    server = api[: -len("/v1")] if api.endswith("/v1") else api
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx2.AsyncClient(timeout=PROBE_TIMEOUT, headers=headers) as http:
        found = context_from_props(await _get_json(http, server + "/props"))
        if found is None:
            found = context_from_models(await _get_json(http, api + "/models"), model)
    return found


async def _get_json(http: httpx2.AsyncClient, url: str) -> Any:
    try:
        response = await http.get(url)
        return response.json() if response.is_success else None
    except (httpx2.HTTPError, ValueError):
        return None


def context_from_props(props: Any) -> int | None:
    """llama.cpp's ``/props``: ``{"default_generation_settings": {"n_ctx": N}}``."""
    settings = props.get("default_generation_settings") if isinstance(props, dict) else None
    return _tokens(settings.get("n_ctx") if isinstance(settings, dict) else None)


def context_from_models(models: Any, model: str) -> int | None:
    """vLLM's ``/v1/models``: the ``max_model_len`` of the model asked for, else of the
    only model served (a local server answers whatever name it is asked by)."""
    data = models.get("data") if isinstance(models, dict) else None
    if not isinstance(data, list):
        return None
    entries = [m for m in data if isinstance(m, dict)]
    named = [m for m in entries if m.get("id") == model]
    chosen = named or (entries if len(entries) == 1 else [])
    return _tokens(chosen[0].get("max_model_len")) if chosen else None


def _tokens(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
