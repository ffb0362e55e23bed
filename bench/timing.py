"""Time spent in each filter, for the benches that report where a run's time goes."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from synth.filters import FILTERS


@contextmanager
def time_filters(clock: Callable[[], float] = time.perf_counter) -> Iterator[Counter[str]]:
    """Seconds by ``clock`` spent in each filter's prepare, decide and admit while the
    block runs, by filter name. Every filter class's methods are wrapped for the block
    and put back after it, so a bench can time one part and not the next."""
    spent: Counter[str] = Counter()

    def timed(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = clock()
            try:
                return method(*args, **kwargs)
            finally:
                spent[name] += clock() - t

        return wrapper

    # A method a class inherits is timed under its name too, and taken off it after.
    saved = [
        (cls, attr, cls.__dict__.get(attr))
        for cls in FILTERS.values()
        for attr in ("prepare", "decide", "admit")
    ]
    for cls, attr, _ in saved:
        setattr(cls, attr, timed(cls.name, getattr(cls, attr)))  # type: ignore[attr-defined]
    try:
        yield spent
    finally:
        for cls, attr, own in saved:
            if own is None:
                delattr(cls, attr)
            else:
                setattr(cls, attr, own)
