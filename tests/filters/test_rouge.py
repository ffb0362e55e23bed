"""ROUGE-L: tokenisers, the bit-parallel LCS, and exact agreement with published scores."""

from __future__ import annotations

import json
import pickle
import random
import statistics
import time
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from synth.filters.diversity import exceeds
from synth.filters.rouge import (
    RougeIndex,
    f_measure,
    lcs_length,
    nearest_neighbour_scores,
    rouge_l,
    rouge_l_tokens,
    tokenize,
)
from synth.text import tokenize_rouge_score, tokenize_unicode

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
V3 = DATA / "alpaca-libre" / "alpaca_libre_tasks_v3.jsonl"
V1 = DATA / "alpaca-libre" / "alpaca_libre_tasks_v1.jsonl"
SEEDS = DATA / "self-instruct" / "seed_tasks.jsonl"


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def dp_lcs(a: list, b: list) -> int:
    """The textbook O(m n) table, as rouge_score computes it."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


# --- tokenisers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        (
            "Write a cover-letter, based on the given facts!",
            "write a cover letter based on the given facts",
        ),
        ("  multiple   spaces\tand\nnewlines  ", "multiple spaces and newlines"),
        ("snake_case and CamelCase", "snake case and camelcase"),
        ("3.14 is pi; x2 = 10", "3 14 is pi x2 10"),
        # The README's examples: non-ASCII letters are separators, CJK vanishes.
        ("¿Cómo solicito un reembolso?", "c mo solicito un reembolso"),
        ("我想申请退款", ""),
        # str.lower maps the Kelvin sign to an ASCII k, so rouge_score keeps it.
        ("\u212aelvin", "kelvin"),
        ("", ""),
    ],
)
def test_rouge_score_tokenizer(text: str, tokens: str) -> None:
    assert tokenize_rouge_score(text) == tokens.split()
    assert tokenize(text, "rouge_score") == tokens.split()


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("¿Cómo solicito un reembolso?", ["cómo", "solicito", "un", "reembolso"]),
        ("Straße ÉCOLE", ["strasse", "école"]),  # casefold
        ("我想申请退款。", ["我", "想", "申", "请", "退", "款"]),
        ("退款2024年", ["退", "款", "2024", "年"]),
        ("カタカナとひらがな", list("カタカナとひらがな")),
        ("환불을 요청합니다", ["환", "불", "을", "요", "청", "합", "니", "다"]),
        # Combining marks stay inside the word (Devanagari vowel signs, Thai vowels).
        ("हिन्दी भाषा", ["हिन्दी", "भाषा"]),
        ("สวัสดีครับ", ["สวัสดีครับ"]),
        ("ｆｕｌｌ＿ｗｉｄｔｈ", ["full", "width"]),  # NFKC, and "_" separates
        ("naïve_café", ["naïve", "café"]),
    ],
)
def test_unicode_tokenizer(text: str, tokens: list[str]) -> None:
    assert tokenize_unicode(text) == tokens


def test_unicode_tokenizer_equates_composed_and_decomposed_accents() -> None:
    composed = "canción"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    assert tokenize_unicode(composed) == tokenize_unicode(decomposed) == ["canción"]
    assert rouge_l(composed, decomposed) == 1.0


def test_unicode_tokenizer_equals_rouge_score_on_ascii() -> None:
    texts = [r["instruction"] for r in read_jsonl(SEEDS)]
    for row in read_jsonl(V3):
        texts += [row["instruction"], row["input"], row["output"]]
    ascii_texts = [t for t in texts if t.isascii()]
    assert len(ascii_texts) > 3000
    for text in ascii_texts:
        assert tokenize_unicode(text) == tokenize_rouge_score(text)


def test_unknown_tokenizer_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown tokenizer"):
        tokenize("x", "nltk")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown tokenizer"):
        RougeIndex("nltk")  # type: ignore[arg-type]


# --- LCS and F ----------------------------------------------------------------------


def test_bit_parallel_lcs_equals_the_dp_table() -> None:
    rng = random.Random(7)
    for _ in range(400):
        # Lengths across the 64-bit word boundary, small alphabets for many matches.
        m, n = rng.randint(0, 150), rng.randint(0, 150)
        k = rng.randint(1, 8)
        a = [rng.randrange(k) for _ in range(m)]
        b = [rng.randrange(k) for _ in range(n)]
        assert lcs_length(a, b) == dp_lcs(a, b)
        assert lcs_length(a, b) == lcs_length(b, a)


def test_f_measure() -> None:
    assert rouge_l_tokens(["a", "b", "c"], ["a", "b", "c"]) == 1.0
    assert rouge_l_tokens([], ["a"]) == 0.0
    assert rouge_l_tokens(["a"], []) == 0.0
    assert rouge_l_tokens(["a", "b"], ["c", "d"]) == 0.0
    # LCS 2 of lengths 3 and 4: P = 2/4, R = 2/3, F = 4/7.
    assert rouge_l_tokens(["a", "x", "b"], ["a", "b", "y", "z"]) == pytest.approx(4 / 7)
    assert f_measure(2, 3, 4) == f_measure(2, 4, 3)
    assert rouge_l("The cat sat.", "the cat SAT") == 1.0
    assert rouge_l("", "") == 0.0


# --- published figures -------------------------------------------------------------


def test_reproduces_alpaca_libre_v3_similarities_on_all_rows() -> None:
    """Every stored similarity: the max ROUGE-L F against all other v3 instructions."""
    rows = read_jsonl(V3)
    assert len(rows) == 1205
    texts = [r["instruction"] for r in rows]
    scores = nearest_neighbour_scores(texts, "rouge_score")
    mismatches = [
        (i, round(score, 3), row["other"]["similarity"])
        for i, (score, row) in enumerate(zip(scores, rows, strict=True))
        if round(score, 3) != row["other"]["similarity"]
    ]
    assert mismatches == []
    # The README's 521 rows "> 0.7" compare the rounded score. 11 more are exactly 0.7
    # (7 of 10 tokens), which rouge_score's formula computes as 0.7000000000000001.
    assert sum(1 for s in scores if round(s, 3) > 0.7) == 521
    assert sorted(s for s in scores if s > 0.7 and round(s, 3) == 0.7) == [0.7000000000000001] * 11
    # The diversity filter's comparison flags exactly alpaca-libre's rows.
    flagged = {i for i, row in enumerate(rows) if row["other"]["similarity"] > 0.7}
    assert {i for i, s in enumerate(scores) if exceeds(s, 0.7)} == flagged


def test_self_instruct_seed_figures() -> None:
    seeds = read_jsonl(SEEDS)
    texts = [s["instruction"] for s in seeds]
    scores = nearest_neighbour_scores(texts, "rouge_score")
    assert round(max(scores), 3) == 0.824
    assert round(statistics.median(scores), 3) == 0.333
    ids = [s["id"] for s in seeds]
    best = {ids[i] for i, s in enumerate(scores) if s == max(scores)}
    assert best == {"seed_task_47", "seed_task_74"}
    by_id = dict(zip(ids, texts, strict=True))
    assert round(rouge_l(by_id["seed_task_77"], by_id["seed_task_113"], "rouge_score"), 3) == 0.75
    # The seeds are English: the default tokenizer gives the same figures.
    assert nearest_neighbour_scores(texts) == scores


# --- the index ----------------------------------------------------------------------


def test_index_nearest_and_tie_break_by_smallest_key() -> None:
    items = [("ex_b", "book a table for two"), ("ex_a", "book a table for two"), ("ex_c", "hi")]
    for order in (items, items[::-1]):
        index = RougeIndex()
        for key, text in order:
            index.add(key, text)
        assert index.nearest("book a table for two please") == ("ex_a", pytest.approx(10 / 11))
        assert index.nearest("zebra") == (None, 0.0)  # unknown tokens match nothing
        assert index.nearest("") == (None, 0.0)


def test_index_skip_and_truncate() -> None:
    index = RougeIndex()
    index.add("a", "cancel my order")
    index.add("b", "cancel my order now")
    assert index.nearest("cancel my order", skip=0).key == "b"
    index.truncate(1)
    assert len(index) == 1
    assert index.nearest("cancel my order now").key == "a"


def test_nearest_neighbour_scores_counts_a_repeated_text_as_identical() -> None:
    assert nearest_neighbour_scores(["same text", "same text", "other"]) == [1.0, 1.0, 0.0]
    assert nearest_neighbour_scores(["a b", "a c", "d"], queries=[2, 0]) == [0.0, 0.5]


def brute_nearest(items: list[tuple[str, list[str]]], query: list[str], skip: int | None):
    """The nearest item by scoring every one: the answer the index must give."""
    best, best_key = 0.0, None
    for i, (key, tokens) in enumerate(items):
        score = rouge_l_tokens(query, tokens) if i != skip else 0.0
        if score > best or (score == best and best_key is not None and key < best_key):
            best, best_key = score, (key if score > 0 else None)
    return best_key, best


def test_index_answers_exactly_as_scoring_every_item() -> None:
    """Real instructions, their near copies (words dropped, repeated, swapped) and
    short texts, in random key order: every search, with and without ``skip`` and after
    a truncation, names the item and score that scoring every item gives."""
    rng = random.Random(7)
    texts = [r["instruction"] for r in read_jsonl(V1)[:600]]
    texts += ["a", "a a", "the the the", "how do i", "do i how"]
    for text in list(texts[:300]):
        words = text.split()
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(words))
            op = rng.random()
            if op < 0.3 and len(words) > 1:
                del words[at]
            elif op < 0.6:
                words.insert(at, words[at])
            else:
                words[at] = rng.choice(texts).split()[0]
        texts.append(" ".join(words))
    items = [(f"ex_{rng.randrange(10**6):06d}", tokenize(t)) for t in texts]
    index = RougeIndex()
    for key, tokens in items:
        index.add_tokens(key, tokens)
    queries = rng.sample(texts, 300) + ["zebra the", "", "how do i do i"]
    for q in queries:
        assert tuple(index.nearest(q)) == brute_nearest(items, tokenize(q), None), q
    for i in rng.sample(range(len(items)), 200):
        assert tuple(index.nearest_item(i)) == brute_nearest(items, items[i][1], i)
    index.truncate(400)
    for q in queries[:100]:
        assert tuple(index.nearest(q)) == brute_nearest(items[:400], tokenize(q), None), q
    for key, tokens in items[400:500]:
        index.add_tokens(key, tokens)
    for q in queries[100:200]:
        assert tuple(index.nearest(q)) == brute_nearest(items[:500], tokenize(q), None), q


def test_extend_builds_the_index_add_tokens_builds() -> None:
    """Items given at once as ids, with repeated tokens and empty items, onto an index
    that already holds some: the same items, postings and answers as adding them one
    by one."""
    rng = random.Random(5)
    texts = [r["instruction"] for r in read_jsonl(V1)[:300]]
    texts += ["", "the the the", "a a b a", ""]
    items = [(f"ex_{rng.randrange(10**6):06d}", tokenize(t)) for t in texts]
    rng.shuffle(items)
    vocab: dict[str, int] = {}
    one_by_one, at_once = RougeIndex(), RougeIndex(vocab=vocab)
    for key, tokens in items:
        one_by_one.add_tokens(key, tokens)
    for key, tokens in items[:50]:
        at_once.add_tokens(key, tokens)
    rest = items[50:]
    ids = [vocab.setdefault(t, len(vocab)) for _, tokens in rest for t in tokens]
    at_once.extend([k for k, _ in rest], np.array(ids), np.array([len(t) for _, t in rest]))
    at_once.extend([], np.array([], dtype=np.int32), np.array([], dtype=np.int64))
    assert at_once._vocab is vocab and vocab == one_by_one._vocab
    assert at_once._keys == one_by_one._keys
    assert (at_once._flat, at_once._starts, at_once._lengths) == (
        one_by_one._flat,
        one_by_one._starts,
        one_by_one._lengths,
    )
    assert _all_postings(at_once) == _all_postings(one_by_one)
    for q in rng.sample(texts, 50):
        assert at_once.nearest(q) == one_by_one.nearest(q)


def _all_postings(index: RougeIndex) -> dict[int, list[int]]:
    """Every posting of the index, packed or not (looking one up unpacks it)."""
    postings = index._postings
    return {o: list(postings[o] or ()) for o in {*postings, *postings.packed}}


def test_an_index_built_at_once_reads_grows_and_shrinks_as_one_built_by_adding() -> None:
    """Postings left packed by an extend onto an empty index: searches, items added
    one by one and truncating them give what an index built one by one gives."""
    rng = random.Random(7)
    texts = [r["instruction"] for r in read_jsonl(V1)[:200]] + ["", "the the the"]
    items = [(f"ex_{i:03d}", tokenize(t)) for i, t in enumerate(texts)]
    vocab: dict[str, int] = {}
    one_by_one, at_once = RougeIndex(), RougeIndex(vocab=vocab)
    for key, tokens in items:
        one_by_one.add_tokens(key, tokens)
    ids = [vocab.setdefault(t, len(vocab)) for _, tokens in items for t in tokens]
    at_once.extend([k for k, _ in items], np.array(ids), np.array([len(t) for _, t in items]))
    assert at_once._postings.packed and not at_once._postings
    for q in rng.sample(texts, 30):
        assert at_once.nearest(q) == one_by_one.nearest(q)
        assert at_once.nearest_tokens(tokenize(q), floor=0.5) == one_by_one.nearest_tokens(
            tokenize(q), floor=0.5
        )
    extra = [(f"new_{i}", tokenize(t)) for i, t in enumerate(rng.sample(texts, 20))]
    for key, tokens in extra:
        at_once.add_tokens(key, tokens)
        one_by_one.add_tokens(key, tokens)
    assert _all_postings(at_once) == _all_postings(one_by_one)
    for index in (at_once, one_by_one):
        index.truncate(150)
    assert _all_postings(at_once) == _all_postings(one_by_one)
    for q in rng.sample(texts, 30):
        assert at_once.nearest(q) == one_by_one.nearest(q)
    restored = pickle.loads(pickle.dumps(at_once))
    assert _all_postings(restored) == _all_postings(one_by_one)


def test_a_floor_finds_exactly_what_reaches_it_and_a_lower_bound_otherwise() -> None:
    """Real instructions and near copies of them: with a floor, a search whose nearest
    reaches the floor names the item and score scoring every item gives; one whose
    nearest does not returns at most that score, the same whatever order the items
    were added in."""
    rng = random.Random(11)
    rows = [r["instruction"] for r in read_jsonl(V1)[:1200]]
    texts, unseen = rows[:800], rows[800:]
    for text in list(texts[:300]):
        words = text.split()
        del words[rng.randrange(len(words))]
        texts.append(" ".join(words))
    items = [(f"ex_{i:04d}", tokenize(t)) for i, t in enumerate(texts)]
    forward, backward = RougeIndex(), RougeIndex()
    for key, tokens in items:
        forward.add_tokens(key, tokens)
    for key, tokens in reversed(items):
        backward.add_tokens(key, tokens)
    reached = below = 0
    for q in rng.sample(texts, 100) + [t + " please" for t in rng.sample(texts, 50)] + unseen:
        query = tokenize(q)
        key, best = brute_nearest(items, query, None)
        for floor in (0.5, 0.7, 0.9):
            found = forward.nearest_tokens(query, floor=floor)
            assert tuple(found) == tuple(backward.nearest_tokens(query, floor=floor))
            if best >= floor:
                reached += 1
                assert tuple(found) == (key, best), q
            else:
                below += 1
                assert found.score <= best
    assert reached > 300 and below > 300


def test_index_finds_a_nearest_item_that_shares_only_common_words() -> None:
    """The search skips the postings of the query's most common words only when no item
    sharing nothing else can win: here the winner is a short text of common words, and
    the rare words of the query lead to weaker matches."""
    rng = random.Random(3)
    items = [
        (f"ex_{i:05d}", tokenize(f"how do i w{rng.randrange(999)} the w{rng.randrange(999)} now"))
        for i in range(5000)
    ]
    items += [("ex_a", tokenize("tune the xylophone now please")), ("ex_b", tokenize("how do i"))]
    index = RougeIndex()
    for key, tokens in items:
        index.add_tokens(key, tokens)
    query = tokenize("how do i tune the xylophone")
    assert index.nearest_tokens(query) == ("ex_b", pytest.approx(2 / 3))
    assert tuple(index.nearest_tokens(query)) == brute_nearest(items, query, None)


def test_search_against_2000_items_is_fast() -> None:
    texts = [r["instruction"] for r in read_jsonl(V1)]
    index = RougeIndex()
    for i, text in enumerate(texts[:2000]):
        index.add(f"ex_{i}", text)
    queries = texts[2000:2100]
    start = time.perf_counter()
    for q in queries:
        index.nearest(q)
    per_query = (time.perf_counter() - start) / len(queries)
    assert per_query < 0.05, f"{per_query * 1000:.1f} ms per candidate"


def test_shared_counts_the_same_by_sorting_and_by_counting():
    """Few hits are counted by sorting them, many by a count per item: both give each
    item found and how many postings hold it."""
    from array import array

    from synth.filters.rouge import _shared

    rng = random.Random(5)
    for size, per_posting in ((50, 40), (1_000, 3), (1_000, 400)):
        postings = [array("i", sorted(rng.sample(range(size), per_posting))) for _ in range(6)]
        items, shared = _shared(postings, size)
        expected = Counter(i for p in postings for i in p)
        assert dict(zip(items.tolist(), shared.tolist(), strict=True)) == expected
        assert items.tolist() == sorted(expected)
    items, shared = _shared([array("i")], 10)
    assert items.tolist() == [] and shared.tolist() == []
