"""`synth filter` on a file of 100,000 real rows, with the bundled config's chain.

    python bench/filter.py [--rows 100000] [--data ../shared/data] [--workdir DIR]

Builds the file in a temporary folder (never in the repository): every message of
BANKING77 (train and test, 77 intents) and CLINC150 (the "full" set, 150 intents and
out-of-scope), then, to reach ``--rows``, exact copies and near copies (a word dropped,
swapped for another or repeated, 5-15 % of the words) of random messages, shuffled
with a fixed seed. BANKING77's test messages include the 80 of ``seeds/eval.jsonl``,
the contamination filter's eval set, so the chain meets contamination too.

Then filters it twice into a fresh store with ``config.toml``'s chain (schema, pii,
exact_dedup, near_dedup, contamination, diversity; the judge is not run) and prints:
the wall time of each 10,000 rows, the time spent in each filter, the funnel, rows/s,
and the process's peak RSS; then the second run's time, which decides nothing and
adds nothing. The per-filter times come from timers wrapped around each filter's
``prepare``/``decide``/``admit``; the rest of the time is reading, storing, writing.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from timing import time_filters  # noqa: E402

from synth.config import load_config  # noqa: E402
from synth.filtering import FilterProgress, filter_file  # noqa: E402
from synth.store import Store  # noqa: E402

STEP = 10_000


def real_rows(data: Path) -> list[dict[str, str]]:
    rows = []
    for split in ("train", "test"):
        with (data / "banking77" / f"{split}.csv").open(encoding="utf-8", newline="") as f:
            rows += [{"text": r["text"].strip(), "label": r["category"]} for r in csv.DictReader(f)]
    full = json.loads((data / "clinc150" / "data_full.json").read_text(encoding="utf-8"))
    for part in full.values():
        rows += [{"text": text.strip(), "label": f"clinc:{intent}"} for text, intent in part]
    return rows


def near_copy(text: str, rng: random.Random, vocabulary: list[str]) -> str:
    words = text.split()
    edits = max(1, round(len(words) * rng.uniform(0.05, 0.15)))
    for _ in range(edits):
        i = rng.randrange(len(words))
        how = rng.choice(("drop", "swap", "repeat")) if len(words) > 2 else "repeat"
        if how == "drop":
            del words[i]
        elif how == "swap":
            words[i] = rng.choice(vocabulary)
        else:
            words.insert(i, words[i])
    return " ".join(words)


def build(data: Path, n: int, out: Path, seed: int = 0) -> dict[str, int]:
    rng = random.Random(seed)
    base = real_rows(data)
    vocabulary = sorted({w for r in base for w in r["text"].split()})
    rows = list(base)
    exact = near = 0
    while len(rows) < n:
        r = rng.choice(base)
        if rng.random() < 0.5:
            rows.append(dict(r))
            exact += 1
        else:
            rows.append({"text": near_copy(r["text"], rng, vocabulary), "label": r["label"]})
            near += 1
    rows = rows[:n]
    rng.shuffle(rows)
    with out.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return {"real": len(base), "exact copies": exact, "near copies": near}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--workdir", type=Path, help="Keep the file and the store here.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        (root / "seeds").mkdir(exist_ok=True)
        shutil.copy(ROOT / "seeds" / "eval.jsonl", root / "seeds" / "eval.jsonl")
        text = (ROOT / "config.toml").read_text(encoding="utf-8")
        (root / "config.toml").write_text(text.replace('"demo/synth.db"', '"bench.db"'))
        config = load_config(root / "config.toml")
        path = root / "rows.jsonl"
        t = time.perf_counter()
        made = build(args.data, args.rows, path)
        print(f"built {path.name}: {made} in {time.perf_counter() - t:.1f} s")

        marks: list[tuple[int, float]] = []

        def note(p: FilterProgress) -> None:
            if p.done // STEP > (marks[-1][0] // STEP if marks else 0) or p.done == p.total:
                marks.append((p.done, p.elapsed))

        with Store(config.db_path) as store, time_filters() as spent:
            report = filter_file(
                config,
                store,
                path,
                kept=root / "kept.jsonl",
                rejected=root / "rej.jsonl",
                progress=note,
                # Real messages shorter than [schema]'s min_length are listed, not read.
                skip_invalid=True,
            )
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"first run: {report.rows:,} rows in {report.elapsed:.1f} s"
                f" ({report.rate:,.0f} rows/s), peak RSS {peak:,.0f} MB;"
                f" {len(report.skipped):,} lines skipped as invalid"
            )
            before = 0.0
            for done, at in marks:
                print(f"  rows up to {done:>7,}: {at - before:6.1f} s")
                before = at
            total = sum(spent.values())
            for name, s in spent.most_common():
                print(f"  filter {name:14} {s:7.1f} s ({s / report.elapsed:.0%} of the wall time)")
            print(f"  everything else       {report.elapsed - total:7.1f} s (read, store, write)")
            for stage in report.funnel():
                print(f"  {stage.name:14} -{stage.removed:>7,}  {stage.left:>7,} left")
            counts = {t: store.count(t) for t in ("examples", "decisions", "runs")}
            again = filter_file(config, store, path, kept=root / "kept2.jsonl", skip_invalid=True)
            after = {t: store.count(t) for t in ("examples", "decisions", "runs")}
            same = (root / "kept.jsonl").read_bytes() == (root / "kept2.jsonl").read_bytes()
            print(
                f"second run: {again.new} new, {again.already_stored:,} already stored, in"
                f" {again.elapsed:.1f} s; store counts unchanged: {counts == after};"
                f" kept file identical: {same}"
            )


if __name__ == "__main__":
    main()
