"""The review queue out to Label Studio and Argilla, and their results back in.

**Label Studio.** ``export_label_studio`` writes the open part of the queue as tasks
in Label Studio's JSON import format (``[{"data": {...}}]``, the row id in
``data.example_id``) and, beside it, the labeling config to paste into the project's
Labeling Interface: ``verdict`` (approve / reject), ``reason`` (the reject tags of
``review.reasons``), ``edited`` (a corrected text, approved as an edit) and
``note``. ``import_label_studio`` reads Label Studio's JSON export of the annotated
tasks: each task's ``annotations[].result[]`` items (``from_name``, ``to_name``,
``type``, ``value``), one review per annotation, the reviewer being
``label-studio:<completed_by>`` (the user's email when the export carries it).
Cancelled (skipped) annotations are not reviews.

**Argilla.** ``export_argilla`` writes records as Argilla 2.x's
``dataset.records.to_json`` does (``id`` = the row id, ``fields``, ``metadata``,
``suggestions``, ``responses``, ``vectors``), to load with
``dataset.records.log(...)`` into a dataset whose settings have the text fields
``text`` and ``seeds``, a LabelQuestion ``verdict`` (approve, reject), a
LabelQuestion ``reason`` (the tags, not required) and TextQuestions ``edited`` and
``note`` (not required) (README, "Human review"). ``import_argilla`` reads the same
shape back; ``responses`` map each question to ``[{"value", "user_id"}]`` and the
reviewer is ``argilla:<user_id>``. Responses whose ``status`` is given and is not
``submitted`` (drafts, discarded) are not reviews.

Imports check the whole file first and store every review in one transaction: a bad
task names the file and the task (``export.json: task[3] (id 17): ...``) and stores
nothing. A review already stored (same row, same reviewer) is skipped, so importing
a file twice adds nothing.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from synth.config import Config
from synth.datafiles import read_json_list
from synth.review import ReviewError
from synth.review.queue import build_review, enroll, item_view, quota_targets
from synth.store import NewReview, Store


@dataclass(frozen=True)
class ExportResult:
    path: Path
    items: int
    labeling_config: Path | None = None


@dataclass(frozen=True)
class ImportResult:
    path: Path
    added: int
    duplicates: int


def _open_items(store: Store, config: Config) -> list[dict[str, Any]]:
    """Queued rows still short of the reviews they need, with all their context."""
    enroll(store, config.review)
    out = []
    for q in store.reviews.queue():
        if len(q["reviewers"]) >= q["reviews_needed"]:
            continue
        view = item_view(store, q["example_id"])
        ex = view["example"]
        text = ex["data"].get(config.data_schema.text, ex["text"])
        seeds = "\n".join(f"- {s['text']} ({s['slice']}/{s['label']})" for s in view["seeds"])
        filters = "; ".join(
            f"{d['filter']}: {d['verdict']}" + (f" ({d['reason']})" if d["reason"] else "")
            for d in view["decisions"]
        )
        judge = "; ".join(f"{j['criterion']} {j['score']}: {j['rationale']}" for j in view["judge"])
        out.append(
            {
                "example_id": ex["id"],
                "text": text,
                "slice": ex["slice"],
                "label": ex["label"],
                "cell": f"{ex['slice']}/{ex['label']}",
                "seeds": seeds or "(none)",
                "filters": filters,
                "judge": judge,
                "template": ex["template"] or "",
                "template_sha": ex["template_sha"] or "",
                "queued_because": q["reason"],
                "reviews_needed": q["reviews_needed"],
            }
        )
    return out


def _write_json(path: Path, value: Any) -> None:
    """Written to a temporary file and renamed, so a failed export leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def labeling_config(reasons: list[str]) -> str:
    """The Label Studio labeling config the exported tasks are made for."""
    tags = "\n".join(f"      <Choice value={quoteattr(r)}/>" for r in reasons)
    return f"""<View>
  <Header value="$cell"/>
  <Text name="text" value="$text"/>
  <Header value="Made from these seeds" size="6"/>
  <Text name="seeds" value="$seeds"/>
  <Header value="Filters: $filters" size="6"/>
  <Choices name="verdict" toName="text" choice="single" showInline="true" required="true">
    <Choice value="approve"/>
    <Choice value="reject"/>
  </Choices>
  <View visibleWhen="choice-selected" whenTagName="verdict" whenChoiceValue="reject">
    <Choices name="reason" toName="text" choice="single" showInline="true">
{tags}
    </Choices>
  </View>
  <TextArea name="edited" toName="text" maxSubmissions="1" editable="true"
            placeholder="corrected text (approves the edited row)"/>
  <TextArea name="note" toName="text" maxSubmissions="1" editable="true" placeholder="note"/>
</View>
"""


def export_label_studio(store: Store, config: Config, out: Path) -> ExportResult:
    """Write the open queue as Label Studio tasks to ``out`` and the labeling config
    beside it (``<out stem>.label_config.xml``)."""
    items = _open_items(store, config)
    _write_json(out, [{"data": item} for item in items])
    xml = out.with_name(f"{out.stem}.label_config.xml")
    xml.write_text(labeling_config(list(config.review.reasons)), encoding="utf-8")
    return ExportResult(out, len(items), xml)


def export_argilla(store: Store, config: Config, out: Path) -> ExportResult:
    """Write the open queue as Argilla records (the shape of ``records.to_json``)."""
    records = [
        {
            "id": item["example_id"],
            "fields": {"text": item["text"], "seeds": item["seeds"]},
            "metadata": {
                "slice": item["slice"],
                "label": item["label"],
                "queued_because": item["queued_because"],
                "reviews_needed": item["reviews_needed"],
                "template_sha": item["template_sha"],
            },
            "suggestions": {},
            "responses": {},
            "vectors": {},
            "status": "pending",
            "_server_id": None,
        }
        for item in _open_items(store, config)
    ]
    _write_json(out, records)
    return ExportResult(out, len(records))


def _decision(
    config: Config,
    store: Store,
    where: str,
    example_id: str,
    reviewer: str,
    answers: dict[str, str],
    origin: str,
) -> NewReview:
    verdict = answers.get("verdict", "")
    if verdict not in ("approve", "reject"):
        raise ReviewError(where, f"verdict {verdict!r}: expected approve or reject")
    edited = answers.get("edited", "").strip()
    action = "reject" if verdict == "reject" else ("edit" if edited else "approve")
    return build_review(
        config,
        store,
        example_id,
        reviewer,
        action,
        answers.get("reason") or None,
        answers.get("note"),
        edited,
        origin,
        where=where,
    )


def _check_queued(store: Store, where: str, example_id: Any, queued: set[str]) -> str:
    if not isinstance(example_id, str) or not example_id:
        raise ReviewError(where, "no example id (data.example_id / id)")
    if example_id not in queued:
        raise ReviewError(where, f"{example_id} is not in this project's review queue")
    return example_id


def _ls_value(item: dict[str, Any]) -> str:
    value = item.get("value") or {}
    kind = item.get("type")
    if kind == "choices":
        return ", ".join(value.get("choices") or [])
    if kind == "textarea":
        return "\n".join(value.get("text") or [])
    raise ValueError(f"result type {kind!r} (expected choices or textarea)")


def _ls_reviewer(annotation: dict[str, Any]) -> str:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        return str(who.get("email") or f"label-studio:{who.get('id')}")
    if who is None:
        raise ValueError("no completed_by")
    return f"label-studio:{who}"


def import_label_studio(store: Store, config: Config, path: Path) -> ImportResult:
    """Store the reviews in a Label Studio JSON export of annotated tasks."""
    tasks = read_json_list(path, ReviewError, "a Label Studio JSON export (a list of tasks)")
    enroll(store, config.review)
    queued = {q["example_id"] for q in store.reviews.queue()}
    reviews: list[NewReview] = []
    for i, task in enumerate(tasks):
        where = f"{path.name}: task[{i}]"
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise ReviewError(where, "a task is an object with a data object")
        where += f" (id {task.get('id')})" if "id" in task else ""
        example_id = _check_queued(store, where, task["data"].get("example_id"), queued)
        for j, annotation in enumerate(task.get("annotations") or []):
            at = f"{where}: annotations[{j}]"
            if annotation.get("was_cancelled"):
                continue
            try:
                reviewer = _ls_reviewer(annotation)
                answers = {r["from_name"]: _ls_value(r) for r in annotation.get("result") or []}
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise ReviewError(at, f"not a Label Studio annotation: {e}") from None
            reviews.append(
                _decision(config, store, at, example_id, reviewer, answers, "label-studio")
            )
    added, duplicates = store.reviews.add(reviews, quota_targets(config, store))
    return ImportResult(path, added, duplicates)


def import_argilla(store: Store, config: Config, path: Path) -> ImportResult:
    """Store the reviews in Argilla records (``records.to_json``'s shape)."""
    records = read_json_list(path, ReviewError, "Argilla records (a list of records)")
    enroll(store, config.review)
    queued = {q["example_id"] for q in store.reviews.queue()}
    reviews: list[NewReview] = []
    for i, record in enumerate(records):
        where = f"{path.name}: record[{i}]"
        if not isinstance(record, dict):
            raise ReviewError(where, "a record is an object")
        example_id = _check_queued(store, where, record.get("id"), queued)
        by_user: dict[str, dict[str, str]] = defaultdict(dict)
        try:
            for question, answers in (record.get("responses") or {}).items():
                for a in answers:
                    if a.get("status", "submitted") != "submitted":
                        continue
                    value = a["value"]
                    text = ", ".join(value) if isinstance(value, list) else str(value)
                    by_user[str(a["user_id"])][question] = text
        except (KeyError, TypeError, AttributeError) as e:
            raise ReviewError(where, f"responses: not Argilla responses: {e}") from None
        for user, answers in by_user.items():
            reviewer = f"argilla:{user}"
            reviews.append(
                _decision(
                    config, store, f"{where}: {reviewer}", example_id, reviewer, answers, "argilla"
                )
            )
    added, duplicates = store.reviews.add(reviews, quota_targets(config, store))
    return ImportResult(path, added, duplicates)
