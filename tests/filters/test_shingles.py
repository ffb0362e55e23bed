"""Tokens, shingles and bulk MinHash signatures."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import DATA, ROOT
from datasketch import MinHash, MinHashLSH

from synth.filters.shingles import (
    char_shingles,
    jaccard,
    minhash_signatures,
    permutations,
    shingle_hashes,
    shingle_sets,
    to_minhash,
    word_shingles,
)
from synth.text import tokenize


def banking(n: int) -> list[str]:
    with open(DATA / "banking77" / "test.csv", newline="", encoding="utf-8") as fh:
        return [row["text"] for row in csv.DictReader(fh)][:n]


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("I want my money back!", ["i", "want", "my", "money", "back"]),
        ("¿Dónde está mi TARJETA?", ["dónde", "está", "mi", "tarjeta"]),
        # Decomposed accents (e + combining acute) are the same token after NFKC.
        ("Do\u0301nde", ["dónde"]),
        ("我想申请退款", ["我", "想", "申", "请", "退", "款"]),
        ("カードが届かない", ["カ", "ー", "ド", "が", "届", "か", "な", "い"]),
        ("카드 분실", ["카", "드", "분", "실"]),
        ("refund我的卡", ["refund", "我", "的", "卡"]),
        ("ＡＢＣ １２３", ["abc", "123"]),  # full-width forms fold to ASCII
        ("ﬁle STRASSE Straße", ["file", "strasse", "strasse"]),  # ligature, ß casefolded
        ("has_close_elements(x, 0.5)", ["has_close_elements", "x", "0", "5"]),
        ("हिन्दी भाषा", ["हिन्दी", "भाषा"]),  # vowel signs stay inside the word
        ("", []),
        ("  ...!!! ", []),
    ],
)
def test_tokenize(text, tokens):
    assert tokenize(text) == tokens


def test_word_and_char_shingles():
    assert word_shingles("a b c d", 2) == ["a b", "b c", "c d"]
    assert word_shingles("Hi, there", 5) == ["hi there"]  # shorter than n: all of it
    assert word_shingles("...", 2) == []
    # Character shingles of the tokens joined by spaces: punctuation does not matter.
    assert char_shingles("Hi, there!", 4) == char_shingles("hi there", 4)
    assert char_shingles("abc", 5) == ["abc"]


@pytest.mark.parametrize("kind", ["word", "char"])
@pytest.mark.parametrize("n", [1, 2, 5])
def test_hashes_are_the_distinct_shingles(kind, n):
    texts = banking(200) + ["", "¿Puedo pedir un reembolso?", "我想申请退款，因为商品有问题"]
    expected = word_shingles if kind == "word" else char_shingles
    for text, hashes in zip(texts, shingle_hashes(texts, kind, n), strict=True):
        assert len(hashes) == len(set(expected(text, n)))
        assert np.all(hashes[1:] > hashes[:-1])  # sorted, unique
    # Case, width, punctuation and spacing do not change the set.
    a, b = shingle_hashes(["Where is MY card?", "where  is my card"], kind, n)
    assert np.array_equal(a, b)


def test_hashes_do_not_depend_on_the_process():
    """A resumed run in a new process must hash exactly as the first one did."""
    code = (
        "from synth.filters.shingles import shingle_hashes;"
        "print(shingle_hashes(['Where is my card? 我想申请退款'], 'word', 2)[0].tolist())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    here = shingle_hashes(["Where is my card? 我想申请退款"], "word", 2)[0].tolist()
    assert json.loads(out.stdout) == here


def test_signatures_equal_datasketch_minhash():
    """The vectorised signatures are datasketch's affine32 MinHash of the same hashes."""
    texts = banking(3000)  # ~30k shingles: several chunks of the bulk computation
    sets = shingle_hashes(texts, "word", 2)
    signatures = minhash_signatures(sets, num_perm=64, seed=3)
    for i in list(range(0, 3000, 97)) + [2999]:
        m = MinHash(num_perm=64, seed=3, hashfunc=lambda h: h)
        m.update_batch([int(h) >> 32 for h in sets[i].tolist()])
        assert np.array_equal(m.hashvalues, signatures[i])
    [empty] = minhash_signatures([np.zeros(0, dtype=np.uint64)], num_perm=64, seed=3)
    assert np.array_equal(empty, MinHash(num_perm=64, seed=3).hashvalues)


def test_permutations_are_datasketchs():
    for num_perm, seed in ((16, 1), (128, 1), (128, 7), (256, 42)):
        theirs = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
        assert np.array_equal(permutations(num_perm, seed), theirs)


def test_signatures_estimate_jaccard_and_feed_the_lsh():
    a, b = shingle_sets(
        [
            "I am still waiting on my card, it has been two weeks now",
            "I am still waiting on my new card, it has been two weeks",
        ],
        "word",
        1,
    )
    exact = jaccard(a, b)
    sig_a, sig_b = minhash_signatures([a, b])
    estimate = float(np.mean(sig_a == sig_b))
    assert abs(estimate - exact) < 0.15
    lsh = MinHashLSH(threshold=0.5, num_perm=128)
    lsh.insert("a", to_minhash(sig_a))
    assert lsh.query(to_minhash(sig_b)) == ["a"]
    assert jaccard(a, frozenset()) == 0.0


@pytest.mark.parametrize(("kind", "n"), [("word", 2), ("char", 5)])
def test_very_long_text_is_fast(kind, n):
    text = " ".join(banking(3080))[:50_000]
    start = time.perf_counter()
    [hashes] = shingle_hashes([text], kind, n)
    [signature] = minhash_signatures([hashes], num_perm=32)
    assert time.perf_counter() - start < 2.0
    expected = word_shingles if kind == "word" else char_shingles
    assert len(hashes) == len(set(expected(text, n)))
    m = MinHash(num_perm=32, hashfunc=lambda h: h)
    m.update_batch([int(h) >> 32 for h in hashes.tolist()])
    assert np.array_equal(m.hashvalues, signature)
