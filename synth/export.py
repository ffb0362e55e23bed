"""Exports of the dataset as it stands: real rows and accepted synthetic rows.

``jsonl``: one object per row, the example's fields plus a ``provenance`` block.
``chat``: OpenAI chat fine-tuning lines, the text as the user turn and the label as
the assistant's answer (the format allows no other keys, so provenance stays in the
jsonl export).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from synth.config import Config
from synth.store import Store

Format = Literal["jsonl", "chat"]


@dataclass(frozen=True)
class ExportResult:
    path: Path
    rows: int
    real: int
    synthetic: int


def export(store: Store, config: Config, out: str | Path, fmt: Format = "jsonl") -> ExportResult:
    """Write the dataset to ``out``; the file appears whole or not at all."""
    out = Path(out)
    rows = store.dataset_rows()
    schema = config.data_schema
    lines = []
    for row in rows:
        if fmt == "chat":
            record: dict[str, Any] = {
                "messages": [
                    {"role": "user", "content": row["data"][schema.text]},
                    {"role": "assistant", "content": row["data"][schema.label]},
                ]
            }
        else:
            record = {**row["data"], "provenance": _provenance(row)}
        lines.append(json.dumps(record, ensure_ascii=False))
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + ("\n" if lines else ""))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; an export is a normal file
    os.replace(tmp, out)
    real = sum(1 for r in rows if r["source"] == "real")
    return ExportResult(out, len(rows), real, len(rows) - real)


def _provenance(row: dict[str, Any]) -> dict[str, Any]:
    p: dict[str, Any] = {
        "id": row["id"],
        "source": row["source"],
        "slice": row["slice"],
        "content_sha": row["content_sha"],
    }
    if row["source"] == "real":
        p["origin"] = row["origin"]
    else:
        p.update(
            status=row["status"],
            run_id=row["run_id"],
            model=row["model"],
            template=row["template"],
            template_sha=row["template_sha"],
            llm_call_id=row["llm_call_id"],
            parent_ids=row["parent_ids"],
        )
    return p
