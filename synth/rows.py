"""Browsing stored rows: ``synth rows``, the way to find an id for ``synth show``."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass

from synth.errors import SynthError
from synth.records import Source, Status
from synth.store import Store
from synth.store.rows import ListedRow, RowQuery

STATUSES = tuple(s.value for s in Status)
SOURCES = tuple(s.value for s in Source)


@dataclass(frozen=True)
class RowList:
    rows: list[ListedRow]
    total: int  # rows the query matches, beyond the limit too


def row_query(
    *,
    cell: str | None = None,
    slice_: str | None = None,
    label: str | None = None,
    statuses: Sequence[str] = (),
    source: str | None = None,
    filter_name: str | None = None,
    reason: str | None = None,
    limit: int | None = 50,
) -> RowQuery:
    """A query from the command's options; ``cell`` is ``SLICE/LABEL`` and sets both."""
    if cell is not None:
        if cell.count("/") != 1 or not all(cell.split("/")):
            raise SynthError("--cell", f"{cell!r} is not SLICE/LABEL (e.g. default/card_arrival)")
        cell_slice, cell_label = cell.split("/")
        if (slice_ or cell_slice) != cell_slice or (label or cell_label) != cell_label:
            raise SynthError("--cell", f"{cell} contradicts --slice/--label")
        slice_, label = cell_slice, cell_label
    for s in statuses:
        if s not in STATUSES:
            raise SynthError("--status", f"{s!r} is not one of {', '.join(STATUSES)}")
    if source is not None and source not in SOURCES:
        raise SynthError("--source", f"{source!r} is not one of {', '.join(SOURCES)}")
    if limit is not None and limit < 0:
        raise SynthError("--limit", "must be 0 or more")
    return RowQuery(
        slice=slice_,
        label=label,
        statuses=tuple(statuses),
        source=source,
        filter=filter_name,
        reason=reason,
        limit=limit,
    )


def list_rows(store: Store, query: RowQuery) -> RowList:
    """The rows ``query`` matches, oldest first, with how many match in all."""
    rows, total = store.reports.rows(query)
    return RowList(rows, total)


def render_rows(found: RowList, width: int | None = None) -> str:
    """One line per row (id, source, status, cell, text cut to the terminal), the
    reason under a row the chain did not keep, then how many were shown."""
    width = width or shutil.get_terminal_size((100, 24)).columns
    out = []
    for r in found.rows:
        head = f"{r['id']}  {r['source']:9}  {r['status']:15}  {r['slice']}/{r['label']}  "
        text = " ".join(r["text"].split())
        room = max(20, width - len(head))
        out.append(head + (text if len(text) <= room else text[: room - 3] + "..."))
        if r["why"]:
            out.append(f"    {r['why']}")
    shown = len(found.rows)
    if found.total > shown:
        out.append(f"{shown} of {found.total} matching rows shown (--limit to see more)")
    else:
        out.append(f"{found.total} matching rows")
    return "\n".join(out)
