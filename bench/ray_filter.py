"""`synth filter` locally and on Ray Data (`--ray`), on the same file: rows/s of each, and
whether every row got the same decisions.

    python bench/ray_filter.py [--rows 20000] [--sample N] [--cpus 2] [--address ADDR]
                               [--data DIR]

The file (in a temporary folder): BANKING77 messages (train and test, so the 80 eval
items of ``seeds/eval.jsonl`` are among them) with 10 % exact copies and 10 % near
copies (bench/filter.py's edits of 5-15 % of the words) planted, shuffled with a fixed
seed. Beyond the ~13,100 distinct messages the real rows are drawn with replacement,
so a large file repeats each message many times (and the planted copies are on top).
The chain is ``config.toml``'s (schema, pii, exact_dedup, near_dedup, contamination,
diversity; no judge) with near dedup's template guard off, which the Ray backend does
not apply (see synth.distributed), and rows beyond its schema's length limits skipped.
Each run gets a fresh store.

Without ``--sample``: the whole file locally, then on Ray; rows/s of each and how many
rows got the same decisions. With ``--sample N``: the whole file on Ray only, then its
first N rows (a file of its own: the same rows in the same order, so every
order-dependent dedup question is the same one) locally and on Ray; and the first N rows
of the whole-file run against the local run on the sample, since no decision depends on
a later row. Each run prints its wall time, rows/s, the driver's CPU time and its peak
RSS so far (the high-water mark of this process: the file is written by a child
process, so it is the filtering's); the machine's load average is printed with it, as
other work may share the CPUs.

Ray is started before the clock (a local Ray of ``--cpus`` CPUs, or the cluster at
``--address``); its start-up time is printed apart.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import logging
import multiprocessing
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from filter import near_copy  # noqa: E402

from synth.config import Config, load_config  # noqa: E402
from synth.filtering import FilterReport, filter_file  # noqa: E402
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


def build_apart(data: Path, n: int, out: Path) -> None:
    """``build`` in a child process: its million dicts never count in this one's RSS."""
    child = multiprocessing.get_context("fork").Process(target=build, args=(data, n, out))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"building {out} failed")


def head(path: Path, n: int, out: Path) -> None:
    with path.open(encoding="utf-8") as f, out.open("w", encoding="utf-8") as g:
        g.writelines(itertools.islice(f, n))


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


SQL = (
    "SELECT e.id, e.outcome || ' ' || group_concat(d.filter || '|' || d.verdict"
    " || '|' || d.reason, ';') FROM examples e JOIN decisions d"
    " ON d.example_id = e.id GROUP BY e.id"
)


def decisions(config: Config, only: dict[str, str] | None = None) -> dict[str, str]:
    """Each row's outcome and decisions; with ``only``, just its rows' (a million rows'
    strings are not held for a comparison of a sample)."""
    with Store(config.db_path) as store:
        rows = store.conn.execute(SQL)
        return dict(rows) if only is None else {k: v for k, v in rows if k in only}


def run(label: str, root: Path, path: Path, ray: bool) -> tuple[Config, FilterReport]:
    config = project(root)
    with Store(config.db_path) as store:
        t, cpu = time.perf_counter(), time.process_time()
        report = filter_file(config, store, path, skip_invalid=True, ray=ray)
        spent, cpu = time.perf_counter() - t, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"{label:10}  {report.rows:,} rows in {spent:.1f} s = {report.rows / spent:,.0f} rows/s;"
        f" driver CPU {cpu:.1f} s, peak RSS {peak:,.0f} MB; load {load}\n"
        f"{'':10}  kept {report.kept:,}, rejected {dict(report.rejected_by)}",
        flush=True,
    )
    return config, report


def same(label: str, ours: dict[str, str], theirs: dict[str, str]) -> None:
    n = sum(ours.get(k) == v for k, v in theirs.items())
    print(f"same decisions, {label}: {n:,} of {len(theirs):,} rows", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--sample", type=int, default=0, help="the first N rows, apart")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument("--address", default="", help="a Ray cluster instead")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.jsonl"
        t = time.perf_counter()
        build_apart(args.data, args.rows, path)
        print(f"file: {args.rows:,} rows built in {time.perf_counter() - t:.1f} s", flush=True)

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
        print(f"ray: started in {time.perf_counter() - t:.1f} s, {cpus:.0f} CPUs", flush=True)
        if not args.sample:
            local, _ = run("local", Path(tmp) / "local", path, ray=False)
            on_ray, _ = run("ray", Path(tmp) / "ray", path, ray=True)
            same("ray and local", decisions(on_ray), decisions(local))
        else:
            whole, _ = run("ray, whole", Path(tmp) / "whole", path, ray=True)
            sample = Path(tmp) / "sample.jsonl"
            head(path, args.sample, sample)
            local, _ = run("local", Path(tmp) / "local", sample, ray=False)
            on_ray, _ = run("ray", Path(tmp) / "ray", sample, ray=True)
            mine = decisions(local)
            same("sample, ray and local", decisions(on_ray), mine)
            same("first rows of the whole file on ray, and local", decisions(whole, mine), mine)
        ray.shutdown()


if __name__ == "__main__":
    main()
