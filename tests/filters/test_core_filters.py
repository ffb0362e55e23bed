"""The schema and exact-dedup filters, and the chain that runs them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from synth.config import FieldSpec
from synth.filters import FilterContext, build_chain
from synth.filters.base import Filter
from synth.filters.chain import FilterChain
from synth.filters.exact_dedup import ExactDedupFilter, ExactDedupParams
from synth.filters.schema import SchemaFilter, SchemaParams
from synth.records import Candidate, CellKey, Decision, SeenItem, Source, Verdict

CTX = FilterContext(
    root=Path("."),
    text_field="text",
    label_field="label",
    fields={"text": FieldSpec(min_length=3, max_length=200), "label": FieldSpec()},
)
CELL = CellKey(slice="default", label="refund")


def cand(text: object, label: object = "refund", i: int = 0, cell: CellKey = CELL, **extra):
    data = {"text": text, "label": label, **extra}
    data = {k: v for k, v in data.items() if v is not ...}
    return Candidate(
        id=f"ex_{i}",
        run_id="run_1",
        cell=cell,
        text=text if isinstance(text, str) else "",
        data=data,
        llm_call_id="call_1",
        index=i,
        template="t",
        template_sha="0" * 64,
        model="m",
    )


@pytest.mark.parametrize(
    ("text", "label", "extra", "verdict", "slug"),
    [
        ("I want my money back for this order", "refund", {}, "keep", ""),
        ("¿Puedo pedir un reembolso de mi compra?", "refund", {}, "keep", ""),
        ("我想申请退款，因为商品有问题", "refund", {}, "keep", ""),
        (..., "refund", {}, "reject", "missing_field"),
        (42, "refund", {}, "reject", "wrong_type"),
        ("refund please now", ..., {}, "reject", "missing_field"),
        ("I want my money back", "card_lost", {}, "reject", "wrong_label"),
        ("I want my money back", "refund", {"mood": "sad"}, "reject", "unknown_field"),
        ("hi", "refund", {}, "reject", "too_short"),  # 2 characters < min_length 3
        ("refund", "refund", {}, "reject", "too_short"),  # 1 word < min_words 2
        ("   ", "refund", {}, "reject", "empty"),
        ("word " * 100, "refund", {}, "reject", "too_long"),  # 500 characters > 200
        ("", "refund", {}, "reject", "too_short"),
    ],
)
def test_schema_filter(text, label, extra, verdict, slug):
    f = SchemaFilter(SchemaParams(min_words=2), CTX)
    [d] = f.decide([cand(text, label, **extra)])
    assert d.verdict == verdict
    assert d.reason.split(":")[0] == slug
    assert (d.filter, d.filter_version) == ("schema", "1")


def test_schema_filter_very_long_text_is_fast_and_rejected():
    f = SchemaFilter(SchemaParams(max_words=150), CTX)
    [d] = f.decide([cand("x " * 50_000)])
    assert d.verdict == "reject" and d.reason.startswith("too_long")


def test_exact_dedup_against_seeds_kept_rows_and_the_batch():
    f = ExactDedupFilter(ExactDedupParams(), CTX)
    f.prepare([SeenItem(id="seed_1", text="Where is my refund?", cell=CELL, source=Source.REAL)])
    batch = [
        cand("where  is my REFUND?", i=1),  # normalised: same as the seed
        cand("Refund me for the broken lamp", i=2),
        cand("refund me for the broken lamp ", i=3),  # same as #2, within the batch
        cand("Ｒｅｆｕｎｄ me for the lamp", i=4),  # NFKC folds full-width letters
        cand("", i=5),
    ]
    decisions = f.decide(batch)
    assert [d.verdict for d in decisions] == ["reject", "keep", "reject", "keep", "keep"]
    assert decisions[0].reason == "exact_dup: same text as seed_1"
    assert decisions[2].reason == "exact_dup: same text as ex_2"
    f.admit([batch[1]])
    [later] = f.decide([cand("REFUND me for the broken lamp", i=6)])
    assert later.reason == "exact_dup: same text as ex_2"


LONG = " ".join(f"token{i}" for i in range(50_000))


@pytest.mark.parametrize(
    ("text", "verdict", "slug"),
    [
        ("Where is my refund?", "reject", "exact_dup"),
        ("where is my refund ?", "keep", ""),  # other punctuation spacing: not the same text
        ("", "keep", ""),
        ("我想申请退款", "reject", "exact_dup"),
        ("我想申请退款。", "keep", ""),
        ("ＲＥＦＵＮＤ ＮＯＷ", "reject", "exact_dup"),  # NFKC + casefold: "refund now"
        ("Straße", "reject", "exact_dup"),  # casefold: "strasse"
        (LONG.upper(), "reject", "exact_dup"),
        (LONG + " more", "keep", ""),
    ],
)
def test_exact_dedup_decisions(text, verdict, slug):
    seeds = ["Where is my refund?", "我想申请退款", "refund now", "STRASSE", LONG]
    f = ExactDedupFilter(ExactDedupParams(), CTX)
    f.prepare(
        [
            SeenItem(id=f"seed_{i}", text=t, cell=CELL, source=Source.REAL)
            for i, t in enumerate(seeds)
        ]
    )
    [d] = f.decide([cand(text)])
    assert d.verdict == verdict
    assert d.reason.split(":")[0] == slug


def test_exact_dedup_scope_cell_allows_the_same_text_elsewhere():
    other = CellKey(slice="default", label="card_lost")
    f = ExactDedupFilter(ExactDedupParams(scope="cell"), CTX)
    f.prepare([SeenItem(id="s1", text="help me please", cell=other, source=Source.REAL)])
    [d] = f.decide([cand("help me please")])
    assert d.verdict == "keep"
    g = ExactDedupFilter(ExactDedupParams(scope="global"), CTX)
    g.prepare([SeenItem(id="s1", text="help me please", cell=other, source=Source.REAL)])
    assert g.decide([cand("help me please")])[0].verdict == "reject"


class Recorder(Filter):
    """A later filter that remembers what reached it."""

    name = "recorder"

    def __init__(self, verdict: Verdict = Verdict.KEEP) -> None:
        self.seen: list[str] = []
        self.verdict = verdict

    def decide(self, batch: Sequence[Candidate]) -> list[Decision]:
        self.seen += [c.id for c in batch]
        return [self._decision(c, self.verdict, None, "recorded") for c in batch]


def test_chain_stops_a_candidate_at_its_first_reject():
    later = Recorder()
    chain = FilterChain(
        [SchemaFilter(SchemaParams(), CTX), ExactDedupFilter(ExactDedupParams(), CTX), later],
        "text",
    )
    chain.prepare([SeenItem(id="seed_1", text="refund my order", cell=CELL, source=Source.REAL)])
    outcomes = chain.decide(
        [cand("refund my order", i=1), cand(7, i=2), cand("a brand new refund text", i=3)]
    )
    assert later.seen == ["ex_3"]  # the duplicate and the bad row never reached it
    assert [o.verdict for o in outcomes] == ["reject", "reject", "keep"]
    assert [o.rejected_by for o in outcomes] == ["exact_dedup", "schema", None]
    assert [len(o.decisions) for o in outcomes] == [2, 1, 3]  # keeps are decisions too


def test_chain_review_does_not_stop_and_reject_wins():
    chain = FilterChain([Recorder(Verdict.REVIEW), Recorder(Verdict.KEEP)], "text")
    [o] = chain.decide([cand("a text to review")])
    assert o.verdict is Verdict.REVIEW and len(o.decisions) == 2
    chain = FilterChain([Recorder(Verdict.REVIEW), Recorder(Verdict.REJECT)], "text")
    assert chain.decide([cand("a text to review")])[0].verdict is Verdict.REJECT


def test_build_chain_keeps_config_order():
    chain = build_chain([ExactDedupParams(), SchemaParams()], CTX)
    assert chain.names == ["exact_dedup", "schema"]
