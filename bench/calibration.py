"""The similarity filters of config.toml on real BANKING77 rows, calibrated on seeds.

    python bench/calibration.py [--data ../shared/data] [--mixed] [--frontier]

The chain of config.toml without the judge, prepared with the demo's 171 seeds (the
first BANKING77 train rows of eight intents), decides sets of rows, each in a batch
of its own (``--mixed``: all sets shuffled into one batch):

- fresh: 150 real train messages of the same intents, none a seed (should be kept);
- templated: 80 other real messages, 10 per intent, each behind one long opening, as
  a generation template writes them (should be kept);
- exact copies of seeds, near copies (5-15 % token edits) in their own cell and under
  another intent, eval items (``seeds/eval.jsonl``) verbatim and with one word edited,
  rows with a card number (should all be caught).

Each line gives the share flagged (rejected, or sent to review, or for PII redacted)
and by which filter. ``--frontier`` repeats the fresh, templated and near-copy sets
under other quantiles: the trade-off the README's filter-chain section tabulates.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from synth.config import load_config  # noqa: E402
from synth.filters import FilterChain, build_chain  # noqa: E402
from synth.filters.rubric import split_judge  # noqa: E402
from synth.records import Candidate, CellKey, Outcome, SeenItem, Source, Verdict  # noqa: E402

OPENER = (
    "Hello, I am a long-time customer of your bank and I have a quick question about my"
    " account, I hope you can help me: "
)


def edit(text: str, rng: random.Random, vocab: list[str], share: float) -> str:
    """Substitute, delete or insert ``share`` of the words (at least one)."""
    words = text.split()
    for _ in range(max(1, round(share * len(words)))):
        op = rng.choice(("sub", "del", "ins"))
        i = rng.randrange(len(words))
        if op == "sub":
            words[i] = rng.choice(vocab)
        elif op == "del" and len(words) > 3:
            del words[i]
        else:
            words.insert(i, rng.choice(vocab))
    return " ".join(words)


def row_sets(data: Path, seed: int = 0) -> tuple[list[dict[str, str]], dict[str, list[Any]]]:
    rng = random.Random(seed)
    seeds = [json.loads(line) for line in (ROOT / "seeds" / "banking.jsonl").open()]
    evals = [json.loads(line) for line in (ROOT / "seeds" / "eval.jsonl").open()]
    labels = sorted({s["label"] for s in seeds})
    taken = {s["text"] for s in seeds}
    with open(data / "banking77" / "train.csv", newline="", encoding="utf-8") as fh:
        pool = [
            (r["text"].strip(), r["category"])
            for r in csv.DictReader(fh)
            if r["category"] in labels and r["text"].strip() not in taken
        ]
    rng.shuffle(pool)
    by = {label: [p for p in pool if p[1] == label] for label in labels}
    fresh = [row for label in labels for row in by[label][:19]][:150]
    templated = [(OPENER + t, label) for label in labels for t, _ in by[label][19:29]]
    vocab = [w for s in seeds for w in s["text"].split()]
    near_other = []
    for s in rng.sample(seeds, 40):
        other = rng.choice([label for label in labels if label != s["label"]])
        near_other.append((edit(s["text"], rng, vocab, rng.uniform(0.05, 0.15)), other))
    pii = [
        (f"My card number is 4111 1111 1111 1111 and {t.lower()}", label)
        for label in labels
        for t, _ in by[label][29:32]
    ][:20]
    sets = {
        "fresh": fresh,
        "templated": templated,
        "exact copies": [(s["text"], s["label"]) for s in rng.sample(seeds, 40)],
        "near copies": [
            (edit(s["text"], rng, vocab, rng.uniform(0.05, 0.15)), s["label"])
            for s in rng.sample(seeds, 80)
        ],
        "near copies, other intent": near_other,
        "eval items": [(e["text"], e["label"]) for e in evals],
        "eval items, one word edited": [
            (edit(e["text"], rng, vocab, 0.1), e["label"]) for e in evals
        ],
        "card numbers": pii,
    }
    return seeds, sets


def chain(overrides: dict[str, dict[str, Any]]) -> FilterChain:
    config = load_config(ROOT / "config.toml")
    cheap, _ = split_judge(config.filters)
    specs = [type(f).model_validate({**f.model_dump(), **overrides.get(f.kind, {})}) for f in cheap]
    return build_chain(specs, config.filter_context())


def candidate(name: str, i: int, text: str, label: str) -> Candidate:
    return Candidate(
        id=f"{name}:{i}",
        run_id="bench",
        cell=CellKey(slice="default", label=label),
        text=text,
        data={"text": text, "label": label},
        llm_call_id="bench",
        index=i,
        template="t",
        template_sha="0" * 64,
        model="m",
    )


def flagged(o: Outcome) -> str | None:
    """The filter that flagged the row (rejected, sent to review, or redacted)."""
    for d in o.decisions:
        if d.verdict is not Verdict.KEEP or d.edited_data is not None:
            return d.filter
    return None


def measure(
    seeds: list[dict[str, str]],
    sets: dict[str, list[Any]],
    overrides: dict[str, dict[str, Any]],
    mixed: bool,
) -> dict[str, tuple[int, int, Counter[str]]]:
    seen = [
        SeenItem(
            id=f"seed_{i}",
            text=s["text"],
            cell=CellKey(slice="default", label=s["label"]),
            source=Source.REAL,
        )
        for i, s in enumerate(seeds)
    ]
    outcomes: dict[str, Outcome] = {}
    batches = {
        name: [candidate(name, i, t, label) for i, (t, label) in enumerate(rows)]
        for name, rows in sets.items()
    }
    if mixed:
        everything = [c for batch in batches.values() for c in batch]
        random.Random(0).shuffle(everything)
        batches = {"all": everything}
    for batch in batches.values():
        c = chain(overrides)
        c.prepare(seen)
        outcomes.update({o.candidate.id: o for o in c.decide(batch)})
    out = {}
    for name, rows in sets.items():
        by: Counter[str] = Counter()
        for i in range(len(rows)):
            f = flagged(outcomes[f"{name}:{i}"])
            if f:
                by[f] += 1
        out[name] = (sum(by.values()), len(rows), by)
    return out


FRONTIER = [
    ("defaults", {}),
    ("diversity quantile 0.9", {"diversity": {"quantile": 0.9}}),
    ("diversity quantile 0.98", {"diversity": {"quantile": 0.98}}),
    ("near_dedup same_cell_quantile 0.95", {"near_dedup": {"same_cell_quantile": 0.95}}),
    ("near_dedup quantile 0.99", {"near_dedup": {"quantile": 0.99}}),
    (
        "no calibration (floors 0.5 and 0.7)",
        {"near_dedup": {"calibrate": False}, "diversity": {"calibrate": False}},
    ),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--mixed", action="store_true", help="All sets in one shuffled batch.")
    ap.add_argument("--frontier", action="store_true", help="Other quantiles too.")
    args = ap.parse_args()
    seeds, sets = row_sets(args.data.resolve())
    print(f"{len(seeds)} seeds; chain of config.toml without the judge")
    for name, (n, total, by) in measure(seeds, sets, {}, args.mixed).items():
        detail = ", ".join(f"{f} {k}" for f, k in by.most_common())
        print(f"  {name:28s} flagged {n:3d}/{total:3d} = {n / total:5.1%}  {detail}")
    if not args.frontier:
        return
    print("\nfresh / templated rows flagged, near copies caught (own intent / another):")
    wanted = ("fresh", "templated", "near copies", "near copies, other intent")
    subset = {k: sets[k] for k in wanted}
    for label, overrides in FRONTIER:
        r = measure(seeds, subset, overrides, args.mixed)
        shares = [r[k][0] / r[k][1] for k in wanted]
        print(f"  {label:36s} " + "  ".join(f"{s:5.1%}" for s in shares))


if __name__ == "__main__":
    main()
