"""Contamination benchmark: recall of LLM-rephrased eval items at 1 % false alarms,
and the thresholds calibrated on seeds of the eval set's own domain.

    python bench/contamination.py [--data ../shared/data] [--part floors|calibrated]

For each eval set (GSM8K test, 15 MMLU subjects, HumanEval) the positives are the
LLM Decontaminator's rephrasings of its items (each one a positive for the index as a
whole) and the negatives are unrelated texts of similar length: Self-Instruct seed and
user-oriented tasks, alpaca-libre tasks, BANKING77 messages, PAWS sentences, and, for
GSM8K, MMLU's high-school mathematics questions (same domain, different benchmark).
For each signal separately, the score threshold is set where 1 % of the negatives
score at or above it, and the recall of the positives there is printed, next to the
recall and false-alarm rate at the filter's floors (its thresholds without seeds).

The calibrated part runs the filter as a run does: prepared with seeds, deciding
candidates (a ``review`` counts as flagged, as it keeps the row out until a human
approves it). BANKING77 and CLINC150: 1,000 train rows as seeds, 1,000 other train
rows (the same domain, no copies intended) and test items verbatim, with formatting
edits (case, spacing, punctuation), with one word misspelled, and with one word
replaced, inserted or deleted. GSM8K: the BANKING77 seeds (another domain) or the
first half of the test set (the same domain) as seeds, the LLM rephrasings of the
items as positives, and templated banking messages that share only "I am ..." with
one puzzle as negatives.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from synth.filters.base import FilterContext  # noqa: E402
from synth.filters.contamination import (  # noqa: E402
    SIGNALS,
    ContaminationFilter,
    ContaminationIndex,
    ContaminationParams,
    EvalSetSpec,
)
from synth.records import Candidate, CellKey, SeenItem, Source  # noqa: E402
from synth.text import tokenize  # noqa: E402

MMLU_COLUMNS = ("question", "A", "B", "C", "D", "answer")
MMLU_ORIGINAL = ("abstract_algebra", "high_school_us_history", "sociology")


def jsonl(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # alpaca-libre v2 has malformed lines, documented upstream
    return rows


def negatives(data: Path, rng: random.Random) -> list[str]:
    """Unrelated texts of several kinds and lengths, in a fixed order."""
    out = []
    for name in ("seed_tasks.jsonl", "user_oriented_instructions.jsonl"):
        for row in jsonl(data / "self-instruct" / name):
            for inst in row["instances"]:
                out.append("\n".join(x for x in (row["instruction"], inst["input"]) if x))
                out.append(inst["output"])
    for version in ("v1", "v2", "v3"):
        for row in jsonl(data / "alpaca-libre" / f"alpaca_libre_tasks_{version}.jsonl"):
            if row.get("status") == "ok":
                parts = (row["instruction"], row.get("input", ""), row.get("output", ""))
                out.append("\n".join(x for x in parts if x))
    with open(data / "banking77" / "test.csv", newline="", encoding="utf-8") as fh:
        texts = [r["text"] for r in csv.DictReader(fh)]
    out += texts[:1500]
    out += [" ".join(texts[i : i + 4]) for i in range(1500, len(texts), 4)]
    paws = (data / "paws-wiki" / "dev.tsv").read_text(encoding="utf-8").splitlines()
    out += [line.split("\t")[1] for line in paws[:2000]]
    unique = list(dict.fromkeys(t.strip() for t in out if t.strip()))
    rng.shuffle(unique)
    return unique


def like(texts: Sequence[str], pool: Sequence[str]) -> list[str]:
    """The texts of pool within the 5th-95th percentile of texts' token counts."""
    lengths = [len(tokenize(t)) for t in texts]
    lo, hi = np.percentile(lengths, 5), np.percentile(lengths, 95)
    return [t for t in pool if lo <= len(tokenize(t)) <= hi]


def gsm8k(data: Path) -> tuple[list[EvalSetSpec], list[str], list[str]]:
    spec = EvalSetSpec(name="gsm8k", path=str(data / "gsm8k" / "test.jsonl"), field="question")
    positives = []
    for row in jsonl(data / "contamination-rephrased" / "rephrase_gsm8k.jsonl"):
        # "Question: <rephrased question>\nAnswer: \n#### 18": keep the question.
        text = re.sub(r"^Question:\s*", "", row["text"].split("\nAnswer:")[0])
        positives.append(text)
    with open(
        data / "mmlu-sample" / "reformatted" / "high_school_mathematics_test.csv",
        newline="",
        encoding="utf-8",
    ) as fh:
        same_domain = [r["question"] for r in csv.DictReader(fh)]
    return [spec], positives, same_domain


def mmlu(data: Path, choices: bool) -> tuple[list[EvalSetSpec], list[str], list[str]]:
    """MMLU's 15 subjects. With ``choices``, the configuration the filter recommends:
    questions alone for the n-gram signal, questions with their four choices for the
    similarity signals."""
    files = [
        (data / "mmlu-sample" / "original-format" / f"{subject}_test.csv", MMLU_COLUMNS)
        for subject in MMLU_ORIGINAL
    ] + [(path, ()) for path in sorted((data / "mmlu-sample" / "reformatted").glob("*.csv"))]
    specs = []
    for path, columns in files:
        name = "mmlu_" + path.name.removesuffix("_test.csv")
        if not choices:
            specs.append(EvalSetSpec(name=name, path=str(path), field="question", columns=columns))
            continue
        options = ("A", "B", "C", "D") if columns else tuple(f"choice{i}" for i in range(4))
        specs += [
            EvalSetSpec(
                name=name, path=str(path), field="question", columns=columns, signals=("ngram",)
            ),
            EvalSetSpec(
                name=f"{name}_choices",
                path=str(path),
                field=("question", *options),
                columns=columns,
                signals=("minhash", "semantic"),
            ),
        ]
    english, chinese = [], []
    folder = data / "contamination-rephrased" / "mmlu"
    for subject in MMLU_ORIGINAL:
        for row in jsonl(folder / f"{subject}_test_rephrase_english_filtered_question.jsonl"):
            if row["text"].strip():
                english.append(re.sub(r"^Answer:\s*", "", row["text"].strip()))
        for row in jsonl(folder / f"{subject}_test_chinese_filtered_question.jsonl"):
            if row["text"].strip():
                chinese.append(row["text"])
    return specs, english, chinese


# Questions that share MMLU's stock frame and nothing else: none should be flagged.
GENERIC = [
    "Which of the following best describes photosynthesis?",
    "Which of the following is a renewable source of energy?",
    "Which of the following statements is true?",
    "Which of the following statements about the French Revolution is correct?",
    "Which of the following is not a mammal?",
    "Which of the following would most likely increase the demand for umbrellas?",
    "Which of the following is an example of a chemical change?",
    "Which of the following statements is correct about refunds?",
    "Which of the following is the best way to reset my online banking password?",
    "Which of the following is true?",
]


def humaneval(data: Path) -> tuple[list[EvalSetSpec], list[str], list[str]]:
    spec = EvalSetSpec(
        name="humaneval",
        path=str(data / "humaneval" / "HumanEval.jsonl.gz"),
        field=("prompt", "canonical_solution"),
        id_field="task_id",
    )
    positives = [
        r["text"] for r in jsonl(data / "contamination-rephrased" / "humaneval_python.jsonl")
    ]
    # CodeAlpaca items GPT-4 judged not to be rephrasings of their nearest HumanEval item.
    code = [
        r["train"][0]
        for r in jsonl(data / "contamination-rephrased" / "CodeAlpacaDB.jsonl")
        if not r["results"][0]
    ]
    return [spec], positives, code


def scores(index: ContaminationIndex, texts: Sequence[str]) -> dict[str, np.ndarray]:
    out = {s: np.zeros(len(texts)) for s in index.params.signals}
    for i, matches in enumerate(index.match(texts)):
        for m in matches:  # one match per signal and eval set: the best counts
            out[m.signal][i] = max(out[m.signal][i], m.score)
    return out


def at_false_alarms(pos: np.ndarray, neg: np.ndarray, rate: float = 0.01) -> tuple[float, float]:
    """(threshold, recall) where at most ``rate`` of the negatives score >= threshold."""
    ordered = np.sort(neg)[::-1]
    k = int(rate * len(neg))
    threshold = float(np.nextafter(ordered[k], np.inf)) if k < len(ordered) else 0.0
    return threshold, float(np.mean(pos >= threshold))


def report(
    name: str,
    specs: list[EvalSetSpec],
    positives: Sequence[str],
    negs: Sequence[str],
    defaults: ContaminationParams,
    extra: dict[str, Sequence[str]] | None = None,
) -> None:
    start = time.perf_counter()
    # Permissive thresholds, so every signal scores every text that could matter (the
    # LSH proposes every item above about 0.1, below any 1 % false-alarm point); the
    # defaults are applied to the scores afterwards.
    sweep = defaults.model_copy(
        update={"eval_sets": tuple(specs), "minhash_threshold": 0.1, "semantic_threshold": 0.01}
    )
    index = ContaminationIndex(sweep, Path("/"))
    pos, neg = scores(index, positives), scores(index, negs)
    print(
        f"\n{name}: {len(index.items)} eval items ({index.generic['ngram']} generic left out), "
        f"{len(positives)} rephrased positives, {len(negs)} negatives "
        f"[{time.perf_counter() - start:.1f}s]"
    )
    default_threshold = {
        "ngram": 1e-9,
        "edits": defaults.edits_threshold,
        "minhash": defaults.minhash_threshold,
        "semantic": defaults.semantic_threshold,
    }
    for signal in SIGNALS:
        threshold, recall = at_false_alarms(pos[signal], neg[signal])
        d = default_threshold[signal]
        # The n-gram signal has no threshold: any shared n-gram is a hit.
        shown = "any" if signal == "ngram" else f"{d:.2f}"
        at = ">0" if signal == "ngram" and threshold <= d else f"{threshold:.3f}"
        print(
            f"  {signal:9s} at 1% false alarms: threshold {at:>5s}, recall {recall:.3f}"
            f"  | at default {shown}: recall {np.mean(pos[signal] >= d):.3f}, "
            f"false alarms {np.mean(neg[signal] >= d):.3%}"
        )
    fired_pos = np.any([pos[s] >= default_threshold[s] for s in SIGNALS], axis=0)
    fired_neg = np.any([neg[s] >= default_threshold[s] for s in SIGNALS], axis=0)
    print(
        f"  any signal at defaults (the filter as configured): recall {fired_pos.mean():.3f}, "
        f"false alarms {fired_neg.mean():.3%}"
    )
    for label, texts in (extra or {}).items():
        s = scores(index, texts)
        line = ", ".join(
            f"{sig} {np.mean(s[sig] >= default_threshold[sig]):.3f}" for sig in SIGNALS
        )
        print(f"  {label} ({len(texts)}), flagged at defaults: {line}")


# --- calibrated on seeds ------------------------------------------------------------

CTX = FilterContext(root=Path("/"), text_field="text", label_field="label")


def _candidates(texts: Sequence[str]) -> list[Candidate]:
    cell = CellKey(slice="default", label="x")
    return [
        Candidate(
            id=f"c{i}",
            run_id="r",
            cell=cell,
            text=t,
            data={"text": t},
            llm_call_id="c",
            index=0,
            template="t",
            template_sha="0" * 64,
            model="m",
        )
        for i, t in enumerate(texts)
    ]


def _seeds(texts: Sequence[str]) -> list[SeenItem]:
    cell = CellKey(slice="default", label="x")
    return [
        SeenItem(id=f"s{i}", text=t, cell=cell, source=Source.REAL) for i, t in enumerate(texts)
    ]


def edits(texts: Sequence[str], rng: random.Random) -> dict[str, list[str]]:
    """Each text verbatim, with formatting edits, one word misspelled, one word edited."""
    fmt, typo, word = [], [], []
    vocab = "the my a please now card account money".split()
    for t in texts:
        f = t.lower() if rng.random() < 0.5 else t.upper()
        fmt.append("  " + f.replace("?", " ?!").replace(",", " ,") + " ")
        words = t.split()
        spots = [i for i, w in enumerate(words) if len(w.strip("?.!,")) >= 4]
        if spots:
            i = rng.choice(spots)
            w = words[i]
            k = rng.randrange(1, len(w.strip("?.!,")) - 1)
            w = rng.choice(
                [w[:k] + w[k + 1 :], w[:k] + "e" + w[k:], w[: k - 1] + w[k] + w[k - 1] + w[k + 1 :]]
            )
            typo.append(" ".join(words[:i] + [w] + words[i + 1 :]))
        words = t.split()
        i = rng.randrange(len(words))
        op = rng.choice(("sub", "del", "ins"))
        if op == "sub":
            words[i] = rng.choice(vocab)
        elif op == "del" and len(words) > 3:
            del words[i]
        else:
            words.insert(i, rng.choice(vocab))
        word.append(" ".join(words))
    return {"verbatim": list(texts), "formatting": fmt, "typo": typo, "one word": word}


def flag_rates(
    name: str, spec: EvalSetSpec, seeds: Sequence[str], cases: dict[str, Sequence[str]]
) -> None:
    start = time.perf_counter()
    f = ContaminationFilter(ContaminationParams(eval_sets=(spec,)), CTX)
    f.prepare(_seeds(seeds))
    cal = f.calibration_table()
    used = ", ".join(f"{t.name.split()[-1]} {t.value:g} ({t.why()})" for t in cal.thresholds)
    print(f"\n{name}: {len(seeds)} seeds; thresholds {used} [{time.perf_counter() - start:.1f}s]")
    for note in cal.notes:
        print(f"  note: {note}")
    for label, texts in cases.items():
        decisions = f.decide(_candidates(texts))
        flagged = sum(d.verdict != "keep" for d in decisions)
        rejected = sum(d.verdict == "reject" for d in decisions)
        print(
            f"  {label:34s} flagged {flagged / len(texts):6.1%} ({flagged}/{len(texts)}),"
            f" rejected {rejected / len(texts):6.1%}"
        )


def calibrated(data: Path) -> None:
    rng = random.Random(5)
    with open(data / "banking77" / "train.csv", newline="", encoding="utf-8") as fh:
        train = [r["text"].strip() for r in csv.DictReader(fh)]
    with open(data / "banking77" / "test.csv", newline="", encoding="utf-8") as fh:
        test = [r["text"].strip() for r in csv.DictReader(fh)]
    rng.shuffle(train)
    spec = EvalSetSpec(
        name="banking77-test", path=str(data / "banking77" / "test.csv"), field="text"
    )
    cases = {"train rows (same domain)": train[1000:2000]}
    cases.update({f"test items, {k}": v for k, v in edits(rng.sample(test, 500), rng).items()})
    flag_rates("BANKING77 train -> test", spec, train[:1000], cases)

    clinc = json.loads((data / "clinc150" / "data_full.json").read_text(encoding="utf-8"))
    ctrain = [t for t, _ in clinc["train"]]
    ctest = [t for t, _ in clinc["test"] + clinc["oos_test"]]
    rng.shuffle(ctrain)
    path = Path("/tmp") / "synth-bench-clinc150-test.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in ctest), encoding="utf-8")
    spec = EvalSetSpec(name="clinc150-test", path=str(path), field="text")
    cases = {"train rows (same domain)": ctrain[1000:2000]}
    cases.update({f"test items, {k}": v for k, v in edits(rng.sample(ctest, 500), rng).items()})
    flag_rates("CLINC150 train -> test + oos_test", spec, ctrain[:1000], cases)

    questions = [r["question"] for r in jsonl(data / "gsm8k" / "test.jsonl")]
    _, rephrased, _ = gsm8k(data)
    banking = [json.loads(line)["text"] for line in (ROOT / "seeds" / "banking.jsonl").open()]
    templated = [f"{opener}{t}" for opener in TEMPLATES for t in banking]
    spec = EvalSetSpec(name="gsm8k", path=str(data / "gsm8k" / "test.jsonl"), field="question")
    cases = {
        "rephrased items": rephrased,
        "items, one word edited": edits(questions, rng)["one word"],
        "banking train rows": train[2000:4000],
        "templated banking rows": templated,
    }
    flag_rates("GSM8K, banking seeds (another domain)", spec, banking, cases)
    half = Path("/tmp") / "synth-bench-gsm8k-second-half.jsonl"
    half.write_text(
        "".join(json.dumps({"question": q}) + "\n" for q in questions[660:]), encoding="utf-8"
    )
    spec = EvalSetSpec(name="gsm8k-half", path=str(half), field="question")
    cases = {"rephrased items": rephrased[660:], "items verbatim": questions[660:]}
    flag_rates("GSM8K second half, first half as seeds (same domain)", spec, questions[:660], cases)


# Openings a generation template might put before every banking message; "I am" is
# rare in GSM8K and appears in one puzzle ("I am three years younger than my brother").
TEMPLATES = [
    "Hi, I am a customer of yours and I am writing because I have a problem: ",
    "Hello! I am a student and I am new to your bank. ",
    "I am a small business owner and I am worried. ",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--part", choices=("floors", "calibrated", "all"), default="all")
    args = ap.parse_args()
    data = args.data.resolve()
    if args.part in ("calibrated", "all"):
        calibrated(data)
    if args.part == "calibrated":
        return
    rng = random.Random(3)
    pool = negatives(data, rng)
    placeholder = EvalSetSpec(name="x", path="x.jsonl", field="x")
    defaults = ContaminationParams(eval_sets=(placeholder,))
    print(
        f"defaults: ngram={defaults.ngram}, minhash {defaults.minhash_shingle} "
        f"{defaults.minhash_n}-grams >= {defaults.minhash_threshold}, "
        f"semantic TF-IDF cosine >= {defaults.semantic_threshold}"
    )

    specs, positives, same_domain = gsm8k(data)
    report("GSM8K test", specs, positives, like(positives, pool) + same_domain, defaults)

    for choices in (False, True):
        specs, english, chinese = mmlu(data, choices)
        extra = {"Chinese translations": chinese, "generic-frame questions": GENERIC}
        title = "MMLU (15 subjects), " + (
            "questions for ngram, questions + choices for minhash/semantic"
            if choices
            else "questions only"
        )
        report(title, specs, english, like(english, pool), defaults, extra)

    specs, positives, code = humaneval(data)
    report("HumanEval", specs, positives, like(positives, pool) + code, defaults)


if __name__ == "__main__":
    main()
