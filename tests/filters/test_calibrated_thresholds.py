"""Thresholds calibrated on the seeds, pinned with real rows.

Each case is a row that a fixed threshold got wrong, read from the public datasets in
``shared/data``: real rephrasings rejected as copies, templated rows rejected as each
other's duplicates across labels, same-domain messages flagged as eval-set copies,
and, the other way, what must still be caught (near copies across labels, repeated
texts, eval items verbatim or misspelled, GSM8K rephrasings).
"""

from __future__ import annotations

import csv
import json
import random
import re
from functools import cache
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import DATA, ROOT

from synth.cli import cli
from synth.filters import FilterChain, build_chain
from synth.filters.base import FilterContext
from synth.filters.contamination import ContaminationFilter, ContaminationParams
from synth.filters.diversity import DiversityFilter, DiversityParams
from synth.filters.near_dedup import NearDedupFilter, NearDedupParams
from synth.filters.rouge import rouge_l
from synth.filters.shingles import jaccard, shingle_sets
from synth.records import Candidate, CellKey, SeenItem, Source, Verdict

CTX = FilterContext(root=ROOT, text_field="text", label_field="label")
GSM8K = {"name": "gsm8k", "path": str(DATA / "gsm8k" / "test.jsonl"), "field": "question"}
B77_TEST = {"name": "banking77-test", "path": str(DATA / "banking77" / "test.csv"), "field": "text"}
OPENER = (
    "Hello, I am a long-time customer of your bank and I have a quick question about my"
    " account, I hope you can help me: "
)


@cache
def banking77(split: str) -> tuple[tuple[str, str], ...]:
    """(text, intent) of a BANKING77 split, in file order."""
    with open(DATA / "banking77" / f"{split}.csv", newline="", encoding="utf-8") as fh:
        return tuple((r["text"].strip(), r["category"]) for r in csv.DictReader(fh))


@cache
def bundled_seeds() -> tuple[tuple[str, str], ...]:
    """The demo's seeds: the first BANKING77 train rows of eight intents."""
    lines = (ROOT / "seeds" / "banking.jsonl").read_text(encoding="utf-8").splitlines()
    return tuple((row["text"], row["label"]) for row in map(json.loads, lines))


def seeds(rows: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> list[SeenItem]:
    return [
        SeenItem(
            id=f"seed_{i}",
            text=t,
            cell=CellKey(slice="default", label=label),
            source=Source.REAL,
        )
        for i, (t, label) in enumerate(rows)
    ]


def cand(text: str, label: str = "x", i: int = 0) -> Candidate:
    return Candidate(
        id=f"ex_{i}",
        run_id="run_1",
        cell=CellKey(slice="default", label=label),
        text=text,
        data={"text": text, "label": label},
        llm_call_id="call_1",
        index=i,
        template="t",
        template_sha="0" * 64,
        model="m",
    )


def fresh(n_per_label: int, start: int = 0) -> list[tuple[str, str]]:
    """Real train rows of the bundled seeds' intents that are not seeds, in file order
    from ``start``, ``n_per_label`` of each intent."""
    taken = set(bundled_seeds())
    labels = sorted({label for _, label in bundled_seeds()})
    out = []
    for label in labels:
        rows = [r for r in banking77("train") if r[1] == label and r not in taken]
        out += rows[start : start + n_per_label]
    return out


# --- a real rephrasing is not a copy ----------------------------------------------------

PAIR = ("How do I turn on my new card?", "How can I switch on my new card?")


def test_the_pair_is_what_the_issue_says():
    assert (PAIR[0], "activate_my_card") in banking77("train")
    assert (PAIR[1], "activate_my_card") in banking77("train")
    assert rouge_l(*PAIR) == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("calibrate", "verdict"),
    [(True, Verdict.KEEP), (False, Verdict.REJECT)],
    ids=["calibrated", "fixed 0.7"],
)
def test_a_real_rephrasing_of_a_seed_is_kept(calibrate, verdict):
    # The demo's seeds tell how alike real messages of one intent are; the candidate's
    # only seed in its cell is the one it rephrases.
    rows = [*bundled_seeds(), (PAIR[1], "activate_my_card")]
    f = DiversityFilter(DiversityParams(calibrate=calibrate), CTX)
    f.prepare(seeds(rows))
    [d] = f.decide([cand(PAIR[0], "activate_my_card")])
    assert d.verdict is verdict
    if calibrate:
        # Kept: the search reads only what could exceed the threshold, so the score is
        # a lower bound of the pair's 0.75.
        assert d.score <= 0.75 + 1e-9
        assert f.threshold.rule == "seeds" and f.threshold.value > 0.8
    else:
        assert d.score == pytest.approx(0.75)
        assert d.reason == f"too_similar: rouge_l=0.750 with seed_{len(rows) - 1} (> 0.700: fixed)"


def test_a_real_rephrasing_is_kept_among_all_the_seeds_of_its_intent():
    rows = [r for r in banking77("train") if r[1] == "activate_my_card" and r[0] != PAIR[0]]
    chain = FilterChain(
        [
            NearDedupFilter(NearDedupParams(), CTX),
            DiversityFilter(DiversityParams(), CTX),
        ],
        "text",
    )
    chain.prepare(seeds(rows))
    [outcome] = chain.decide([cand(PAIR[0], "activate_my_card")])
    assert outcome.verdict is Verdict.KEEP, [d.reason for d in outcome.decisions]


def test_fresh_real_rows_of_the_seeds_intents_are_rarely_rejected():
    """150 real messages of the bundled seeds' intents, none a seed: the fixed
    thresholds rejected 18 of them as near duplicates or too similar."""
    rows = fresh(19)[:150]

    def rejected(calibrate: bool) -> int:
        chain = FilterChain(
            [
                NearDedupFilter(NearDedupParams(calibrate=calibrate), CTX),
                DiversityFilter(DiversityParams(calibrate=calibrate), CTX),
            ],
            "text",
        )
        chain.prepare(seeds(bundled_seeds()))
        outcomes = chain.decide([cand(t, label, i) for i, (t, label) in enumerate(rows)])
        return sum(o.verdict is Verdict.REJECT for o in outcomes)

    before, after = rejected(False), rejected(True)
    assert before >= 25
    # What is left is mostly BANKING77's own near duplicates ("My money is gone. I had
    # topped up recently ..." twice, j = 0.81 with a seed).
    assert after <= 0.11 * len(rows) and after < before / 2


# --- boilerplate across labels, in cells that have seeds ----------------------------------


@cache
def templated_rows() -> tuple[tuple[str, str], ...]:
    """80 real messages (10 of each of the seeds' 8 intents), each behind the same
    long opening, as a template makes them. BANKING77 has near duplicates of its own
    (two "My money is gone. I had topped up recently ..." rows and a seed); only
    messages that share less than half their word pairs with any seed or earlier
    message are taken, so that a rejection can only be the template's doing."""
    taken = [set(s) for s in shingle_sets([t for t, _ in bundled_seeds()], "word", 2)]
    out: list[tuple[str, str]] = []
    for label in sorted({label for _, label in bundled_seeds()}):
        rows = [r for r in fresh(60) if r[1] == label]
        picked = 0
        for (t, _), s in zip(rows, shingle_sets([t for t, _ in rows], "word", 2), strict=True):
            if picked < 10 and all(jaccard(s, o) < 0.5 for o in taken):
                out.append((OPENER + t, label))
                taken.append(set(s))
                picked += 1
    return tuple(out)


@pytest.mark.parametrize("kind", ["near_dedup", "diversity"])
def test_rows_sharing_a_template_across_labels_are_not_each_others_copies(kind):
    rows = templated_rows()
    params = {"near_dedup": NearDedupParams, "diversity": DiversityParams}[kind]

    def rejected(**settings: object) -> list[str]:
        f = (NearDedupFilter if kind == "near_dedup" else DiversityFilter)(params(**settings), CTX)
        f.prepare(seeds(bundled_seeds()))
        decisions = f.decide([cand(t, label, i) for i, (t, label) in enumerate(rows)])
        return [d.reason for d in decisions if d.verdict is Verdict.REJECT]

    assert len(rows) == 80
    guarded = rejected()
    assert len(guarded) <= 0.02 * len(rows), guarded
    # Without the guard the template makes them alike, across labels too (diversity at
    # its q99 threshold: 16 of the 80).
    unguarded = rejected(boilerplate_df=1.0)
    assert len(unguarded) >= 0.15 * len(rows)
    if kind == "near_dedup":
        assert sum("other cell" in r for r in unguarded) >= 0.25 * len(rows)


def test_a_near_copy_of_another_labels_seed_is_still_rejected():
    rows = list(bundled_seeds())
    # A card_arrival seed, one word changed, generated for another intent.
    text, label = next(r for r in rows if r[0].startswith("I have been waiting over a week"))
    copy = text.replace("week", "month")
    f = NearDedupFilter(NearDedupParams(), CTX)
    f.prepare(seeds(rows))
    [d] = f.decide([cand(copy, "lost_or_stolen_card")])
    assert d.verdict is Verdict.REJECT and "other cell" in d.reason and label == "card_arrival"
    # Among templated rows too: the template is no cover for a copy of a seed.
    batch = [cand(t, lab, i) for i, (t, lab) in enumerate(templated_rows())]
    batch.append(cand(OPENER + copy, "lost_or_stolen_card", len(batch)))
    f = NearDedupFilter(NearDedupParams(), CTX)
    f.prepare(seeds(rows))
    decisions = f.decide(batch)
    assert decisions[-1].verdict is Verdict.REJECT, decisions[-1].reason
    assert " with seed_" in decisions[-1].reason and "other cell" in decisions[-1].reason
    # Besides it, only "My disposable virtual card got rejected", one word from "... was
    # rejected." in the same batch: a near copy by its token edits.
    rejected = [d.reason for d in decisions[:-1] if d.verdict is Verdict.REJECT]
    assert len(rejected) <= 1 and all("e=0.20 with ex_70" in r for r in rejected), rejected


def test_a_text_the_model_repeats_with_a_word_changed_is_not_taken_for_boilerplate():
    """Six rows of one batch that repeat a message with one word changed are frequent
    phrasing among the generated rows, like a template; they are still near copies."""
    rows = list(bundled_seeds())
    kept = [(t, label) for t, label in fresh(20, start=40) if label == "card_arrival"]
    base = "I ordered a card last week and it still has not come, where is it"
    variants = [base.replace("week", w) for w in ("week", "month", "Monday", "Friday", "year")]
    variants.append(base.replace("ordered", "requested"))
    for kind in (NearDedupFilter(NearDedupParams(), CTX), DiversityFilter(DiversityParams(), CTX)):
        kind.prepare(seeds(rows))
        kind.admit([cand(t, label, 100 + i) for i, (t, label) in enumerate(kept)])
        decisions = kind.decide([cand(v, "card_arrival", i) for i, v in enumerate(variants)])
        assert [d.verdict for d in decisions] == [Verdict.KEEP] + [Verdict.REJECT] * 5, kind.name


# --- contamination: same domain is not a copy; copies are ------------------------------------


@cache
def b77_filter() -> ContaminationFilter:
    """Against the BANKING77 test split, calibrated on 1,000 train rows."""
    f = ContaminationFilter(ContaminationParams(eval_sets=[B77_TEST]), CTX)
    train = list(banking77("train"))
    random.Random(0).shuffle(train)
    f.prepare(seeds(train[:1000]))
    return f


def test_real_same_domain_messages_are_not_eval_set_copies():
    train = list(banking77("train"))
    random.Random(0).shuffle(train)
    rows = [t for t, _ in train[1000:2000]]
    f = b77_filter()
    decisions = f.decide([cand(t, "x", i) for i, t in enumerate(rows)])
    flagged = [d for d in decisions if d.verdict is not Verdict.KEEP]
    assert len(flagged) <= 0.02 * len(rows)
    # Most of those are BANKING77's own leaks: a test message word for word, misspelled,
    # or sharing a 13-gram ("Is there an auto top up option?" is in both splits). What
    # only looks alike goes to review, and for about one row in a hundred.
    # Rows fewer token edits from a test message than every seed is ("What do I have
    # to do to get a Visa card?") are rejected as near copies.
    verbatim = [d for d in flagged if d.reason.startswith("contamination: ngram ")]
    edited = [d for d in flagged if d.reason.startswith("contamination: edits ")]
    assert len(flagged) - len(verbatim) <= 0.015 * len(rows)
    assert len(edited) <= 0.005 * len(rows)
    assert all(d.verdict is Verdict.REVIEW for d in flagged if d not in verbatim + edited)
    # At the fixed floors they were flagged wholesale.
    fixed = ContaminationFilter(ContaminationParams(eval_sets=[B77_TEST], calibrate=False), CTX)
    before = fixed.decide([cand(t, "x", i) for i, t in enumerate(rows[:200])])
    assert sum(d.verdict is not Verdict.KEEP for d in before) > 0.5 * 200


SHORT_SAME_INTENT = [
    "Is there a tracking number for the card?",
    "My top-up was declined",
    "Why did the top-up fail?",
    "I want to know your exchange rates.",
    "I cannot get my virtual card to function.",
]


@pytest.mark.parametrize("text", SHORT_SAME_INTENT)
def test_a_short_same_intent_message_is_not_contamination(text):
    # Real train messages that the fixed floors flagged against the test split.
    assert any(t == text for t, _ in banking77("train"))
    [d] = b77_filter().decide([cand(text)])
    assert d.verdict is Verdict.KEEP, d.reason


def misspelled(text: str) -> str:
    """One letter of the longest word dropped: a typo."""
    words = text.split()
    i = max(range(len(words)), key=lambda k: len(words[k]))
    w = words[i]
    return " ".join([*words[:i], w[:2] + w[3:], *words[i + 1 :]])


TEST_ITEMS = [
    "I ordered a card but it has not arrived. Help please!",
    "Why was I charged an extra fee when paying with my card?",
    "Is there a way to know when my card will arrive?",
    "I still have not received my new card, I ordered over a week ago.",
]

COPIES = [(t, "verbatim") for t in TEST_ITEMS]
COPIES += [(f"  {t.upper().replace(',', ' ,')} ", "formatting") for t in TEST_ITEMS]
COPIES += [(misspelled(t), "typo") for t in TEST_ITEMS]


@pytest.mark.parametrize(
    ("text", "how"), COPIES, ids=[f"{h}-{i % 4}" for i, (_, h) in enumerate(COPIES)]
)
def test_eval_items_verbatim_reformatted_or_misspelled_are_rejected(text, how):
    assert any(t == TEST_ITEMS[COPIES.index((text, how)) % 4] for t, _ in banking77("test"))
    [d] = b77_filter().decide([cand(text)])
    assert d.verdict is Verdict.REJECT, (how, d.reason)
    assert d.reason.startswith("contamination: ngram banking77-test ")
    if how == "typo":
        assert d.reason.endswith("(1.00: the whole item, one word misspelled)")


def gsm8k_rephrasings() -> list[str]:
    lines = (DATA / "contamination-rephrased" / "rephrase_gsm8k.jsonl").read_text().splitlines()
    return [
        re.sub(r"^Question:\s*", "", json.loads(line)["text"].split("\nAnswer:")[0])
        for line in lines
    ]


@cache
def gsm8k_filter() -> ContaminationFilter:
    """GSM8K as the eval set of a banking project, calibrated on its seeds."""
    f = ContaminationFilter(ContaminationParams(eval_sets=[GSM8K]), CTX)
    f.prepare(seeds(bundled_seeds()))
    return f


def test_gsm8k_rephrasings_are_caught():
    rephrased = gsm8k_rephrasings()
    decisions = gsm8k_filter().decide([cand(t, "x", i) for i, t in enumerate(rephrased)])
    assert sum(d.verdict is not Verdict.KEEP for d in decisions) >= 0.90 * len(rephrased)
    # The first one, Janet's ducks, named with the score, the threshold and the rule.
    assert decisions[0].verdict is not Verdict.KEEP
    pattern = (
        r"^contamination(_review)?: (minhash|semantic) gsm8k \S+:1 \((\d\.\d\d) >= (\d\.\d\d): "
    )
    found = re.match(pattern, decisions[0].reason)
    assert found and float(found.group(3)) >= float(found.group(4)), decisions[0].reason


TEMPLATES = [
    "Hi, I am a customer of yours and I am writing because I have a problem: ",
    "Hello! I am a student and I am new to your bank. ",
    "I am a small business owner and I am worried. ",
]


@pytest.mark.parametrize("opener", TEMPLATES)
def test_templated_banking_messages_are_not_a_gsm8k_puzzle(opener):
    # "I am" is rare in GSM8K and in one puzzle ("I am three years younger than my
    # brother ..."); without the seeds' term weights every templated row matched it.
    rows = [opener + t for t, _ in bundled_seeds()]
    decisions = gsm8k_filter().decide([cand(t, "x", i) for i, t in enumerate(rows)])
    assert [d.reason for d in decisions if d.verdict is not Verdict.KEEP] == []
    unprepared = ContaminationFilter(ContaminationParams(eval_sets=[GSM8K]), CTX)
    before = unprepared.decide([cand(t, "x", i) for i, t in enumerate(rows)])
    assert sum(":856 " in d.reason for d in before) >= 40  # gsm8k/test.jsonl:856


def test_seeds_that_hold_eval_items_do_not_blind_the_filter():
    """A user whose seeds are partly GSM8K test questions: they are counted and left
    out of the calibration, and rephrasings of other items are still caught."""
    lines = (DATA / "gsm8k" / "test.jsonl").read_text(encoding="utf-8").splitlines()
    questions = [json.loads(line)["question"] for line in lines]
    leaky = [*bundled_seeds(), *((q, "math") for q in questions[:40])]
    f = ContaminationFilter(ContaminationParams(eval_sets=[GSM8K]), CTX)
    f.prepare(seeds(leaky))
    table = f.calibration_table()
    assert any(n.startswith("40 of 211 seeds are verbatim copies of gsm8k") for n in table.notes)
    assert {t.name: t.rule for t in table.thresholds}["gsm8k minhash"] == "floor"
    rephrased = gsm8k_rephrasings()[40:]
    decisions = f.decide([cand(t, "x", i) for i, t in enumerate(rephrased)])
    assert sum(d.verdict is not Verdict.KEEP for d in decisions) >= 0.9 * len(rephrased)


def test_a_score_a_real_seed_reaches_goes_to_review_not_reject():
    # One bundled seed is a one-word near copy of an item of the demo's eval set.
    seed = "Why was I charged an extra fee when paying with card?"
    assert (seed, "card_payment_fee_charged") in bundled_seeds()
    eval_set = {"name": "demo-eval", "path": "seeds/eval.jsonl", "field": "text", "id_field": "id"}
    f = ContaminationFilter(ContaminationParams(eval_sets=[eval_set]), CTX)
    f.prepare(seeds(bundled_seeds()))
    [d] = f.decide([cand(seed)])
    assert d.verdict is Verdict.REVIEW
    assert d.reason.startswith("contamination_review: ") and "the closest seed" in d.reason


# --- the calibration, shown ------------------------------------------------------------------


def test_synth_calibrate_shows_each_threshold_and_why():
    config = ROOT / "config.toml"
    result = CliRunner().invoke(
        cli,
        ["--config", str(config), "calibrate", "--seeds", str(ROOT / "seeds" / "banking.jsonl")],
    )
    assert result.exit_code == 0, result.output
    assert "thresholds calibrated on 171 seeds" in result.output
    for name in ("same cell", "other cell", "banking77-test minhash", "banking77-test semantic"):
        assert name in result.output
    data = json.loads(
        CliRunner()
        .invoke(
            cli,
            [
                "--config",
                str(config),
                "calibrate",
                "--json",
                "--seeds",
                str(ROOT / "seeds" / "banking.jsonl"),
            ],
        )
        .output
    )
    thresholds = {(f["filter"], t["name"]): t for f in data["filters"] for t in f["thresholds"]}
    diversity = thresholds[("diversity", "cell")]
    assert diversity["rule"] == "seeds" and diversity["value"] > 0.8
    assert diversity["scores"]["count"] == 170  # one seed repeats another word for word
    assert thresholds[("near_dedup", "other cell")]["value"] == 0.5  # the floor


def test_the_chain_of_config_toml_is_calibrated_by_prepare(tmp_path):
    """What a run does: build the chain from config.toml, prepare it with the seeds."""
    from synth.config import load_config
    from synth.filters.rubric import split_judge

    config = load_config(ROOT / "config.toml")
    cheap, _ = split_judge(config.filters)
    chain = build_chain(cheap, config.filter_context())
    chain.prepare(seeds(bundled_seeds()))
    rules = {
        (f.name, t.name): t.rule
        for f in chain.filters
        if (table := f.calibration_table()) is not None
        for t in table.thresholds
    }
    assert rules[("diversity", "cell")] == "seeds"
    assert rules[("contamination", "banking77-test semantic")] == "seeds"
    assert Path(config.root / "seeds" / "eval.jsonl").exists()


# --- pinned from the quality benchmark ---------------------------------------------------


def test_a_short_row_with_a_typo_is_a_near_copy_though_its_opening_is_common():
    """Generated rows of a cell that mostly open "why was i ..." make that word pair
    frequent; a lone pair is phrasing, not a template, and is not taken out of the edit
    distance (it would leave 6 tokens of 8, and one typo would count as 17 %)."""
    openings = [
        "why was i declined at the shop today",
        "why was i refused a refund for my order",
        "why was i asked for my id again",
        "why was i not told about the new limits",
        "why was i sent a second card by post",
        "why was i logged out of the app twice",
        "why was i billed twice for one coffee",
    ]
    kept = "why was i charged a fee to transfer"
    f = NearDedupFilter(NearDedupParams(), CTX)
    f.prepare(seeds(bundled_seeds()))
    f.admit([cand(t, "transfer_fee_charged", 100 + i) for i, t in enumerate([*openings, kept])])
    [d] = f.decide([cand("why was i chharged a fee to transfer", "transfer_fee_charged")])
    assert d.verdict is Verdict.REJECT
    assert d.reason.startswith("near_dup: e=0.12 with ex_107")


@pytest.mark.parametrize(
    ("seed", "seed_label", "text", "label"),
    [
        # Real BANKING77 rows of different intents: word-pair Jaccard 0.56, a third of
        # the tokens edited.
        (
            "Why do I need to verify my funds?",
            "verify_source_of_funds",
            "Do I need to verify my top-up?",
            "verify_top_up",
        ),
        (
            "Can you tell me how to change my PIN?",
            "change_pin",
            "Tell me how to change my details.",
            "edit_personal_details",
        ),
        (
            "Can I get a card in person?",
            "order_physical_card",
            "Where can I get a card in the EU?",
            "country_support",
        ),
    ],
)
def test_a_short_real_row_is_not_a_near_copy_by_shared_phrasing_alone(
    seed, seed_label, text, label
):
    """Fewer than ten tokens: the token edits decide, not the word-pair Jaccard."""
    f = NearDedupFilter(NearDedupParams(), CTX)
    f.prepare(seeds([*bundled_seeds(), (seed, seed_label)]))
    [d] = f.decide([cand(text, label)])
    assert d.verdict is Verdict.KEEP, d.reason


def test_an_eval_item_with_a_word_changed_is_rejected_as_an_edited_copy():
    with open(DATA / "gsm8k" / "test.jsonl", encoding="utf-8") as f:
        item = json.loads(f.readline())["question"]
    words = item.split()
    words[3] = "several"
    [d] = gsm8k_filter().decide([cand(" ".join(words))])
    assert d.verdict is Verdict.REJECT
    assert d.reason.startswith("contamination: ") and " gsm8k " in d.reason


def test_the_array_forms_of_real_share_and_overused_decide_as_the_scalar_ones():
    # Near dedup weighs a batch's frequent shingles in one array call; its boilerplate,
    # and so its decisions, must be the ones a call per shingle gives.
    from collections import Counter

    from synth.filters.calibration import (
        PhraseCounts,
        overused,
        overused_many,
        real_share,
        real_shares,
    )

    rng = random.Random(7)
    wide, narrow = PhraseCounts[int](), PhraseCounts[int]()
    for _ in range(400):
        wide.add(rng.sample(range(300), 12))
    for _ in range(9):
        narrow.add(rng.sample(range(320), 12))  # some phrases no real row of all has
    phrases = list(range(330))
    for counts in (narrow, None):
        shares = real_shares(phrases, counts, wide)
        assert shares.tolist() == [real_share(p, counts, wide) for p in phrases]
    real = real_shares(phrases, narrow, wide)
    used = Counter({p: rng.randint(0, 60) for p in phrases})
    for n, share in ((60, 0.1), (60, 0.0), (7, 0.5), (0, 0.1)):
        count = [min(used[p], n) for p in phrases]
        many = overused_many(count, n, real, share, 2.0).tolist()
        one = [overused(c, n, r, share, 2.0) for c, r in zip(count, real.tolist(), strict=True)]
        assert many == one
        assert n == 0 or 0 < sum(one) < len(one)  # both sides of the line are tried
