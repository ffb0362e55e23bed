"""Deficits per cell (slice x label): what the run must generate, before any call.

- Label targets (class balance) apply to the default slice: ``match_max`` raises every
  label to the largest label's count of real rows, ``uniform`` to ``per_label``,
  ``explicit`` to the counts named (other labels get no target).
- A named slice has its own target, split evenly over its labels (the first labels
  take the remainder). A missing slice is a named slice with no real rows.
- deficit = target - real - accepted synthetic.
"""

from __future__ import annotations

from synth.config import WHOLE_SLICE, Config
from synth.records import DEFAULT_SLICE, CellKey, CellPlan


def all_labels(config: Config, counts: dict[CellKey, tuple[int, int]]) -> list[str]:
    """The declared labels, else every label the seeds, targets and slices name (a
    schema without cell fields has one cell per slice)."""
    if not config.data_schema.cell_fields:
        return [WHOLE_SLICE]
    if config.data_schema.labels:
        return list(config.data_schema.labels)
    found = {cell.label for cell in counts}
    found |= set(config.targets.counts)
    for s in config.slices:
        found |= set(s.labels)
    return sorted(found)


def plan_cells(config: Config, counts: dict[CellKey, tuple[int, int]]) -> list[CellPlan]:
    """Every cell with a target, in a stable order: default slice first, then slices."""
    labels = all_labels(config, counts)
    plans: list[CellPlan] = []

    def real(cell: CellKey) -> int:
        return counts.get(cell, (0, 0))[0]

    def synthetic(cell: CellKey) -> int:
        return counts.get(cell, (0, 0))[1]

    targets = config.targets
    default_cells = [CellKey(slice=DEFAULT_SLICE, label=label) for label in labels]
    if targets.balance != "none":
        largest = max((real(c) for c in default_cells), default=0)
        for cell in default_cells:
            if targets.balance == "match_max":
                target = largest
            elif targets.balance == "uniform":
                target = targets.per_label or 0
            elif cell.label in targets.counts:
                target = targets.counts[cell.label]
            else:
                continue
            plans.append(
                CellPlan(cell=cell, target=target, real=real(cell), synthetic=synthetic(cell))
            )

    for s in config.slices:
        slice_labels = s.labels or labels
        if not slice_labels:
            continue
        share, extra = divmod(s.target, len(slice_labels))
        for i, label in enumerate(slice_labels):
            cell = CellKey(slice=s.name, label=label)
            plans.append(
                CellPlan(
                    cell=cell,
                    target=share + (1 if i < extra else 0),
                    real=real(cell),
                    synthetic=synthetic(cell),
                    description=s.description,
                    match=dict(s.match),
                )
            )
    return plans
