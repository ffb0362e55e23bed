from __future__ import annotations

import ast
import sqlite3
from pathlib import Path

import sqlite_utils
from conftest import ROOT

from synth.records import Seed
from synth.store import Store, migrations


def test_schema_is_created_once_and_is_public(tmp_path):
    path = tmp_path / "s.db"
    Store(path).close()
    Store(path).close()  # reopening applies nothing twice
    conn = sqlite3.connect(path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "examples", "llm_calls", "decisions", "reviews", "templates", "edits"} <= tables
    columns = {r[1] for r in conn.execute("PRAGMA table_info(examples)")}
    assert {
        "id",
        "source",
        "slice",
        "label",
        "data_json",
        "text",
        "content_sha",
        "status",
        "run_id",
        "llm_call_id",
        "template",
        "template_sha",
        "model",
        "parent_ids_json",
        "created_at",
    } <= columns
    calls = {r[1] for r in conn.execute("PRAGMA table_info(llm_calls)")}
    assert {
        "id",
        "run_id",
        "request_sha",
        "model",
        "params_json",
        "messages_json",
        "response_json",
        "status",
        "error",
        "attempts",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
        "latency_ms",
        "created_at",
    } <= calls
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    applied = conn.execute("SELECT count(*) FROM _sqlite_migrations").fetchone()[0]
    assert applied == len(migrations.pending(sqlite_utils.Database(memory=True)))


def test_seed_content_is_unique(tmp_path):
    seed = Seed(text="hi there", label="a", data={"text": "hi there", "label": "a"}, origin="f:1")
    same = Seed(text="hi there", label="a", data={"label": "a", "text": "hi there"}, origin="g:9")
    with Store(tmp_path / "s.db") as store:
        assert store.examples.add_seeds([seed]).added == 1
        assert store.examples.add_seeds([same]).duplicates == 1
        assert store.count("examples") == 1


def test_an_interrupted_run_is_resumed_with_the_same_config(tmp_path):
    with Store(tmp_path / "s.db") as store:
        first = store.runs.begin("{}", "sha-a")
        # The process that owned it is gone (simulated by an impossible pid).
        store.conn.execute("UPDATE runs SET pid = 2147483646")
        store.conn.commit()
        again = store.runs.begin("{}", "sha-a")
        assert again.id == first.id and again.resumes == 1
        store.runs.finish(first.id, "finished")
        fresh = store.runs.begin("{}", "sha-a")
        assert fresh.id != first.id


def test_a_run_with_another_config_closes_the_interrupted_one(tmp_path):
    with Store(tmp_path / "s.db") as store:
        first = store.runs.begin("{}", "sha-a")
        store.conn.execute("UPDATE runs SET pid = 2147483646")
        store.conn.commit()
        second = store.runs.begin("{}", "sha-b")
        assert second.id != first.id
        assert store.runs.all()[0].status == "stopped"


def test_only_the_store_speaks_sql():
    offenders = []
    for path in sorted((ROOT / "synth").rglob("*.py")):
        if path.relative_to(ROOT / "synth").parts[0] == "store":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            if any(n.split(".")[0] in ("sqlite3", "sqlite_utils") for n in names):
                offenders.append(str(Path(path).relative_to(ROOT)))
    assert offenders == []
