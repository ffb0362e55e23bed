"""`synth filter FILE` and ``filter_file``: the chain over a dataset the user already has.

Real rows throughout: seeded samples of BANKING77's train split (written to tmp_path),
with exact and near copies and eval-set items planted among them, and the held-out
items taken from its test split. Real SQLite files, the CLI through click's runner.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import DATA, ROOT, write_jsonl

from synth.cli import cli
from synth.config import Config, load_config
from synth.errors import SeedError
from synth.export import export
from synth.filtering import FilterProgress, filter_file, render_report, row_id
from synth.records import Source, content_sha
from synth.seeds import read_seeds
from synth.store import Store

LABELS = ["card_arrival", "lost_or_stolen_card", "exchange_rate", "top_up_failed"]
CHAIN = ["schema", "pii", "exact_dedup", "near_dedup", "contamination", "diversity"]

FILTERS = {
    "schema": """
[[filters]]
kind = "schema"
min_words = 2
""",
    "pii": """
[[filters]]
kind = "pii"
action = "redact"
""",
    "exact_dedup": """
[[filters]]
kind = "exact_dedup"
""",
    "near_dedup": """
[[filters]]
kind = "near_dedup"
""",
    "contamination": """
[[filters]]
kind = "contamination"
eval_sets = [{ name = "banking77-test", path = "eval.jsonl", field = "text" }]
minhash_threshold = 0.6
semantic_threshold = 0.8
""",
    "diversity": """
[[filters]]
kind = "diversity"
threshold = 0.7
""",
}


CONFIG = """
[project]
name = "filter-test"
db = "synth.db"

[llm]
model = "sim-1"
base_url = "{base_url}"
max_concurrency = 8
timeout = 5

[llm.prices]
"sim-1" = {{ input = 1.0, output = 2.0 }}

[schema]
text = "text"
label = "label"
fields.text = {{ type = "string", min_length = 3 }}
fields.label = {{ type = "string" }}

[targets]
balance = "uniform"
per_label = {per_label}

{filters}
[review]
fraction = 0.25
"""


def banking(split: str, n: int, seed: int) -> list[dict[str, str]]:
    """A seeded sample of BANKING77 rows of LABELS, as {"text", "label"}."""
    with (DATA / "banking77" / f"{split}.csv").open(newline="", encoding="utf-8") as f:
        rows = [
            {"text": r["text"].strip(), "label": r["category"]}
            for r in csv.DictReader(f)
            if r["category"] in LABELS
        ]
    return random.Random(seed).sample(rows, n)


def eval_set() -> list[dict[str, str]]:
    """The held-out items: the contamination filter's eval set in every project here."""
    return banking("test", 30, 7)


class Planted:
    """A file of real rows with copies planted in it, and where each copy is."""

    def __init__(self, root: Path, n: int = 160, seed: int = 7) -> None:
        base = banking("train", n, seed)
        self.eval_items = eval_set()
        rng = random.Random(seed)
        longer = [r for r in base if len(r["text"].split()) >= 6]
        self.exact = rng.sample(longer, 8)  # copied verbatim
        self.near = rng.sample([r for r in longer if r not in self.exact], 6)
        near_copies = [{**r, "text": r["text"] + " please"} for r in self.near]
        self.leaked = self.eval_items[:4]  # held-out items in the data
        self.pii = {"text": "my card never came, write to jo.smith@example.com", "label": LABELS[0]}
        rows = [*base, *self.exact, *near_copies, *self.leaked, self.pii]
        # Copies land after their originals, in a seeded order.
        tail = rows[len(base) :]
        rng.shuffle(tail)
        self.rows = base + tail
        self.path = write_jsonl(root / "data.jsonl", self.rows)


def make_project(
    root: Path,
    *,
    per_label: int = 40,
    base_url: str = "http://127.0.0.1:9/v1",
    chain: list[str] = CHAIN,
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    filters = "\n".join(FILTERS[name] for name in chain)
    text = CONFIG.format(per_label=per_label, base_url=base_url, filters=filters)
    (root / "config.toml").write_text(text)
    write_jsonl(root / "eval.jsonl", eval_set())
    return root / "config.toml"


def ids_of(rows: list[dict[str, str]], source: Source = Source.REAL) -> list[str]:
    """The ids filter_file gives the rows of a file, in order."""
    copies: Counter[str] = Counter()
    out = []
    for r in rows:
        sha = content_sha(r)
        out.append(row_id(source, sha, copies[sha]))
        copies[sha] += 1
    return out


def counts(store: Store) -> dict[str, int]:
    return {t: store.count(t) for t in ("examples", "decisions", "runs", "edits", "llm_calls")}


def invoke(config_path: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config_path), "filter", *args])


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Config, Planted]:
    config = load_config(make_project(tmp_path))
    return config, Planted(tmp_path)


# -- the funnel and the decisions ----------------------------------------------------


def test_funnel_adds_up_and_every_row_has_every_decision_with_a_reason(planted):
    config, data = planted
    with Store(config.db_path) as store:
        report = filter_file(config, store, data.path, chunk=64)
        stored = store.conn.execute(
            "SELECT id, outcome, rejected_by, status, source, run_id, origin FROM examples"
        ).fetchall()
        decisions = store.conn.execute(
            "SELECT example_id, filter, verdict, reason, run_id FROM decisions ORDER BY id"
        ).fetchall()
    n = len(data.rows)
    assert report.rows == report.new == n and report.already_stored == 0
    assert report.kept + report.rejected + report.review == n
    assert sum(report.rejected_by.values()) == report.rejected
    assert report.filters == CHAIN and report.judge == "not_configured"
    funnel = report.funnel()
    assert [s.name for s in funnel] == ["rows", *CHAIN, "review"]
    assert funnel[-1].left == report.kept
    assert all(a.left - b.removed == b.left for a, b in zip(funnel, funnel[1:], strict=False))
    assert sum(report.reasons[f].total() for f in report.rejected_by) == report.rejected

    assert len(stored) == n and {r[5] for r in stored} == {report.run_id}
    assert {r[4] for r in stored} == {"real"}
    assert all(origin.startswith("data.jsonl:") for *_, origin in stored)
    by_row: dict[str, list[tuple[str, str, str]]] = {}
    for example_id, filter_name, verdict, reason, run_id in decisions:
        assert run_id == report.run_id
        by_row.setdefault(example_id, []).append((filter_name, verdict, reason))
    for example_id, outcome, rejected_by, status, *_ in stored:
        made = by_row[example_id]
        if outcome == "keep":
            # A kept row has one decision per filter, in chain order, all keeps.
            assert [f for f, _, _ in made] == CHAIN and status == "accepted"
            assert {v for _, v, _ in made} == {"keep"}
        else:
            # A rejected row leaves the chain at its reject, which says why.
            assert outcome == "reject" and status == "rejected"
            assert made[-1][:2] == (rejected_by, "reject") and made[-1][2]
            assert [f for f, _, _ in made] == CHAIN[: len(made)]


def test_copies_in_the_file_are_rejected_by_exact_and_near_dedup(planted):
    config, data = planted
    ids = ids_of(data.rows)
    with Store(config.db_path) as store:
        filter_file(config, store, data.path, chunk=50)
        rows = {
            r[0]: r[1:]
            for r in store.conn.execute("SELECT id, outcome, rejected_by, text FROM examples")
        }
        reasons = dict(
            store.conn.execute("SELECT example_id, reason FROM decisions WHERE verdict = 'reject'")
        )
    first = {r["text"]: i for i, r in reversed(list(enumerate(data.rows)))}
    copies = [i for i, r in enumerate(data.rows) if first[r["text"]] != i]
    assert len(copies) == len(data.exact)
    near = [i for i, r in enumerate(data.rows) if r["text"].endswith(" please")]
    originals = {i: first[data.rows[i]["text"]] for i in copies}
    originals |= {i: first[data.rows[i]["text"].removesuffix(" please")] for i in near}
    assert len(originals) == len(data.exact) + len(data.near)
    # A copy of a row the chain kept is caught by dedup, naming that row; one of a row
    # another filter rejected (never admitted to the indexes) meets that filter again.
    kept = [i for i, o in originals.items() if rows[ids[o]][0] == "keep"]
    assert len(kept) >= 10
    for i in kept:
        outcome, rejected_by, _ = rows[ids[i]]
        assert outcome == "reject", data.rows[i]
        if i in copies:
            assert rejected_by == "exact_dedup"
            assert reasons[ids[i]] == f"exact_dup: same text as {ids[originals[i]]}"
        else:
            assert rejected_by == "near_dedup"
            assert reasons[ids[i]].startswith(("near_dup: j=", "near_dup: e="))
            assert f"with {ids[originals[i]]} (" in reasons[ids[i]]
    assert all(rows[ids[i]][0] == "reject" for i in originals)
    # The eval items planted in the data are caught as contamination.
    leaked = [ids[data.rows.index(r)] for r in data.leaked]
    assert all(rows[i][:2] == ("reject", "contamination") for i in leaked)


def test_pii_is_redacted_in_the_store_and_the_kept_file_with_the_original_kept_aside(
    planted, tmp_path
):
    config, data = planted
    with Store(config.db_path) as store:
        filter_file(config, store, data.path, kept=tmp_path / "kept.jsonl")
        row_id_ = ids_of(data.rows)[data.rows.index(data.pii)]
        row = store.examples.by_id([row_id_])[0]
        edits = store.examples.edits(row_id_)
    assert "jo.smith@example.com" not in row["text"] and row["source"] == "real"
    assert edits[0]["editor"] == "filter:pii" and "jo.smith" in edits[0]["before"]["text"]
    kept = (tmp_path / "kept.jsonl").read_text()
    assert row["text"] in kept and "jo.smith@example.com" not in kept


# -- against the store or the file alone ---------------------------------------------


def test_a_row_equal_to_a_seed_is_rejected_against_the_store_and_kept_against_the_file(
    tmp_path,
):
    seeds = banking("train", 12, 3)
    texts = {s["text"] for s in seeds}
    rows = [r for r in banking("train", 40, 4) if r["text"] not in texts] + [seeds[0]]
    results = {}
    for against in ("store", "file"):
        root = tmp_path / against
        # The dedup filters only: what decides this row is whether the seed is seen.
        config = load_config(make_project(root, chain=["schema", "exact_dedup", "near_dedup"]))
        write_jsonl(root / "seeds.jsonl", seeds)
        path = write_jsonl(root / "data.jsonl", rows)
        with Store(config.db_path) as store:
            store.examples.add_seeds(read_seeds(root / "seeds.jsonl", config).seeds)
            seed_id = store.conn.execute(
                "SELECT id FROM examples WHERE text = ?", (seeds[0]["text"],)
            ).fetchone()[0]
            report = filter_file(config, store, path, against=against)
            results[against] = store.conn.execute(
                "SELECT e.outcome, e.status, e.rejected_by, (SELECT reason FROM decisions d"
                " WHERE d.example_id = e.id ORDER BY d.id DESC) FROM examples e WHERE id = ?",
                (ids_of(rows)[-1],),
            ).fetchone()
            pool = [s["text"] for s in store.examples.seeds()]
            dataset = [r["data"]["text"] for r in store.examples.dataset()]
        assert report.rows == len(rows)
        # The seed is in the few-shot pool and the dataset once, whatever the verdict.
        assert pool.count(seeds[0]["text"]) == 1 and dataset.count(seeds[0]["text"]) == 1
        if against == "store":
            assert results["store"] == (
                "reject",
                "rejected",
                "exact_dedup",
                f"exact_dup: same text as {seed_id}",
            )
    # Against the file alone it is kept; the dataset holds it already, as the seed.
    assert results["file"][:3] == ("keep", "surplus", None)


def test_against_the_file_alone_no_stored_row_rejects_anything(tmp_path):
    rows = banking("train", 60, 5)
    config = load_config(make_project(tmp_path))
    write_jsonl(tmp_path / "seeds.jsonl", rows[:30])
    path = write_jsonl(tmp_path / "data.jsonl", rows)
    with Store(config.db_path) as store:
        store.examples.add_seeds(read_seeds(tmp_path / "seeds.jsonl", config).seeds)
        alone = filter_file(config, store, path, against="file")
        stored = dict(store.conn.execute("SELECT id, outcome || ' ' || status FROM examples"))
        seeds = len(store.examples.seeds())
    ids = ids_of(rows)
    assert alone.rejected_by["exact_dedup"] == 0
    # A kept row the seeds already hold is stored, and not added to the dataset twice.
    # (Rows close to an eval item go to review: with no seeds prepared, contamination
    # has nothing to calibrate on and holds what passes its floor.)
    assert {stored[i] for i in ids[:30]} <= {"keep surplus", "review surplus", "reject rejected"}
    assert {stored[i] for i in ids[30:]} <= {
        "keep accepted",
        "review review_pending",
        "reject rejected",
    }
    assert seeds == 30 + sum(1 for i in ids[30:] if stored[i] == "keep accepted")


# -- outputs -------------------------------------------------------------------------


def test_kept_and_rejected_files_hold_the_right_rows_in_file_order(planted, tmp_path):
    config, data = planted
    kept, rejected = tmp_path / "out" / "kept.jsonl", tmp_path / "out" / "rejected.jsonl"
    with Store(config.db_path) as store:
        report = filter_file(config, store, data.path, kept=kept, rejected=rejected, chunk=40)
        verdicts = dict(store.conn.execute("SELECT id, outcome FROM examples"))
        reasons = dict(
            store.conn.execute(
                "SELECT example_id, filter || '|' || reason FROM decisions WHERE verdict = 'reject'"
            )
        )
    ids = ids_of(data.rows)
    kept_rows = [json.loads(line) for line in kept.read_text().splitlines()]
    rejected_rows = [json.loads(line) for line in rejected.read_text().splitlines()]
    kept_lines = [i for i, row in enumerate(ids) if verdicts[row] == "keep"]
    assert len(kept_rows) == len(kept_lines)
    for i, row in zip(kept_lines, kept_rows, strict=True):
        if data.rows[i] == data.pii:  # as stored: redacted
            assert row["label"] == data.pii["label"] and "jo.smith" not in row["text"]
        else:
            assert row == data.rows[i]
    assert len(kept_rows) == report.kept and report.kept_path == kept
    assert [r["id"] for r in rejected_rows] == [i for i in ids if verdicts[i] == "reject"]
    for r in rejected_rows:
        line = ids.index(r["id"]) + 1
        assert r["where"] == f"{data.path}:{line}"
        assert r["row"] == data.rows[line - 1]
        assert f"{r['filter']}|{r['reason']}" == reasons[r["id"]]
    assert not list(kept.parent.glob(".*"))  # no temporary file left behind


def test_outputs_are_not_left_half_written_when_the_call_fails(planted, tmp_path):
    config, data = planted
    kept = tmp_path / "kept.jsonl"

    def stop(p: FilterProgress) -> None:
        if p.done > 60:
            raise KeyboardInterrupt

    with Store(config.db_path) as store, pytest.raises(KeyboardInterrupt):
        filter_file(config, store, data.path, kept=kept, chunk=30, progress=stop)
    assert not kept.exists() and not list(tmp_path.glob(".kept.jsonl.*"))


# -- idempotence and resuming --------------------------------------------------------


def test_a_second_run_adds_nothing_and_says_so(planted, tmp_path):
    config, data = planted
    first = invoke(
        config.source,
        str(data.path),
        "--kept",
        str(tmp_path / "k1.jsonl"),
        "--rejected",
        str(tmp_path / "r1.jsonl"),
    )
    assert first.exit_code == 0, first.output
    assert f"{len(data.rows)} new, 0 already stored" in first.stdout
    with Store(config.db_path) as store:
        before = counts(store)
    second = invoke(
        config.source,
        str(data.path),
        "--kept",
        str(tmp_path / "k2.jsonl"),
        "--rejected",
        str(tmp_path / "r2.jsonl"),
    )
    assert second.exit_code == 0, second.output
    assert f"0 new, {len(data.rows)} already stored" in second.stdout
    assert "nothing new to filter" in second.stdout
    with Store(config.db_path) as store:
        assert counts(store) == before  # no row, decision, run or edit added
    # The same funnel and the same output files, read back from the store.
    funnel = [line for line in first.stdout.splitlines() if line.startswith("  ")]
    assert len(funnel) == len(CHAIN) + 3
    assert funnel == [line for line in second.stdout.splitlines() if line.startswith("  ")]
    assert (tmp_path / "k1.jsonl").read_bytes() == (tmp_path / "k2.jsonl").read_bytes()
    assert (tmp_path / "r1.jsonl").read_bytes() == (tmp_path / "r2.jsonl").read_bytes()


def test_rows_added_to_the_file_are_the_only_ones_filtered_next_time(planted):
    config, data = planted
    with Store(config.db_path) as store:
        filter_file(config, store, data.path)
        more = banking("train", 40, 99)
        write_jsonl(data.path, [*more[:20], *data.rows, *more[20:], data.rows[0]])
        again = filter_file(config, store, data.path)
    # Rows moved down by the insertion are recognised by content, not line.
    assert again.already_stored == len(data.rows)
    assert again.new == 41 and again.rows == len(data.rows) + 41
    last = ids_of([*more[:20], *data.rows, *more[20:], data.rows[0]])[-1]
    assert last != ids_of(data.rows)[0]  # a further copy of a row is a row of its own


def test_an_interrupted_run_resumes_under_its_id_and_decides_as_an_uninterrupted_one(
    tmp_path,
):
    def decisions(store: Store) -> dict[str, list[tuple[str, str, str]]]:
        out: dict[str, list[tuple[str, str, str]]] = {}
        for example_id, f, v, reason in store.conn.execute(
            "SELECT example_id, filter, verdict, reason FROM decisions ORDER BY id"
        ):
            out.setdefault(example_id, []).append((f, v, reason))
        return out

    runs = {}
    for name in ("continuous", "cut"):
        config = load_config(make_project(tmp_path / name))
        data = Planted(tmp_path / name)
        with Store(config.db_path) as store:
            if name == "cut":

                def cut(p: FilterProgress) -> None:
                    if p.done >= 100:
                        raise KeyboardInterrupt  # as Ctrl-C between two chunks

                with pytest.raises(KeyboardInterrupt):
                    filter_file(config, store, data.path, chunk=50, progress=cut)
                stopped = store.runs.all()
                assert [(r.kind, r.status) for r in stopped] == [("filter", "running")]
                assert store.count("examples") == 100
                report = filter_file(config, store, data.path, chunk=50)
                assert report.resumed and report.run_id == stopped[0].id
                assert report.already_stored == 100 and report.new == len(data.rows) - 100
                assert [r.status for r in store.runs.all()] == ["finished"]
            else:
                report = filter_file(config, store, data.path, chunk=50)
            runs[name] = (decisions(store), report.kept, report.rejected_by)
    assert runs["cut"] == runs["continuous"]


def test_a_killed_synth_filter_leaves_whole_chunks_and_the_next_call_completes_it(tmp_path):
    rows = [r for r in _all_banking("train") if r["label"] in LABELS]  # 492 rows
    rows = (rows * 9)[:4000]  # and copies: 4 chunks of 1,000
    decided = {}
    for name in ("continuous", "killed"):
        root = tmp_path / name
        config = load_config(make_project(root, chain=["schema", "exact_dedup", "near_dedup"]))
        path = write_jsonl(root / "data.jsonl", rows)
        if name == "killed":
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "synth",
                    "--config",
                    str(config.source),
                    "filter",
                    str(path),
                    "--quiet",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            stored = 0
            deadline = time.monotonic() + 120
            while stored < 1000 and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
                stored = _stored_rows(config.db_path)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            assert proc.returncode == -signal.SIGKILL, "finished before it could be killed"
            with Store(config.db_path) as store:
                stored = store.count("examples")
                orphans = store.conn.execute(
                    "SELECT count(*) FROM decisions d LEFT JOIN examples e"
                    " ON e.id = d.example_id WHERE e.id IS NULL"
                ).fetchone()[0]
                assert [r.status for r in store.runs.all()] == ["running"]
            # Whole chunks only, each with every decision of its rows.
            assert stored % 1000 == 0 and 0 < stored < len(rows) and orphans == 0
            result = invoke(config.source, str(path), "--quiet")
            assert result.exit_code == 0, result.output
            assert f"{len(rows) - stored:,} new, {stored:,} already stored" in result.stdout
            assert "(resumed)" in result.stdout
        else:
            with Store(config.db_path) as store:
                filter_file(config, store, path)
        with Store(config.db_path) as store:
            decided[name] = store.conn.execute(
                "SELECT example_id, filter, verdict, reason FROM decisions ORDER BY example_id, id"
            ).fetchall()
            assert [r.status for r in store.runs.all()] == ["finished"]
    assert decided["killed"] == decided["continuous"]


def _all_banking(split: str) -> list[dict[str, str]]:
    with (DATA / "banking77" / f"{split}.csv").open(newline="", encoding="utf-8") as f:
        return [{"text": r["text"].strip(), "label": r["category"]} for r in csv.DictReader(f)]


def _stored_rows(db: Path) -> int:
    """Rows stored so far, read without writing (the store may not exist yet)."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return int(conn.execute("SELECT count(*) FROM examples").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def test_a_generation_run_never_resumes_a_cut_off_filter_run(planted):
    config, _ = planted
    with Store(config.db_path) as store:
        cut = store.runs.begin_filter(config.as_json(), config.sha, "{}", needed=True)
        assert cut is not None
        generation = store.runs.begin(config.as_json(), config.sha)
        assert generation.id != cut.id and generation.kind == "generate"
        again = store.runs.begin_filter(config.as_json(), config.sha, "{}", needed=True)
        assert again is not None and again.id == cut.id and again.resumes == 1


# -- what kept and rejected rows are to the rest of synth ---------------------------


def test_kept_real_rows_are_seeds_and_rejected_ones_count_nowhere(planted, tmp_path):
    config, data = planted
    with Store(config.db_path) as store:
        report = filter_file(config, store, data.path)
        outcome = dict(store.conn.execute("SELECT id, outcome FROM examples"))
        kept_ids = {i for i, o in outcome.items() if o == "keep"}
        pool = {s["id"] for s in store.examples.seeds()}
        cells = store.examples.cell_counts()
        dataset = {r["id"] for r in store.examples.dataset()}
        seen = {s.id for s in store.examples.seen_items()}
        exported = export(store, config, tmp_path / "export.jsonl")
        funnel = store.reports.funnel()
    assert pool == kept_ids == dataset == seen
    assert sum(real for real, _ in cells.values()) == report.kept
    assert exported.rows == exported.real == report.kept
    assert sum(r["real"] for r in funnel) == report.kept
    assert sum(r["real_excluded"] for r in funnel) == report.rejected
    assert sum(r["generated"] for r in funnel) == 0  # real rows are no generated ones
    status = CliRunner().invoke(cli, ["--config", str(config.source), "status"])
    assert f"real rows kept out of the dataset by synth filter: {report.rejected}" in (
        status.stdout
    )


def test_a_synthetic_set_fills_quotas_then_surplus_and_is_sampled_for_review(tmp_path):
    config = load_config(make_project(tmp_path, per_label=10))
    rows = banking("train", 80, 11)
    path = write_jsonl(tmp_path / "theirs.jsonl", rows)
    with Store(config.db_path) as store:
        report = filter_file(config, store, path, source="synthetic")
        statuses = store.conn.execute(
            "SELECT label, status, count(*) FROM examples WHERE outcome = 'keep'"
            " GROUP BY label, status"
        ).fetchall()
        cells = store.examples.cell_counts()
        dataset = store.examples.dataset()
        sampled = store.conn.execute(
            "SELECT count(*) FROM examples WHERE status = 'review_pending'"
        ).fetchone()[0]
    by_label: dict[str, dict[str, int]] = {}
    for label, status, n in statuses:
        by_label.setdefault(label, {})[status] = n
    for label, got in by_label.items():
        assert got.get("accepted", 0) + got.get("review_pending", 0) == min(
            10, sum(got.values())
        ), label
    assert report.surplus == sum(g.get("surplus", 0) for g in by_label.values()) > 0
    assert all(real == 0 and synthetic <= 10 for real, synthetic in cells.values())
    assert sampled >= len(by_label)  # at least one per cell, as after a run
    assert all(r["source"] == "synthetic" for r in dataset)
    assert all(r["lineage"].as_dict()["origin"].startswith("theirs.jsonl:") for r in dataset)
    assert all(r["lineage"].as_dict()["model"] is None for r in dataset)


# -- bad input -----------------------------------------------------------------------


def test_a_malformed_line_names_file_and_line_and_stores_nothing(planted):
    config, data = planted
    lines = data.path.read_text().splitlines()
    lines.insert(150, '{"text": "my card has not come", "label": ')
    data.path.write_text("\n".join(lines) + "\n")
    result = invoke(config.source, str(data.path))
    assert result.exit_code == 1
    assert f"Error: {data.path}:151: invalid JSON" in result.output
    assert "Traceback" not in result.output
    with Store(config.db_path) as store:
        assert all(n == 0 for n in counts(store).values())


def test_a_row_missing_a_field_is_refused_or_skipped_and_listed(planted):
    config, data = planted
    rows = [*data.rows[:30], {"label": LABELS[0]}, *data.rows[30:40]]
    write_jsonl(data.path, rows)
    with Store(config.db_path) as store, pytest.raises(SeedError) as e:
        filter_file(config, store, data.path)
    assert str(e.value) == f"{data.path}:31: missing field 'text'"
    result = invoke(config.source, str(data.path), "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert f"skipped {data.path}:31: missing field 'text'" in result.stderr
    assert "40 rows (real), 40 new" in result.stdout


def test_judge_without_a_rubric_filter_is_an_error_naming_the_key(planted):
    config, data = planted
    result = invoke(config.source, str(data.path), "--judge")
    assert result.exit_code == 1
    assert 'config.toml: filters: judging asked for, but no [[filters]] kind = "rubric"' in (
        result.output
    )
    with Store(config.db_path) as store:
        assert all(n == 0 for n in counts(store).values())


# -- progress ------------------------------------------------------------------------


def test_progress_is_reported_after_every_chunk(planted):
    config, data = planted
    seen: list[FilterProgress] = []
    with Store(config.db_path) as store:
        report = filter_file(config, store, data.path, chunk=25, progress=seen.append)
    n = len(data.rows)
    assert [p.done for p in seen] == [*range(25, n, 25), n]
    assert all(p.total == n for p in seen)
    last = seen[-1]
    assert (last.kept, last.rejected, last.review) == (report.kept, report.rejected, 0)
    assert last.rate > 0


def test_piped_output_shows_progress_lines_on_stderr_and_the_funnel_on_stdout(planted):
    config, data = planted
    result = invoke(config.source, str(data.path))
    assert result.exit_code == 0, result.output
    n = len(data.rows)
    assert f"filter: {n}/{n} rows" in result.stderr
    out = result.stdout
    for name in CHAIN:
        assert f"  - {name}" in out
    assert "  = kept" in out and "judge" not in out


def test_the_terminal_bar_shows_rows_rate_kept_and_rejected():
    from rich.console import Console

    from synth.progress import FilterBar

    console = Console(record=True, force_terminal=True, width=120)
    with FilterBar(console) as bar:
        for done in (1_000, 2_000):
            bar(FilterProgress(done, 10_000, done - 400, 400, 0, 0, elapsed=done / 500))
    text = console.export_text()
    assert "2000/10000" in text and "500/s" in text and "kept 1,600 rejected 400" in text


# -- the judge -----------------------------------------------------------------------


def judged_project(root: Path, sim: object) -> Path:
    """The test project on the simulator, with the bundled judge templates and rubric
    and the judge last in the chain."""
    config_path = make_project(root, base_url=sim.base_url)  # type: ignore[attr-defined]
    shutil.copytree(ROOT / "prompts" / "judge", root / "prompts" / "judge")
    (root / "prompts" / "rubrics").mkdir()
    shutil.copy(ROOT / "prompts" / "rubrics" / "banking.toml", root / "prompts" / "rubrics")
    with config_path.open("a") as f:
        f.write('\n[[filters]]\nkind = "rubric"\nrubric = "prompts/rubrics/banking.toml"\n')
    return config_path


def test_the_judge_runs_only_when_asked_and_its_calls_belong_to_the_filter_run(tmp_path, sim):
    config = load_config(judged_project(tmp_path, sim))
    rows = banking("train", 24, 21)
    write_jsonl(tmp_path / "seeds.jsonl", banking("train", 12, 22))
    path = write_jsonl(tmp_path / "data.jsonl", rows)
    with Store(config.db_path) as store:
        store.examples.add_seeds(read_seeds(tmp_path / "seeds.jsonl", config).seeds)
        unjudged = filter_file(config, store, path, against="file", chunk=8)
        assert unjudged.judge == "not_asked" and store.count("llm_calls") == 0
        assert "rubric" not in unjudged.filters
    judged_db = config.project.model_copy(update={"db": "judged.db"})
    config = config.model_copy(update={"project": judged_db})
    with Store(config.db_path) as store:
        store.examples.add_seeds(read_seeds(tmp_path / "seeds.jsonl", config).seeds)
        judged = filter_file(config, store, path, against="file", judge=True, chunk=8)
        calls = store.conn.execute("SELECT DISTINCT purpose, run_id FROM llm_calls").fetchall()
        by_filter = dict(
            store.conn.execute(
                "SELECT filter, count(*) FROM decisions WHERE run_id = ? GROUP BY filter",
                (judged.run_id,),
            )
        )
        scored = store.conn.execute(
            "SELECT count(DISTINCT example_id) FROM judge_scores"
        ).fetchone()[0]
    assert judged.judge == "ran" and judged.filters[-2:] == ["label_check", "rubric"]
    assert calls == [("judge", judged.run_id)]
    survivors = len(rows) - sum(
        judged.rejected_by[f] for f in judged.rejected_by if f not in ("label_check", "rubric")
    )
    assert by_filter["label_check"] == survivors and scored == survivors
    assert judged.kept + judged.rejected + judged.review == len(rows)


def test_the_judge_stops_at_the_budget_cap_and_writes_no_output(tmp_path, sim):
    config_path = judged_project(tmp_path, sim)
    text = config_path.read_text().replace("[review]", "[generate]\nmax_calls = 6\n\n[review]")
    config_path.write_text(text)
    config = load_config(config_path)
    path = write_jsonl(tmp_path / "data.jsonl", banking("train", 40, 23))
    kept = tmp_path / "kept.jsonl"
    with Store(config.db_path) as store:
        report = filter_file(config, store, path, judge=True, kept=kept, chunk=8)
        runs = store.runs.all()
        stored = store.count("examples")
        calls = store.count("llm_calls")
    assert report.status == "stopped" and report.stop_reason == "budget: max_calls = 6 reached"
    assert "no output file written" in render_report(report)
    assert not kept.exists() and report.kept_path is None
    assert [(r.kind, r.status) for r in runs] == [("filter", "stopped")]
    # Each chunk is judged whole: the cap is checked before a chunk, not within one.
    assert calls >= 6 and 0 < stored < 40 and stored % 8 == 0
