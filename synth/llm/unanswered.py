"""What an attempt may cost, written down before anyone knows what it did cost.

An endpoint bills an attempt it has read, whether or not its reply ever reaches
synth: the process may be killed with the request on the wire, the reply may stall
past a timeout, the connection may drop mid-stream. The store records what replies
say they cost; an attempt whose reply never came would be missing from it. So each
attempt adds an estimate of its cost to its call (``llm_calls.unanswered_*``) the
moment it leaves, in the transport's request hook, and takes the estimate back when
the server answers (a reply, or an error status, which is not billed). What remains
is the estimated spend of attempts whose replies were lost, which ``synth status``
shows.

A call left pending by a killed run is sent again under the same Idempotency-Key. An
endpoint that honours the key (synth's simulator does) serves the lost reply and
bills once, and the estimate overstates; one that ignores the key (many do) bills
both, and the estimate is what the store would otherwise never show.

The estimate is the prompt's (4 characters a token) plus the whole of ``max_tokens``:
the most the attempt could have cost, as providers reserve it against rate limits.
The prompt alone would be a floor that a reply lost while being written always
exceeds; an upper bound errs on the side a budget needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from synth.llm.limits import estimate_tokens
from synth.store.calls import Calls
from synth.store.rows import CallRow


@dataclass(frozen=True)
class Estimate:
    """The most one attempt of a call may be billed for."""

    tokens: int
    usd: float


def estimate(call: CallRow, cost: Callable[[str, int, int], float]) -> Estimate:
    """One attempt of ``call`` at most; ``cost(model, prompt, completion)`` prices it."""
    max_tokens = call.params.get("max_tokens")
    reply = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else 0
    prompt = estimate_tokens(call.messages, 0)
    return Estimate(prompt + reply, cost(call.model, prompt, reply))


class AttemptLedger:
    """One attempt's entry: ``sent`` as it leaves, ``answered`` when the server
    answers (or it never reached the server), or ``taken_back`` with the reply that
    answers it; neither, if the process dies first."""

    def __init__(self, calls: Calls, call_id: str, cost: Estimate) -> None:
        self.calls = calls
        self.call_id = call_id
        self.cost = cost
        self.open = False

    def sent(self) -> None:
        self.calls.attempt_sent(self.call_id, self.cost.tokens, self.cost.usd)
        self.open = True

    def answered(self) -> None:
        if self.open:
            self.calls.attempt_answered(self.call_id, self.cost.tokens, self.cost.usd)
            self.open = False

    def taken_back(self) -> Estimate | None:
        """The estimate to take back in the statement that stores the attempt's reply
        (``Calls.record_reply``), instead of ``answered``'s own commit; None when it
        never left or was answered already."""
        if not self.open:
            return None
        self.open = False
        return self.cost
