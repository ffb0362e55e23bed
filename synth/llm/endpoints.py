"""Which endpoint an attempt goes to, when ``llm.base_urls`` names several serving the
same model.

Each attempt goes to the endpoint with the fewest requests in flight (the one with
fewer served breaks a tie, so idle endpoints take turns). An endpoint whose attempt
failed for want of a server (no connection, a timeout, a 5xx) is put aside for
``llm.cooldown_s`` seconds, and the retry goes to another; when every endpoint is
put aside, the one back soonest is tried. The choice never reaches the request: the
body and its hash are the same whichever endpoint serves it, so a store resumed
against other endpoints keeps its replies.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import openai


@dataclass
class Endpoint:
    url: str  # the chat completions URL
    in_flight: int = 0
    served: int = 0  # attempts answered, whatever the answer
    failed: int = 0  # attempts that put it aside
    until: float = 0.0  # time.monotonic() it is put aside until


class Endpoints:
    """The endpoints a client spreads its attempts over."""

    def __init__(self, base_urls: Sequence[str], cooldown_s: float) -> None:
        if not base_urls:
            raise ValueError("no endpoint to send to")
        self.cooldown_s = cooldown_s
        self.all = [Endpoint(u.rstrip("/") + "/chat/completions") for u in base_urls]

    def take(self) -> Endpoint:
        """The endpoint for the next attempt, counted in flight until ``give_back``."""
        now = time.monotonic()
        ready = [e for e in self.all if e.until <= now]
        if ready:
            chosen = min(ready, key=lambda e: (e.in_flight, e.served))
        else:
            chosen = min(self.all, key=lambda e: e.until)
        chosen.in_flight += 1
        return chosen

    def give_back(self, endpoint: Endpoint, error: BaseException | None) -> None:
        """The attempt is over; ``error`` is what it failed with, if it did."""
        endpoint.in_flight -= 1
        if error is not None and server_failed(error):
            endpoint.failed += 1
            endpoint.until = time.monotonic() + self.cooldown_s
        elif not isinstance(error, openai.APIConnectionError):
            endpoint.served += 1

    def any_ready(self) -> bool:
        """Whether some endpoint is not put aside (after a failure, one other than
        the endpoint that failed, which is)."""
        now = time.monotonic()
        return any(e.until <= now for e in self.all)


def server_failed(exc: BaseException) -> bool:
    """Whether the failure is the endpoint's (down, stuck or broken), so another
    endpoint may do better; a 429 or a refused request would be refused anywhere."""
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code >= 500
    return isinstance(exc, openai.APIConnectionError)  # timeouts included
