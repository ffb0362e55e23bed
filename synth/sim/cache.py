"""The simulator's prompt cache: which prompt tokens a provider would bill as cached.

OpenAI, Anthropic and vLLM's prefix caching serve the start of a prompt that an earlier
request already sent from a cache, in blocks (OpenAI's are 128 tokens), and report
them as ``usage.prompt_tokens_details.cached_tokens``. The simulator counts them as
the longest common prefix with the last prompt that began the same way (its first
``KEY_CHARS`` characters: requests of one template and cell), rounded down to whole
blocks. Like the provider's, the count depends on what came before, not on the body
alone: replies' content does not.
"""

from __future__ import annotations

import os
from typing import Any

from synth.sim.task import _message_texts

BLOCK_TOKENS = 128  # cached tokens come in whole blocks of this many
KEY_CHARS = 256  # prompts that share this many leading characters share a cache line
TOKEN_CHARS = 4  # the simulator's token, as its usage counts them


class PromptCache:
    """The last prompt seen per leading ``KEY_CHARS`` characters."""

    def __init__(self) -> None:
        self._last: dict[str, str] = {}

    def clear(self) -> None:
        self._last.clear()

    def cached_tokens(self, messages: Any) -> int:
        """Tokens of this prompt a provider would serve from its cache; the prompt is
        remembered for the requests after it."""
        try:
            texts, _ = _message_texts(messages)
        except ValueError:
            return 0
        prompt = "\n".join(texts)
        key = prompt[:KEY_CHARS]
        before = self._last.get(key)
        self._last[key] = prompt
        if before is None:
            return 0
        shared = len(os.path.commonprefix([before, prompt])) // TOKEN_CHARS
        return shared // BLOCK_TOKENS * BLOCK_TOKENS
