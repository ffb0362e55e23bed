"""The filter chain's parts, and how config.toml names them.

Each module holds one filter and its ``Params`` (a ``kind`` literal plus documented
settings). ``FilterSpec`` is their tagged union, so ``[[filters]] kind = "schema"``
in config.toml validates against the right model and a typo is an error naming the key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any

from pydantic import Field

from synth.filters.base import Filter, FilterContext, FilterParams
from synth.filters.chain import FilterChain
from synth.filters.contamination import ContaminationFilter, ContaminationParams
from synth.filters.diversity import DiversityFilter, DiversityParams
from synth.filters.exact_dedup import ExactDedupFilter, ExactDedupParams
from synth.filters.near_dedup import NearDedupFilter, NearDedupParams
from synth.filters.pii import PiiFilter, PiiParams
from synth.filters.rubric import RubricParams
from synth.filters.schema import SchemaFilter, SchemaParams
from synth.records import Outcome

FilterSpec = Annotated[
    SchemaParams
    | PiiParams
    | ExactDedupParams
    | NearDedupParams
    | ContaminationParams
    | DiversityParams
    | RubricParams,
    Field(discriminator="kind"),
]

# Each filter is made from its own Params and the project context. The judge
# (RubricParams) is configured among the filters but decides from LLM replies, not
# from the batch alone: split_judge takes it out of the chain and
# synth.judge.grading.JudgeStage runs it.
FILTERS: dict[type[FilterParams], Callable[[Any, FilterContext], Filter]] = {
    SchemaParams: SchemaFilter,
    PiiParams: PiiFilter,
    ExactDedupParams: ExactDedupFilter,
    NearDedupParams: NearDedupFilter,
    ContaminationParams: ContaminationFilter,
    DiversityParams: DiversityFilter,
}


def build_chain(specs: Sequence[FilterParams], ctx: FilterContext) -> FilterChain:
    """The filters in config order."""
    return FilterChain([FILTERS[type(spec)](spec, ctx) for spec in specs], ctx.text_field)


__all__ = [
    "FILTERS",
    "Filter",
    "FilterChain",
    "FilterContext",
    "FilterParams",
    "FilterSpec",
    "Outcome",
    "build_chain",
]
