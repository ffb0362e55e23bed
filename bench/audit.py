"""Versions and audits at the size of a real dataset: BANKING77.

    python bench/audit.py [--data ../shared/data]

Imports BANKING77's train split (10,003 messages, 77 intents) as seeds into a fresh
store, freezes it with the default splits (0.8 / 0.1 / 0.1, near-duplicate clusters at
word 2-gram Jaccard >= 0.5 kept whole), and prints the time, the clusters, the split
fractions reached and the leakage check. Then audits two files made "elsewhere": the
train split itself (every row should be found by content hash) and the test split
(3,080 messages never imported: every row found is a near duplicate of a train
message, which is how much of BANKING77's test set a model trained on train has
effectively seen).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from synth.audit import audit_file  # noqa: E402
from synth.config import parse_config  # noqa: E402
from synth.neighbours import NearIndex  # noqa: E402
from synth.seeds import read_seeds  # noqa: E402
from synth.store import Store  # noqa: E402
from synth.versions import _Groups, freeze  # noqa: E402


def _as_jsonl(src: Path, out: Path) -> Path:
    with src.open(encoding="utf-8", newline="") as f, out.open("w", encoding="utf-8") as g:
        for row in csv.DictReader(f):
            g.write(json.dumps({"text": row["text"], "label": row["category"]}) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    banking = args.data / "banking77"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = parse_config({"project": {"db": "bench.db"}}, root / "config.toml")
        train = _as_jsonl(banking / "train.csv", root / "train.jsonl")
        test = _as_jsonl(banking / "test.csv", root / "test.jsonl")
        with Store(config.db_path) as store:
            t = time.perf_counter()
            added = store.examples.add_seeds(read_seeds(train, config).seeds)
            print(
                f"imported {added.added} seeds ({added.duplicates} duplicates)"
                f" in {time.perf_counter() - t:.1f} s"
            )

            rows = store.examples.dataset()
            t = time.perf_counter()
            pairs = NearIndex([r["data"]["text"] for r in rows]).pairs()
            took = time.perf_counter() - t
            groups = _Groups(len(rows))
            for p in pairs:
                groups.union(p.a, p.b)
            sizes = Counter(Counter(groups.find(i) for i in range(len(rows))).values())
            print(
                f"near-duplicate pairs among them: {len(pairs)} ({took:.1f} s); clusters of"
                f" 2+ rows: {sum(n for k, n in sizes.items() if k > 1)}, largest {max(sizes)}"
            )

            t = time.perf_counter()
            v = freeze(store, config, "bench")
            took = time.perf_counter() - t
            fractions = ", ".join(f"{s} {n / v.rows:.3f}" for s, n in sorted(v.splits.items()))
            print(
                f"freeze: {v.rows} rows in {took:.1f} s; splits {fractions};"
                f" leakage: {len(v.leakage.near_pairs)} pairs, {len(v.leakage.lineage)} lineage"
            )
            cells = Counter()
            for c in v.manifest["cells"]:
                for s in ("train", "validation", "test"):
                    cells[s] += c[s] > 0
            print(f"intents present in each split: {dict(cells)} of {len(v.manifest['cells'])}")

            for name, path in (("train", train), ("test", test)):
                t = time.perf_counter()
                report = audit_file(config, store, path)
                took = time.perf_counter() - t
                how = Counter(e["match"] for e in report["items"])
                print(
                    f"audit of {name}.jsonl: {report['rows']} rows in {took:.1f} s;"
                    f" tags {report['totals']}; matched by {dict(how)}"
                )


if __name__ == "__main__":
    main()
