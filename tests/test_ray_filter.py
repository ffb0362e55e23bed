"""`synth filter --ray` on a local Ray (2 CPUs): the local path's decisions, on real rows.

BANKING77 rows with exact copies, near copies, eval-set items and an email planted
among them (the file of tests/test_filter_cmd.py), filtered against a store of seeds,
once locally and once on Ray, each in its own store: every row must get the same
decisions (filter, verdict, reason, score) and status.
"""

from __future__ import annotations

import logging
import random
import sys
from pathlib import Path

import pytest
import ray
from conftest import write_jsonl
from test_filter_cmd import Planted, banking, invoke, make_project

from synth.config import Config, load_config
from synth.errors import ConfigError
from synth.filtering import filter_file
from synth.seeds import read_seeds
from synth.store import Store

# Ray Data warns about its own settings' deprecations (raised from inside ray).
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")

# The Ray backend compares rows whole: near dedup's template guard off (see
# synth.distributed), in both projects.
WHOLE = 'kind = "near_dedup"\nboilerplate_df = 1.0\nboilerplate_cells = 0\n'


@pytest.fixture(scope="module")
def local_ray():
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING
    )
    yield
    ray.shutdown()


def project(root: Path, guard: bool = False) -> tuple[Config, Planted]:
    path = make_project(root)
    if not guard:
        path.write_text(path.read_text().replace('kind = "near_dedup"\n', WHOLE))
    config = load_config(path)
    data = Planted(root, n=300)
    write_jsonl(root / "seeds.jsonl", banking("train", 60, 99))
    with Store(config.db_path) as store:
        store.examples.add_seeds(read_seeds(root / "seeds.jsonl", config).seeds)
    return config, data


def decisions(config: Config) -> dict[str, tuple[str, str, str]]:
    with Store(config.db_path) as store:
        return {
            r[0]: r[1:]
            for r in store.conn.execute(
                "SELECT e.id, e.outcome || ' ' || e.status, group_concat(d.filter || '|'"
                " || d.verdict || '|' || d.reason || '|' || coalesce(d.score, ''), ';')"
                " FROM examples e JOIN decisions d ON d.example_id = e.id"
                " WHERE e.run_id IS NOT NULL GROUP BY e.id ORDER BY e.id"
            )
        }


def test_filter_on_ray_decides_as_the_local_path_and_a_rerun_adds_nothing(tmp_path, local_ray):
    local, data = project(tmp_path / "local")
    on_ray, _ = project(tmp_path / "ray")
    with Store(local.db_path) as store:
        report = filter_file(local, store, data.path)
    result = invoke(on_ray.source, str(tmp_path / "ray" / "data.jsonl"), "--ray", "--quiet")
    assert result.exit_code == 0, result.output
    mine, theirs = decisions(local), decisions(on_ray)
    assert len(mine) == len(data.rows) == report.rows
    # Every filter rejects something here, so the comparison covers each of them.
    assert set(report.rejected_by) >= {"exact_dedup", "near_dedup", "contamination"}
    assert theirs == mine
    again = invoke(on_ray.source, str(tmp_path / "ray" / "data.jsonl"), "--ray", "--quiet")
    assert again.exit_code == 0 and "nothing new to filter" in again.output
    assert decisions(on_ray) == mine


def test_chunks_on_ray_decide_as_local_chunks_do(tmp_path, local_ray):
    # Chunk boundaries change dedup decisions (a row kept in a chunk is compared with
    # the rest of it before the chain's later filters have had their say).
    outcomes = []
    for backend in ("local", "ray"):
        config, data = project(tmp_path / backend)
        with Store(config.db_path) as store:
            filter_file(config, store, data.path, chunk=64, ray=backend == "ray")
        outcomes.append(decisions(config))
    assert outcomes[0] == outcomes[1] and len(outcomes[0]) == len(data.rows)


def test_a_file_that_repeats_its_rows_decides_as_the_local_path(tmp_path, local_ray):
    # Ray sees each content once and near dedup each group of identical rows once; a
    # copy in a later chunk of a row rejected earlier (a near copy, a leaked eval
    # item) reaches near dedup again, and must meet what was kept since.
    outcomes = []
    for backend in ("local", "ray"):
        config, data = project(tmp_path / backend)
        again = list(data.rows)
        random.Random(3).shuffle(again)
        write_jsonl(data.path, [*data.rows, *again, *data.rows[:50]])
        with Store(config.db_path) as store:
            report = filter_file(config, store, data.path, chunk=64, ray=backend == "ray")
        outcomes.append(decisions(config))
    assert outcomes[0] == outcomes[1] and len(outcomes[0]) == 2 * len(data.rows) + 50
    assert set(report.rejected_by) >= {"exact_dedup", "near_dedup", "contamination"}


def test_the_template_guard_is_refused_before_anything_is_stored(tmp_path):
    config, data = project(tmp_path, guard=True)
    with Store(config.db_path) as store, pytest.raises(ConfigError) as e:
        filter_file(config, store, data.path, ray=True)
    assert "boilerplate_df = 1.0" in str(e.value) and "\n" not in str(e.value)
    assert "filters[3]" in str(e.value)
    with Store(config.db_path) as store:
        assert store.count("runs") == 0


def test_without_ray_installed_the_error_is_one_line(tmp_path, monkeypatch):
    config, data = project(tmp_path)
    monkeypatch.setitem(sys.modules, "ray", None)
    result = invoke(config.source, str(data.path), "--ray")
    assert result.exit_code == 1
    assert result.output.strip() == "Error: --ray: ray is not installed: pip install 'synth[ray]'"
