"""`synth filter` locally and on Ray Data (`--ray`), on the same file: rows/s of each, and
whether every row got the same decisions.

    python bench/ray_filter.py [--rows 20000] [--cpus 2] [--address ADDR] [--data DIR]

The file (in a temporary folder): BANKING77 messages (train and test, so the 80 eval
items of ``seeds/eval.jsonl`` are among them) with 10 % exact copies and 10 % near
copies (bench/filter.py's edits of 5-15 % of the words) planted, shuffled with a fixed
seed. The chain is ``config.toml``'s (schema, pii, exact_dedup, near_dedup,
contamination, diversity; no judge) with near dedup's template guard off, which the
Ray backend does not apply (see synth.distributed), and rows beyond its schema's
length limits skipped. Each run gets a fresh store.

Ray is started before the clock (a local Ray of ``--cpus`` CPUs, or the cluster at
``--address``); its start-up time is printed apart. On one machine Ray's scheduling,
serialisation and shuffles cost more than they save; the figure to watch there is how
the Ray time grows with the rows, and on a cluster how it falls with the CPUs.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from filter import near_copy  # noqa: E402

from synth.config import Config, load_config  # noqa: E402
from synth.filtering import filter_file  # noqa: E402
from synth.store import Store  # noqa: E402


def build(data: Path, n: int, out: Path, seed: int = 0) -> None:
    rng = random.Random(seed)
    base = []
    for split in ("train", "test"):
        with (data / "banking77" / f"{split}.csv").open(encoding="utf-8", newline="") as f:
            base += [{"text": r["text"].strip(), "label": r["category"]} for r in csv.DictReader(f)]
    vocabulary = sorted({w for r in base for w in r["text"].split()})
    real = (
        [rng.choice(base) for _ in range(n * 8 // 10)]
        if n > len(base)
        else rng.sample(base, n * 8 // 10)
    )
    rows = list(real)
    while len(rows) < n:
        r = rng.choice(real)
        if len(rows) % 2:
            rows.append(dict(r))
        else:
            rows.append({"text": near_copy(r["text"], rng, vocabulary), "label": r["label"]})
    rng.shuffle(rows)
    with out.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def project(root: Path) -> Config:
    (root / "seeds").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "seeds" / "eval.jsonl", root / "seeds" / "eval.jsonl")
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    text = text.replace('"demo/synth.db"', '"bench.db"')
    near = text.index('kind = "near_dedup"')
    end = text.index("\n", near) + 1
    text = text[:end] + "boilerplate_df = 1.0\nboilerplate_cells = 0\n" + text[end:]
    (root / "config.toml").write_text(text, encoding="utf-8")
    return load_config(root / "config.toml")


def decisions(config: Config) -> dict[str, str]:
    with Store(config.db_path) as store:
        return dict(
            store.conn.execute(
                "SELECT e.id, e.outcome || ' ' || group_concat(d.filter || '|' || d.verdict"
                " || '|' || d.reason, ';') FROM examples e JOIN decisions d"
                " ON d.example_id = e.id GROUP BY e.id"
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument("--address", default="", help="a Ray cluster instead")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()

    import ray

    t = time.perf_counter()
    ray.init(
        address=args.address or None,
        num_cpus=None if args.address else args.cpus,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    cpus = ray.cluster_resources()["CPU"]
    print(f"ray: started in {time.perf_counter() - t:.1f} s, {cpus:.0f} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.jsonl"
        build(args.data, args.rows, path)
        found = {}
        for backend in ("local", "ray"):
            config = project(Path(tmp) / backend)
            with Store(config.db_path) as store:
                t = time.perf_counter()
                report = filter_file(config, store, path, skip_invalid=True, ray=backend == "ray")
                spent = time.perf_counter() - t
            print(
                f"{backend:5}  {report.rows:,} rows in {spent:.1f} s = {report.rows / spent:,.0f}"
                f" rows/s; kept {report.kept:,}, rejected {dict(report.rejected_by)}"
            )
            found[backend] = decisions(config)
        same = sum(found["ray"].get(k) == v for k, v in found["local"].items())
        print(f"same decisions: {same:,} of {len(found['local']):,} rows")
    ray.shutdown()


if __name__ == "__main__":
    main()
