"""The band index proposes what datasketch's MinHashLSH proposes, in a fraction of its
memory, through merges, removals and compaction."""

from __future__ import annotations

import csv

import numpy as np
from conftest import DATA
from datasketch import MinHashLSH

from synth.filters import bands
from synth.filters.bands import BandIndex, FixedBands
from synth.filters.shingles import minhash_signatures, shingle_hashes, to_minhash

BANDS, ROWS, PERM = 42, 3, 128


def signatures(n: int) -> np.ndarray:
    with open(DATA / "banking77" / "train.csv", newline="", encoding="utf-8") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)][:n]
    return minhash_signatures(shingle_hashes(texts, "word", 2), PERM)


def test_it_proposes_what_minhashlsh_proposes_on_real_messages(monkeypatch):
    sigs = signatures(3000)
    monkeypatch.setattr(bands, "_MERGE_AT", 20_000)  # some merged, some pending
    lsh = MinHashLSH(num_perm=PERM, params=(BANDS, ROWS))
    index = BandIndex(BANDS, ROWS)
    ids = [f"r{i}" for i in range(len(sigs))]
    for i, sig in enumerate(sigs):
        lsh.insert(ids[i], to_minhash(sig), check_duplication=False)
    for start in range(0, len(ids), 70):
        index.add(ids[start : start + 70], sigs[start : start + 70])
    assert len(index._keys) and len(index._new_keys)  # both levels are asked
    pairs = extra = 0
    for sig in sigs:
        theirs = set(lsh.query(to_minhash(sig)))
        ours = set(index.query(sig))
        assert theirs <= ours  # 32-bit keys: a collision may add a pair, never lose one
        pairs += len(theirs)
        extra += len(ours - theirs)
    assert pairs > 2 * len(sigs)  # real messages share bands: the test has pairs to see
    assert extra <= pairs / 1000


def test_removed_rows_are_never_proposed_and_compaction_keeps_the_rest():
    sigs = signatures(2500)
    ids = [f"r{i}" for i in range(len(sigs))]
    index = BandIndex(BANDS, ROWS)
    index.add(ids, sigs)
    gone = set(ids) - set(ids[::3])
    index.remove(sorted(gone))  # 1,666 dead of 2,500: compacted
    assert index._dead == 0 and len(index) == len(ids) - len(gone)
    fresh = BandIndex(BANDS, ROWS)
    fresh.add(ids[::3], sigs[::3])
    for sig in sigs[:500]:
        found = index.query(sig)
        assert not gone & set(found)
        assert found == fresh.query(sig)


def test_a_row_removed_and_added_again_is_found_by_its_new_signature():
    sigs = signatures(50)
    keys = bands.band_keys(sigs, BANDS, ROWS)
    apart = next(k for k in range(1, len(sigs)) if not (keys[0] == keys[k]).any())
    index = BandIndex(BANDS, ROWS)
    index.add(["a", "b"], sigs[:2])
    index.remove(["a", "never added"])
    index.add(["a"], sigs[apart : apart + 1])
    index.remove(["b"])
    assert len(index) == 1
    assert index.query(sigs[apart]) == ["a"]
    assert index.query(sigs[0]) == []


def test_a_floor_leaves_out_chance_collisions_and_keeps_near_pairs():
    sigs = signatures(3000)
    index = BandIndex(BANDS, ROWS)
    ids = [f"r{i}" for i in range(len(sigs))]
    index.add(ids, sigs)
    width = BANDS * ROWS
    dropped = kept = 0
    for sig in sigs[:300]:
        everything = index.query(sig)
        floored = index.query(sig, 0.25)
        assert set(floored) <= set(everything)
        for id_ in everything:
            low = sigs[:, :width].astype(np.uint8)  # the index keeps the low 8 bits
            agree = (low[int(id_[1:])] == sig[:width].astype(np.uint8)).mean()
            assert (id_ in floored) == (agree >= 0.25)
            dropped += id_ not in floored
            kept += id_ in floored
    assert dropped and kept  # both kinds are there to see


def test_closed_levels_propose_what_one_level_proposes_through_compaction(monkeypatch):
    sigs = signatures(3000)
    ids = [f"r{i}" for i in range(len(sigs))]
    whole = BandIndex(BANDS, ROWS)
    whole.add(ids, sigs)
    monkeypatch.setattr(bands, "_MERGE_AT", 5_000)
    monkeypatch.setattr(bands, "_CLOSE_AT", 20_000)
    split = BandIndex(BANDS, ROWS)
    for start in range(0, len(ids), 70):
        split.add(ids[start : start + 70], sigs[start : start + 70])
    assert len(split._closed) >= 3 and len(split._new_keys)
    for sig in sigs[::7]:
        assert split.query(sig) == whole.query(sig)
        assert split.query(sig, floor=0.3) == whole.query(sig, floor=0.3)
    gone = sorted(set(ids) - set(ids[::3]))
    split.remove(gone)
    whole.remove(gone)
    assert split._dead == 0
    for sig in sigs[::7]:
        assert split.query(sig, floor=0.3) == whole.query(sig, floor=0.3)


def test_one_query_for_many_signatures_finds_what_a_scan_of_every_row_finds(monkeypatch):
    sigs = signatures(3000)
    ids = [f"r{i}" for i in range(len(sigs))]
    monkeypatch.setattr(bands, "_MERGE_AT", 5_000)
    monkeypatch.setattr(bands, "_CLOSE_AT", 20_000)
    index = BandIndex(BANDS, ROWS)
    for start in range(0, 2000, 80):
        index.add(ids[start : start + 80], sigs[start : start + 80])
    removed = set(range(0, 2000, 5))
    index.remove([ids[i] for i in sorted(removed)])  # dead slots are skipped, not compacted
    assert len(index._closed) and len(index._new_keys) and index._dead
    keys = index._mixed(bands.band_keys(sigs, BANDS, ROWS))  # the index's own band keys
    low = bands.low_bits(sigs, BANDS * ROWS)
    asked = list(range(0, 3000, 9))  # rows in the index, removed and never added
    for floor in (0.0, 0.3):
        found = index.query_many(sigs[asked], floor)
        for q, ours in zip(asked, found, strict=True):
            scanned = [
                ids[i]
                for i in range(2000)
                if i not in removed
                and (keys[i] == keys[q]).any()
                and (low[i] == low[q]).mean() >= floor
            ]
            assert ours == scanned  # the same rows, in the order they were added
        assert sum(map(len, found)) > len(asked)  # there are matches to compare
    assert index.query(sigs[asked[1]]) == found[1]
    assert index.query_many(sigs[:0]) == []
    assert BandIndex(BANDS, ROWS).query_many(sigs[:3]) == [[], [], []]


def test_signature_rows_keep_their_values_as_they_grow():
    rows = bands._Rows(126)
    rng = np.random.default_rng(0)
    values = rng.integers(0, 256, size=(20_000, 126), dtype=np.uint8)
    for start in range(0, len(values), 900):  # grown several times, in place
        rows.put(start, values[start : start + 900])
    picked = rng.integers(0, len(values), size=500)
    assert (rows.take(picked) == values[picked]).all()
    alive = np.arange(len(values)) % 4 != 0
    rows.keep(alive)
    assert (rows.take(np.arange(alive.sum())) == values[alive]).all()


def test_fixed_bands_propose_what_minhashlsh_proposes_on_real_messages():
    sigs = signatures(3000)
    lsh = MinHashLSH(threshold=0.25, num_perm=PERM, weights=(0.1, 0.9))
    indexed = np.arange(0, 2000, dtype=np.int64)
    for i in indexed.tolist():
        lsh.insert(i, to_minhash(sigs[i]), check_duplication=False)
    fixed = FixedBands(sigs[indexed], indexed, lsh.b, lsh.r)
    asked = sigs[::7]  # rows in the index and rows not
    found = fixed.query_many(asked)
    pairs = 0
    for sig, ours in zip(asked, found, strict=True):
        theirs = sorted(lsh.query(to_minhash(sig)))
        assert ours.tolist() == theirs
        pairs += len(theirs)
    assert pairs > 2 * len(asked)  # real messages share bands: there are pairs to see
    assert [
        len(x) for x in FixedBands(sigs[:0], indexed[:0], lsh.b, lsh.r).query_many(asked[:2])
    ] == [0, 0]


def test_bands_are_chosen_as_minhashlsh_chooses_them():
    from datasketch.lsh import _optimal_param

    for threshold in (0.05, 0.25, 0.4, 0.5, 0.55, 0.8, 0.95):
        for num_perm in (16, 64, 128, 256):
            for weights in ((0.5, 0.5), (0.1, 0.9), (0.9, 0.1)):
                theirs = _optimal_param(threshold, num_perm, *weights)
                assert bands.optimal_bands(threshold, num_perm, weights) == theirs
    lsh = MinHashLSH(threshold=0.4, num_perm=128, weights=(0.1, 0.9))
    assert bands.optimal_bands(0.4, 128, (0.1, 0.9)) == (lsh.b, lsh.r) == (42, 3)


def test_distinct_is_np_unique():
    rng = np.random.default_rng(3)
    for values in (
        rng.integers(0, 50, 1000, dtype=np.int64),
        rng.integers(0, 2**63, 500, dtype=np.int64).astype(np.uint64),
        np.empty(0, dtype=np.uint64),
        np.array([7], dtype=np.int32),
    ):
        got = bands.distinct(values)
        assert got.dtype == values.dtype
        assert got.tolist() == np.unique(values).tolist()
