from __future__ import annotations

from collections import Counter
from dataclasses import replace

from rich.console import Console

from synth.progress import render, step_lines
from synth.records import CellKey, CellPlan
from synth.runner import Snapshot, StepReport
from synth.store import Spend


def _snap(step: StepReport | None = None) -> Snapshot:
    cells = [
        CellPlan(cell=CellKey(slice="default", label="a"), target=30, real=10, synthetic=15),
        CellPlan(cell=CellKey(slice="default", label="b"), target=30, real=30, synthetic=0),
        CellPlan(cell=CellKey(slice="urgent", label="a"), target=6, real=0, synthetic=6),
    ]
    return Snapshot(
        run_id="run_1",
        answered=40,
        spend=Spend(
            calls=40, attempts=42, prompt_tokens=9000, completion_tokens=3000, cost_usd=0.0123
        ),
        cells=cells,
        elapsed=8.0,
        step=step,
    )


def test_panel_shows_rate_tokens_cost_accepted_eta_and_open_cells():
    console = Console(record=True, width=100)
    console.print(render(_snap(), first={"default/a": 5, "urgent/a": 0}))
    text = console.export_text()
    assert "calls 40 (5.0/s)" in text and "tokens 12,000" in text and "$0.0123" in text
    # needed: 20 + 0 + 6 = 26; have 15 + 6 = 21; 16 accepted in 8 s -> 5 left take 2.5 s
    assert "accepted 21/26" in text and "ETA 0:00:02" in text
    assert "default/a" in text and "25/30" in text
    assert "urgent/a" not in text  # full cells are not listed


def test_step_lines_only_at_step_ends():
    lines: list[str] = []
    show = step_lines(lines.append)
    show(_snap())
    show(_snap(StepReport(number=2, calls=10, candidates=50, accepted=21, open_cells=1)))
    assert lines == ["batch 2: 10 calls, 50 candidates, 21 accepted; 1 cells open; $0.0123 so far"]


def test_unusable_replies_are_shown_per_cell_by_why():
    unusable = {
        CellKey(slice="default", label="a"): Counter(unparseable=3, cut_off=1),
        CellKey(slice="urgent", label="a"): Counter(context_full=5),
    }
    step = StepReport(number=1, calls=9, candidates=0, accepted=0, open_cells=2)
    snap = replace(_snap(step), unusable=unusable)
    console = Console(record=True, width=100)
    console.print(render(snap, first={}))
    text = console.export_text()
    assert "unusable replies" in text
    assert "urgent/a  context_full 5" in text
    assert "default/a  unparseable 3, cut_off 1" in text
    lines: list[str] = []
    step_lines(lines.append)(snap)
    assert lines[0].endswith(
        "; 9 replies unusable so far (context_full 5, unparseable 3, cut_off 1)"
    )
    # None unusable: nothing about them.
    console = Console(record=True, width=100)
    console.print(render(_snap(), first={}))
    assert "unusable" not in console.export_text()


def test_what_is_on_the_wire_shows_while_replies_are_awaited():
    console = Console(record=True, width=100)
    console.print(render(replace(_snap(), waiting=3, streaming=1), first={}))
    assert "in flight 4: 3 waiting for a first token, 1 streaming" in console.export_text()
    console = Console(record=True, width=100)
    console.print(render(_snap(), first={}))
    assert "in flight" not in console.export_text()  # nothing on the wire, no line


def test_step_lines_say_what_is_in_flight_after_a_quiet_spell():
    lines: list[str] = []
    show = step_lines(lines.append)
    for elapsed in (1.0, 29.0, 31.0, 45.0, 62.0):
        show(replace(_snap(), elapsed=elapsed, waiting=2, streaming=0))
    show(replace(_snap(), elapsed=62.0))  # nothing in flight: nothing to say
    assert lines == [
        "in flight 2: 2 waiting for a first token, 0 streaming",  # at 31 s
        "in flight 2: 2 waiting for a first token, 0 streaming",  # at 62 s
    ]
    show(replace(_snap(StepReport(3, 10, 50, 21, 1)), elapsed=70.0))
    show(replace(_snap(), elapsed=95.0, waiting=2))  # within 30 s of the step's line
    assert len(lines) == 3
