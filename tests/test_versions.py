"""Frozen versions, group-level splits and the leakage check, on real stores."""

from __future__ import annotations

import random

import pytest
from conftest import write_jsonl

from synth.config import SplitSettings
from synth.errors import SynthError
from synth.runner import run
from synth.seeds import read_seeds
from synth.versions import (
    SPLITS,
    VersionError,
    assign_splits,
    diff_versions,
    freeze,
    leakage,
    list_versions,
    render_diff,
    version_leakage,
)

WORDS = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ro", "si", "tu") for b in range(40)]


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.sample(WORDS, 10))


def _seed_rows(n: int, rng: random.Random) -> list[dict]:
    return [
        {
            "id": f"seed_{i:03}",
            "slice": "default",
            "label": ("a", "b")[i % 2],
            "text": _sentence(rng),
            "parent_ids": [],
        }
        for i in range(n)
    ]


def _near_copy(text: str) -> str:
    words = text.split()
    words[-1] = "changed"  # one word of ten: Jaccard of word 2-grams 8/10 = 0.8
    return " ".join(words)


def test_a_test_seeds_child_and_near_duplicate_pairs_never_cross_splits():
    rng = random.Random(7)
    rows = _seed_rows(60, rng)
    settings = SplitSettings(train=0.6, validation=0.2, test=0.2, seed=3)
    base = assign_splits(rows, settings)
    test_seed = rows[base.index("test")]
    train_seed = rows[base.index("train")]
    # A synthetic child shown a train seed and a test seed: it must go to test.
    child = {
        "id": "ex_child",
        "slice": "default",
        "label": test_seed["label"],
        "text": _sentence(rng),
        "parent_ids": [train_seed["id"], test_seed["id"]],
    }
    # Near copies of twenty seeds, planted as new real rows.
    copies = [
        {**r, "id": f"copy_{r['id']}", "text": _near_copy(r["text"]), "parent_ids": []}
        for r in rows[:20]
    ]
    planted = [*rows, child, *copies]
    # Matched only when identical, the copies are laid out on their own: many land in
    # another split than their original, so the grouping has work to do.
    apart = assign_splits(planted, settings.model_copy(update={"threshold": 1.0}))
    index = {r["id"]: i for i, r in enumerate(planted)}
    crossing = [c for c in copies if apart[index[c["id"]]] != apart[index[c["id"][5:]]]]
    assert len(crossing) >= 3

    splits = assign_splits(planted, settings)
    assert splits[index["ex_child"]] == "test"
    assert splits[index[test_seed["id"]]] == "test"
    for c in copies:
        assert splits[index[c["id"]]] == splits[index[c["id"][5:]]], c["id"]
    report = leakage(planted, splits)
    assert report.clean, report
    # The fractions still hold, cell by cell, to within a group or two.
    counts = {s: splits[:60].count(s) for s in SPLITS}
    assert counts["train"] >= 30 and counts["validation"] >= 8 and counts["test"] >= 8


def test_the_same_rows_and_seed_give_the_same_splits_and_another_seed_others():
    rows = _seed_rows(50, random.Random(1))
    a = assign_splits(rows, SplitSettings(seed=0))
    assert assign_splits(list(rows), SplitSettings(seed=0)) == a
    assert assign_splits(rows, SplitSettings(seed=1)) != a


@pytest.mark.parametrize(
    ("splits", "near", "lineage"),
    [
        (["train", "test", "train"], 1, 0),  # the near pair 0-1 crosses
        (["train", "train", "validation"], 0, 1),  # the child 1 sits below its parent 2
        (["test", "test", "test"], 0, 0),
    ],
)
def test_leakage_check_reports_what_crosses(splits, near, lineage):
    text = "my card still has not arrived after two weeks of waiting"
    rows = [
        {"id": "r0", "text": text, "parent_ids": []},
        {"id": "r1", "text": _near_copy(text), "parent_ids": ["r2"]},
        {"id": "r2", "text": "what exchange rate do you use for euros", "parent_ids": []},
    ]
    report = leakage(rows, splits)
    assert len(report.near_pairs) == near and len(report.lineage) == lineage
    assert report.clean == (near == lineage == 0)


def _ran(project):
    config = project.config()
    with project.store() as store:
        store.examples.add_seeds(read_seeds(project.seeds, config).seeds)
    assert run(config).status == "finished"
    return config


def test_freeze_keeps_content_and_splits_whatever_happens_later(sim_project, sim):
    config = _ran(sim_project)
    with sim_project.store() as store:
        v1 = freeze(store, config, "v1")
        assert v1.leakage.clean and v1.rows == len(store.examples.dataset())
        items = store.versions.items("v1")
        synthetic = next(it for it in items if it["source"] == "synthetic")
        # Every synthetic row sits at least as held out as each of its seeds.
        where = {it["example_id"]: it["split"] for it in items}
        for it in items:
            for p in it["lineage"].get("parent_ids", []):
                assert SPLITS.index(it["split"]) >= SPLITS.index(where[p])
        data = {**synthetic["data"], "text": "an edited text after the freeze"}
        store.examples.edit(synthetic["example_id"], "reviewer:ana", data, data["text"])
        assert store.versions.items("v1") == items
        with pytest.raises(Exception, match="frozen version never changes"):
            store.conn.execute("UPDATE version_items SET split = 'test'")
        v2 = freeze(store, config, "v2")
        assert v2.sha != v1.sha
        d = diff_versions(store, "v1", "v2")
        assert d.changed == [synthetic["example_id"]]
        assert not d.added and not d.removed
        shown = render_diff(d)  # what `synth diff` prints: the texts, not only the id
        assert f"~ {synthetic['example_id']}  {synthetic['slice']}/{synthetic['label']}" in shown
        assert f"    v1: {synthetic['text']}" in shown
        assert "    v2: an edited text after the freeze" in shown
        assert d.unchanged + len(d.moved) + len(d.changed) >= v1.rows - 1
        assert diff_versions(store, "v1", "v1").same
        assert [v.name for v in list_versions(store)] == ["v1", "v2"]
        assert version_leakage(store, config, "v2").clean
        manifest = store.versions.get("v1")["manifest"]
    assert manifest["sha"] == v1.sha and manifest["rows"] == v1.rows
    assert sum(c["real"] + c["synthetic"] + c["edited"] for c in manifest["cells"]) == v1.rows
    assert manifest["models"] == [{"model": "sim-1", "rows": v1.rows - 7}]
    assert manifest["templates"][0]["name"] == "prompts/generate/classify.md.j2"
    assert {f["filter"] for f in manifest["filters"]["versions"]} == {"schema", "exact_dedup"}
    assert manifest["review"]["sampled"] >= 4 and manifest["review"]["reviewed"] == 0


def test_the_same_content_freezes_to_the_same_sha(sim_project, sim):
    config = _ran(sim_project)
    with sim_project.store() as store:
        assert freeze(store, config, "a").sha == freeze(store, config, "b").sha


@pytest.mark.parametrize(
    ("name", "message"),
    [("v1", "exists"), ("bad name", "letters, digits"), ("", "letters, digits")],
)
def test_a_taken_or_invalid_name_is_refused_and_nothing_is_stored(project, name, message):
    config = project.config()
    write_jsonl(project.root / "more.jsonl", [{"text": "one two three", "label": "x"}])
    with project.store() as store:
        store.examples.add_seeds(read_seeds(project.seeds, config).seeds)
        freeze(store, config, "v1")
        with pytest.raises(VersionError, match=message) as e:
            freeze(store, config, name)
        assert isinstance(e.value, SynthError) and repr(name) in str(e.value)
        assert len(store.versions.all()) == 1


def test_diff_of_an_unknown_version_names_it(project):
    with project.store() as store, pytest.raises(VersionError, match="'nope': no such version"):
        diff_versions(store, "nope", "nope")


def test_the_same_seeds_and_config_give_the_same_version_in_any_store(tmp_path, sim):
    from conftest import Project

    versions = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        project = Project(tmp_path / name, base_url=sim.base_url)
        config = _ran(project)
        with project.store() as store:
            versions.append(freeze(store, config, "v1"))
    # Equal shas: the same ids, content and splits, the synthetic rows' included.
    assert versions[0].sha == versions[1].sha
    assert versions[0].splits == versions[1].splits


def test_a_store_whose_seeds_have_random_ids_splits_them_as_a_new_store_does(project):
    from conftest import ROOT

    from synth.config import load_config

    config = load_config(ROOT / "config.toml")
    seeds = read_seeds(ROOT / "seeds" / "banking.jsonl", config).seeds
    by_content = []
    for fresh in (True, False):
        with project.store() as store:
            store.conn.execute("DELETE FROM examples")
            store.examples.add_seeds(seeds)
            if not fresh:  # as stores made before ids came from content have them
                rng = random.Random(5)
                for (old,) in store.conn.execute("SELECT id FROM examples").fetchall():
                    new = f"seed_{rng.getrandbits(64):016x}"
                    store.conn.execute("UPDATE examples SET id = ? WHERE id = ?", (new, old))
            rows = store.examples.dataset()
        for r in rows:
            r["text"] = r["data"]["text"]
        splits = assign_splits(rows, config.splits)
        by_content.append({r["content_sha"]: s for r, s in zip(rows, splits, strict=True)})
    assert by_content[0] == by_content[1]
    assert set(by_content[0].values()) == set(SPLITS)
