"""The labelled set of ``bench/quality.py``, built from the real public data in
``../shared/data`` only, by random draws with a fixed seed.

A project: seeds (real rows with labels), the eval sets the contamination filter
checks against, a config.toml with the bundled config's filter chain, and a
candidate file in which every row has a *kind* and the verdict it should get:

    clean                 fresh real rows of the seeds' labels                 keep
    boilerplate           fresh real rows wrapped in a shared opening/closing  keep
    same_domain           real rows of an eval set's domain, not copies of it  keep
    pii                   fresh real rows with one PII value added             as the config says
    exact_dup             a seed or an earlier candidate, verbatim or re-cased reject
    near_dup              a seed or an earlier candidate with 5-15 % edits     reject
    cross_label_near_dup  a seed with 5-15 % edits, under another seed label   reject
    eval_verbatim         an eval item as it is                                reject
    eval_edited           an eval item with 5-15 % edits                       reject
    eval_paraphrase       an LLM rephrasing of an eval item (GSM8K, HumanEval, reject
                          MMLU) or a PAWS paraphrase of one
    eval_translated       a Chinese translation of an MMLU item                reject
    eval_near_miss        a PAWS sentence with an eval sentence's words in     none (shown only)
                          another order and another meaning

Where the rows come from (each folder's README in ``../shared/data`` has the details):

    seeds             BANKING77 train (random intents, up to 40 rows each and never
                      more than half an intent's rows), CLINC150 train (random intents,
                      40 each), Self-Instruct's 175 seed tasks (label "instruction"),
                      CodeAlpaca items (label "code", see same_domain)
    eval sets         BANKING77 test, CLINC150 test, GSM8K test, HumanEval (prompt and
                      solution), Self-Instruct's 252 user-oriented tasks, PAWS dev
                      (sentence 1), 10 MMLU subjects (questions for the n-gram signal,
                      questions and choices for the others, as the filter recommends)
    clean, boilerplate, pii
                      the seed intents' other train rows; alpaca-libre's instructions
                      that passed its checks (v1-v3)
    same_domain       BANKING77 and CLINC150 (train and val) rows of intents without
                      seeds; the CodeAlpaca items GPT-4 judged not to rephrase their
                      nearest HumanEval problem (those not used as seeds); 5 MMLU
                      subjects left out of the eval sets (maths among them, GSM8K's
                      domain); PAWS test sentences
    exact_dup, near_dup   seeds, and clean rows earlier in the file
    cross_label_near_dup  BANKING77 and CLINC150 seeds
    eval_*            the eval sets' items; paraphrases: the LLM Decontaminator's
                      rephrased GSM8K, HumanEval and MMLU, PAWS dev label-1 pairs;
                      translations: its Chinese MMLU; near misses: PAWS label-0 pairs

Why the expected verdicts hold by construction:

- An *edit* changes whole tokens (synth's tokens): delete, insert or replace a word
  (words come from other real rows of the same dataset), or a typo inside a word.
  "5-15 % edits" is measured, not planned: the token Levenshtein distance divided by
  the longer length. Texts too short to be edited that lightly (under 7 tokens) are
  never the source of an edit.
- A *fresh* row (the keep kinds) is more than ``FRESH`` (20 %) token edits away from
  every seed, every eval item and every keep row drawn before it, so no keep row is a
  copy or a light edit of anything the filters compare it with. Rows closer than that
  are skipped and counted (``Fresh.skipped``), so the data's nature is on record. The
  gap between 15 % and 20 % is deliberate: edits and fresh rows never meet.
- eval_verbatim and eval_edited use only items whose text is not contained in another
  eval item: a copy of "Which of the following is true?" identifies no item.
- A copy of an earlier row is a duplicate only if that row is kept: ``bench/quality.py``
  does not score copies of rows the chain rejected.

The only text not taken from the data: the boilerplate openings and closings (as a
generation template writes them) and the PII values (made up, with valid check digits:
real personal data has no place in a benchmark).
"""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import random
import re
import string
import tomllib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

from synth.filters.contamination import EvalSetSpec, load_eval_set
from synth.filters.pii import PiiParams
from synth.text import tokenize

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"

LIGHT = (0.05, 0.15)  # an edit changes this share of the tokens
FRESH = 0.20  # a keep row is further than this from everything

KEEP_KINDS = ("clean", "boilerplate", "same_domain", "pii")
REJECT_KINDS = (
    "exact_dup",
    "near_dup",
    "cross_label_near_dup",
    "eval_verbatim",
    "eval_edited",
    "eval_paraphrase",
    "eval_translated",
)
INFO_KINDS = ("eval_near_miss",)
KINDS = KEEP_KINDS + REJECT_KINDS + INFO_KINDS

MMLU_COLUMNS = ("question", "A", "B", "C", "D", "answer")
MMLU_WITH_REPHRASES = ("abstract_algebra", "high_school_us_history", "sociology")
# Left out of the MMLU eval sets: their questions are same-domain rows (exam questions,
# and for GSM8K, maths) that are not eval items.
MMLU_HELD_OUT = (
    "college_computer_science",
    "computer_security",
    "high_school_mathematics",
    "machine_learning",
    "world_religions",
)


@dataclass(frozen=True)
class Sizes:
    """How big the set is: rows per kind, and the seeds."""

    per_kind: int = 300
    banking_labels: int = 20  # BANKING77 intents with seeds
    clinc_labels: int = 20  # CLINC150 intents with seeds
    per_label: int = 40  # seeds per intent (at most half of the intent's train rows)
    code_seeds: int = 40

    @classmethod
    def small(cls) -> Sizes:
        return cls(per_kind=60, banking_labels=8, clinc_labels=8, per_label=20, code_seeds=20)


@dataclass
class Row:
    """A candidate and its answer: what it is and what the chain should do with it."""

    text: str
    label: str
    kind: str
    expected: str  # keep | reject | redact | review | info
    source: str  # the dataset (or eval set) it comes from
    origin: str = ""  # what it copies or edits: "seed", "row" (an earlier row), an item id
    origin_label: str = ""  # the label of the row it copies or edits
    pii: dict[str, Any] | None = None  # {"kind", "value", "start"} of the value added
    after: Row | None = field(default=None, repr=False)  # must come after this row
    # The line of the row it copies: a copy of a row the chain rejected is no duplicate
    # of anything kept, so it is not scored.
    after_line: int | None = None

    def answer(self) -> dict[str, Any]:
        """The row's answer key entry (everything but the text the chain is given)."""
        names = ("kind", "expected", "source", "origin", "origin_label", "pii", "after_line")
        return {name: getattr(self, name) for name in names}


@dataclass(frozen=True)
class Text:
    text: str
    label: str
    source: str
    id: str = ""


# --- reading the data ----------------------------------------------------------------


def jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # alpaca-libre v2's 14 malformed lines, documented upstream
    return rows


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def mmlu_files(data: Path) -> dict[str, tuple[Path, tuple[str, ...]]]:
    """subject -> (file, columns of a headerless file)."""
    out: dict[str, tuple[Path, tuple[str, ...]]] = {}
    for path in sorted((data / "mmlu-sample" / "original-format").glob("*.csv")):
        out[path.name.removesuffix("_test.csv")] = (path, MMLU_COLUMNS)
    for path in sorted((data / "mmlu-sample" / "reformatted").glob("*.csv")):
        out[path.name.removesuffix("_test.csv")] = (path, ())
    return out


def mmlu_questions(path: Path, columns: Sequence[str]) -> list[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        if columns:
            return [r[0] for r in csv.reader(fh)]
        return [r["question"] for r in csv.DictReader(fh)]


def paws_pairs(path: Path) -> list[tuple[str, str, int]]:
    """(sentence1, sentence2, label); the files have no header and CRLF endings."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        _, s1, s2, label = line.rstrip("\r").split("\t")
        out.append((s1, s2, int(label)))
    return out


def eval_sets(data: Path, work: Path) -> list[EvalSetSpec]:
    """The eval sets of the benchmark's project: files of ../shared/data as they are,
    and CLINC150's test split written to ``work`` (its file is not a table)."""
    clinc = json.loads((data / "clinc150" / "data_full.json").read_text(encoding="utf-8"))
    clinc_test = work / "clinc150-test.jsonl"
    with open(clinc_test, "w", encoding="utf-8") as fh:
        for i, (text, intent) in enumerate(clinc["test"]):
            fh.write(json.dumps({"id": f"clinc150-test:{i}", "text": text, "intent": intent}))
            fh.write("\n")
    specs = [
        EvalSetSpec(name="banking77-test", path=str(data / "banking77" / "test.csv"), field="text"),
        EvalSetSpec(name="clinc150-test", path=str(clinc_test), field="text", id_field="id"),
        EvalSetSpec(name="gsm8k", path=str(data / "gsm8k" / "test.jsonl"), field="question"),
        EvalSetSpec(
            name="humaneval",
            path=str(data / "humaneval" / "HumanEval.jsonl.gz"),
            field=("prompt", "canonical_solution"),
            id_field="task_id",
        ),
        EvalSetSpec(
            name="self-instruct-user",
            path=str(data / "self-instruct" / "user_oriented_instructions.jsonl"),
            field="instruction",
            id_field="id",
        ),
        EvalSetSpec(
            name="paws-dev",
            path=str(data / "paws-wiki" / "dev.tsv"),
            field="sentence1",
            columns=("id", "sentence1", "sentence2", "label"),
        ),
    ]
    # MMLU as the contamination filter recommends: every signal on the questions alone
    # (a rephrased question is written without its choices), and the similarity signals
    # on questions with their choices too.
    for subject, (path, columns) in mmlu_files(data).items():
        if subject in MMLU_HELD_OUT:
            continue
        options = ("A", "B", "C", "D") if columns else tuple(f"choice{i}" for i in range(4))
        name = f"mmlu-{subject}"
        specs += [
            EvalSetSpec(
                name=name,
                path=str(path),
                field="question",
                columns=columns,
                signals=("ngram", "edits", "minhash", "semantic"),
            ),
            EvalSetSpec(
                name=f"{name}+choices",
                path=str(path),
                field=("question", *options),
                columns=columns,
                signals=("minhash", "semantic"),
            ),
        ]
    return specs


# --- token edits and freshness --------------------------------------------------------


def token_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance over tokens."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def edit_share(a: str, b: str) -> float:
    """Token edits between two texts over the longer one's length: 0 equal, 1 unrelated."""
    ta, tb = tokenize(a), tokenize(b)
    return token_distance(ta, tb) / max(1, len(ta), len(tb))


def light_edit(text: str, rng: random.Random, vocab: Sequence[str]) -> str | None:
    """``text`` with 5-15 % of its tokens edited, or None when it is too short for that.

    Edits work on the whitespace-separated words, so line breaks and indentation
    (code) stay as they are: delete a word, insert or substitute one from ``vocab``, or
    a typo (a letter dropped, doubled or swapped with the next)."""
    n = len(tokenize(text))
    counts = [k for k in range(1, n + 1) if LIGHT[0] <= k / n <= LIGHT[1]]
    if not counts:
        return None
    for _ in range(20):
        pieces = re.split(r"(\s+)", text)
        for _ in range(rng.choice(counts)):
            words = [i for i in range(0, len(pieces), 2) if re.search(r"\w", pieces[i])]
            if not words:
                break
            _edit_word(pieces, rng.choice(words), rng, vocab)
        edited = "".join(pieces).strip()
        if edited and LIGHT[0] <= edit_share(text, edited) <= LIGHT[1]:
            return edited
    return None


def _edit_word(pieces: list[str], i: int, rng: random.Random, vocab: Sequence[str]) -> None:
    word = pieces[i]
    op = rng.choice(("delete", "insert", "substitute", "typo"))
    if op == "delete" and len(pieces) > 2:
        pieces[i] = ""
        if i + 1 < len(pieces):
            pieces[i + 1] = ""
        else:
            pieces[i - 1] = ""
    elif op == "insert":
        pieces[i] = f"{rng.choice(vocab)} {word}"
    elif op == "substitute":
        pieces[i] = re.sub(r"\w+", lambda _: rng.choice(vocab), word, count=1)
    else:
        letters = [j for j in range(len(word) - 1) if word[j].isalpha() and word[j + 1].isalpha()]
        if not letters:
            pieces[i] = re.sub(r"\w+", lambda _: rng.choice(vocab), word, count=1)
            return
        j = rng.choice(letters)
        pieces[i] = rng.choice(
            (
                word[:j] + word[j + 1 :],  # dropped
                word[:j] + word[j] + word[j:],  # doubled
                word[:j] + word[j + 1] + word[j] + word[j + 2 :],  # swapped
            )
        )


def vocabulary(texts: Iterable[str], rng: random.Random, size: int = 5000) -> list[str]:
    """Words of real rows, for insertions and substitutions."""
    words = sorted({w for t in texts for w in re.findall(r"[A-Za-z]{3,}", t)})
    return rng.sample(words, min(size, len(words)))


class Fresh:
    """Draws rows that are no copy or light edit of anything: more than ``FRESH`` token
    edits from every reference (seeds, eval items) and every row drawn before.

    Token sets bound the Levenshtein distance from below (one edit takes at most one
    token out of a text's set and puts one in), so only pairs that share most of their
    tokens get the exact distance.
    """

    _QUERIES = 128  # rows compared at a time: bounds the memory of the sparse products

    def __init__(self, references: Iterable[str]) -> None:
        self.vocab: dict[str, int] = {}
        self.tokens: list[list[str]] = []
        self.sets: list[set[int]] = []
        self._matrix: sparse.csr_matrix | None = None
        self.skipped: Counter[str] = Counter()  # rows passed over, per source
        self.add(references)

    def add(self, texts: Iterable[str]) -> None:
        tokens, sets = self._encode(list(texts))
        self.tokens += tokens
        self.sets += sets

    def _encode(self, texts: Sequence[str]) -> tuple[list[list[str]], list[set[int]]]:
        tokens = [tokenize(t) for t in texts]
        sets = [{self.vocab.setdefault(t, len(self.vocab)) for t in ts} for ts in tokens]
        return tokens, sets

    def _as_matrix(self, sets: Sequence[set[int]]) -> sparse.csr_matrix:
        rows = np.repeat(np.arange(len(sets)), [len(s) for s in sets])
        cols = np.fromiter((c for s in sets for c in s), dtype=np.int64, count=len(rows))
        values = np.ones(len(rows), dtype=np.int32)
        return sparse.csr_matrix((values, (rows, cols)), shape=(len(sets), len(self.vocab)))

    def _references(self) -> sparse.csr_matrix:
        """The references' matrix, grown by the rows and words added since last time."""
        m = self._matrix
        if m is None:
            m = self._as_matrix(self.sets)
        else:
            m.resize((m.shape[0], len(self.vocab)))
            if m.shape[0] < len(self.sets):
                m = sparse.vstack([m, self._as_matrix(self.sets[m.shape[0] :])], format="csr")
        self._matrix = m
        return m

    def _close(
        self,
        tokens: Sequence[list[str]],
        sets: Sequence[set[int]],
        other_tokens: Sequence[list[str]],
        other_sets: Sequence[set[int]],
        matrix: sparse.csr_matrix,
    ) -> list[set[int]]:
        """For each query, the indices of the others within ``FRESH`` of it."""
        out: list[set[int]] = [set() for _ in tokens]
        other_len = np.array([len(t) for t in other_tokens])
        other_size = np.array([len(s) for s in other_sets])
        for lo in range(0, len(tokens), self._QUERIES):
            hi = min(lo + self._QUERIES, len(tokens))
            shared = (self._as_matrix(sets[lo:hi]) @ matrix.T).tocoo()
            length = np.array([len(t) for t in tokens[lo:hi]])[shared.row]
            size = np.array([len(s) for s in sets[lo:hi]])[shared.row]
            longest = np.maximum(length, other_len[shared.col])
            floor = np.maximum(
                np.abs(length - other_len[shared.col]),
                (size + other_size[shared.col] - 2 * shared.data) / 2,
            )
            maybe = np.flatnonzero(floor <= FRESH * longest)
            for i, j in zip(shared.row[maybe] + lo, shared.col[maybe], strict=True):
                a, b = tokens[i], other_tokens[j]
                if token_distance(a, b) <= FRESH * max(len(a), len(b)):
                    out[i].add(int(j))
        return out

    def draw(self, pool: Sequence[Text], n: int, rng: random.Random) -> list[Text]:
        """Up to ``n`` fresh rows of ``pool``, in a random order; they join the references."""
        order = rng.sample(list(pool), len(pool))
        taken: list[Text] = []
        start = 0
        while len(taken) < n and start < len(order):
            batch = order[start : start + 2 * (n - len(taken)) + 16]
            start += len(batch)
            tokens, sets = self._encode([t.text for t in batch])
            near_old = self._close(tokens, sets, self.tokens, self.sets, self._references())
            near_new = self._close(tokens, sets, tokens, sets, self._as_matrix(sets))
            kept: list[int] = []
            for i, row in enumerate(batch):
                if len(taken) == n:
                    break
                if not tokens[i] or near_old[i] or any(j in near_new[i] for j in kept):
                    self.skipped[row.source] += 1
                    continue
                kept.append(i)
                taken.append(row)
            self.tokens += [tokens[i] for i in kept]
            self.sets += [sets[i] for i in kept]
        return taken


# --- PII values ------------------------------------------------------------------------

FIRST = ["anna", "james", "maria", "wei", "fatima", "lukas", "sofia", "omar", "chloe", "raj"]
LAST = ["smith", "garcia", "muller", "chen", "okafor", "rossi", "kowalski", "dubois", "patel"]
DOMAINS = ["gmail.com", "outlook.com", "yahoo.co.uk", "web.de", "orange.fr", "icloud.com"]
CARRIERS = {
    "email": ["My email is {}.", "You can reach me at {} if needed.", "Reply to {} please."],
    "phone": ["Call me on {}.", "My number is {}.", "Please phone me at {} today."],
    "credit_card": ["My card number is {}.", "The card is {}.", "It is the card {}."],
    "iban": ["My IBAN is {}.", "Send it to {} please.", "The account is {}."],
    "ssn": ["My SSN is {}.", "My social security number is {}.", "SSN: {}."],
    "ip_address": ["I logged in from {} yesterday.", "My IP address is {}.", "The IP was {}."],
}


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _luhn_digit(body: str) -> str:
    """The check digit that makes ``body`` + it pass the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


def pii_value(kind: str, rng: random.Random) -> str:
    """A made-up value of one kind, in one of the forms people write it in."""
    d = partial(_digits, rng)
    if kind == "email":
        first, last = rng.choice(FIRST), rng.choice(LAST)
        local = rng.choice(
            [f"{first}.{last}", f"{first}{rng.randint(1, 99)}", f"{first[0]}{last}",
             f"{first.title()}.{last.title()}", f"{first}+bank"]
        )  # fmt: skip
        return f"{local}@{rng.choice(DOMAINS)}"
    if kind == "phone":
        area, exchange = rng.randint(201, 989), rng.randint(200, 999)
        return rng.choice(
            [f"({area}) {exchange}-{d(4)}", f"{area}-{exchange}-{d(4)}",
             f"{area}.{exchange}.{d(4)}", f"+1 {area} {exchange} {d(4)}",
             f"+1-{area}-{exchange}-{d(4)}", f"+44 20 {d(4)} {d(4)}", f"020 {d(4)} {d(4)}",
             f"+44 7{d(3)} {d(6)}", f"+33 6 {d(2)} {d(2)} {d(2)} {d(2)}",
             f"06 {d(2)} {d(2)} {d(2)} {d(2)}", f"+49 30 {d(7)}", f"(030) {d(7)}",
             f"1{rng.randint(3, 9)}{d(9)}"]
        )  # fmt: skip
    if kind == "credit_card":
        prefix, groups = rng.choice(
            [("4", (4, 4, 4, 4)), (f"5{rng.randint(1, 5)}", (4, 4, 4, 4)), ("37", (4, 6, 5))]
        )
        body = prefix + d(sum(groups) - len(prefix) - 1)
        number = body + _luhn_digit(body)
        ends = list(itertools.accumulate(groups))
        parts = [number[a:b] for a, b in zip([0, *ends], ends, strict=False)]
        return rng.choice([" ", "-", ""]).join(parts)
    if kind == "iban":
        letters = "".join(rng.choice(string.ascii_uppercase) for _ in range(4))
        country, bban = rng.choice(
            [("DE", d(18)), ("GB", letters + d(14)), ("FR", d(23)), ("ES", d(20)),
             ("NL", letters + d(10))]
        )  # fmt: skip
        check = 98 - int("".join(str(int(c, 36)) for c in bban + country + "00")) % 97
        code = f"{country}{check:02d}{bban}"
        grouped = " ".join(code[i : i + 4] for i in range(0, len(code), 4))
        return rng.choice([code, grouped])
    if kind == "ssn":
        area = rng.choice([a for a in range(1, 900) if a != 666])
        group, serial = rng.randint(1, 99), rng.randint(1, 9999)
        sep = rng.choice("- ")
        return f"{area:03d}{sep}{group:02d}{sep}{serial:04d}"
    if kind == "ip_address":
        v4 = ".".join(str(x) for x in (rng.randint(11, 223), *rng.choices(range(256), k=3)))
        groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(8)]
        v6 = rng.choice([":".join(groups), ":".join(groups[:3]) + "::" + ":".join(groups[5:])])
        return rng.choice([v4, v4, v6])
    raise ValueError(kind)


def with_pii(text: str, kind: str, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """The text with a sentence carrying one value added before or after it."""
    value = pii_value(kind, rng)
    before, after = rng.choice(CARRIERS[kind]).split("{}")
    if rng.random() < 0.5:
        head = f"{text.rstrip()} {before}"
        tail = after
    else:
        head, tail = before, f"{after} {text.lstrip()}"
    return head + value + tail, {"kind": kind, "value": value, "start": len(head)}


# --- the sources ----------------------------------------------------------------------


@dataclass
class Sources:
    """Every dataset, read once, split into seeds, pools to draw from and eval items."""

    seeds: list[Text]
    pools: dict[str, list[Text]]  # fresh rows of the seeds' labels, per dataset
    others: dict[str, list[Text]]  # same-domain rows, per source
    items: dict[str, list[Text]]  # eval items per eval set (the text the filter indexes)
    paraphrases: dict[str, list[Text]]  # per source; id = the item's set and id
    translations: list[Text]
    near_misses: list[Text]
    vocab: dict[str, list[str]]  # words per dataset, for edits
    labels: dict[str, list[str]]  # seed labels per dataset
    specs: list[EvalSetSpec]


def load_sources(data: Path, work: Path, sizes: Sizes, rng: random.Random) -> Sources:
    """Every dataset read once: seed intents drawn at random, their rows split into
    seeds and the pool fresh rows are drawn from; the other intents are same-domain
    rows. Eval items are read by synth's own reader, as the filter reads them."""
    specs = eval_sets(data, work)
    intents = {r["text"]: r["category"] for r in read_csv(data / "banking77" / "test.csv")}
    intents |= {r["text"]: f"clinc:{r['intent']}" for r in jsonl(work / "clinc150-test.jsonl")}
    items: dict[str, list[Text]] = defaultdict(list)
    for spec in specs:
        if spec.signals is None or "ngram" in spec.signals:  # MMLU: the question alone
            for item in load_eval_set(spec, Path("/")):
                # The label a copy would be generated under: the item's intent where
                # the set has intents, else the code or the instruction label.
                label = "code" if spec.name == "humaneval" else "instruction"
                label = intents.get(item.text, label)
                items[spec.name].append(Text(item.text, label, spec.name, item.id))

    seeds: list[Text] = []
    pools: dict[str, list[Text]] = {}
    others: dict[str, list[Text]] = {}
    labels: dict[str, list[str]] = {}

    def split_labelled(name: str, rows: list[Text], n_labels: int, rest: list[Text]) -> None:
        by_label: dict[str, list[Text]] = defaultdict(list)
        for row in rows:
            by_label[row.label].append(row)
        chosen = sorted(rng.sample(sorted(by_label), n_labels))
        labels[name] = chosen
        pools[name] = []
        for label in chosen:
            group = rng.sample(by_label[label], len(by_label[label]))
            k = min(sizes.per_label, len(group) // 2)
            seeds.extend(group[:k])
            pools[name].extend(group[k:])
        others[name] = [r for r in rows + rest if r.label not in chosen]

    banking = [
        Text(r["text"], r["category"], "banking77")
        for r in read_csv(data / "banking77" / "train.csv")
    ]
    split_labelled("banking77", banking, sizes.banking_labels, [])
    clinc = json.loads((data / "clinc150" / "data_full.json").read_text(encoding="utf-8"))
    train = [Text(t, f"clinc:{i}", "clinc150") for t, i in clinc["train"]]
    val = [Text(t, f"clinc:{i}", "clinc150") for t, i in clinc["val"]]
    split_labelled("clinc150", train, sizes.clinc_labels, val)

    # Instructions: Self-Instruct's human-written seed tasks, and alpaca-libre's
    # generated instructions that passed its checks as new rows of the same label.
    for row in jsonl(data / "self-instruct" / "seed_tasks.jsonl"):
        seeds.append(Text(row["instruction"].strip(), "instruction", "instructions"))
    labels["instructions"] = ["instruction"]
    libre = []
    for version in ("v1", "v2", "v3"):
        for row in jsonl(data / "alpaca-libre" / f"alpaca_libre_tasks_{version}.jsonl"):
            if row.get("status") == "ok":
                libre.append(Text(row["instruction"].strip(), "instruction", "instructions"))
    pools["instructions"] = libre

    # Code: the CodeAlpaca items GPT-4 judged *not* rephrasings of their nearest
    # HumanEval problem: real code, as close to HumanEval as public data gets.
    neighbours = [
        Text(r["train"][0], "code", "code")
        for r in jsonl(data / "contamination-rephrased" / "CodeAlpacaDB.jsonl")
        if not r["results"][0]
    ]
    neighbours = rng.sample(neighbours, len(neighbours))
    seeds += neighbours[: sizes.code_seeds]
    labels["code"] = ["code"]
    others["code"] = neighbours[sizes.code_seeds :]

    mmlu = mmlu_files(data)
    others["mmlu-held-out"] = [
        Text(q, "instruction", "mmlu-held-out")
        for subject in MMLU_HELD_OUT
        for q in mmlu_questions(*mmlu[subject])
    ]
    others["paws-test"] = [
        Text(s1, "instruction", "paws-test")
        for s1, _, _ in paws_pairs(data / "paws-wiki" / "test.tsv")
    ]

    paraphrases, translations = _paraphrases(data, items)
    near_misses = [
        Text(s2, "instruction", "paws-dev", f"paws-dev:{i}")
        for i, (s1, s2, label) in enumerate(paws_pairs(data / "paws-wiki" / "dev.tsv"), 1)
        if label == 0 and s1 != s2
    ]
    vocab = {
        name: vocabulary([t.text for t in rows], rng)
        for name, rows in {
            "banking77": banking,
            "clinc150": train,
            "instructions": libre,
            "code": neighbours,
        }.items()
    }
    for name, texts in items.items():
        vocab[name] = vocabulary([t.text for t in texts], rng)
    return Sources(
        seeds=seeds,
        pools=pools,
        others=others,
        items=dict(items),
        paraphrases=paraphrases,
        translations=translations,
        near_misses=near_misses,
        vocab=vocab,
        labels=labels,
        specs=specs,
    )


def _paraphrases(
    data: Path, items: dict[str, list[Text]]
) -> tuple[dict[str, list[Text]], list[Text]]:
    """The rephrased eval items, each with the id of the item it rephrases."""
    folder = data / "contamination-rephrased"
    out: dict[str, list[Text]] = defaultdict(list)
    for i, row in enumerate(jsonl(folder / "rephrase_gsm8k.jsonl")):
        # "Question: <rephrased question>\nAnswer: \n#### 18": the question.
        question = re.sub(r"^Question:\s*", "", row["text"].split("\nAnswer:")[0]).strip()
        if question:  # 4 of the 1,319 are empty
            out["gsm8k"].append(Text(question, "instruction", "gsm8k", items["gsm8k"][i].id))
    for i, row in enumerate(jsonl(folder / "humaneval_python.jsonl")):
        if row["text"].strip():  # 17 of the 164 are empty
            out["humaneval"].append(
                Text(row["text"], "code", "humaneval", items["humaneval"][i].id)
            )
    translations = []
    for subject in MMLU_WITH_REPHRASES:
        originals = items[f"mmlu-{subject}"]
        for language in ("rephrase_english", "chinese"):
            name = f"{subject}_test_{language}_filtered_question.jsonl"
            for i, row in enumerate(jsonl(folder / "mmlu" / name)):
                text = row["text"].strip()
                # Empty lines and answers instead of questions are noise, not rephrasings.
                if not text or text.startswith("Answer:"):
                    continue
                rephrased = Text(text, "instruction", f"mmlu-{subject}", originals[i].id)
                (out["mmlu"] if language == "rephrase_english" else translations).append(rephrased)
    for i, (s1, s2, label) in enumerate(paws_pairs(data / "paws-wiki" / "dev.tsv"), 1):
        if label == 1 and s1 != s2:
            out["paws"].append(Text(s2, "instruction", "paws-dev", f"paws-dev:{i}"))
    return dict(out), translations


# --- the kinds ------------------------------------------------------------------------


def shares(n: int, weights: dict[str, float]) -> dict[str, int]:
    """``n`` split over the keys in proportion to the weights (largest remainders)."""
    total = sum(weights.values())
    exact = {k: n * w / total for k, w in weights.items()}
    out = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: out[k] - exact[k])[: n - sum(out.values())]:
        out[k] += 1
    return out


class Builder:
    """Makes each kind's rows; ``Fresh`` keeps every keep row clear of everything else."""

    def __init__(
        self, sources: Sources, sizes: Sizes, rng: random.Random, pii_actions: dict[str, str]
    ) -> None:
        self.s = sources
        self.n = sizes.per_kind
        self.rng = rng
        self.pii_actions = pii_actions
        refs = [t.text for t in sources.seeds] + [t.text for v in sources.items.values() for t in v]
        self.fresh = Fresh(refs)
        self.seeds_by_source: dict[str, list[Text]] = defaultdict(list)
        for seed in sources.seeds:
            self.seeds_by_source[seed.source].append(seed)
        self.clean: list[Row] = []
        # Every eval item's tokens, one item per line, to tell whether an item's text
        # occurs inside another item (of any set: the filter indexes them together).
        self._joined = "\n".join(
            f" {' '.join(tokenize(t.text))} " for texts in sources.items.values() for t in texts
        )

    def edited(
        self, pool: Sequence[Any], n: int, usable: Callable[[Any], bool] = bool
    ) -> list[tuple[Any, str]]:
        """``n`` (row, light edit of it) pairs from a random order of the ``usable`` rows
        of ``pool`` (rows with ``.text`` and ``.source``; the words an edit brings in
        come from the source's vocabulary)."""
        out = []
        for row in self.rng.sample(list(pool), len(pool)):
            if len(out) == n:
                break
            if not usable(row):
                continue
            text = light_edit(row.text, self.rng, self.s.vocab[row.source])
            if text is not None:
                out.append((row, text))
        return out

    # keep kinds

    def make_clean(self) -> list[Row]:
        counts = shares(self.n, {"banking77": 2, "clinc150": 2, "instructions": 1})
        for name, k in counts.items():
            for t in self.fresh.draw(self.s.pools[name], k, self.rng):
                self.clean.append(Row(t.text, t.label, "clean", "keep", name))
        return self.clean

    def make_boilerplate(self) -> list[Row]:
        counts = shares(self.n, {"banking77": 2, "clinc150": 2, "instructions": 1})
        rows = []
        for name, k in counts.items():
            templates = INSTRUCTION_TEMPLATES if name == "instructions" else SUPPORT_TEMPLATES
            for t in self.fresh.draw(self.s.pools[name], k, self.rng):
                opening, closing = self.rng.choice(templates)
                text = f"{opening} {t.text.strip()} {closing}"
                rows.append(Row(text, t.label, "boilerplate", "keep", name))
        return rows

    def make_same_domain(self) -> list[Row]:
        rows = []
        for name, k in shares(self.n, {k: 1 for k in self.s.others}).items():
            for t in self.fresh.draw(self.s.others[name], k, self.rng):
                rows.append(Row(t.text, t.label, "same_domain", "keep", name))
        return rows

    def make_pii(self) -> list[Row]:
        kinds = list(CARRIERS)
        rows = []
        for name, k in shares(self.n, {"banking77": 2, "clinc150": 1, "instructions": 1}).items():
            for t in self.fresh.draw(self.s.pools[name], k, self.rng):
                kind = kinds[len(rows) % len(kinds)]
                text, pii = with_pii(t.text, kind, self.rng)
                rows.append(Row(text, t.label, "pii", self.pii_actions[kind], name, pii=pii))
        return rows

    # duplicates

    def make_exact_dup(self) -> list[Row]:
        rows = []
        for seed in self.rng.sample(self.s.seeds, self.n // 2):
            text = self.rng.choice(
                [
                    seed.text,
                    seed.text.lower(),
                    seed.text.upper(),
                    "  " + seed.text.replace(" ", "  "),
                ]
            )
            rows.append(
                Row(text, seed.label, "exact_dup", "reject", seed.source, "seed", seed.label)
            )
        for row in self.rng.sample(self.clean, self.n - len(rows)):
            rows.append(
                Row(
                    row.text,
                    row.label,
                    "exact_dup",
                    "reject",
                    row.source,
                    "row",
                    row.label,
                    after=row,
                )
            )
        return rows

    def make_near_dup(self) -> list[Row]:
        rows = []
        weights = {k: len(v) for k, v in self.seeds_by_source.items()}
        for name, k in shares(self.n // 2, weights).items():
            for seed, text in self.edited(self.seeds_by_source[name], k):
                rows.append(Row(text, seed.label, "near_dup", "reject", name, "seed", seed.label))
        for row, text in self.edited(self.clean, self.n - len(rows)):
            rows.append(
                Row(text, row.label, "near_dup", "reject", row.source, "row", row.label, after=row)
            )
        return rows

    def make_cross_label(self) -> list[Row]:
        rows = []
        for name, k in shares(self.n, {"banking77": 1, "clinc150": 1}).items():
            labels = self.s.labels[name]
            for seed, text in self.edited(self.seeds_by_source[name], k):
                other = self.rng.choice([x for x in labels if x != seed.label])
                rows.append(
                    Row(text, other, "cross_label_near_dup", "reject", name, "seed", seed.label)
                )
        return rows

    # eval items

    def distinctive(self, item: Text) -> bool:
        """Whether the item's text occurs among the eval items only once: not inside
        another item (a copy of "Which of the following is true?" identifies none) nor
        repeated."""
        run = f" {' '.join(tokenize(item.text))} "
        return run.strip() != "" and self._joined.count(run) == 1

    def eval_pool(self) -> dict[str, list[Text]]:
        """Eval items per source, the MMLU subjects together."""
        grouped: dict[str, list[Text]] = defaultdict(list)
        for name, texts in self.s.items.items():
            grouped["mmlu" if name.startswith("mmlu-") else name] += texts
        return dict(grouped)

    def make_eval_verbatim(self) -> list[Row]:
        rows = []
        pool = self.eval_pool()
        for name, k in shares(self.n, {k: 1 for k in pool}).items():
            items = (t for t in self.rng.sample(pool[name], len(pool[name])) if self.distinctive(t))
            for item in itertools.islice(items, k):
                rows.append(Row(item.text, item.label, "eval_verbatim", "reject", name, item.id))
        return rows

    def make_eval_edited(self) -> list[Row]:
        rows = []
        pool = self.eval_pool()
        for name, k in shares(self.n, {k: 1 for k in pool}).items():
            for item, text in self.edited(pool[name], k, self.distinctive):
                rows.append(Row(text, item.label, "eval_edited", "reject", name, item.id))
        return rows

    def make_eval_paraphrase(self) -> list[Row]:
        rows = []
        pool = self.s.paraphrases
        for name, k in shares(self.n, {k: 1 for k in pool}).items():
            for t in self.rng.sample(pool[name], min(k, len(pool[name]))):
                rows.append(Row(t.text, t.label, "eval_paraphrase", "reject", name, t.id))
        return rows

    def make_eval_translated(self) -> list[Row]:
        pool = self.s.translations
        picked = self.rng.sample(pool, min(self.n, len(pool)))
        return [Row(t.text, t.label, "eval_translated", "reject", "mmlu", t.id) for t in picked]

    def make_eval_near_miss(self) -> list[Row]:
        picked = self.rng.sample(self.s.near_misses, self.n)
        return [Row(t.text, t.label, "eval_near_miss", "info", "paws", t.id) for t in picked]


# A generation template's frame, the same for every row it writes.
SUPPORT_TEMPLATES = [
    (
        "Hello, I have a question about my account and I hope you can help me with it.",
        "Thank you in advance for your help, I look forward to your reply.",
    ),
    (
        "Hi there, I hope you are having a good day. I am writing to the support team because",
        "Kind regards, and thanks again for getting back to me so quickly.",
    ),
    ("Good morning! Quick question for you:", "Thanks a lot, have a nice day!"),
]
INSTRUCTION_TEMPLATES = [
    (
        "You are a helpful assistant. Read the task below carefully and answer it well.",
        "Make sure your answer is accurate, complete and easy to follow.",
    ),
    ("Task:", "Answer concisely."),
]


def build(
    data: Path, work: Path, sizes: Sizes, seed: int, pii_actions: dict[str, str]
) -> tuple[list[Text], list[Row], list[EvalSetSpec], Counter[str]]:
    """Seeds, the candidate rows in the order the chain will see them, the eval sets
    (CLINC150's written to ``work``) and the rows skipped as not fresh, per source."""
    rng = random.Random(seed)
    sources = load_sources(data, work, sizes, rng)
    builder = Builder(sources, sizes, rng, pii_actions)
    makers: dict[str, Callable[[], list[Row]]] = {
        "clean": builder.make_clean,
        "boilerplate": builder.make_boilerplate,
        "same_domain": builder.make_same_domain,
        "pii": builder.make_pii,
        "exact_dup": builder.make_exact_dup,
        "near_dup": builder.make_near_dup,
        "cross_label_near_dup": builder.make_cross_label,
        "eval_verbatim": builder.make_eval_verbatim,
        "eval_edited": builder.make_eval_edited,
        "eval_paraphrase": builder.make_eval_paraphrase,
        "eval_translated": builder.make_eval_translated,
        "eval_near_miss": builder.make_eval_near_miss,
    }
    rows = [row for kind in KINDS for row in makers[kind]()]
    return sources.seeds, order(rows, rng), sources.specs, builder.fresh.skipped


def order(rows: Sequence[Row], rng: random.Random) -> list[Row]:
    """A random order in which every row that copies an earlier row comes after it."""
    keys: dict[int, float] = {}
    for row in rows:
        if row.after is None:
            keys[id(row)] = rng.random()
    for row in rows:
        if row.after is not None:
            start = keys[id(row.after)]
            keys[id(row)] = rng.uniform(start, 1.0)
    ordered = sorted(rows, key=lambda r: keys[id(r)])
    line = {id(r): i for i, r in enumerate(ordered, 1)}
    for row in ordered:
        if row.after is not None:
            row.after_line = line[id(row.after)]
    return ordered


# --- the project ----------------------------------------------------------------------

# The bundled [schema] caps a message at 400 characters; GSM8K problems, HumanEval
# code and MMLU history passages are longer.
MAX_CHARS = 20_000


@dataclass
class Project:
    """The benchmark's project as written to its folder."""

    config: Path
    seeds: Path
    candidates: Path
    rows: list[Row]  # in file order: row i is line i + 1 of the candidate file
    n_seeds: int
    specs: list[EvalSetSpec]
    skipped: Counter[str]  # rows not drawn because they were not fresh, per source


def write_project(
    work: Path, sizes: Sizes, seed: int, data: Path = DATA, bundled: Path = ROOT / "config.toml"
) -> Project:
    """Seeds, candidates, their answers and a config.toml with the bundled filter chain
    (the judge left out: it needs a model) in ``work``; only the eval sets and the
    text's length limit differ from the bundled config."""
    work.mkdir(parents=True, exist_ok=True)
    raw = tomllib.loads(bundled.read_text(encoding="utf-8"))
    filters = [dict(f) for f in raw["filters"] if f["kind"] != "rubric"]
    # A PII row should get the config's action for its kind (without a PII filter,
    # nothing happens to it and it is a row to keep).
    pii = next((PiiParams(**f) for f in filters if f["kind"] == "pii"), None)
    actions = {k: pii.actions.get(k, pii.action) if pii else "keep" for k in CARRIERS}
    seeds, rows, specs, skipped = build(data, work, sizes, seed, actions)
    text = dict(raw["schema"]["fields"][raw["schema"].get("text", "text")])
    # Seeds are held to the schema as an import holds them ("help me" is too short).
    seeds = [s for s in seeds if len(s.text) >= text.get("min_length", 0)]
    write_jsonl(work / "seeds.jsonl", [{"text": s.text, "label": s.label} for s in seeds])
    write_jsonl(work / "candidates.jsonl", [{"text": r.text, "label": r.label} for r in rows])
    write_jsonl(work / "answers.jsonl", [r.answer() for r in rows])
    for f in filters:
        if f["kind"] == "contamination":
            f["eval_sets"] = [s.model_dump(mode="json", exclude_defaults=True) for s in specs]
    text["max_length"] = MAX_CHARS
    config = {
        "project": {"name": "quality-bench", "db": "bench.db"},
        "schema": {"text": "text", "label": "label", "fields": {"text": text, "label": {}}},
        "filters": filters,
    }
    (work / "config.toml").write_text(to_toml(config), encoding="utf-8")
    return Project(
        work / "config.toml",
        work / "seeds.jsonl",
        work / "candidates.jsonl",
        rows,
        len(seeds),
        specs,
        skipped,
    )


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def to_toml(tables: dict[str, Any]) -> str:
    """Tables and arrays of tables of plain values (what a config.toml needs)."""
    lines: list[str] = []
    for name, body in tables.items():
        for table in body if isinstance(body, list) else [body]:
            lines.append(f"[[{name}]]" if isinstance(body, list) else f"[{name}]")
            lines += [f"{_key(k)} = {_value(v)}" for k, v in table.items()]
            lines.append("")
    return "\n".join(lines)


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")
