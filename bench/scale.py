"""How the cost per candidate grows with the dataset: one big cell, and many cells.

    python bench/scale.py [--rows 100000] [--cells 77] [--per-cell 1000] [--part one|many|both]
                          [--repeats N] [--agree N] [--data ../shared/data] [--workdir DIR]

Candidates go through ``synth filter``'s code path (as ``bench/filter.py``): a fresh
store, ``config.toml``'s chain without the judge (schema, pii, exact_dedup,
near_dedup, contamination, diversity), every row and decision stored, a chunk of
rows per transaction, as a run stores the candidates of its replies.

- one cell: the 175 Self-Instruct seed tasks are the seeds of one cell
  ("instruction"), and candidates are drawn from a word-bigram chain over 6,000 real
  instructions (alpaca-libre, Self-Instruct), 10 to 40 words, until ``--rows``
  candidates were kept. New instructions, recombined from real phrasing: some repeat
  or nearly repeat others and are rejected, as a model's are.
- many cells: BANKING77's training messages are the seeds of 77 cells, and each
  cell's candidates come from a bigram chain over its own seeds, until each cell has
  ``--per-cell`` kept rows.

Prints, per step of 10,000 kept rows (one cell) or of each tenth of the target (many
cells): candidates decided, CPU ms per candidate in that step (process time: robust to
other load on the machine), candidates/s in wall time, the peak RSS so far, and how
that CPU divides: near dedup, diversity, the other filters, and the rest (reading the
file, storing rows and decisions); then the funnel. ``--agree N`` also decides N
one-cell candidates twice, with near dedup's band floor and with every pair its bands
propose verified, and prints how many verdicts agree. ``--repeats N`` measures each
part N times on the same candidates and then prints each step's median and the ratio
of the medians of the last and first steps: this machine's speed drifts by a fifth
within minutes, more than a change to the filters usually moves one run's ratio (the
peak RSS printed is the process's: a repeat's is at least the runs' before it). The
curve is the point: the cost per candidate should stay flat as the cell grows. The
whole text is made before the clock starts and is read once by the command (as
``synth filter`` reads any file), which is part of the peak RSS.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from timing import time_filters  # noqa: E402

from synth.config import load_config  # noqa: E402
from synth.filtering import FilterProgress, filter_file  # noqa: E402
from synth.seeds import read_seeds  # noqa: E402
from synth.store import Store  # noqa: E402

STEP = 10_000
# How a step's CPU divides: the two similarity filters, the chain's other filters, and
# the rest of the call (reading the file, storing rows and decisions).
PARTS = ("near_dedup", "diversity", "other filters", "the rest")
MILLION = 1_000_000
END = "\x00"


def fits(text: str) -> bool:
    """Within config.toml's text lengths, which ``synth filter`` holds rows to."""
    return 8 <= len(text) <= 400


class Chain:
    """A word-bigram Markov chain over real sentences: new text in real phrasing."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.next: dict[str, list[str]] = defaultdict(list)
        for text in texts:
            words = text.split()
            for a, b in zip([END, *words], [*words, END], strict=True):
                self.next[a].append(b)

    def sentence(self, rng: random.Random, low: int, high: int) -> str:
        while True:
            words: list[str] = []
            word = rng.choice(self.next[END])
            while word != END and len(words) < high:
                words.append(word)
                word = rng.choice(self.next[word])
            if len(words) >= low:
                return " ".join(words)


def instructions(data: Path) -> list[str]:
    texts = []
    for v in (1, 2, 3):
        path = data / "alpaca-libre" / f"alpaca_libre_tasks_v{v}.jsonl"
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                texts.append(json.loads(line)["instruction"])
            except (ValueError, KeyError):
                continue  # v2 has malformed lines, kept as published
    for name in ("seed_tasks.jsonl", "user_oriented_instructions.jsonl"):
        for line in (data / "self-instruct" / name).read_text(encoding="utf-8").splitlines():
            texts.append(json.loads(line)["instruction"])
    return [" ".join(t.split()) for t in texts if t.strip()]


def banking(data: Path) -> dict[str, list[str]]:
    by_label: dict[str, list[str]] = defaultdict(list)
    with (data / "banking77" / "train.csv").open(encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            by_label[r["category"]].append(" ".join(r["text"].split()))
    return dict(by_label)


def write_jsonl(path: Path, rows: Iterator[dict[str, str]]) -> int:
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
    return n


def project(root: Path) -> Path:
    """A project folder with ``config.toml``'s chain and eval set, its store inside."""
    (root / "seeds").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "seeds" / "eval.jsonl", root / "seeds" / "eval.jsonl")
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    (root / "config.toml").write_text(text.replace('"demo/synth.db"', '"bench.db"'))
    return root / "config.toml"


def one_cell(data: Path, rng: random.Random) -> tuple[list[str], Iterator[dict[str, str]]]:
    seeds = [
        json.loads(line)["instruction"]
        for line in (data / "self-instruct" / "seed_tasks.jsonl").read_text().splitlines()
    ]
    seeds = [s for s in seeds if fits(s)]
    chain = Chain(instructions(data))

    def rows() -> Iterator[dict[str, str]]:
        while True:
            text = chain.sentence(rng, 10, 40)
            if fits(text):
                yield {"text": text, "label": "instruction"}

    return [json.dumps({"text": s, "label": "instruction"}) for s in seeds], rows()


def many_cells(
    data: Path, rng: random.Random, cells: int
) -> tuple[list[str], Iterator[dict[str, str]]]:
    by_label = {
        label: [t for t in texts if fits(t)]
        for label, texts in sorted(banking(data).items())[:cells]
    }
    chains = {label: Chain(texts) for label, texts in by_label.items()}
    labels = list(chains)

    def rows() -> Iterator[dict[str, str]]:
        while True:
            label = rng.choice(labels)
            text = chains[label].sentence(rng, 3, 40)
            if fits(text):
                yield {"text": text, "label": label}

    seeds = [json.dumps({"text": t, "label": k}) for k, texts in by_label.items() for t in texts]
    return seeds, rows()


class Enough(Exception):
    """Raised from the progress callback once the target is reached."""


def measure(
    root: Path,
    seeds: list[str],
    rows: Iterator[dict[str, str]],
    target: int,
    step: int,
    spare: float,
) -> list[dict[str, float]]:
    """Filter a file of candidates in one ``synth filter`` call, against the seeds,
    until ``target`` rows are kept; a line per ``step`` kept rows. The file holds
    ``spare`` times ``target`` rows (the call reads the whole file first, and its ids
    are part of the peak). Returns each step's CPU ms per candidate, in all
    (``"all"``) and by part (:data:`PARTS`)."""
    config = load_config(project(root))
    (root / "seeds.jsonl").write_text("\n".join(seeds) + "\n", encoding="utf-8")
    path = root / "candidates.jsonl"
    # More candidates than needed: the call is stopped once enough are kept.
    n = write_jsonl(path, (next(rows) for _ in range(int(target * spare) + 1000)))
    print(
        f"{'kept':>8} {'candidates':>10} {'CPU ms/cand':>11} {'cand/s':>7} {'peak RSS MB':>11}"
        f"   of which: {' '.join(f'{part:>13}' for part in PARTS)}"
    )
    last = {"done": 0, "cpu": 0.0, "wall": 0.0, "mark": 0}
    spent: Counter[str] = Counter()  # CPU seconds by filter, from the call on
    before: Counter[str] = Counter()  # the same at the last step
    stats: dict[str, float] = {}
    curve: list[tuple[int, float]] = []  # (candidates, peak RSS MB)
    costs: list[dict[str, float]] = []  # CPU ms per candidate, per step

    def note(p: FilterProgress) -> None:
        first = not last["done"]  # the first chunk also prepares the chain: start after it
        if not first and p.kept // step == last["mark"] and p.kept < target and p.done < p.total:
            return
        cpu, wall = time.process_time(), time.perf_counter()
        if not first:
            done = p.done - last["done"]
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            ms = (cpu - last["cpu"]) / done * 1000
            by_filter = {k: (v - before[k]) / done * 1000 for k, v in spent.items()}
            split = {part: by_filter.get(part, 0.0) for part in PARTS[:2]}
            split["other filters"] = sum(by_filter.values()) - sum(split.values())
            split["the rest"] = ms - sum(by_filter.values())
            costs.append({"all": ms, **split})
            print(
                f"{p.kept:>8,} {p.done:>10,} {ms:>11.2f}"
                f" {done / (wall - last['wall']):>7.0f} {peak:>11,.0f}"
                f"   {'':>9} {' '.join(f'{split[part]:>13.2f}' for part in PARTS)}",
                flush=True,
            )
            curve.append((p.done, peak))
        last.update(done=p.done, cpu=cpu, wall=wall, mark=p.kept // step)
        before.clear()
        before.update(spent)
        stats.update(kept=p.kept, done=p.done, elapsed=p.elapsed)
        if p.kept >= target:
            raise Enough

    with Store(config.db_path) as store:
        store.examples.add_seeds(read_seeds(root / "seeds.jsonl", config).seeds)
        cpu = time.process_time()
        try:
            with time_filters(time.process_time) as spent:
                filter_file(config, store, path, source="synthetic", progress=note)
        except Enough:
            pass
        cpu = time.process_time() - cpu
    print(
        f"kept {stats['kept']:,.0f} of {stats['done']:,.0f} candidates ({n:,} written) in"
        f" {stats['elapsed']:.0f} s: {stats['done'] / stats['elapsed']:.0f} candidates/s,"
        f" {cpu / stats['done'] * 1000:.2f} ms CPU per candidate (reading the file included)"
    )
    if len(costs) >= 2:
        first, final = costs[0]["all"], costs[-1]["all"]
        print(
            f"CPU per candidate in the last step is {final / first:.2f} times the"
            f" first's ({first:.2f} -> {final:.2f} ms)"
        )
    if len(curve) >= 4:
        # The growth over the second half of the curve, where start-up costs are behind:
        # a least-squares line, as a peak jumps when a merge or a growing array lands.
        half = curve[len(curve) // 2 :]
        xs = [x for x, _ in half]
        ys = [y for _, y in half]
        x1, y1 = half[-1]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        spread = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in half) / spread if spread else 0.0
        if x1 >= MILLION:
            print(f"peak RSS {y1:,.0f} MB at {x1:,} candidates, measured")
        else:
            print(
                f"peak RSS grows {slope * 1024:.2f} KB per candidate here:"
                f" {y1 + slope * (MILLION - x1):,.0f} MB at {MILLION:,} candidates,"
                " extrapolated"
            )
    return costs


def medians(runs: list[list[dict[str, float]]]) -> None:
    """Each step's median over the runs, in all and by part, and the ratio of the last
    step's median to the first's."""
    steps = min(map(len, runs))
    if len(runs) < 2 or steps < 2:
        return

    def middle_of(part: str) -> list[float]:
        return [statistics.median(run[i][part] for run in runs) for i in range(steps)]

    middle = middle_of("all")
    ratios = sorted(run[steps - 1]["all"] / run[0]["all"] for run in runs)
    print(f"median of {len(runs)} runs, CPU ms per candidate by step:")
    print(f"  {'in all':>13} " + " ".join(f"{cost:.2f}" for cost in middle))
    for part in PARTS:
        print(f"  {part:>13} " + " ".join(f"{cost:.2f}" for cost in middle_of(part)))
    print(
        f"the last step's median is {middle[-1] / middle[0]:.2f} times the first's"
        f" ({middle[0]:.2f} -> {middle[-1]:.2f} ms); single runs"
        f" {', '.join(f'{r:.2f}' for r in ratios)}"
    )


def agreement(root: Path, seeds: list[str], rows: Iterator[dict[str, str]], n: int) -> None:
    """The first ``n`` candidates decided twice, on fresh stores: as configured, and
    with near dedup verifying every pair its bands propose (no signature floor; the
    diversity search is exact for every decision either way). Prints the share of
    rows with the same verdict from the same filter."""
    from synth.filters import near_dedup

    lines = [json.dumps(next(rows)) for _ in range(n)]
    verdicts = []
    made = near_dedup.NearDedupFilter.__init__

    def without_floor(self: near_dedup.NearDedupFilter, *a: Any, **k: Any) -> None:
        made(self, *a, **k)
        self.floor = 0.0

    for floor in (True, False):
        folder = root / ("floor" if floor else "every-pair")
        config = load_config(project(folder))
        (folder / "seeds.jsonl").write_text("\n".join(seeds) + "\n", encoding="utf-8")
        (folder / "candidates.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        if not floor:
            near_dedup.NearDedupFilter.__init__ = without_floor  # type: ignore[method-assign]
        try:
            with Store(config.db_path) as store:
                store.examples.add_seeds(read_seeds(folder / "seeds.jsonl", config).seeds)
                cpu = time.process_time()
                filter_file(config, store, folder / "candidates.jsonl", source="synthetic")
                cpu = time.process_time() - cpu
                verdicts.append(
                    dict(
                        store.conn.execute(
                            "SELECT e.id, e.outcome || ' ' || coalesce(group_concat("
                            " CASE WHEN d.verdict != 'keep' THEN d.filter END), '')"
                            " FROM examples e JOIN decisions d ON d.example_id = e.id"
                            " WHERE e.source = 'synthetic' GROUP BY e.id"
                        )
                    )
                )
        finally:
            near_dedup.NearDedupFilter.__init__ = made  # type: ignore[method-assign]
        print(f"  {folder.name:10} {cpu / n * 1000:.2f} ms CPU per candidate")
    same = sum(verdicts[1].get(k) == v for k, v in verdicts[0].items())
    print(f"same verdicts: {same:,} of {len(verdicts[0]):,} rows ({same / len(verdicts[0]):.4f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000, help="kept rows in the one cell")
    parser.add_argument("--cells", type=int, default=77)
    parser.add_argument("--per-cell", type=int, default=1_000)
    parser.add_argument("--part", choices=("one", "many", "both"), default="both")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--workdir", type=Path, help="Keep the stores here.")
    parser.add_argument("--repeats", type=int, default=1, help="Measure each part this many times.")
    parser.add_argument(
        "--agree",
        type=int,
        default=0,
        help="Also decide this many one-cell candidates with every LSH pair verified"
        " and print how many verdicts agree.",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.workdir or Path(tmp)
        if args.part in ("one", "both"):
            runs = []
            step = max(STEP, args.rows // 10)
            for run in range(args.repeats):
                print(f"one cell grown to {args.rows:,} kept rows")
                seeds, rows = one_cell(args.data, random.Random(0))
                # 99 % of one-cell candidates are kept: a tenth more rows is plenty.
                runs.append(measure(root / f"one{run or ''}", seeds, rows, args.rows, step, 1.1))
            medians(runs)
        if args.agree:
            print(f"{args.agree:,} one-cell candidates, with and without the band floor")
            seeds, rows = one_cell(args.data, random.Random(2))
            agreement(root / "agree", seeds, rows, args.agree)
        if args.part in ("many", "both"):
            target = args.cells * args.per_cell
            print(f"{args.cells} cells grown to {args.per_cell:,} kept rows each")
            runs = []
            step = max(1, target // 10)
            for run in range(args.repeats):
                seeds, rows = many_cells(args.data, random.Random(1), args.cells)
                runs.append(measure(root / f"many{run or ''}", seeds, rows, target, step, 2.5))
            medians(runs)


if __name__ == "__main__":
    main()
