"""The compact digest containers against Python's own set and dict."""

from __future__ import annotations

import random

import numpy as np

from synth.filters.digests import DigestMap, DigestSet


def test_digest_map_keeps_the_first_value_of_each_digest_as_a_dict_does():
    rng = random.Random(11)
    # Enough entries to fold the recent ones into the sorted arrays several times,
    # digests across the whole unsigned range, and many repeats.
    pool = [rng.getrandbits(64) for _ in range(9_000)] + [0, 2**64 - 1, 2**63]
    compact, expected = DigestMap(), {}
    for value in range(30_000):
        digest = rng.choice(pool)
        assert compact.setdefault(digest, value) == expected.setdefault(digest, value)
        if value % 997 == 0:
            probe = rng.getrandbits(64)
            assert compact.get(probe) == expected.get(probe)
    assert len(compact) == len(expected)
    assert sorted(compact) == sorted(expected)
    for digest, value in expected.items():
        assert compact.get(digest) == value
    # Many at once, from the sorted arrays and the recent dict alike, -1 where absent.
    probes = list(expected)[::7] + [rng.getrandbits(64) for _ in range(500)]
    compact.setdefault(12345, -5)  # one in the recent dict for certain
    probes.append(12345)
    expected.setdefault(12345, -5)
    many = compact.get_many(np.array(probes, dtype=np.uint64)).tolist()
    assert many == [expected.get(d, -1) for d in probes]
    assert compact.get_many(np.empty(0, dtype=np.uint64)).tolist() == []


def test_digest_set_adds_each_digest_once():
    rng = random.Random(12)
    compact, expected = DigestSet(), set()
    for _ in range(20_000):
        digest = rng.getrandbits(14) << 50  # repeats, and the high bits set
        assert compact.add(digest) == (digest not in expected)
        expected.add(digest)
    assert len(compact) == len(expected)
    assert all(d in compact for d in expected)
