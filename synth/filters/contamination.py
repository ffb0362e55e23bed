"""Contamination: reject rows that reproduce or paraphrase an item of an eval set.

Eval sets are named in the filter's settings and read once (JSONL, gzipped JSONL,
CSV with a header or with ``columns`` given, TSV, or JSON: a list of objects or an
object of lists). Three signals, each on or off (``signals``), are checked in this
order and the first that fires rejects:

``ngram``
    Long verbatim overlap: any word ``ngram``-gram (13 by default, Unicode-aware
    tokens) shared with an eval item. An item shorter than ``ngram`` tokens counts
    when it appears whole as a contiguous token run, if it has at least
    ``min_tokens`` tokens; a shorter one only when the row's text is exactly that
    item. Generic phrasing is not evidence: a short item found inside
    ``generic_items`` or more other eval items ("Which of the following statements
    is true") is not indexed, for any signal. Score: the share of the matched item's
    n-grams found in the row (1.0 for a whole short item).
``minhash``
    Jaccard similarity of shingle sets (default character 3-grams, without the
    shingles common to many eval items) at or above ``minhash_threshold``: LSH
    proposes eval items, the exact Jaccard decides.
``semantic``
    TF-IDF cosine similarity over word 1-2-grams, fitted on the eval items (no model
    to download), at or above ``semantic_threshold``, between texts of comparable
    length: catches rephrasings that keep the rare content words.

Thresholds were chosen in ``bench/contamination.py`` at the 1 % false-alarm point on
unrelated text (see ``ContaminationParams``). A rejection's reason is
``contamination: <signal> <eval set> <item id> (<score>)``.

``check_file`` runs the same checks over any dataset file, for ``synth contamination``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from synth.datafiles import FormatChoice, Row, read_records
from synth.errors import EvalSetError
from synth.filters.base import Filter, FilterContext, FilterParams
from synth.filters.shingles import (
    ShingleKind,
    jaccard,
    minhash_signatures,
    shingle_hashes,
    to_minhash,
)
from synth.records import Candidate, Decision
from synth.text import tokenize

if TYPE_CHECKING:  # imported where used: datasketch takes 0.3 s to import
    pass

Signal = Literal["ngram", "minhash", "semantic"]
SIGNALS: tuple[Signal, ...] = ("ngram", "minhash", "semantic")


def _once(signals: tuple[Signal, ...] | None) -> tuple[Signal, ...] | None:
    if signals is not None and len(set(signals)) != len(signals):
        raise ValueError("a signal is listed twice")
    return signals


class EvalSetSpec(BaseModel):
    """One eval set: ``{ name = "gsm8k", path = "...", field = "question" }``.

    Attributes:
        name: Shown in rejection reasons and hits.
        path: The file, relative to the folder of config.toml. ``.gz`` is read as
            gzip; the format comes from the suffix unless ``format`` says otherwise.
        field: The text to index: a field name, or several joined by newlines (e.g.
            an MMLU question with its four choices, which tells generic questions
            apart).
        id_field: The field naming an item (``task_id``); empty: ``path:line``.
        format: ``auto`` (by suffix), ``jsonl``, ``csv``, ``tsv`` or ``json``.
        columns: Column names of a CSV/TSV file without a header row.
        signals: The filter's signals that check this set (default: all of them).
            Lets one file serve twice, e.g. MMLU questions alone for ``ngram``
            (a verbatim short question is caught) and questions with their choices
            for ``minhash`` and ``semantic`` (a shared "Which of the following ..."
            frame is not enough to look alike).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    path: str = Field(min_length=1)
    field: str | tuple[str, ...]
    id_field: str = ""
    format: FormatChoice = "auto"
    columns: tuple[str, ...] = ()
    signals: tuple[Signal, ...] | None = None

    _signals_once = field_validator("signals")(_once)

    @property
    def fields(self) -> tuple[str, ...]:
        return (self.field,) if isinstance(self.field, str) else self.field


class ContaminationParams(FilterParams):
    """Settings of the contamination filter.

    Defaults measured in ``bench/contamination.py``: LLM rephrasings of eval items as
    positives, about 3,000-7,700 unrelated texts of similar length as negatives.

    ========================  =========  =================  =====================
    GSM8K test (1,319)        ngram 13   minhash char-3     semantic TF-IDF
    ========================  =========  =================  =====================
    recall at 1 % false alarm 0.00       0.96 (at 0.16)     0.94 (at 0.29)
    at the default threshold  0.00       0.80 (0.0 % f.a.)  0.85 (0.13 % f.a.)
    ========================  =========  =================  =====================

    No rephrasing shares a 13-gram with its original (verbatim copies all do). The
    thresholds are set for short texts too: on MMLU questions (10-40 tokens) the
    1 % false-alarm points are 0.24 (minhash) and 0.38 (semantic), hence 0.25 and
    0.35 (1.6 % false alarms there; 0.40 would halve that, at GSM8K recall 0.74).
    Short multiple-choice items share stock frames ("Which of the following ..."):
    index them with their choices for the similarity signals (``EvalSetSpec.signals``)
    or rows that share only the frame are flagged.

    Attributes:
        eval_sets: The eval sets to check against.
        signals: Which checks run: ``ngram``, ``minhash``, ``semantic``.
        ngram: Verbatim run length in tokens. Shorter catches lighter copying and
            more shared stock phrases; 13 is the common choice (GPT-3, Llama 2
            decontamination), 8 tolerates more editing.
        min_tokens: An eval item shorter than ``ngram`` must have at least this many
            tokens to count when found inside a longer text; shorter ones ("A keloid
            is:") count only as the whole text.
        generic_items: A short item (fewer than ``ngram`` tokens) found inside this
            many other eval items is stock phrasing, not evidence of copying, and is
            not indexed.
        minhash_shingle: Shingles of the MinHash signal, ``char`` (of the tokens
            joined by spaces) or ``word``.
        minhash_n: Shingle length of the MinHash signal. Short shingles survive
            rephrasing (new word order, inflections); long ones only find
            near-verbatim copies. Character 3-grams scored best on GSM8K and HumanEval.
        minhash_threshold: Jaccard similarity at or above which a row is a hit.
            Lower finds looser rephrasings and raises false alarms on same-topic text.
        stock_df: A MinHash shingle found in more than this share of the eval items
            (and in more than ``generic_items`` of them) identifies none of them and is
            ignored, on both sides. Lower makes short rows that share only stock
            phrasing look less alike, and rephrased code (whose remaining shingles
            are mostly keywords) too; 1.0 keeps every shingle.
        num_perm: MinHash permutations (precision of the LSH's cut-off).
        semantic_threshold: TF-IDF cosine at or above which a row is a hit.
        max_length_ratio: The semantic signal only compares texts whose token counts
            are within this factor: a five-word item sharing one rare word with a
            fifty-word row is no evidence. (Jaccard needs no such guard: it cannot
            exceed the ratio of the two set sizes.)
    """

    kind: Literal["contamination"] = "contamination"
    eval_sets: tuple[EvalSetSpec, ...] = Field(min_length=1)
    signals: tuple[Signal, ...] = SIGNALS
    ngram: int = Field(default=13, ge=2, le=64)
    min_tokens: int = Field(default=6, ge=1)
    generic_items: int = Field(default=3, ge=1)
    minhash_shingle: ShingleKind = "char"
    minhash_n: int = Field(default=3, ge=1, le=32)
    minhash_threshold: float = Field(default=0.25, gt=0.0, le=1.0)
    num_perm: int = Field(default=128, ge=16, le=1024)
    semantic_threshold: float = Field(default=0.35, gt=0.0, le=1.0)
    max_length_ratio: float = Field(default=3.0, ge=1.0)
    stock_df: float = Field(default=0.1, gt=0.0, le=1.0)

    _signals_once = field_validator("signals")(_once)


# --- the text of eval items and dataset rows ---------------------------------------


def record_text(record: Row, fields: Sequence[str]) -> str:
    """The fields' text joined by newlines; an error naming the row if one is missing."""
    return "\n".join(_as_text(_field(record, name), record.where, name) for name in fields)


def _as_text(value: Any, where: str, name: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None or isinstance(value, dict):
        raise EvalSetError(where, f"field {name!r} is not text: {json.dumps(value)[:60]}")
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return "\n".join(map(str, value))
    raise EvalSetError(where, f"field {name!r} is not text")


@dataclass(frozen=True)
class EvalItem:
    eval_set: str
    id: str
    text: str


def load_eval_set(spec: EvalSetSpec, root: Path) -> list[EvalItem]:
    """The items of one eval set; paths resolve against ``root``. Empty texts are skipped."""
    path = Path(spec.path)
    path = path if path.is_absolute() else root / path
    items = []
    for record in read_records(path, spec.path, EvalSetError, spec.format, spec.columns):
        text = record_text(record, spec.fields)
        if spec.id_field:
            item_id = _as_text(_field(record, spec.id_field), record.where, spec.id_field).strip()
        else:
            item_id = record.where
        if text.strip():
            items.append(EvalItem(spec.name, item_id, text))
    return items


def _field(record: Row, name: str) -> Any:
    if name not in record.data:
        have = ", ".join(sorted(map(str, record.data))) or "none"
        raise EvalSetError(record.where, f"no field {name!r} (fields: {have})")
    return record.data[name]


# --- the index ---------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    """The best eval item one signal found for one text."""

    signal: Signal
    item: int  # index into ContaminationIndex.items
    score: float
    hit: bool  # at or above the signal's threshold


@dataclass(frozen=True)
class ContaminationHit:
    """One signal firing for one row of a checked file."""

    row: str  # "path:line"
    eval_set: str
    item_id: str
    signal: Signal
    score: float


class ContaminationIndex:
    """All eval items of a filter's settings, indexed for every enabled signal."""

    def __init__(self, params: ContaminationParams, root: Path) -> None:
        self.params = params
        names = [s.name for s in params.eval_sets]
        if len(set(names)) != len(names):
            raise EvalSetError("eval_sets", "two eval sets have the same name")
        self.items = [item for spec in params.eval_sets for item in load_eval_set(spec, root)]
        tokens = [tokenize(item.text) for item in self.items]
        if not any(tokens):
            raise EvalSetError(params.eval_sets[0].path, "the eval sets hold no text to index")
        checks = {s.name: s.signals or params.signals for s in params.eval_sets}
        self.subsets: dict[Signal, np.ndarray] = {}  # signal -> indices of its items
        self.generic: dict[Signal, int] = {}  # signal -> generic items left out
        self._indexes: dict[Signal, _NgramIndex | _MinHashIndex | _SemanticIndex] = {}
        for signal in params.signals:
            subset = [i for i, x in enumerate(self.items) if signal in checks[x.eval_set]]
            generic = _generic_items(
                [tokens[i] for i in subset], params.ngram, params.generic_items
            )
            subset = [i for i, g in zip(subset, generic, strict=True) if not g]
            self.subsets[signal] = np.array(subset, dtype=np.int64)
            self.generic[signal] = sum(generic)
            if not subset:
                continue
            if signal == "ngram":
                self._indexes[signal] = _NgramIndex([tokens[i] for i in subset], params)
            elif signal == "minhash":
                self._indexes[signal] = _MinHashIndex([self.items[i].text for i in subset], params)
            else:
                self._indexes[signal] = _SemanticIndex([self.items[i].text for i in subset], params)

    def match(self, texts: Sequence[str]) -> list[list[Match]]:
        """Per text, the best match of every enabled signal, in signal order."""
        out: list[list[Match]] = [[] for _ in texts]
        token_lists = [tokenize(t) for t in texts]
        for signal in SIGNALS:
            index = self._indexes.get(signal)
            if index is None:
                continue
            if isinstance(index, _NgramIndex):
                found = index.match(token_lists)
            elif isinstance(index, _SemanticIndex):
                found = index.match(texts, [len(t) for t in token_lists])
            else:
                found = index.match(texts)
            subset = self.subsets[signal]
            for i, m in enumerate(found):
                if m is not None:
                    out[i].append(Match(signal, int(subset[m.item]), m.score, m.hit))
        return out


def _generic_items(tokens: Sequence[list[str]], n: int, limit: int) -> list[bool]:
    """Short items whose token run occurs inside ``limit`` or more other distinct items."""
    short = [i for i, t in enumerate(tokens) if 0 < len(t) < n]
    generic = [False] * len(tokens)
    if not short:
        return generic
    distinct = list({" ".join(t) for t in tokens if t})
    for length in sorted({len(tokens[i]) for i in short}):
        # Each distinct item counts once per run it contains, the item itself included.
        spread: Counter[int] = Counter()
        for runs in shingle_hashes(distinct, "word", length):
            spread.update(runs.tolist())
        for i in short:
            if len(tokens[i]) == length:
                [run] = shingle_hashes([" ".join(tokens[i])], "word", length)[0].tolist()
                generic[i] = spread[run] - 1 >= limit
    return generic


class _NgramIndex:
    """Word n-grams of the long items; whole token runs of the short ones."""

    def __init__(self, tokens: Sequence[list[str]], params: ContaminationParams) -> None:
        n = params.ngram
        self.n = n
        self.min_tokens = params.min_tokens
        long_items = [i for i, t in enumerate(tokens) if len(t) >= n]
        grams = shingle_hashes([" ".join(tokens[i]) for i in long_items], "word", n)
        # n-gram -> the items that have it (nearly always one; a tuple keeps it small)
        self.owners: dict[int, tuple[int, ...]] = {}
        for i, hashes in zip(long_items, grams, strict=True):
            for h in hashes.tolist():
                self.owners[h] = self.owners.get(h, ()) + (i,)
        self.sizes = {i: len(g) for i, g in zip(long_items, grams, strict=True)}
        # Short items: (length -> run hash -> item); tiny ones match the whole text only.
        self.runs: dict[int, dict[int, int]] = {}
        self.exact: dict[int, int] = {}
        for i, t in enumerate(tokens):
            if 0 < len(t) < n:
                [h] = shingle_hashes([" ".join(t)], "word", len(t))[0].tolist()
                table = self.runs.setdefault(len(t), {}) if len(t) >= self.min_tokens else None
                (table if table is not None else self.exact).setdefault(h, i)

    def match(self, token_lists: Sequence[list[str]]) -> list[Match | None]:
        joined = [" ".join(t) for t in token_lists]
        out: list[Match | None] = [None] * len(joined)
        for k, hashes in enumerate(shingle_hashes(joined, "word", self.n)):
            shared: Counter[int] = Counter()
            for h in hashes.tolist():
                shared.update(self.owners.get(h, ()))
            if shared:
                item, count = max(
                    shared.items(), key=lambda kv: (kv[1] / self.sizes[kv[0]], -kv[0])
                )
                out[k] = Match("ngram", item, min(1.0, count / self.sizes[item]), True)
        self._short(token_lists, joined, out)
        return out

    def _short(
        self, token_lists: Sequence[list[str]], joined: Sequence[str], out: list[Match | None]
    ) -> None:
        """Whole short items: as a run inside the text, or (tiny ones) as all of it."""
        for length, table in self.runs.items():
            for k, hashes in enumerate(shingle_hashes(joined, "word", length)):
                if out[k] is not None or len(token_lists[k]) < length:
                    continue
                found = [table[h] for h in hashes.tolist() if h in table]
                if found:
                    out[k] = Match("ngram", min(found), 1.0, True)
        if self.exact:
            for k, t in enumerate(token_lists):
                if out[k] is None and 0 < len(t) < self.min_tokens:
                    [h] = shingle_hashes([joined[k]], "word", len(t))[0].tolist()
                    if h in self.exact:
                        out[k] = Match("ngram", self.exact[h], 1.0, True)


class _MinHashIndex:
    """MinHash LSH over the items' shingle sets; the exact Jaccard decides.

    Common shingles (character 3-grams of English) make the LSH propose many items
    per text; the signatures rank the proposals and the ``_VERIFY`` most similar get
    the exact Jaccard, so the cost per text stays flat as eval sets grow.
    """

    _VERIFY = 8

    def __init__(self, texts: Sequence[str], params: ContaminationParams) -> None:
        self.params = params
        sets = [frozenset(h.tolist()) for h in self._hashes(texts)]
        spread: Counter[int] = Counter()
        for s in sets:
            spread.update(s)
        limit = max(params.stock_df * len(sets), params.generic_items)
        self.stock = frozenset(h for h, c in spread.items() if c > limit)
        self.sets = [s - self.stock for s in sets]
        self.signatures = minhash_signatures(self.sets, params.num_perm)
        from datasketch import MinHashLSH

        # Lean towards proposing too much: proposals are verified.
        self.lsh = MinHashLSH(
            threshold=params.minhash_threshold, num_perm=params.num_perm, weights=(0.1, 0.9)
        )
        for i, (s, sig) in enumerate(zip(self.sets, self.signatures, strict=True)):
            if s:
                self.lsh.insert(i, to_minhash(sig), check_duplication=False)

    def _hashes(self, texts: Sequence[str]) -> list[np.ndarray]:
        return shingle_hashes(texts, self.params.minhash_shingle, self.params.minhash_n)

    def match(self, texts: Sequence[str]) -> list[Match | None]:
        sets = [frozenset(h.tolist()) - self.stock for h in self._hashes(texts)]
        signatures = minhash_signatures(sets, self.params.num_perm)
        out: list[Match | None] = []
        for own, sig in zip(sets, signatures, strict=True):
            proposed = np.array(sorted(self.lsh.query(to_minhash(sig))) if own else [], int)
            if not len(proposed):
                out.append(None)
                continue
            estimate = (self.signatures[proposed] == sig).sum(axis=1)
            # Stable: equal estimates keep item order, so the choice is reproducible.
            ranked = proposed[np.argsort(-estimate, kind="stable")[: self._VERIFY]]
            best, item = max((jaccard(own, self.sets[i]), -int(i)) for i in ranked)
            threshold = self.params.minhash_threshold
            out.append(Match("minhash", -item, best, best >= threshold) if best > 0 else None)
        return out


class _SemanticIndex:
    """TF-IDF vectors (word 1-2-grams, sublinear tf) of the items; cosine by dot product."""

    _CHUNK = 256  # rows per sparse product: bounds memory for large files

    def __init__(self, texts: Sequence[str], params: ContaminationParams) -> None:
        self.threshold = params.semantic_threshold
        self.ratio = params.max_length_ratio
        self.lengths = np.array([max(1, len(tokenize(t))) for t in texts])
        # Imported here: scikit-learn takes half a second to import, which every synth
        # command would pay for a filter only some configs use.
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer = TfidfVectorizer(
            tokenizer=tokenize,
            token_pattern=None,
            lowercase=False,
            ngram_range=(1, 2),
            sublinear_tf=True,
            dtype=np.float32,
        )
        self.matrix = self.vectorizer.fit_transform(texts).T.tocsr()

    def match(self, texts: Sequence[str], lengths: Sequence[int]) -> list[Match | None]:
        """The most similar item of comparable length per text (``lengths`` in tokens)."""
        out: list[Match | None] = []
        for start in range(0, len(texts), self._CHUNK):
            chunk = texts[start : start + self._CHUNK]
            sims = (self.vectorizer.transform(chunk) @ self.matrix).tocsr()
            for row in range(len(chunk)):
                lo, hi = sims.indptr[row], sims.indptr[row + 1]
                items, values = sims.indices[lo:hi], sims.data[lo:hi]
                ratio = max(1, lengths[start + row]) / self.lengths[items]
                values = np.where((ratio <= self.ratio) & (ratio * self.ratio >= 1), values, 0)
                if not len(values) or values.max() <= 0:
                    out.append(None)
                    continue
                best = int(np.argmax(values))
                score = float(min(1.0, values[best]))
                out.append(Match("semantic", int(items[best]), score, score >= self.threshold))
        return out


def _file_key(spec: EvalSetSpec, root: Path) -> tuple[str, int, int]:
    path = Path(spec.path)
    path = path if path.is_absolute() else root / path
    try:
        stat = path.stat()
    except OSError:
        return str(path), -1, -1
    return str(path.resolve()), stat.st_mtime_ns, stat.st_size


@lru_cache(maxsize=4)
def _cached_index(
    params: ContaminationParams, root: str, stamps: tuple[tuple[str, int, int], ...]
) -> ContaminationIndex:
    return ContaminationIndex(params, Path(root))


def build_index(params: ContaminationParams, root: Path) -> ContaminationIndex:
    """The index for these settings; reused while the eval files are unchanged."""
    stamps = tuple(_file_key(spec, root) for spec in params.eval_sets)
    return _cached_index(params, os.fspath(root), stamps)


# --- the filter and the file check -------------------------------------------------


class ContaminationFilter(Filter):
    """Rejects candidates that an eval-set signal fires on; stateless across batches."""

    name = "contamination"
    version = "1"

    def __init__(self, params: ContaminationParams, ctx: FilterContext) -> None:
        self.params = params
        self.index = build_index(params, ctx.root)

    def decide(self, batch: Sequence[Candidate]) -> list[Decision]:
        out = []
        for c, matches in zip(batch, self.index.match([c.text for c in batch]), strict=True):
            hit = next((m for m in matches if m.hit), None)
            if hit is None:
                score = max((m.score for m in matches), default=0.0)
                out.append(self.keep(c, score=round(score, 4)))
                continue
            item = self.index.items[hit.item]
            reason = f"contamination: {hit.signal} {item.eval_set} {item.id} ({hit.score:.2f})"
            out.append(self.reject(c, reason, score=round(hit.score, 4)))
        return out


def check_file(
    path: Path | str, field: str, params: ContaminationParams, ctx: FilterContext
) -> list[ContaminationHit]:
    """Every signal that fires on any row of a dataset file, in row order.

    Args:
        path: A JSONL, CSV/TSV or JSON file (optionally gzipped); relative paths
            resolve against ``ctx.root``.
        field: The field holding the text to check.
        params: The eval sets and signals, as for the filter.
        ctx: Gives the project root.

    Returns one hit per (row, signal) that fires, naming the row as ``path:line``.
    """
    shown = os.fspath(path)
    resolved = Path(path) if Path(path).is_absolute() else ctx.root / path
    index = build_index(params, ctx.root)
    hits: list[ContaminationHit] = []
    chunk: list[Row] = []
    for record in read_records(resolved, shown, EvalSetError):
        chunk.append(record)
        if len(chunk) == _FILE_CHUNK:
            hits += _check(index, chunk, field)
            chunk = []
    return hits + _check(index, chunk, field)


_FILE_CHUNK = 5_000  # rows checked together: bounds memory on files of any size


def _check(index: ContaminationIndex, records: Sequence[Row], field: str) -> list[ContaminationHit]:
    texts = [record_text(r, [field]) for r in records]
    hits = []
    for record, matches in zip(records, index.match(texts), strict=True):
        for m in matches:
            if m.hit:
                item = index.items[m.item]
                score = round(m.score, 4)
                hits.append(ContaminationHit(record.where, item.eval_set, item.id, m.signal, score))
    return hits
