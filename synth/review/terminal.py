"""Review in a terminal (``synth review next``), for people on SSH: the same rows,
context and decisions as the web page, one prompt at a time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from synth.config import Config
from synth.review import ReviewError
from synth.review.queue import decide, item_view, next_item, progress
from synth.store import Store

Ask = Callable[[str, str], str]  # (prompt, default) -> answer
Say = Callable[[str], None]

KEYS = "[a]pprove  [r]eject  [e]dit  [s]kip  [q]uit"
BACK = "q"  # typed as the new text: leave the edit, back to the choices


def ask_prefilled(prompt: str, default: str) -> str:
    """A line read with ``default`` already typed in, to edit in place (readline), so
    a refused edit is corrected rather than typed again."""
    import readline

    readline.set_startup_hook(lambda: readline.insert_text(default))
    try:
        return input(f"{prompt}: ")
    finally:
        readline.set_startup_hook()


def render_item(view: dict[str, Any], config: Config, cells: list[Any]) -> str:
    """One row as plain text: the row, its seeds, template, filter decisions, the
    judge's rationales and the progress per cell."""
    ex = view["example"]
    q = view["queue"] or {}
    why = "held by a filter" if q.get("reason") == "filter" else "sampled"
    if q.get("reviews_needed", 1) > 1:
        why += f", double review {len(q['reviewers'])}/{q['reviews_needed']}"
    text_field = config.data_schema.text
    lines = [
        f"── {ex['slice']}/{ex['label']} · {why} · {ex['id']}",
        "",
        f"  {ex['data'].get(text_field, ex['text'])}",
        "",
    ]
    others = {k: v for k, v in sorted(ex["data"].items()) if k != text_field}
    if others:
        lines.append("  fields: " + ", ".join(f"{k}={v}" for k, v in others.items()))
    if view["seeds"]:
        lines.append("  made from:")
        lines += [f"    - {s['text']}  ({s['slice']}/{s['label']})" for s in view["seeds"]]
    sha = (ex["template_sha"] or "")[:12]
    lines.append(f"  template: {ex['template'] or '-'} ({sha or '-'}), model {ex['model'] or '-'}")
    for d in view["decisions"]:
        score = "" if d["score"] is None else f" {d['score']:.3f}"
        reason = f" ({d['reason']})" if d["reason"] else ""
        lines.append(f"  filter {d['filter']}: {d['verdict']}{score}{reason}")
    for j in view["judge"]:
        score = "-" if j["score"] is None else f"{j['score']:g}"
        lines.append(f"  judge {j['criterion']}: {score}  {j['rationale']}")
    lines.append("  progress: " + ", ".join(f"{c.cell} {c.done}/{c.items}" for c in cells))
    return "\n".join(lines)


def review_in_terminal(
    store: Store,
    config: Config,
    reviewer: str,
    *,
    ask: Ask,
    say: Say,
    limit: int | None = None,
    edit: Ask | None = None,
) -> int:
    """Review rows until the queue is empty for ``reviewer``, they quit, or
    ``limit`` decisions are made; returns how many were recorded.

    At each row: ``a`` approves; ``r`` rejects, then asks for a reason by number
    (from ``review.reasons``) and an optional note; ``e`` asks for the new text (with
    ``edit``, default ``ask``, the current text its default) and approves the edited
    row; ``s`` skips it until the command ends; ``q`` stops. An edit the chain's
    checks refuse is not the end of anything: the reason is said and the text asked
    for again, what was typed its default, until it passes or ``q`` leaves the edit.
    """
    edit = edit or ask
    reasons = config.review.reasons
    skipped: list[str] = []
    made = 0
    while limit is None or made < limit:
        example_id = next_item(store, config.review, reviewer, skipped)
        if example_id is None:
            say("nothing left for you to review")
            break
        say(render_item(item_view(store, example_id), config, progress(store.reviews.queue())))
        choice = ask(KEYS, "a").strip().lower()[:1]
        if choice == "q":
            break
        if choice == "s":
            skipped.append(example_id)
            continue
        if choice == "a":
            decide(store, config, example_id, reviewer, "approve", origin="terminal")
        elif choice == "r":
            say("  " + "  ".join(f"{i}) {r}" for i, r in enumerate(reasons, 1)))
            picked = ask("reason", "")
            while not (picked.isdigit() and 1 <= int(picked) <= len(reasons)):
                picked = ask(f"reason: a number from 1 to {len(reasons)}", "")
            note = ask("note (optional)", "")
            decide(
                store,
                config,
                example_id,
                reviewer,
                "reject",
                reason=reasons[int(picked) - 1],
                note=note,
                origin="terminal",
            )
        elif choice == "e":
            if not _edit(store, config, example_id, reviewer, edit, say):
                continue
        else:
            say(f"  {KEYS}")
            continue
        made += 1
    return made


def _edit(
    store: Store, config: Config, example_id: str, reviewer: str, edit: Ask, say: Say
) -> bool:
    """Ask for the new text until the edit is recorded (True) or left (False)."""
    text = item_view(store, example_id)["example"]["text"]
    prompt = "new text"
    while True:
        text = edit(prompt, text)
        if text.strip() == BACK:
            return False
        try:
            decide(store, config, example_id, reviewer, "edit", text=text, origin="terminal")
            return True
        except ReviewError as e:
            say(f"  refused: {e.message}")
            prompt = f"new text ({BACK}: back to the choices)"
