"""Contamination against real eval sets: GSM8K, MMLU, HumanEval; eval-set files."""

from __future__ import annotations

import csv
import gzip
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, ROOT

from synth.errors import EvalSetError
from synth.filters.base import FilterContext
from synth.filters.contamination import (
    ContaminationFilter,
    ContaminationHit,
    ContaminationParams,
    EvalSetSpec,
    _lexsort,
    _rows_normalised,
    _SemanticIndex,
    build_index,
    check_file,
    load_eval_set,
)
from synth.records import Candidate, CellKey
from synth.text import tokenize

# Paths in the settings are relative to the project root, as config.toml writes them.
CTX = FilterContext(root=ROOT, text_field="text", label_field="label")
SHARED = "../shared/data"
GSM8K = {"name": "gsm8k", "path": f"{SHARED}/gsm8k/test.jsonl", "field": "question"}
REASON = re.compile(
    r"^contamination: (ngram|edits|minhash|semantic) (\S+) (\S+) \((\d\.\d\d)\b.*\)$"
)
MMLU_COLUMNS = ["question", "A", "B", "C", "D", "answer"]


def cand(text: str, i: int = 0) -> Candidate:
    return Candidate(
        id=f"ex_{i}",
        run_id="run_1",
        cell=CellKey(slice="default", label="math"),
        text=text,
        data={"text": text},
        llm_call_id="call_1",
        index=i,
        template="t",
        template_sha="0" * 64,
        model="m",
    )


def gsm8k_questions() -> list[str]:
    lines = (DATA / "gsm8k" / "test.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["question"] for line in lines]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


@pytest.fixture(scope="module")
def gsm8k() -> ContaminationFilter:
    return ContaminationFilter(ContaminationParams(eval_sets=[GSM8K]), CTX)


def mmlu_sets(choices: bool) -> list[dict]:
    """The 15 MMLU subjects; with ``choices``, questions alone for the n-gram signal and
    questions with their choices for the similarity signals."""
    sets = []
    for path in sorted((DATA / "mmlu-sample" / "original-format").glob("*.csv")):
        sets.append((path, MMLU_COLUMNS, ["A", "B", "C", "D"]))
    for path in sorted((DATA / "mmlu-sample" / "reformatted").glob("*.csv")):
        sets.append((path, [], [f"choice{i}" for i in range(4)]))
    out = []
    for path, columns, options in sets:
        name = path.name.removesuffix("_test.csv")
        shown = f"{SHARED}/mmlu-sample/{path.parent.name}/{path.name}"
        base = {"path": shown, "columns": columns}
        if not choices:
            out.append({**base, "name": name, "field": "question"})
            continue
        out.append({**base, "name": name, "field": "question", "signals": ["ngram"]})
        out.append(
            {
                **base,
                "name": f"{name}_choices",
                "field": ["question", *options],
                "signals": ["minhash", "semantic"],
            }
        )
    return out


@pytest.fixture(scope="module")
def mmlu() -> ContaminationFilter:
    return ContaminationFilter(ContaminationParams(eval_sets=mmlu_sets(choices=True)), CTX)


# --- GSM8K -----------------------------------------------------------------------------


def test_verbatim_gsm8k_questions_are_rejected(gsm8k):
    questions = gsm8k_questions()[:150]
    decisions = gsm8k.decide([cand(q, i) for i, q in enumerate(questions)])
    for i, d in enumerate(decisions):
        signal, eval_set, item, score = REASON.match(d.reason).groups()
        assert (d.verdict, signal, eval_set) == ("reject", "ngram", "gsm8k")
        assert item == f"{SHARED}/gsm8k/test.jsonl:{i + 1}"
        assert float(score) == pytest.approx(d.score, abs=0.005) and d.score == 1.0


def test_lightly_edited_gsm8k_questions_are_rejected(gsm8k):
    rng = random.Random(4)
    edited = []
    for q in gsm8k_questions()[150:300]:
        words = q.split()
        for _ in range(2):
            words[rng.randrange(len(words))] = rng.choice(["Tom", "seven", "garden", "blue"])
        edited.append(" ".join(words))
    decisions = gsm8k.decide([cand(q, i) for i, q in enumerate(edited)])
    assert all(d.verdict == "reject" for d in decisions)
    # Embedded in a longer row (a question with its worked answer) it is still caught.
    q = gsm8k_questions()[7]
    [d] = gsm8k.decide([cand(f"Solve this step by step.\n{q}\nFirst, we add the numbers.")])
    assert d.verdict == "reject" and d.reason.startswith("contamination: ngram gsm8k")


UNRELATED = [
    "I still have not received my new card, can you check where it is?",
    "¿Cuánto tarda en llegar una transferencia internacional a mi cuenta?",
    "我的卡被吞了，怎么办？",
    "Write a haiku about the first snow of winter in the mountains.",
    "Classify the sentiment of this review: the battery died after two days.",
    "",
    "!!!",
    " ".join(["Please explain how photosynthesis turns light into chemical energy."] * 800),
]


@pytest.mark.parametrize("text", UNRELATED)
def test_unrelated_texts_are_kept(gsm8k, text):
    [d] = gsm8k.decide([cand(text)])
    assert d.verdict == "keep" and d.reason == ""
    assert d.score is not None and 0.0 <= d.score < 0.35


def test_false_alarms_on_real_unrelated_text_are_rare(gsm8k):
    """BANKING77 messages and Self-Instruct tasks and answers: 3,430 texts, none copied."""
    with open(DATA / "banking77" / "test.csv", newline="", encoding="utf-8") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)]
    for line in (DATA / "self-instruct" / "seed_tasks.jsonl").read_text().splitlines():
        row = json.loads(line)
        texts += [row["instruction"], row["instances"][0]["output"]]
    decisions = gsm8k.decide([cand(t, i) for i, t in enumerate(texts)])
    assert sum(d.verdict == "reject" for d in decisions) <= 0.002 * len(texts)


def test_a_verbatim_question_inside_a_very_long_row_is_caught(gsm8k):
    filler = " ".join(["We discussed the weather and the garden for a while."] * 700)
    row = f"{filler} {gsm8k_questions()[42]} {filler}"
    assert len(row) > 50_000
    [d] = gsm8k.decide([cand(row)])
    assert d.reason.startswith(f"contamination: ngram gsm8k {SHARED}/gsm8k/test.jsonl:43 ")


def test_decisions_do_not_depend_on_history(gsm8k):
    fresh = ContaminationFilter(ContaminationParams(eval_sets=[GSM8K]), CTX)
    batch = [cand(q, i) for i, q in enumerate(gsm8k_questions()[:5] + UNRELATED[:3])]
    gsm8k.admit(batch)
    assert gsm8k.decide(batch) == fresh.decide(batch)


# --- MMLU: short questions and stock phrasing ---------------------------------------


def test_short_mmlu_questions_verbatim_are_caught(mmlu):
    index = mmlu.index
    # Every question of 4-12 words, except the stock ones ("Which of the following
    # statements is true?", found inside three or more other questions).
    short = [index.items[i].text for i in index.subsets["ngram"]]
    short = [q for q in short if 4 <= len(q.split()) <= 12]
    assert len(short) > 500
    decisions = mmlu.decide([cand(q, i) for i, q in enumerate(short)])
    assert all(d.verdict == "reject" for d in decisions)
    assert all(d.reason.startswith("contamination: ngram ") for d in decisions)


GENERIC = [
    "Which of the following best describes photosynthesis?",
    "Which of the following is a renewable source of energy?",
    "Which of the following statements is true?",
    "Which of the following statements about the French Revolution is correct?",
    "Which of the following is not a mammal?",
    "Which of the following is an example of a chemical change?",
    "Which of the following is the best way to reset my online banking password?",
    "Which of the following is true?",
]


# Two of them are MMLU questions word for word, stock ones (each found inside three or
# more other questions): no evidence of copying any one item, but not kept silently.
STOCK = {"Which of the following statements is true?", "Which of the following is true?"}


@pytest.mark.parametrize("text", GENERIC)
def test_generic_which_of_the_following_phrasing_is_kept(mmlu, text):
    [d] = mmlu.decide([cand(text)])
    if text in STOCK:
        assert d.verdict == "review", d.reason
        assert d.reason.startswith("contamination_review: ngram ")
        assert "stock phrasing" in d.reason
    else:
        assert d.verdict == "keep", d.reason


def test_stock_short_items_are_left_out_of_the_ngram_index():
    params = ContaminationParams(eval_sets=mmlu_sets(choices=False), signals=["ngram"])
    index = build_index(params, CTX.root)
    assert index.generic["ngram"] >= 10  # "Which of the following statements is true" ...
    f = ContaminationFilter(params, CTX)
    decisions = f.decide([cand(t, i) for i, t in enumerate(GENERIC)])
    expected = ["review" if t in STOCK else "keep" for t in GENERIC]
    assert [d.verdict for d in decisions] == expected


# --- HumanEval (gzipped JSONL, ids from a field) --------------------------------------


def test_humaneval_prompts_are_caught_with_their_task_ids():
    spec = {
        "name": "humaneval",
        "path": f"{SHARED}/humaneval/HumanEval.jsonl.gz",
        "field": ["prompt", "canonical_solution"],
        "id_field": "task_id",
    }
    f = ContaminationFilter(ContaminationParams(eval_sets=[spec]), CTX)
    with gzip.open(DATA / "humaneval" / "HumanEval.jsonl.gz", "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    decisions = f.decide(
        [cand(r["prompt"] + r["canonical_solution"], i) for i, r in enumerate(rows)]
    )
    found = [REASON.match(d.reason).group(3) for d in decisions]
    words = {r["task_id"]: tokenize(r["prompt"] + r["canonical_solution"]) for r in rows}
    for row, item in zip(rows, found, strict=True):
        # HumanEval/56 and /61 differ only in bracket characters, which are not tokens:
        # a tie goes to the first.
        assert item == row["task_id"] or words[item] == words[row["task_id"]]
    assert sum(item != row["task_id"] for row, item in zip(rows, found, strict=True)) == 1


# --- Unicode eval sets ----------------------------------------------------------------

ITEMS = [
    "小明有五个苹果，他给了小红两个，又买了三个，请问小明现在有几个苹果？",
    "Un tren sale de Madrid a las ocho y recorre 300 kilómetros a 100 km/h. ¿A qué hora llega?",
]


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        (ITEMS[0], "reject"),
        ("题目：" + ITEMS[0] + " 请写出计算过程。", "reject"),
        ("我的银行卡丢了，请帮我冻结账户。", "keep"),
        (ITEMS[1], "reject"),
        (ITEMS[1].replace("Madrid", "Sevilla"), "reject"),
        ("¿Puedo cambiar el PIN de mi tarjeta en un cajero automático?", "keep"),
    ],
)
def test_unicode_eval_sets(tmp_path, text, verdict):
    write_jsonl(tmp_path / "evals.jsonl", [{"q": t} for t in ITEMS])
    params = ContaminationParams(eval_sets=[{"name": "mine", "path": "evals.jsonl", "field": "q"}])
    f = ContaminationFilter(params, FilterContext(tmp_path, "text", "label"))
    [d] = f.decide([cand(text)])
    assert d.verdict == verdict, d.reason


SHORT_ITEMS = ["Where is my card?", "How do I activate the new card I was sent today?"]


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("where is my crad", "the whole item, one word misspelled"),
        ("Where's my card?", None),  # a word replaced, not misspelled
        ("How do I activate the new crad I was sent today", "one word misspelled"),
        ("Hi! How do I activate the new card I was sent today? Thanks", "11-token item inside"),
        ("Where is my card? " * 3, None),  # a 4-token item counts inside a row at 6+
        ("I was sent a new card today", None),
    ],
)
def test_short_items_misspelled_or_inside_a_row(tmp_path, text, detail):
    write_jsonl(tmp_path / "evals.jsonl", [{"q": t} for t in SHORT_ITEMS])
    params = ContaminationParams(
        eval_sets=[{"name": "mine", "path": "evals.jsonl", "field": "q"}], signals=["ngram"]
    )
    f = ContaminationFilter(params, FilterContext(tmp_path, "text", "label"))
    [d] = f.decide([cand(text)])
    if detail is None:
        assert d.verdict == "keep", d.reason
    else:
        assert d.verdict == "reject" and detail in d.reason, d.reason


# --- eval-set files -------------------------------------------------------------------


def load(tmp_path: Path, name: str, content: str | bytes, **spec) -> list:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    full = {"name": "e", "path": name, "field": "q", **spec}
    return load_eval_set(EvalSetSpec(**full), tmp_path)


def test_formats_and_item_ids(tmp_path):
    assert [(x.id, x.text) for x in load(tmp_path, "a.jsonl", '{"q": "one"}\n\n{"q": 2}\n')] == [
        ("a.jsonl:1", "one"),
        ("a.jsonl:3", "2"),
    ]
    gz = gzip.compress(b'{"q": "one", "task": "T/0"}\n')
    assert [(x.id, x.text) for x in load(tmp_path, "b.jsonl.gz", gz, id_field="task")] == [
        ("T/0", "one")
    ]
    # A quoted field spanning lines: the id names the line the record starts on.
    csv_text = 'q,a\n"first\nline",x\nsecond,y\n'
    assert [x.id for x in load(tmp_path, "c.csv", csv_text)] == ["c.csv:2", "c.csv:4"]
    headerless = "What is 2+2?,3,4,5,6,B\n"
    [item] = load(tmp_path, "d.csv", headerless, columns=MMLU_COLUMNS, field="question")
    assert (item.id, item.text) == ("d.csv:1", "What is 2+2?")
    [item] = load(tmp_path, "e.csv", headerless, columns=MMLU_COLUMNS, field=["question", "B"])
    assert item.text == "What is 2+2?\n4"
    assert [x.text for x in load(tmp_path, "f.tsv", "q\tr\nhello\tx\n")] == ["hello"]
    as_list = json.dumps([{"q": "one"}, {"q": "two"}])
    assert [x.id for x in load(tmp_path, "g.json", as_list)] == ["g.json[0]", "g.json[1]"]
    as_columns = json.dumps({"q": ["one", "two"], "id": ["x", "y"]})
    assert [(x.id, x.text) for x in load(tmp_path, "h.json", as_columns, id_field="id")] == [
        ("x", "one"),
        ("y", "two"),
    ]
    assert [x.text for x in load(tmp_path, "i.data", '{"q": "one"}\n', format="jsonl")] == ["one"]


def test_the_real_mmlu_csv_dialects_load():
    headed = load_eval_set(
        EvalSetSpec(
            name="anatomy",
            path=f"{SHARED}/mmlu-sample/reformatted/anatomy_test.csv",
            field=["question", "choice0"],
        ),
        ROOT,
    )
    headerless = load_eval_set(
        EvalSetSpec(
            name="algebra",
            path=f"{SHARED}/mmlu-sample/original-format/abstract_algebra_test.csv",
            field="question",
            columns=MMLU_COLUMNS,
        ),
        ROOT,
    )
    assert (len(headed), len(headerless)) == (135, 100)


@pytest.mark.parametrize(
    ("name", "content", "spec", "where", "message"),
    [
        ("a.jsonl", '{"q": "one"}\n{"q": "two"\n', {}, "a.jsonl:2", "not valid JSON"),
        ("a.jsonl", '{"q": "one"}\n{"r": "two"}\n', {}, "a.jsonl:2", "no field 'q' (fields: r)"),
        ("a.jsonl", '{"q": "one"}\n["q"]\n', {}, "a.jsonl:2", "expected a JSON object"),
        ("a.jsonl", '{"q": {"x": 1}}\n', {}, "a.jsonl:1", "not text"),
        ("a.jsonl", '{"q": "one"}\n', {"id_field": "id"}, "a.jsonl:1", "no field 'id'"),
        ("a.csv", "q,a\none,x\ntwo\n", {}, "a.csv:3", "expected 2 fields (q, a), got 1"),
        ("a.csv", "", {}, "a.csv", "no header row"),
        ("a.json", '{"q": ["one"], "r": ["x", "y"]}', {}, "a.json", "a list of one length"),
        ("a.json", '[{"q": "one"}, 3]', {}, "a.json[1]", "expected an object"),
        ("a.json", '[{"q": "one"},\n oops]', {}, "a.json:2", "not valid JSON"),
        ("a.jsonl.gz", b"not gzip at all", {}, "a.jsonl.gz", "cannot read the file"),
        ("a.txt", "q\n", {}, "a.txt", "unknown file type"),
    ],
)
def test_eval_set_errors_name_the_file_and_line(tmp_path, name, content, spec, where, message):
    with pytest.raises(EvalSetError) as e:
        load(tmp_path, name, content, **spec)
    assert e.value.where == where
    assert message in e.value.message
    assert str(e.value).startswith(f"{where}: ")


def test_a_missing_eval_set_file_is_an_error_naming_it(tmp_path):
    params = ContaminationParams(
        eval_sets=[{"name": "x", "path": "evals/gone.jsonl", "field": "q"}]
    )
    with pytest.raises(EvalSetError) as e:
        ContaminationFilter(params, FilterContext(tmp_path, "text", "label"))
    assert e.value.where == "evals/gone.jsonl" and "not found" in e.value.message


def test_settings_are_validated():
    with pytest.raises(ValueError, match="treshold"):
        ContaminationParams.model_validate(
            {"kind": "contamination", "eval_sets": [GSM8K], "semantic_treshold": 0.5}
        )
    with pytest.raises(ValueError, match="listed twice"):
        ContaminationParams(eval_sets=[GSM8K], signals=["ngram", "ngram"])
    with pytest.raises(ValueError):
        ContaminationParams(eval_sets=[])
    with pytest.raises(EvalSetError, match="same name"):
        ContaminationFilter(ContaminationParams(eval_sets=[GSM8K, GSM8K]), CTX)


# --- check_file -----------------------------------------------------------------------


def test_check_file(tmp_path):
    questions = gsm8k_questions()
    rows = [
        {"text": "How do I order a new card?"},
        {"text": questions[9]},
        {"text": "Rewrite this sentence in the passive voice: the cat chased the mouse."},
        {"text": questions[99].replace("How many", "How much")},
    ]
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    params = ContaminationParams(eval_sets=[GSM8K])
    ctx = FilterContext(ROOT, "text", "label")
    # Four rows are too few to calibrate on: the floors decide.
    check = check_file(path, "text", params, ctx)
    assert check.rows == 4 and check.reference == f"the 4 rows of {path}"
    assert all(t.rule == "too_few" for t in check.calibration.thresholds)
    hits = check.hits
    rows_hit = sorted({h.row for h in hits})
    assert rows_hit == [f"{path}:2", f"{path}:4"]
    assert check.rejected_rows == {f"{path}:2", f"{path}:4"} and not check.review_rows
    first = [h for h in hits if h.row == f"{path}:2"]
    assert first[0] == ContaminationHit(
        row=f"{path}:2",
        eval_set="gsm8k",
        item_id=f"{SHARED}/gsm8k/test.jsonl:10",
        signal="ngram",
        score=1.0,
        verdict="reject",
        threshold=6.0,
    )
    assert {h.signal for h in first} == {"ngram", "edits", "minhash", "semantic"}
    with pytest.raises(EvalSetError, match="no field 'prompt'"):
        check_file(path, "prompt", params, ctx)


def test_lexsort_orders_as_numpy_does() -> None:
    rng = np.random.default_rng(0)
    for size in (0, 1, 7, 500):
        keys = (
            rng.integers(0, 50, size),
            -rng.integers(0, 5, size).astype(np.float32) / 4,  # ties, and -0.0 with 0.0
            rng.integers(-3, 3, size),
            np.sort(rng.integers(0, 9, size)),
        )
        assert _lexsort(keys).tolist() == np.lexsort(keys).tolist()
    wide = (rng.integers(0, 1 << 40, 100), rng.integers(0, 1 << 40, 100))  # 80 bits: lexsort
    assert _lexsort(wide).tolist() == np.lexsort(wide).tolist()


def test_semantic_counts_are_the_vectorizers() -> None:
    from sklearn.feature_extraction.text import CountVectorizer

    items = ["Where is my card?", "my card is lost, where is it", "Straße ﬀ 我想 card card"]
    index = _SemanticIndex(
        items, np.zeros(len(items), dtype=np.int64), ContaminationParams(eval_sets=[GSM8K])
    )
    vectorizer = CountVectorizer(
        tokenizer=tokenize, token_pattern=None, lowercase=False, ngram_range=(1, 2)
    )
    vectorizer.fit(items)
    texts = ["", "card", "where is my card card where", "strasse ﬀ 我想 lost", "is it my card?"]
    ours = index._counts([tokenize(t) for t in texts])
    theirs = vectorizer.transform(texts).tocsr()
    assert ours.dtype == np.float32
    assert ours.indptr.tolist() == theirs.indptr.tolist()
    assert ours.indices.tolist() == theirs.indices.tolist()
    assert ours.data.tolist() == theirs.data.tolist()
    # The items are counted and numbered as the vectorizer fits them.
    assert index.terms == vectorizer.vocabulary_
    fitted = vectorizer.fit_transform(items).tocsr()
    fitted.sort_indices()
    own = index._counts([tokenize(t) for t in items])
    assert (own.indptr.tolist(), own.indices.tolist(), own.data.tolist()) == (
        fitted.indptr.tolist(),
        fitted.indices.tolist(),
        fitted.data.tolist(),
    )


def test_rows_are_scaled_to_unit_length_as_scikit_learn_scales_them() -> None:
    from scipy.sparse import csr_matrix
    from sklearn.preprocessing import normalize

    rng = np.random.default_rng(0)
    dense = rng.random((40, 30)).astype(np.float32) * (rng.random((40, 30)) < 0.2)
    dense[3] = 0.0  # a row of zeros stays so
    ours = _rows_normalised(csr_matrix(dense))
    theirs = normalize(csr_matrix(dense))
    assert ours.dtype == np.float32
    assert np.allclose(ours.toarray(), theirs.toarray(), rtol=1e-6, atol=0)
    assert not ours[3].toarray().any()
