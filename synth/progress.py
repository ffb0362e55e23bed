"""What `synth run` and `synth filter` show while they work: a live panel or a
progress bar on a terminal, a line now and then otherwise, nothing with --quiet."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from types import TracebackType

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from synth.filtering import FilterProgress
from synth.quota import by_reason
from synth.runner import Snapshot

# The live panel lists the open cells with the largest deficits, at most this many.
SHOWN_CELLS = 8
# Without step lines for this many seconds, a line says what is on the wire.
QUIET_S = 30.0


def _eta(snap: Snapshot, accepted: int, remaining: int) -> str:
    if not remaining:
        return "done"
    if accepted <= 0 or snap.elapsed <= 0:
        return "?"
    seconds = int(remaining / (accepted / snap.elapsed))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def render(snap: Snapshot, first: dict[str, int]) -> Group:
    """The panel: totals on one line, a bar of accepted rows, the neediest cells."""
    needed = sum(max(0, c.target - c.real) for c in snap.cells)
    have = sum(min(c.synthetic, max(0, c.target - c.real)) for c in snap.cells)
    # Accepted by this invocation: what the rate and the ETA are made of.
    accepted_now = have - sum(first.get(str(c.cell), 0) for c in snap.cells)
    rate = snap.answered / snap.elapsed if snap.elapsed > 0 else 0.0
    s = snap.spend
    head = Text.assemble(
        ("calls ", "bold"),
        f"{snap.answered:,} ({rate:.1f}/s)  ",
        ("tokens ", "bold"),
        f"{s.prompt_tokens + s.completion_tokens:,}  ",
        ("cost ", "bold"),
        f"${s.cost_usd:.4f}  ",
        ("accepted ", "bold"),
        f"{have:,}/{needed:,}  ",
        ("ETA ", "bold"),
        _eta(snap, accepted_now, needed - have),
    )
    if snap.waiting or snap.streaming:
        head.append_text(Text.assemble("\n", ("in flight ", "bold"), _on_the_wire(snap)))
    table = Table(box=None, pad_edge=False, show_header=True, header_style="dim")
    table.add_column("cell")
    table.add_column("rows", justify="right")
    table.add_column("", width=30)
    open_cells = sorted((c for c in snap.cells if c.deficit), key=lambda c: -c.deficit)
    for c in open_cells[:SHOWN_CELLS]:
        table.add_row(
            str(c.cell),
            f"{c.real + c.synthetic}/{c.target}",
            ProgressBar(total=max(1, c.target), completed=c.real + c.synthetic, width=30),
        )
    if len(open_cells) > SHOWN_CELLS:
        table.add_row(f"... {len(open_cells) - SHOWN_CELLS} more open cells", "", "")
    bar = ProgressBar(total=max(1, needed), completed=have)
    return Group(head, bar, table, *_unusable(snap))


def _unusable(snap: Snapshot) -> list[Text]:
    """Replies that brought nothing usable, per cell, by why: what "0 candidates"
    would otherwise leave unexplained."""
    cells = sorted(snap.unusable.items(), key=lambda kv: -sum(kv[1].values()))
    if not cells:
        return []
    lines = [Text("unusable replies", style="bold")]
    for cell, counts in cells[:SHOWN_CELLS]:
        lines.append(Text(f"  {cell}  {by_reason(counts)}"))
    if len(cells) > SHOWN_CELLS:
        lines.append(Text(f"  ... {len(cells) - SHOWN_CELLS} more cells"))
    return lines


class LiveProgress:
    """A rich Live panel, redrawn at most a few times a second."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.live = Live(console=self.console, refresh_per_second=4, transient=False)
        self.first: dict[str, int] | None = None

    def __call__(self, snap: Snapshot) -> None:
        if self.first is None:
            self.first = {str(c.cell): c.synthetic for c in snap.cells}
        self.live.update(render(snap, self.first))

    def note(self, line: str) -> None:
        """A line above the panel (the run's notices before its first reply)."""
        self.console.print(line, markup=False, highlight=False)

    def __enter__(self) -> LiveProgress:
        self.live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.live.stop()


def _on_the_wire(snap: Snapshot) -> str:
    return (
        f"{snap.waiting + snap.streaming}: {snap.waiting} waiting for a first token,"
        f" {snap.streaming} streaming"
    )


def step_lines(echo: Callable[[str], None]) -> Callable[[Snapshot], None]:
    """One line per step, for logs and pipes; on a slow server, a line every
    ``QUIET_S`` seconds without one says what is in flight."""
    said = 0.0  # run time of the last line

    def show(snap: Snapshot) -> None:
        nonlocal said
        step = snap.step
        if step is None:
            if snap.elapsed - said >= QUIET_S and (snap.waiting or snap.streaming):
                said = snap.elapsed
                echo(f"in flight {_on_the_wire(snap)}")
            return
        said = snap.elapsed
        open_cells = sum(1 for c in snap.cells if c.deficit)
        # Worded "batch" still: logs and scripts read these lines.
        echo(
            f"batch {step.number}: {step.calls} calls, {step.candidates} candidates,"
            f" {step.accepted} accepted; {open_cells} cells open;"
            f" ${snap.spend.cost_usd:.4f} so far{_unusable_so_far(snap)}"
        )

    return show


def _unusable_so_far(snap: Snapshot) -> str:
    """ "; 5 replies unusable so far (unparseable 3, cut_off 2)", or nothing."""
    reasons: Counter[str] = Counter()
    for counts in snap.unusable.values():
        reasons.update(counts)
    if not reasons:
        return ""
    return f"; {sum(reasons.values())} replies unusable so far ({by_reason(reasons)})"


class FilterBar:
    """`synth filter` on a terminal: a bar of rows, their rate, kept and rejected so
    far, the time left."""

    def __init__(self, console: Console | None = None) -> None:
        self.progress = Progress(
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:,.0f}/s"),
            TextColumn("kept {task.fields[kept]:,} rejected {task.fields[rejected]:,}"),
            TextColumn("{task.fields[stored]}"),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            refresh_per_second=4,
        )
        self.task: TaskID | None = None

    def __call__(self, p: FilterProgress) -> None:
        stored = f"stored before {p.already_stored:,}" if p.already_stored else ""
        if self.task is None:
            self.task = self.progress.add_task(
                "filter", total=p.total, rate=0.0, kept=0, rejected=0, stored=""
            )
        self.progress.update(
            self.task,
            completed=p.done,
            rate=p.rate,
            kept=p.kept,
            rejected=p.rejected,
            stored=stored,
        )

    def __enter__(self) -> FilterBar:
        self.progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.stop()


def filter_lines(echo: Callable[[str], None], parts: int = 10) -> Callable[[FilterProgress], None]:
    """A line each time another ``1/parts`` of the file is done, and at the end, for
    logs and pipes."""
    shown = 0

    def show(p: FilterProgress) -> None:
        nonlocal shown
        step = p.done * parts // max(1, p.total)
        if step <= shown and p.done < p.total:
            return
        shown = step
        echo(
            f"filter: {p.done:,}/{p.total:,} rows, {p.rate:,.0f} rows/s; kept {p.kept:,},"
            f" rejected {p.rejected:,}, review {p.review:,}, stored before {p.already_stored:,}"
        )

    return show
