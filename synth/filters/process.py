"""The filter chain in a process of its own, beside a run's event loop.

A run reads replies, stores rows and decisions and plans calls on one core; the
chain (near dedup, contamination and diversity compare each candidate with every
kept row's neighbours) is CPU work of the same order. In one process the two take
turns and the wire waits while a chunk is filtered; here the chain decides on a
second core while the loop goes on reading and sending.

Decisions are the same as in one process: one chain, fed chunks in plan order, each
decided and its survivors admitted before the next is read. Only candidates go to the
process and only their decisions come back; a filter's edit (a redaction) is replayed
here from its decision, as ``FilterChain.decide`` applies it there.

The process holds one end of each pipe: when the run's process goes, even by
``kill -9``, the next read sees the pipe closed and the process exits. It ignores
Ctrl-C, which the run's process handles (it closes the pipes).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import synth
from synth import errors
from synth.errors import SynthError
from synth.filters import FilterContext, FilterParams, build_chain
from synth.filters.chain import record
from synth.filters.contamination import ContaminationFilter
from synth.memory import collect_less
from synth.records import Candidate, Decision, Outcome, SeenItem, Verdict

# Seconds a closed chain's process gets to exit before it is killed: it holds nothing
# to save, and chunks still queued for it (a run ended by Ctrl-C or an error) would
# only be decided for nobody.
EXIT_WAIT_S = 1.0


class FilterProcessError(RuntimeError):
    """A filter failed in the filter process other than on the user's input (a bug):
    the message carries its traceback."""


class ChainProcess:
    """``FilterChain``'s prepare / decide-and-admit, run in another process.

    ``submit`` queues a chunk and returns at once; its outcomes come in submission
    order. Errors a filter raises on the user's input (an unreadable eval set) come
    back as the same ``SynthError``; a close() ends the process."""

    def __init__(self, specs: Sequence[FilterParams], ctx: FilterContext) -> None:
        self.text_field = ctx.text_field
        their_requests, requests = os.pipe()
        replies, their_replies = os.pipe()
        # A fresh interpreter, not a fork: nothing of the caller's threads or state
        # comes along, and unlike multiprocessing's spawn it does not import the
        # caller's main module again (a script without a __main__ guard would run
        # twice). It costs the filters' imports, about a third of a second.
        package = str(Path(synth.__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package, env.get("PYTHONPATH")]))
        try:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "synth.filters.process",
                    str(their_requests),
                    str(their_replies),
                ],
                pass_fds=(their_requests, their_replies),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        finally:
            # Only the process holds its ends now: either side's exit closes the pipe.
            os.close(their_requests)
            os.close(their_replies)
        self._requests = Connection(requests, readable=False)
        self._replies = Connection(replies, writable=False)
        # One thread sends and one receives, so that a chunk waits in the pipe while
        # the last is decided, and neither blocks the event loop.
        self._sender = ThreadPoolExecutor(1, thread_name_prefix="synth-filters-send")
        self._receiver = ThreadPoolExecutor(1, thread_name_prefix="synth-filters-receive")
        self.closed = False
        try:
            self._requests.send((list(specs), ctx))
            names, eval_items = self._reply()
        except BaseException:
            self.close()
            raise
        self.names: list[str] = names
        self.eval_items: int = eval_items  # what the contamination index covers

    def prepare(self, seen: Sequence[SeenItem]) -> asyncio.Future[None]:
        """Index what the store holds, while the run sends its first calls: the first
        chunk is decided after it."""
        loop = asyncio.get_running_loop()
        self._sender.submit(self._requests.send, ("prepare", list(seen)))
        return loop.run_in_executor(self._receiver, self._reply)

    def submit(self, batch: Sequence[Candidate]) -> asyncio.Future[list[Outcome]]:
        """Decide a chunk and admit its survivors; its outcomes, when decided."""
        loop = asyncio.get_running_loop()
        candidates = list(batch)
        self._sender.submit(self._requests.send, ("filter", candidates))
        decided = loop.run_in_executor(self._receiver, self._reply)
        return asyncio.ensure_future(self._outcomes(decided, candidates))

    async def _outcomes(
        self, decided: asyncio.Future[list[list[Decision]]], candidates: list[Candidate]
    ) -> list[Outcome]:
        outcomes = []
        for candidate, decisions in zip(candidates, await decided, strict=True):
            outcome = Outcome(candidate)
            for decision in decisions:
                record(outcome, decision, self.text_field)
            outcomes.append(outcome)
        return outcomes

    def _reply(self) -> Any:
        try:
            kind, payload = self._replies.recv()
        except (EOFError, OSError):
            try:
                code = self._process.wait(EXIT_WAIT_S)
            except subprocess.TimeoutExpired:
                code = None
            # Killed from outside (the kernel's OOM killer, a person): say so in a line.
            raise SynthError("filters", f"the filter process ended (exit code {code})") from None
        if kind == "error":
            raise _rebuilt(payload)
        return payload

    def close(self) -> None:
        """End the process: it exits when it reads the end of its requests."""
        if self.closed:
            return
        self.closed = True
        self._requests.close()
        try:
            self._process.wait(EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._sender.shutdown(wait=True, cancel_futures=True)
        self._receiver.shutdown(wait=True, cancel_futures=True)
        self._replies.close()


def _serve(requests: Connection, replies: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        specs, ctx = requests.recv()
        chain = build_chain(specs, ctx)
    except Exception as e:
        replies.send(("error", _described(e)))
        return
    eval_items = sum(
        len(f.index.items) for f in chain.filters if isinstance(f, ContaminationFilter)
    )
    replies.send(("ok", (chain.names, eval_items)))
    while True:
        try:
            kind, payload = requests.recv()
        except (EOFError, OSError):
            return
        if kind == "prepare":
            try:
                chain.prepare(payload)
            except Exception as e:
                # Not half prepared: the chunks after it are not decided at all.
                replies.send(("error", _described(e)))
                return
            # What the chain holds lives as long as the process.
            collect_less()
            replies.send(("ok", None))
            continue
        try:
            outcomes = chain.decide(payload)
            chain.admit([o.candidate for o in outcomes if o.verdict is not Verdict.REJECT])
            replies.send(("ok", [o.decisions for o in outcomes]))
        except Exception as e:
            replies.send(("error", _described(e)))


def _described(error: Exception) -> tuple[str, str, str]:
    """What crosses the pipe of an error: a SynthError's class, place and message
    (its constructor takes two arguments, which pickling would not pass); of any
    other, its traceback."""
    if isinstance(error, SynthError):
        return type(error).__name__, error.where, error.message
    return "", "", "".join(traceback.format_exception(error)).rstrip()


def _rebuilt(described: tuple[str, str, str]) -> Exception:
    name, where, message = described
    kind = getattr(errors, name, None) if name else None
    if isinstance(kind, type) and issubclass(kind, SynthError):
        return kind(where, message)
    return FilterProcessError(f"the filter process failed:\n{message}")


if __name__ == "__main__":
    _serve(
        Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False)
    )
