"""Near dedup: MinHash LSH proposals, exact Jaccard decisions, template boilerplate."""

from __future__ import annotations

import csv
import random
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA
from pydantic import ValidationError

from synth.filters.base import FilterContext
from synth.filters.near_dedup import NearDedupFilter, NearDedupParams
from synth.filters.shingles import jaccard, shingle_sets
from synth.records import Candidate, CellKey, Decision, SeenItem, Source
from synth.text import tokenize

CTX = FilterContext(root=Path("."), text_field="text", label_field="label")
CELL = CellKey(slice="default", label="card_arrival")
OTHER = CellKey(slice="default", label="refund")
REASON = re.compile(
    r"^near_dup: j=(\d\.\d\d) with (\S+) \(>= (\d\.\d\d) (same|other) cell: (.+)\)$"
)


def cand(text: str, i: int, cell: CellKey = CELL) -> Candidate:
    return Candidate(
        id=f"ex_{i}",
        run_id="run_1",
        cell=cell,
        text=text,
        data={"text": text, "label": cell.label},
        llm_call_id="call_1",
        index=i,
        template="t",
        template_sha="0" * 64,
        model="m",
    )


def seed(text: str, i: int, cell: CellKey = CELL) -> SeenItem:
    return SeenItem(id=f"seed_{i}", text=text, cell=cell, source=Source.REAL)


def messages() -> list[str]:
    with open(DATA / "banking77" / "test.csv", newline="", encoding="utf-8") as fh:
        return [row["text"] for row in csv.DictReader(fh)]


def banking(n: int, min_tokens: int = 1, max_tokens: int = 99) -> list[str]:
    """Real BANKING77 test messages, in file order, none sharing half its words with an
    earlier one (the data set has natural near duplicates of its own)."""
    texts = [t for t in messages() if min_tokens <= len(tokenize(t)) <= max_tokens]
    kept: list[str] = []
    words: list[frozenset[int]] = []
    for text, w in zip(texts, shingle_sets(texts, "word", 1), strict=True):
        if all(jaccard(w, other) < 0.5 for other in words):
            kept.append(text)
            words.append(w)
            if len(kept) == n:
                break
    return kept


def edit(text: str, rng: random.Random, vocab: Sequence[str], share: float) -> str:
    """Substitute, delete or insert ``share`` of the tokens (at least one)."""
    words = text.split()
    for _ in range(max(1, round(share * len(words)))):
        op = rng.choice(("sub", "del", "ins"))
        i = rng.randrange(len(words))
        if op == "sub":
            words[i] = rng.choice(vocab)
        elif op == "del" and len(words) > 3:
            del words[i]
        else:
            words.insert(i, rng.choice(vocab))
    return " ".join(words)


LONG = " ".join(messages())[:50_000]


@pytest.mark.parametrize(
    ("seen", "text", "verdict", "slug"),
    [
        (
            "Where is my new card? It has not arrived yet",
            "where is my NEW card?? it has not arrived yet!",
            "reject",
            "near_dup",
        ),
        (
            "Where is my new card? It has not arrived yet",
            "Where is my new card? It still has not arrived",
            "reject",
            "near_dup",
        ),
        (
            "Where is my new card? It has not arrived yet",
            "Can I change the PIN of my card at an ATM?",
            "keep",
            "",
        ),
        (
            "¿Dónde está mi tarjeta nueva? Todavía no ha llegado",
            "¿Dónde está mi tarjeta nueva? Aún no ha llegado",
            "reject",
            "near_dup",
        ),
        (
            "¿Dónde está mi tarjeta nueva? Todavía no ha llegado",
            "¿Puedo cambiar el PIN en un cajero automático?",
            "keep",
            "",
        ),
        (
            "我的新卡还没有寄到，请问什么时候能收到",
            "我的新卡还没有寄到，请问什么时候可以收到",
            "reject",
            "near_dup",
        ),
        ("我的新卡还没有寄到，请问什么时候能收到", "我想把钱转到另一个国家的账户", "keep", ""),
        ("Where is my new card? It has not arrived yet", "", "keep", ""),
        ("Where is my new card? It has not arrived yet", "?!", "keep", ""),
        (LONG, LONG.replace(" card ", " kard ", 3), "reject", "near_dup"),
        ("Where is my new card? It has not arrived yet", LONG, "keep", ""),
    ],
)
def test_decisions(seen, text, verdict, slug):
    f = NearDedupFilter(NearDedupParams(), CTX)
    f.prepare([seed(seen, 1)])
    [d] = f.decide([cand(text, 1)])
    assert (d.verdict, d.reason.split(":")[0]) == (verdict, slug)
    assert (d.filter, d.filter_version) == ("near_dedup", "3")
    assert d.score is not None and 0.0 <= d.score <= 1.0
    if verdict == "reject" and d.reason.startswith("near_dup: e="):
        # Short rows are near copies by their token edits ("Todavía" -> "Aún": 1 of 9).
        assert "with seed_1" in d.reason and "same cell" in d.reason
    elif verdict == "reject":
        j, match, threshold, kind, _ = REASON.match(d.reason).groups()
        assert (float(threshold), kind) == (0.5, "same")
        assert match == "seed_1" and float(j) == pytest.approx(d.score, abs=0.005)


def test_the_score_is_the_exact_jaccard_and_the_threshold_is_inclusive():
    # Ten tokens and more: a shorter pair is judged by its token edits alone.
    seen = "when will my new card arrive in the post at my home address"
    close = "when will my new card arrive by post at my home address"
    [a, b] = shingle_sets([seen, close], "word", 2)
    j = jaccard(a, b)
    for threshold, verdict in ((j, "reject"), (j + 0.01, "keep")):
        f = NearDedupFilter(NearDedupParams(threshold=threshold), CTX)
        f.prepare([seed(seen, 1)])
        [d] = f.decide([cand(close, 1)])
        assert d.verdict == verdict
        assert d.score == pytest.approx(j, abs=1e-4)


def test_within_a_batch_later_candidates_meet_earlier_kept_ones():
    f = NearDedupFilter(NearDedupParams(), CTX)
    text = "I ordered a card two weeks ago and it still has not arrived"
    batch = [
        cand(text, 1),
        cand(text.replace("two", "three"), 2),
        cand(text.replace("ordered", "requested"), 3),
        cand("How do I top up my account with a bank transfer?", 4),
    ]
    decisions = f.decide(batch)
    assert [d.verdict for d in decisions] == ["keep", "reject", "reject", "keep"]
    # Rejected candidates are not match targets: both copies name the first one.
    assert [REASON.match(d.reason).group(2) for d in decisions[1:3]] == ["ex_1", "ex_1"]
    assert f.stats.checked == 4 and f.stats.rejected == 2


def test_scope():
    text = "Please cancel the transfer I made this morning"
    for scope, verdict in (("global", "reject"), ("cell", "keep")):
        f = NearDedupFilter(NearDedupParams(scope=scope), CTX)
        f.prepare([seed(text, 1, OTHER)])
        [d] = f.decide([cand(text + " please", 1, CELL)])
        assert d.verdict == verdict


def test_admit_grows_the_index_and_prepare_ignores_repeats():
    f = NearDedupFilter(NearDedupParams(), CTX)
    first = cand("Why was I charged a fee for a transfer to my friend", 1)
    f.prepare([seed("an unrelated seed about exchange rates", 1)] * 2)
    assert f.decide([first])[0].verdict == "keep"
    f.admit([first])
    [d] = f.decide([cand("Why was I charged a fee for a transfer to my friend?!", 2)])
    assert d.verdict == "reject" and " with ex_1 (" in d.reason


# --- template boilerplate ------------------------------------------------------------

OPENER = "Hello support team, I hope you are all doing well today and I am writing about"
CLOSER = "Thank you so much in advance for your help and have a great day"


def templated(contents: Sequence[str]) -> list[str]:
    return [f"{OPENER} {c} {CLOSER}" for c in contents]


def run(f: NearDedupFilter, texts: Sequence[str], size: int = 25, start: int = 0) -> list[Decision]:
    """Decide in batches and admit what was kept, as the runner does."""
    out: list[Decision] = []
    for at in range(0, len(texts), size):
        batch = [cand(t, start + at + k) for k, t in enumerate(texts[at : at + size])]
        decisions = f.decide(batch)
        f.admit([c for c, d in zip(batch, decisions, strict=True) if d.verdict == "keep"])
        out += decisions
    return out


def test_template_boilerplate_does_not_make_distinct_items_alike():
    contents = banking(200, min_tokens=9, max_tokens=14)
    texts = templated(contents)
    share = 1 - sum(len(tokenize(c)) for c in contents) / sum(len(tokenize(t)) for t in texts)
    assert 0.6 <= share <= 0.75  # about 70 % of every text is the template
    # Without the mechanism most distinct items look like copies of the first ones.
    plain = run(NearDedupFilter(NearDedupParams(boilerplate_df=1.0), CTX), texts)
    assert sum(d.verdict == "reject" for d in plain) > 150
    f = NearDedupFilter(NearDedupParams(), CTX)
    assert [d.verdict for d in run(f, texts)] == ["keep"] * 200


def test_template_near_copies_are_still_rejected():
    rng = random.Random(5)
    contents = banking(200, min_tokens=9, max_tokens=14)
    vocab = " ".join(messages()[1000:]).split()
    texts = templated(contents)
    # A near copy keeps the template and edits 5-15 % of the item's own words. (Edits
    # inside the template add shingles no other item has: with 2-6 edits anywhere in
    # these 40-word texts, about 70 % of the copies are still caught.)
    copies = templated(
        [edit(contents[i], rng, vocab, rng.uniform(0.05, 0.15)) for i in range(0, 200, 4)]
    )
    # Each copy comes a batch or more after its original.
    stream = texts[:100] + copies[:25] + texts[100:] + copies[25:]
    f = NearDedupFilter(NearDedupParams(), CTX)
    decisions = run(f, stream)
    originals = decisions[:100] + decisions[125:225]
    copy_decisions = decisions[100:125] + decisions[225:]
    assert all(d.verdict == "keep" for d in originals)
    assert sum(d.verdict == "reject" for d in copy_decisions) >= 0.95 * len(copies)
    assert f.stats.rebuilds >= 1


def test_a_first_batch_of_one_template_is_recognised_in_that_batch():
    texts = templated(banking(30, min_tokens=9, max_tokens=14))
    f = NearDedupFilter(NearDedupParams(), CTX)
    assert [d.verdict for d in run(f, texts, size=30)] == ["keep"] * 30


# --- resuming ------------------------------------------------------------------------


def stream_for_resume() -> tuple[list[SeenItem], list[list[Candidate]]]:
    """Seeds, then batches mixing two cells, a template that sets in, and copies."""
    rng = random.Random(11)
    plain = banking(160, min_tokens=5)
    vocab = " ".join(plain).split()
    seeds = [seed(t, i, CELL if i % 2 else OTHER) for i, t in enumerate(plain[:20])]
    texts = plain[20:100] + templated(banking(200, min_tokens=9, max_tokens=14)[100:160])
    texts += [edit(t, rng, vocab, 0.1) for t in rng.sample(texts, 40)]
    texts += [edit(s.text, rng, vocab, 0.1) for s in seeds[:10]]
    rng.shuffle(texts)
    batches = []
    for b in range(0, len(texts), 17):
        chunk = texts[b : b + 17]
        batches.append(
            [cand(t, b + k, CELL if (b + k) % 3 else OTHER) for k, t in enumerate(chunk)]
        )
    return seeds, batches


@pytest.mark.parametrize("scope", ["global", "cell"])
def test_a_resumed_run_decides_exactly_as_a_continuous_one(scope):
    params = NearDedupParams(scope=scope)
    seeds, batches = stream_for_resume()
    continuous = NearDedupFilter(params, CTX)
    continuous.prepare(seeds)
    kept: list[Candidate] = []
    expected = []
    for batch in batches:
        decisions = continuous.decide(batch)
        expected.append([(d.verdict, d.score, d.reason) for d in decisions])
        # Like a chain: a later filter drops some of what this one kept.
        survivors = [c for c, d in zip(batch, decisions, strict=True) if d.verdict == "keep"]
        survivors = [c for c in survivors if c.index % 7]
        continuous.admit(survivors)
        kept += survivors
    assert any(v == "reject" for decisions in expected for v, _, _ in decisions)
    assert continuous.stats.rebuilds >= 1
    for stop in (1, len(batches) // 2, len(batches) - 1):
        resumed = NearDedupFilter(params, CTX)
        done = {c.id for batch in batches[:stop] for c in batch}
        resumed.prepare(
            seeds
            + [
                SeenItem(id=c.id, text=c.text, cell=c.cell, source=Source.SYNTHETIC)
                for c in kept
                if c.id in done
            ]
        )
        for k in range(stop, len(batches)):
            decisions = resumed.decide(batches[k])
            assert [(d.verdict, d.score, d.reason) for d in decisions] == expected[k]
            survivors = [
                c
                for c, d in zip(batches[k], decisions, strict=True)
                if d.verdict == "keep" and c.index % 7
            ]
            resumed.admit(survivors)


# --- settings ------------------------------------------------------------------------


def test_settings_are_validated():
    params = NearDedupParams.model_validate({"kind": "near_dedup", "threshold": 0.8})
    assert (params.ngram, params.num_perm, params.scope) == (2, 128, "global")
    assert NearDedupParams(shingle="char").ngram == 5
    with pytest.raises(ValidationError, match="treshold"):
        NearDedupParams.model_validate({"kind": "near_dedup", "treshold": 0.8})
    with pytest.raises(ValidationError, match="lsh_weights"):
        NearDedupParams(lsh_weights=(0.5, 0.6))
    with pytest.raises(ValidationError):
        NearDedupParams(threshold=0)


# --- token edits ---------------------------------------------------------------------


def test_a_one_word_edit_of_a_short_row_is_a_near_duplicate_whatever_its_jaccard():
    seen = "can you play music by bob dylan"
    close = "can summit play music by bob dylan"  # 1 token of 7 replaced: bigram J 0.5
    f = NearDedupFilter(NearDedupParams(threshold=0.8), CTX)
    f.prepare([seed(seen, 1)])
    [d] = f.decide([cand(close, 1)])
    assert d.verdict == "reject"
    assert d.reason == "near_dup: e=0.14 with seed_1 (<= 0.15 token edits, same cell)"
    assert d.score == pytest.approx(0.5)
    f = NearDedupFilter(NearDedupParams(threshold=0.8, max_edits=0.0), CTX)
    f.prepare([seed(seen, 1)])
    assert f.decide([cand(close, 1)])[0].verdict == "keep"


def test_more_edits_than_max_edits_are_kept():
    seen = "can you play music by bob dylan"
    f = NearDedupFilter(NearDedupParams(threshold=0.8), CTX)
    f.prepare([seed(seen, 1)])
    [d] = f.decide([cand("can you play songs from bob marley", 1)])
    assert d.verdict == "keep"


def test_edits_are_counted_on_a_templates_rows_without_the_template():
    # Short requests in a long shared template differ in a few tokens of the whole
    # text, but in all of their own.
    contents = banking(40, min_tokens=4, max_tokens=6)
    f = NearDedupFilter(NearDedupParams(), CTX)
    assert [d.verdict for d in run(f, templated(contents), size=40)] == ["keep"] * 40


def labelled(name: str) -> list[tuple[str, str]]:
    with open(DATA / "banking77" / name, newline="", encoding="utf-8") as fh:
        return [(row["text"], row["category"]) for row in csv.DictReader(fh)]


def test_a_template_spread_thinly_over_many_labels_is_boilerplate_across_them():
    # Two templated rows in each of 40 intents, ten real seeds each: no intent has
    # enough templated rows for its own guard, but all of them share the template.
    intents = sorted({label for _, label in labelled("test.csv")})[:40]
    kept = set(banking(3080, min_tokens=9, max_tokens=14))
    rows = [(t, label) for t, label in labelled("test.csv") if t in kept]
    contents = [r for i in intents for r in [r for r in rows if r[1] == i][:2]]
    seeds = [
        seed(t, k, CellKey(slice="default", label=label))
        for k, (t, label) in enumerate(
            r for i in intents for r in [x for x in labelled("train.csv") if x[1] == i][:10]
        )
    ]
    batch = [
        cand(text, k, CellKey(slice="default", label=label))
        for k, (text, label) in enumerate(
            zip(templated([t for t, _ in contents]), [lab for _, lab in contents], strict=True)
        )
    ]

    def rejected(params: NearDedupParams) -> list[str]:
        f = NearDedupFilter(params, CTX)
        f.prepare(seeds)
        return [d.reason for d in f.decide(batch) if d.verdict == "reject"]

    assert len(rejected(NearDedupParams(boilerplate_cells=0))) > 40
    assert rejected(NearDedupParams()) == []


def test_the_mix_of_real_rates_is_the_per_cell_sum_it_replaces():
    # The shared-boilerplate test weighs each cell's seeds by its generated rows; the
    # matrix form must give what summing real_share over the cells gives.
    rows = labelled("train.csv")
    intents = sorted({label for _, label in rows})[:12]
    seeds = [
        seed(t, k, CellKey(slice="default", label=label))
        for k, (t, label) in enumerate(r for r in rows if r[1] in intents[:10])
    ]
    f = NearDedupFilter(NearDedupParams(), CTX)
    f.prepare(seeds)
    for label in intents[10:]:  # cells with no seeds of their own lean on all seeds
        f._labels[f"default/{label}"] = label
    cells = [str(CellKey(slice="default", label=label)) for label in intents]
    per_cell = Counter({cell: k for k, cell in enumerate(cells, start=1)})
    hashes = sorted(f._refs[("all", "")].counts)[:3000] + [12345, 67890]  # two unseen
    rates = f.real_rates()
    mixed = rates.mixed(rates.rows(hashes), per_cell)
    total = sum(per_cell.values())
    for h, value in zip(hashes, mixed, strict=True):
        expected = sum(k * f.reference(cell)(h) for cell, k in per_cell.items()) / total
        assert value == pytest.approx(expected, rel=1e-9)


def test_kept_rows_holding_moved_boilerplate_are_found_from_the_columns():
    from synth.filters.near_dedup import _Item, _Items

    rng = np.random.default_rng(0)
    items = _Items()
    rows = []
    for k in range(70_000):  # more than one chunk of rows
        cell = ("a", "b", "c")[k % 3]
        shingles = np.unique(rng.integers(0, 5_000, size=rng.integers(0, 12), dtype=np.uint64))
        tokens = rng.integers(0, 5_000, size=6, dtype=np.uint64)  # a moved hash here is no hit
        rows.append((f"r{k}", cell, set(shingles.tolist())))
        items.add(_Item.of(f"r{k}", cell, shingles, tokens))
    moved = {7, 99, 4_321}
    below = 69_000
    expected = [i for i, cell, s in rows[:below] if cell == "b" and s & moved]
    assert items.having("b", moved, below) == expected and expected
    assert items["r5"].cell == "c" and set(items["r5"].shingles.tolist()) == rows[5][2]


def test_kept_rows_are_found_by_id_when_ids_hash_alike():
    """Kept rows are looked up by their id's hash; two ids with one hash both stay
    found, each as its own row."""
    from synth.filters.near_dedup import _Item, _Items

    class SameHash(str):
        def __hash__(self) -> int:
            return 42

    items = _Items()
    tokens = np.array([1, 2, 3], dtype=np.uint64)
    ids = [SameHash("a"), SameHash("b"), "c"]
    for n, id_ in enumerate(ids):
        items.add(_Item.of(id_, "cell", np.array([n], dtype=np.uint64), tokens))
    assert [items[i].shingles.tolist() for i in ids] == [[0], [1], [2]]
    assert SameHash("b") in items and SameHash("d") not in items
    assert items.get(SameHash("d")) is None
    found = items.rows([*ids, SameHash("d"), "e"])
    assert [(row[0].id, row[1]) if row else None for row in found] == [
        ("a", [0]),
        ("b", [1]),
        ("c", [2]),
        None,
        None,
    ]
    with pytest.raises(KeyError):
        items[SameHash("d")]


def test_pairs_settled_by_their_word_pairs_are_never_within_the_edits():
    # _surely_apart skips counting a pair's token edits when the word pairs the two do
    # not share already need more edits than allowed: it must never skip a pair that is
    # within them. Real messages, each against lightly and heavily edited copies and
    # against other messages.
    from synth.filters.edits import MAX_EDITS, edit_cut, within
    from synth.filters.near_dedup import _surely_apart
    from synth.filters.shingles import shingle_hashes, token_hashes

    rng = random.Random(5)
    texts = [t for t, _ in labelled("test.csv")[:400]]
    vocabulary = sorted({w for t in texts for w in t.split()})
    variants = []
    for t in texts:
        words = t.split()
        for edits in (1, 2, 4):
            w = list(words)
            for _ in range(edits):
                at = rng.randrange(len(w) + 1)
                kind = rng.choice("sid") if w else "i"
                if kind == "s" and at < len(w):
                    w[at] = rng.choice(vocabulary)
                elif kind == "d" and at < len(w):
                    del w[at]
                else:
                    w.insert(at, rng.choice(vocabulary))
            variants.append((t, " ".join(w) or "x"))
    variants += list(zip(texts, texts[1:], strict=False))
    settled = within_count = 0
    for n in (2, 3):
        for a, b in variants:
            (sa, sb), (ta, tb) = shingle_hashes([a, b], "word", n), token_hashes([a, b])
            cut = edit_cut(MAX_EDITS, len(ta), len(tb))
            near = within(ta.tolist(), tb.tolist(), cut) is not None
            differ = len(set(sa.tolist()) ^ set(sb.tolist()))
            apart = _surely_apart(differ, len(ta), len(tb), n, MAX_EDITS)
            assert not (near and apart), (a, b)
            settled += apart
            within_count += near
    assert settled > len(variants) // 2 and within_count > 100  # both kinds are tried


def test_a_pairs_jaccard_counted_is_the_jaccard_of_its_sets():
    # _pair_jaccard counts what the sets without boilerplate would hold, never making
    # them: it must give jaccard() of those sets, to the last bit.
    from synth.filters.near_dedup import _MIN_OWN, _pair_jaccard

    rng = random.Random(11)
    tried = {"dropped": 0, "whole": 0}
    for _ in range(3000):
        pool = range(rng.randint(1, 40))
        mine = set(rng.sample(pool, rng.randint(0, len(pool))))
        theirs = rng.sample(pool, rng.randint(0, len(pool)))
        drop = set(rng.sample(pool, rng.randint(0, min(6, len(pool))))) & (mine | set(theirs))
        a, b = mine - drop, set(theirs) - drop
        if drop and len(a) >= min(_MIN_OWN, len(mine)) and len(b) >= min(_MIN_OWN, len(theirs)):
            expected = jaccard(a, b)
            tried["dropped"] += 1
        else:
            expected = jaccard(mine, set(theirs))
            tried["whole"] += 1
        shared = len(mine.intersection(theirs))
        assert _pair_jaccard(mine, theirs, shared, drop) == expected
    assert min(tried.values()) > 300  # both ways are tried


def _covered_stretches_kept_below(
    tokens: list[int], grams: list[int], n: int, drop: frozenset[int], run: int
) -> list[int]:
    """What a row keeps for the edit distance, token by token: every token no
    boilerplate n-gram covers, and each stretch of covered tokens shorter than
    ``run``."""
    covered = [False] * len(tokens)
    for start, gram in enumerate(grams):
        if gram in drop:
            for at in range(start, start + n):
                covered[at] = True
    kept: list[int] = []
    stretch: list[int] = []
    for token, on in zip(tokens, covered, strict=True):
        if on:
            stretch.append(token)
            continue
        kept += stretch if len(stretch) < run else []
        stretch = []
        kept.append(token)
    return kept + (stretch if len(stretch) < run else [])


def test_own_tokens_leaves_out_only_long_stretches_of_boilerplate():
    """Spans of boilerplate n-grams are merged where they overlap or touch, and only
    stretches of at least _MIN_TEMPLATE_RUN tokens are left out; on 5,000 random rows
    the span walk keeps exactly what marking tokens one by one keeps."""
    from synth.filters.near_dedup import _MIN_OWN, _MIN_TEMPLATE_RUN, _own_tokens

    rng = random.Random(3)
    left_out = 0
    for _ in range(5_000):
        n = rng.choice((1, 2, 3))
        tokens = [rng.randrange(6) for _ in range(rng.randrange(n, 30))]
        grams = [hash(tuple(tokens[i : i + n])) for i in range(len(tokens) - n + 1)]
        drop = frozenset(g for g in grams if rng.random() < 0.3)
        expected = _covered_stretches_kept_below(tokens, grams, n, drop, _MIN_TEMPLATE_RUN)
        if len(expected) < min(_MIN_OWN, len(tokens)):
            assert _own_tokens(tokens, grams, n, drop) is None
        else:
            assert _own_tokens(tokens, grams, n, drop) == expected
        left_out += len(expected) < len(tokens)
    assert left_out > 1_000  # the long stretches were there to leave out
    assert _own_tokens([1, 2], [7], 2, frozenset({7})) == [1, 2]  # a short stretch stays
