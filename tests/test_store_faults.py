"""The store file gone wrong: full disk, read-only, damaged, empty, in use by another run.

Each fault is made for real: a full disk is a small tmpfs, a read-only store is a
read-only bind mount (chmod alone does not stop root, which CI runs as), both in a
private mount namespace (``unshare``) that ends with the command; a damaged store has
its bytes overwritten. Every command answers with one line naming the file, and
nothing is half-written.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import Project, write_jsonl

from synth.errors import StoreError
from synth.store import Store

READ_COMMANDS = [
    ["status"],
    ["audit"],
    ["audit", "--json"],
    ["rows"],
    ["versions"],
    ["show", "seed_none"],
]


def synth(config: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "synth", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def in_namespace(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a shell script as root of its own mount namespace: the mounts it makes (a
    tmpfs, a read-only bind) vanish with it."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed for the storage fault tests")
    env = {**os.environ, "PY": sys.executable}
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
    )


def one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def integrity(path: Path) -> tuple[str, int]:
    conn = sqlite3.connect(path)
    try:
        ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
        return ok, conn.execute("SELECT count(*) FROM examples").fetchone()[0]
    finally:
        conn.close()


def imported(project: Project, db: str = "synth.db") -> Path:
    text = project.config_path.read_text().replace('db = "synth.db"', f'db = "{db}"')
    project.config_path.write_text(text)
    done = synth(project.config_path, "seeds", "import", str(project.seeds))
    assert done.returncode == 0, done.stderr
    return project.root / db


# --- read-only stores --------------------------------------------------------------


def test_read_commands_work_on_a_store_on_read_only_media(project):
    store = imported(project, "archive/synth.db")
    assert not store.with_name("synth.db-wal").exists()  # the last writer cleaned up
    commands = [*READ_COMMANDS, ["export", "--out", str(project.root / "out.jsonl")]]
    script = "mount --bind archive archive && mount -o remount,bind,ro archive || exit 9\n"
    for i, args in enumerate(commands):
        script += f'"$PY" -m synth {" ".join(args)} >o{i} 2>e{i}; echo $? >r{i}\n'
    script += '"$PY" -m synth seeds import seeds.jsonl >ow 2>ew; echo $? >rw\n'
    script += "touch archive/probe 2>/dev/null && echo writable >probe || true\n"
    done = in_namespace(script, project.root)
    assert done.returncode == 0, done.stderr
    assert not (project.root / "probe").exists()  # the mount really was read-only
    for i, args in enumerate(commands):
        rc = int((project.root / f"r{i}").read_text())
        err = (project.root / f"e{i}").read_text()
        if args[0] == "show":  # an id that is not there: one clean line, as on any store
            assert rc == 1 and err.count("\n") == 1 and "no such example" in err, err
            continue
        assert rc == 0, (args, err)
        assert "Traceback" not in err
    assert "7 rows (7 real" in (project.root / "o6").read_text()
    assert int((project.root / "rw").read_text()) == 1
    err = (project.root / "ew").read_text().strip()
    assert err.count("\n") == 0 and str(store) in err and "read-only" in err, err
    assert "status, audit, export" in err
    assert integrity(store) == ("ok", 7)


def test_a_read_only_store_that_needs_upgrading_says_so(project):
    store = imported(project)
    conn = sqlite3.connect(store)
    conn.execute(
        "DELETE FROM _sqlite_migrations WHERE rowid = (SELECT max(rowid) FROM _sqlite_migrations)"
    )
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="needs upgrading.*read-only"):
        Store(store, readonly=True)


def test_read_commands_never_create_a_store(project):
    for args in READ_COMMANDS:
        line = one_line_error(synth(project.config_path, *args), "no store here yet")
        assert str(project.root / "synth.db") in line
    assert not (project.root / "synth.db").exists()


def test_an_empty_store_file_is_refused_by_every_command(project):
    (project.root / "synth.db").touch()
    for args in [["status"], ["seeds", "import", str(project.seeds)], ["run"], ["plan"]]:
        one_line_error(synth(project.config_path, *args), "empty (0 bytes)", "synth.db")
    assert (project.root / "synth.db").stat().st_size == 0


# --- damaged stores --------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "words"),
    [("header", "not a SQLite database"), ("pages", "damaged")],
)
def test_a_damaged_store_is_one_line_for_every_command(project, where, words):
    store = imported(project)
    data = bytearray(store.read_bytes())
    if where == "header":
        data[:16] = b"not sqlite at al"
    else:
        for offset in range(4096, len(data), 4096):  # every page's header, past the first
            data[offset : offset + 64] = b"\xff" * 64
    store.write_bytes(bytes(data))
    commands = [*READ_COMMANDS[:-1], ["seeds", "import", str(project.seeds)], ["plan"]]
    for args in [*commands, ["export", "--out", str(project.root / "out.jsonl")]]:
        one_line_error(synth(project.config_path, *args), words, str(store))
    assert not (project.root / "out.jsonl").exists()
    assert [p.name for p in project.root.iterdir() if p.name.startswith(".")] == []


# --- full disks ----------------------------------------------------------------------


def test_an_import_onto_a_full_disk_is_refused_whole(project):
    imported(project)
    write_jsonl(
        project.root / "big.jsonl",
        [
            {"text": f"my card number {i} has not arrived yet, " * 4, "label": "card_arrival"}
            for i in range(3000)
        ],
    )
    script = """
    mkdir full && mount -t tmpfs -o size=400k tmpfs full || exit 9
    cp synth.db full/ && sed 's#"synth.db"#"full/synth.db"#' config.toml > full.toml
    "$PY" -m synth --config full.toml seeds import big.jsonl >o 2>e; echo $? >r
    "$PY" -c 'import sqlite3, sys; c = sqlite3.connect("full/synth.db")
    print(c.execute("PRAGMA integrity_check").fetchone()[0],
          c.execute("SELECT count(*) FROM examples").fetchone()[0])' >check
    """
    done = in_namespace(script.replace("\n    ", "\n"), project.root)
    assert done.returncode == 0, done.stderr
    assert (project.root / "r").read_text().strip() == "1"
    err = (project.root / "e").read_text().strip()
    assert "\n" not in err and "full/synth.db: the disk is full" in err, err
    assert (project.root / "check").read_text().split() == ["ok", "7"]


def test_exports_and_reports_onto_a_full_disk_leave_nothing_behind(project):
    imported(project)
    (project.root / "old.jsonl").write_text("the previous export\n")
    script = """
    mkdir full && mount -t tmpfs -o size=256k tmpfs full || exit 9
    cp old.jsonl full/e.jsonl
    dd if=/dev/zero of=full/filler bs=4k 2>/dev/null
    "$PY" -m synth export --out full/e.jsonl >o1 2>e1; echo $? >r1
    "$PY" -m synth export --out full/new.csv --format csv >o2 2>e2; echo $? >r2
    "$PY" -m synth audit --html full/a.html >o3 2>e3; echo $? >r3
    ls -A full >listing
    cat full/e.jsonl >kept
    """
    done = in_namespace(script.replace("\n    ", "\n"), project.root)
    assert done.returncode == 0, done.stderr
    for i, name in [(1, "full/e.jsonl"), (2, "full/new.csv"), (3, "full/a.html")]:
        assert (project.root / f"r{i}").read_text().strip() == "1"
        err = (project.root / f"e{i}").read_text().strip()
        assert "\n" not in err and err.startswith(f"Error: {name}: cannot write"), err
        assert "No space left" in err
    assert (project.root / "listing").read_text().split() == ["e.jsonl", "filler"]
    assert (project.root / "kept").read_text() == "the previous export\n"


def test_a_file_size_limit_is_one_line_too(project):
    """RLIMIT_FSIZE: writes past the limit fail with EFBIG (SQLite says "disk I/O
    error"), as on a file system with a quota."""
    store = imported(project)
    write_jsonl(
        project.root / "big.jsonl",
        [
            {"text": f"when does card {i} get here, it is late " * 4, "label": "card_arrival"}
            for i in range(3000)
        ],
    )
    limit = store.stat().st_size + 64 * 1024

    def limited() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "synth",
            "--config",
            str(project.config_path),
            "seeds",
            "import",
            str(project.root / "big.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limited,
    )
    one_line_error(proc, str(store), "disk I/O error")
    assert integrity(store) == ("ok", 7)


# --- the run lock ----------------------------------------------------------------------


def _contend(path: str, barrier: Any, results: Any, release: Any) -> None:
    barrier.wait()
    try:
        store = Store(path)
        run = store.runs.begin("{}", "sha-a")
    except StoreError as e:
        results.put(("refused", str(e)))
        return
    results.put(("ran", run.id))
    release.wait(30)
    store.runs.finish(run.id, "finished")
    store.close()


def test_of_two_runs_started_at_once_exactly_one_runs_every_time(tmp_path):
    """100 races of two processes, released by one barrier, through the lock code a
    `synth run` takes (``store.runs.begin``)."""
    path = str(tmp_path / "s.db")
    Store(path).close()
    ctx = multiprocessing.get_context("fork")
    refusals = set()
    for _ in range(100):
        barrier, results, release = ctx.Barrier(2), ctx.Queue(), ctx.Event()
        procs = [ctx.Process(target=_contend, args=(path, barrier, results, release)) for _ in "ab"]
        for p in procs:
            p.start()
        outcomes = sorted([results.get(timeout=30), results.get(timeout=30)])
        release.set()
        for p in procs:
            p.join(30)
            assert p.exitcode == 0
        assert [o[0] for o in outcomes] == ["ran", "refused"], outcomes
        refusals.add(outcomes[1][1].split("(pid")[0])
    # One line, naming the store, the run and its pid, whatever the timing.
    assert all("\n" not in r and r.startswith(f"{path}: ") for r in refusals)
    assert all("still going" in r for r in refusals)
    with Store(path) as store:
        runs = store.runs.all()
    assert len(runs) == 100 and {r.status for r in runs} == {"finished"}


def test_synth_run_started_twice_at_once_refuses_one_in_one_line(sim_project, sim):
    sim.configure(latency_ms=20_000)  # the winner waits on its first replies
    done = synth(sim_project.config_path, "seeds", "import", str(sim_project.seeds))
    assert done.returncode == 0, done.stderr
    cmd = [
        sys.executable,
        "-m",
        "synth",
        "--config",
        str(sim_project.config_path),
        "run",
        "--quiet",
    ]
    for _ in range(3):
        procs = [
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in "ab"
        ]
        deadline = time.monotonic() + 60
        while all(p.poll() is None for p in procs):
            assert time.monotonic() < deadline, "neither run was refused"
            time.sleep(0.05)
        loser = next(p for p in procs if p.poll() is not None)
        winner = next(p for p in procs if p is not loser)
        _, err = loser.communicate()
        assert loser.returncode == 1, err
        assert err.count("\n") == 1 and "is still going (pid" in err, err
        assert f"pid {winner.pid})" in err
        winner.send_signal(signal.SIGKILL)  # its lock goes with it: the next race is fair
        winner.communicate()


def test_a_run_of_a_dead_process_is_resumed_even_when_its_pid_is_reused(tmp_path):
    with Store(tmp_path / "s.db") as store:
        first = store.runs.begin("{}", "sha-a")
    conn = sqlite3.connect(tmp_path / "s.db")
    conn.execute("UPDATE runs SET pid = 1")  # a pid that is alive, and not a synth run
    conn.commit()
    conn.close()
    with Store(tmp_path / "s.db") as store:
        again = store.runs.begin("{}", "sha-a")
    assert again.id == first.id and again.resumes == 1


def test_the_lock_goes_with_a_killed_process(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from synth.store import Store\n"
            "s = Store(sys.argv[1]); s.runs.begin('{}', 'sha-a'); print('held', flush=True)\n"
            "time.sleep(60)",
            str(tmp_path / "s.db"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    with Store(tmp_path / "s.db") as store:
        with pytest.raises(StoreError, match=rf"run run_\w+ is still going \(pid {holder.pid}\)"):
            store.runs.begin("{}", "sha-a")
        holder.kill()
        holder.wait()
        holder.stdout.close()
        assert store.runs.begin("{}", "sha-a").resumes == 1
