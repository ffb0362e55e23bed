"""Preference pairs out of the store: the DPO format.

One line per pair whose prompt row is in the dataset and whose score gap reaches
``pairs.min_gap``: ``prompt`` (from the ``[export.dpo]`` template over the row's
fields), ``chosen`` and ``rejected`` (the two responses as they are), the row ids of
the prompt and of both sides, their judge scores and the gap. The keys TRL's
``DPOTrainer`` and most DPO recipes read are the first three; the ids lead back to
each side's lineage with ``synth show``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from synth.config import Config
from synth.errors import ConfigError
from synth.export import ExportResult, fill_template
from synth.outfiles import write_text
from synth.store import Store
from synth.store.pairs import PairData


def dpo_record(pair: PairData, config: Config) -> dict[str, Any]:
    """One DPO line."""
    field = config.pairs.field
    prompt = fill_template(config.export.dpo.prompt, pair["prompt"], config, "prompt", "dpo")
    return {
        "prompt": prompt,
        "chosen": pair["chosen"][field],
        "rejected": pair["rejected"][field],
        "prompt_id": pair["prompt_id"],
        "chosen_id": pair["chosen_id"],
        "rejected_id": pair["rejected_id"],
        "chosen_score": round(pair["chosen_score"], 4),
        "rejected_score": round(pair["rejected_score"], 4),
        "score_gap": round(pair["gap"], 4),
    }


def export_pairs(store: Store, config: Config, out: str | Path) -> ExportResult:
    """Write the dataset's preference pairs to ``out``; the file appears whole or not
    at all. Every side is a generated row, so all of them count as synthetic."""
    if not config.pairs.responses:
        raise ConfigError(
            f"{config.source.name}: pairs.responses",
            "no preference pairs are made: set pairs.responses = 2 (or more) and run",
        )
    pairs = store.pairs.dataset(config.pairs.min_gap)
    lines = [json.dumps(dpo_record(p, config), ensure_ascii=False) for p in pairs]
    out = Path(out)
    write_text(out, "\n".join(lines) + ("\n" if lines else ""))
    return ExportResult(out, len(lines), 0, len(lines))
