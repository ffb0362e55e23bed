"""Exports: of the dataset as it stands, or of a frozen version.

Formats:

``jsonl``
    One object per row: the example's fields plus a ``provenance`` block (id, source,
    slice, content sha; for a synthetic row its run, model, template and sha, call
    and parent seeds; for a version also its name and the row's split).
``chat``
    OpenAI chat fine-tuning lines (``{"messages": [...]}``, also what Hugging Face
    chat templates take), the turns built from the ``[export.chat]`` templates over
    the example's fields (by default the text as the user turn and the label as the
    assistant's answer, and no system turn), or a dialogue field as it is
    (``export.chat.messages``). The format allows no other keys, so provenance stays
    in the other formats.
``alpaca``
    Instruction-tuning lines as Stanford Alpaca's data (``{"instruction", "input",
    "output"}``), each built from the ``[export.alpaca]`` templates over the fields.
``dpo``
    Preference pairs (``prompt``, ``chosen``, ``rejected``, with the ids of the prompt
    row and of both sides): ``synth.pairs``.
``csv``
    The example's fields (schema order, then any others), then the provenance
    columns; ``parent_ids`` as a JSON list; lines end in CRLF (RFC 4180). A text cell
    starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading
    ``'`` (OWASP's advice on CSV injection): a spreadsheet would run it as a formula.
    JSONL is written as is.

Parquet is not offered: it would add pyarrow (about 100 MB installed) for files that
pandas, polars and ``datasets`` read from JSONL or CSV as they are.

A version's export gets its manifest beside it (``data.jsonl`` ->
``data.jsonl.manifest.json``): the data card stored at the freeze plus what this file
holds. Both are written from the frozen rows only, so exporting a version again,
whatever happened to the live rows since, gives the same bytes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from synth.config import Config
from synth.errors import ConfigError
from synth.messages import is_dialogue
from synth.outfiles import write_text
from synth.store import Store

Format = Literal["jsonl", "chat", "alpaca", "csv"]
FORMATS: tuple[str, ...] = ("jsonl", "chat", "alpaca", "csv")
PROVENANCE_COLUMNS = (
    "id",
    "source",
    "slice",
    "split",
    "status",
    "model",
    "template",
    "template_sha",
    "run_id",
    "llm_call_id",
    "parent_ids",
    "origin",
    "content_sha",
    "version",
)


@dataclass(frozen=True)
class ExportResult:
    path: Path
    rows: int
    real: int
    synthetic: int
    manifest: Path | None = None


def export(store: Store, config: Config, out: str | Path, fmt: Format = "jsonl") -> ExportResult:
    """Write the dataset as it stands to ``out``; the file appears whole or not at all."""
    rows = [
        {"data": r["data"], "source": r["source"], "provenance": _provenance(r)}
        for r in store.examples.dataset()
    ]
    out = Path(out)
    write_text(out, _render(rows, config, fmt))
    return _result(out, rows)


def export_version(
    store: Store,
    config: Config,
    name: str,
    out: str | Path,
    fmt: Format = "jsonl",
    split: str | None = None,
) -> ExportResult:
    """Write frozen version ``name`` (or one ``split`` of it) to ``out``, with its
    manifest beside it; byte-identical however often it is run."""
    from synth.versions import SPLITS, version_rows

    if split is not None and split not in SPLITS:
        raise ConfigError("--split", f"{split!r} is not one of {', '.join(SPLITS)}")
    manifest, items = version_rows(store, name)
    rows = [
        {"data": it["data"], "source": it["source"], "provenance": _frozen_provenance(it, name)}
        for it in items
        if split is None or it["split"] == split
    ]
    out = Path(out)
    body = _render(rows, config, fmt)
    card = {
        **manifest,
        "export": {
            "file": out.name,
            "format": fmt,
            "split": split,
            "rows": len(rows),
            "sha256": hashlib.sha256(body.encode("utf-8")).hexdigest(),
        },
    }
    manifest_path = out.with_name(f"{out.name}.manifest.json")
    write_text(out, body)
    write_text(manifest_path, json.dumps(card, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    result = _result(out, rows)
    return ExportResult(result.path, result.rows, result.real, result.synthetic, manifest_path)


def _result(out: Path, rows: Sequence[dict[str, Any]]) -> ExportResult:
    real = sum(1 for r in rows if r["source"] == "real")
    return ExportResult(out, len(rows), real, len(rows) - real)


def _render(rows: Sequence[dict[str, Any]], config: Config, fmt: Format) -> str:
    if fmt == "chat":
        lines = [json.dumps(chat_record(r["data"], config), ensure_ascii=False) for r in rows]
    elif fmt == "alpaca":
        lines = [json.dumps(alpaca_record(r["data"], config), ensure_ascii=False) for r in rows]
    elif fmt == "csv":
        return _csv(rows, config)
    elif fmt == "jsonl":
        lines = [
            json.dumps({**r["data"], "provenance": r["provenance"]}, ensure_ascii=False)
            for r in rows
        ]
    else:
        raise ConfigError("--format", f"{fmt!r} is not one of {', '.join(FORMATS)}")
    return "\n".join(lines) + ("\n" if lines else "")


def chat_record(data: dict[str, Any], config: Config) -> dict[str, Any]:
    """One chat fine-tuning line from an example, by the ``[export.chat]`` templates."""
    mapping = config.export.chat
    if mapping.messages:
        return {"messages": _dialogue(data, config)}
    messages = []
    for role in ("system", "user", "assistant"):
        template = getattr(mapping, role)
        if role == "system" and not template:
            continue
        messages.append({"role": role, "content": fill_template(template, data, config, role)})
    return {"messages": messages}


def _dialogue(data: dict[str, Any], config: Config) -> list[dict[str, str]]:
    """The dialogue field named by ``export.chat.messages``, with ``system`` first
    when set and the dialogue has no system message of its own."""
    mapping = config.export.chat
    value = data.get(mapping.messages)
    if not is_dialogue(value):
        raise ConfigError(
            f"{config.source.name}: export.chat.messages",
            f"{mapping.messages!r} is not a dialogue field of the examples",
        )
    turns = [{"role": str(m["role"]), "content": str(m["content"])} for m in value]
    if mapping.system and turns[0]["role"] != "system":
        turns.insert(
            0, {"role": "system", "content": fill_template(mapping.system, data, config, "system")}
        )
    return turns


def alpaca_record(data: dict[str, Any], config: Config) -> dict[str, str]:
    """One Alpaca line from an example, by the ``[export.alpaca]`` templates."""
    mapping = config.export.alpaca
    return {
        key: fill_template(getattr(mapping, key), data, config, key, "alpaca")
        for key in ("instruction", "input", "output")
    }


def fill_template(
    template: str, data: dict[str, Any], config: Config, role: str, section: str = "chat"
) -> str:
    """``template`` (an ``[export.SECTION]`` key's) over an example's fields; an
    unknown field is an error naming the key."""
    where = f"{config.source.name}: export.{section}.{role}"
    names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    for name in names:
        if name not in data:
            raise ConfigError(where, f"{{{name}}} is not a field of the examples")
    try:
        filled = template.format_map(data)
    except (ValueError, IndexError, AttributeError, KeyError) as e:
        raise ConfigError(where, f"not a valid template: {e}") from None
    # An optional field left empty leaves no blank lines behind ("{instruction}\n\n
    # {input}" with no input is the instruction alone).
    if any(data.get(name) in ("", None) for name in names):
        return filled.strip()
    return filled


def _csv(rows: Sequence[dict[str, Any]], config: Config) -> str:
    fields = list(config.data_schema.fields)
    extra = sorted({k for r in rows for k in r["data"]} - set(fields))
    buf = io.StringIO()
    # RFC 4180's CRLF: with a bare "\n" the writer leaves a "\r" inside a text
    # unquoted, and readers then split the row there.
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([*fields, *extra, *PROVENANCE_COLUMNS])
    for r in rows:
        p = r["provenance"]
        cells = [r["data"].get(f, "") for f in (*fields, *extra)]
        for col in PROVENANCE_COLUMNS:
            value = p.get(col)
            cells.append(json.dumps(value) if isinstance(value, list | dict) else value)
        writer.writerow([_cell(v) for v in cells])
    return buf.getvalue()


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: generated and seed text is untrusted,
    and ``=HYPERLINK(...)`` in a cell is a link the opener's spreadsheet follows."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _provenance(row: Mapping[str, Any]) -> dict[str, Any]:
    p: dict[str, Any] = {
        "id": row["id"],
        "source": row["source"],
        "slice": row["slice"],
        "content_sha": row["content_sha"],
    }
    if row["source"] != "real":
        p["status"] = row["status"]
    p.update(row["lineage"].as_dict())
    return p


def _frozen_provenance(item: Mapping[str, Any], version: str) -> dict[str, Any]:
    p: dict[str, Any] = {
        "id": item["example_id"],
        "source": item["source"],
        "slice": item["slice"],
        "content_sha": item["content_sha"],
        "version": version,
        "split": item["split"],
    }
    if item["source"] != "real":
        p["status"] = item["status"]
    p.update(item["lineage"])
    return p
