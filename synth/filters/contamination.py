"""Contamination: reject rows that reproduce or paraphrase an item of an eval set.

Eval sets are named in the filter's settings and read once (JSONL, gzipped JSONL,
CSV with a header or with ``columns`` given, TSV, or JSON: a list of objects or an
object of lists). Three signals, each on or off (``signals``):

``ngram``
    Verbatim overlap: any word ``ngram``-gram (13 by default, Unicode-aware tokens)
    shared with an eval item, or a row that is an eval item token for token (case,
    spacing and punctuation aside), also with one word misspelled. An item shorter
    than ``ngram`` tokens also counts when it appears whole inside a longer row, if it
    is long enough that the user's own rows do not contain such runs by chance (see
    calibration below). Stock phrasing is no evidence of copying any one item: a short
    item found inside ``generic_items`` or more other eval items ("Which of the
    following statements is true") is not indexed, for any signal; only a row that is
    such an item word for word goes to review. Verbatim evidence rejects.
``edits``
    Token edit distance to the items the MinHash index proposes, as a similarity
    (1 - edits / the longer text's tokens: 0.85 is 15 % of the tokens deleted,
    inserted or replaced, the near-duplicate definition). It catches an item with
    words changed or left out, which character shingles measure loosely on short
    texts. It checks the MinHash index's proposals (built for it alone when
    ``minhash`` is off).
``minhash``
    Jaccard similarity of shingle sets (default character 3-grams, without the
    shingles common to many eval items), verified exactly after an LSH proposal.
``semantic``
    TF-IDF cosine similarity over word 1-2-grams (no model to download), between
    texts of comparable length: catches rephrasings that keep the rare content words.

**Calibration.** How alike two texts must be to count as a copy depends on the data:
two ten-word banking messages of one intent share most of their character 3-grams
without either being copied from the other, two maths puzzles almost never do. With
seeds (the real rows ``prepare`` sees), the thresholds are set per eval set from the
seeds' own best scores against it, the null distribution of "same domain, not a
copy" (see :mod:`synth.filters.calibration`): every calibrated check (a short item
inside a row, minhash, semantic) at one quantile of the seeds' scores, the lowest at
which no more than ``flag_rate`` of the seeds would be flagged by any of them. A
similarity threshold never goes below its configured floor (``minhash_threshold``,
``semantic_threshold``, measured on unrelated text) nor above ``max_threshold``.
Seeds that are verbatim copies of an eval item are left out of the null (and
counted, so ``synth calibrate`` can say the seeds leak). The seeds also weight the
semantic signal's terms: a term is as informative as it is rare in the eval set
*and* in the seeds, so "I am" and "my card", rare in GSM8K but everywhere in banking
messages, do not make banking rows look like the one puzzle that says "I am".

**Decisions.** A verbatim hit rejects. A similarity score at or above its threshold
is rejected only when it is also ``review_band`` above the threshold and above every
seed's score (no real row of the user's comes this close to the eval set); in
between it goes to review: real rows reach such scores, a human decides. So the
flagging threshold is the robust one (a quantile: a few seeds that are copies cannot
blind it), and the seeds' maximum only decides who decides. The reason carries the
score, the threshold and why it is what it is: ``contamination: minhash gsm8k
gsm8k:12 (0.66 >= 0.25: floor; q95 of 171 seeds 0.13)``; review decisions use the
slug ``contamination_review`` and say where rejection starts.

``check_file`` runs the same checks over any dataset file, for ``synth contamination``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    Strict,
    field_validator,
    model_serializer,
)

from synth.datafiles import FormatChoice, Row, read_records
from synth.errors import EvalSetError
from synth.filters.bands import FixedBands, distinct, optimal_bands
from synth.filters.base import Filter, FilterContext, FilterParams
from synth.filters.calibration import (
    FilterCalibration,
    Threshold,
    calibrate,
    fixed,
    sample_positions,
)
from synth.filters.edits import within
from synth.filters.shingles import (
    ShingleKind,
    minhash_signatures,
    shingle_hashes,
    shingle_sequence,
    token_hashes,
)
from synth.messages import text_of
from synth.records import Candidate, Decision, SeenItem, Source
from synth.text import tokenize

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

Signal = Literal["ngram", "edits", "minhash", "semantic"]
SIGNALS: tuple[Signal, ...] = ("ngram", "edits", "minhash", "semantic")
SIMILARITY: tuple[Signal, ...] = ("edits", "minhash", "semantic")


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

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(min_length=1)
    path: str = Field(min_length=1)
    field: str | Annotated[tuple[str, ...], Strict(False)]
    id_field: str = ""
    format: FormatChoice = "auto"
    columns: tuple[str, ...] = Field(default=(), strict=False)
    signals: Annotated[tuple[Signal, ...], Strict(False)] | None = None

    _signals_once = field_validator("signals")(_once)

    @property
    def fields(self) -> tuple[str, ...]:
        return (self.field,) if isinstance(self.field, str) else self.field


class ContaminationParams(FilterParams):
    """Settings of the contamination filter.

    The floors (``minhash_threshold``, ``semantic_threshold``) were measured in
    ``bench/contamination.py``: LLM rephrasings of eval items as positives, about
    3,000-7,700 unrelated texts of similar length as negatives.

    ========================  =========  =================  =====================
    GSM8K test (1,319)        ngram 13   minhash char-3     semantic TF-IDF
    ========================  =========  =================  =====================
    recall at 1 % false alarm 0.00       0.96 (at 0.16)     0.94 (at 0.29)
    at the floor              0.00       0.80 (0.0 % f.a.)  0.85 (0.13 % f.a.)
    ========================  =========  =================  =====================

    No rephrasing shares a 13-gram with its original (verbatim copies all do). On
    MMLU questions (10-40 tokens) the 1 % false-alarm points are 0.24 (minhash) and
    0.38 (semantic), hence floors of 0.25 and 0.35.

    Those floors hold for text unlike the eval set. Text of the eval set's own domain
    scores far higher without being copied: 1,000 real BANKING77 train messages
    against the BANKING77 test split have a median minhash score of 0.43 and
    semantic 0.49, and at the floors 93 % of them are flagged. Calibration on the
    seeds (module docstring) fixes this; measured by ``bench/contamination.py
    --part calibrated`` (flagged = rejected or sent to review):

    ==================================  ========  =========  ======  ========  ========
    seeds -> eval set                   own rows  verbatim   typo    one word  rephrased
    ==================================  ========  =========  ======  ========  ========
    BANKING77 train -> test (3,080)     1.5 %     1.00       0.99    0.33      -
    CLINC150 train -> test (5,500)      0.9 %     1.00       0.98    0.40      -
    banking seeds -> GSM8K test         0.1 %     1.00       -       1.00      0.91
    GSM8K half -> other half            -         1.00       -       -         0.82
    ==================================  ========  =========  ======  ========  ========

    "own rows": other rows of the seeds' dataset, none copied on purpose; every one
    of the 15 BANKING77 rows flagged is a near-copy of a test message that the
    dataset's own split contains ("I don't live in the UK. Can I still get a card?").
    On short same-domain texts a test item with one word changed is as close to the
    test set as a tenth of the train rows are (7.9 % of BANKING77 train messages are
    within one word of a test message), so no lexical threshold catches the one
    and spares the other; rephrasings of long items (GSM8K) stay apart from the
    domain's own text and are caught.

    Attributes:
        eval_sets: The eval sets to check against.
        signals: Which checks run: ``ngram``, ``minhash``, ``semantic``.
        ngram: Verbatim run length in tokens. Shorter catches lighter copying and
            more shared stock phrases; 13 is the common choice (GPT-3, Llama 2
            decontamination), 8 tolerates more editing.
        edits_threshold: Floor of the token-edit similarity threshold (1 - the share
            of the longer text's tokens edited). 0.85 is the near-duplicate filter's
            ``max_edits`` of 0.15. Calibration raises it where the seeds themselves sit
            that close to the eval set: 2.7 % of BANKING77 train messages of 7+ tokens
            are within 15 % token edits of a test message ("How do I activate my new
            card" / "How do I use my new card?"), so on such sets only closer copies
            count, or longer items with one word changed.
        min_tokens: The shortest eval item that counts when found whole inside a
            longer row (a row that *is* an item always counts). Calibration raises
            it per eval set with the similarity thresholds: in banking messages,
            "what happened to my top-up" (6 tokens) inside a longer message is
            ordinary phrasing, not a copy.
        generic_items: A short item (fewer than ``ngram`` tokens) found inside this
            many other eval items is stock phrasing, not evidence of copying, and is
            not indexed.
        minhash_shingle: Shingles of the MinHash signal, ``char`` (of the tokens
            joined by spaces) or ``word``.
        minhash_n: Shingle length of the MinHash signal. Short shingles survive
            rephrasing (new word order, inflections); long ones only find
            near-verbatim copies. Character 3-grams scored best on GSM8K and HumanEval.
        minhash_threshold: Floor of the Jaccard threshold. Lower finds looser
            rephrasings and raises false alarms on same-topic text.
        stock_df: A MinHash shingle found in more than this share of the eval items
            (and in more than ``generic_items`` of them) identifies none of them and is
            ignored, on both sides. Lower makes short rows that share only stock
            phrasing look less alike, and rephrased code (whose remaining shingles
            are mostly keywords) too; 1.0 keeps every shingle.
        num_perm: MinHash permutations (precision of the LSH's cut-off).
        semantic_threshold: Floor of the TF-IDF cosine threshold.
        max_length_ratio: The semantic signal only compares texts whose token counts
            are within this factor: a five-word item sharing one rare word with a
            fifty-word row is no evidence. (Jaccard needs no such guard: it cannot
            exceed the ratio of the two set sizes.)
        calibrate: Calibrate the similarity thresholds and ``min_tokens`` on the
            seeds. Off: the floors are the thresholds, as measured on unrelated text.
        flag_rate: The share of the seeds the calibrated checks (short items inside a
            row, minhash, semantic) may flag together, per eval set. All three are set
            at one quantile of the seeds' scores, the lowest at which no more than this
            share of the seeds would be flagged. Lower flags fewer rows of the user's
            own kind (about ``flag_rate`` of them, plus the ones that are copies)
            and misses more rephrasings of eval items.
        min_seeds: Fewer seeds than this: no calibration (an empirical 99th
            percentile of a handful of rows says nothing), the floors apply.
        max_threshold: Calibration never raises a similarity threshold above this,
            however alike the seeds are to the eval set (seeds that are mostly
            copies of it): a score this high is a copy in any domain.
        review_band: A similarity score less than this above its threshold (or not
            above every seed's score) goes to review instead of being rejected: real
            rows reach such scores, so a human decides. 0 leaves only the seeds'
            maximum between review and rejection; wider sends more to review and
            rejects only the clearer copies.
        calibration_sample: At most this many seeds are scored (a fixed sample):
            the quantiles are estimates either way, and the cost stays flat for
            large seed sets.
    """

    kind: Literal["contamination"] = "contamination"
    eval_sets: tuple[EvalSetSpec, ...] = Field(min_length=1, strict=False)
    signals: tuple[Signal, ...] = Field(default=SIGNALS, strict=False)
    ngram: int = Field(default=13, ge=2, le=64)
    edits_threshold: float = Field(default=0.85, gt=0.0, le=1.0)
    min_tokens: int = Field(default=6, ge=1)
    generic_items: int = Field(default=3, ge=1)
    minhash_shingle: ShingleKind = "char"
    minhash_n: int = Field(default=3, ge=1, le=32)
    minhash_threshold: float = Field(default=0.25, gt=0.0, le=1.0)
    num_perm: int = Field(default=128, ge=16, le=1024)
    semantic_threshold: float = Field(default=0.35, gt=0.0, le=1.0)
    max_length_ratio: float = Field(default=3.0, ge=1.0)
    stock_df: float = Field(default=0.1, gt=0.0, le=1.0)
    calibrate: bool = True
    flag_rate: float = Field(default=0.01, gt=0.0, lt=0.5)
    min_seeds: int = Field(default=20, ge=2)
    max_threshold: float = Field(default=0.95, gt=0.0, le=1.0)
    review_band: float = Field(default=0.1, ge=0.0, le=1.0)
    calibration_sample: int = Field(default=5_000, ge=100)
    # The candidate's fields checked, each on its own (a leak in any one is a leak);
    # empty: the schema's text field. Thresholds are calibrated on the text field.
    fields: tuple[str, ...] = Field(default=(), strict=False)

    _signals_once = field_validator("signals")(_once)

    @model_serializer(mode="wrap")
    def _omit_default_fields(self, handler: SerializerFunctionWrapHandler) -> Any:
        # A config from before ``fields`` existed keeps its sha.
        out = handler(self)
        if not out.get("fields", True):
            del out["fields"]
        return out

    def floor(self, signal: Signal) -> float:
        if signal == "edits":
            return self.edits_threshold
        return self.minhash_threshold if signal == "minhash" else self.semantic_threshold


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
    """The best item of one eval set that one signal found for one text."""

    signal: Signal
    item: int  # index into ContaminationIndex.items
    score: float
    # ngram only: the token length of a short item found inside a longer text; 0 for
    # an n-gram overlap or a text that is the item
    run: int = 0
    typo: bool = False  # ngram only: the item with one word misspelled
    stock: bool = False  # ngram only: the text is, word for word, a stock item


@dataclass(frozen=True)
class Finding:
    """A signal that fired: the match, the threshold it reached, and what it means."""

    match: Match
    threshold: Threshold
    reject: bool  # False: the review band


@dataclass(frozen=True)
class ContaminationHit:
    """One signal firing for one row of a checked file."""

    row: str  # "path:line"
    eval_set: str
    item_id: str
    signal: Signal
    score: float
    verdict: Literal["reject", "review"] = "reject"
    threshold: float = 0.0


@dataclass(frozen=True)
class Calibration:
    """The thresholds of one filter for one set of seeds, per (signal, eval set).

    ``ngram`` thresholds are token lengths: the shortest eval item that counts when
    found inside a longer row. ``copies`` counts, per eval set, the seeds that are
    verbatim copies of one of its items (left out of the null distribution).
    """

    seeds: int
    thresholds: dict[tuple[Signal, str], Threshold]
    copies: dict[str, int] = field(default_factory=dict)
    weights: _Weights | None = None

    def threshold(self, signal: Signal, eval_set: str) -> Threshold:
        return self.thresholds[(signal, eval_set)]


class ContaminationIndex:
    """All eval items of a filter's settings, indexed for every enabled signal."""

    def __init__(self, params: ContaminationParams, root: Path) -> None:
        self.params = params
        names = [s.name for s in params.eval_sets]
        if len(set(names)) != len(names):
            raise EvalSetError("eval_sets", "two eval sets have the same name")
        self.names = names
        self.items = [item for spec in params.eval_sets for item in load_eval_set(spec, root)]
        tokens = [tokenize(item.text) for item in self.items]
        if not any(tokens):
            raise EvalSetError(params.eval_sets[0].path, "the eval sets hold no text to index")
        self.set_of = np.array([names.index(x.eval_set) for x in self.items], dtype=np.int64)
        checks = {s.name: s.signals or params.signals for s in params.eval_sets}
        self.checked: dict[str, tuple[Signal, ...]] = {
            name: tuple(s for s in params.signals if s in checks[name]) for name in names
        }
        self.subsets: dict[Signal, np.ndarray] = {}  # signal -> indices of its items
        self.generic: dict[Signal, int] = {}  # signal -> generic items left out
        self._ngram: _NgramIndex | None = None
        self._minhash: _MinHashIndex | None = None
        self._semantic: _SemanticIndex | None = None
        # Stock items (found inside several others) are no evidence of copying any one
        # item, but a row that is one word for word is not kept silently either.
        self._stock: dict[str, int] = {}
        # The edits signal checks the MinHash index's proposals: one index serves both.
        built = [s for s in params.signals if s != "edits"]
        if "edits" in params.signals and "minhash" not in built:
            built.append("minhash")
        for signal in built:
            uses = ("minhash", "edits") if signal == "minhash" else (signal,)
            subset = [
                i for i, x in enumerate(self.items) if any(u in checks[x.eval_set] for u in uses)
            ]
            generic = _generic_items(
                [tokens[i] for i in subset], params.ngram, params.generic_items
            )
            if signal == "ngram":
                for i, g in zip(subset, generic, strict=True):
                    if g:
                        self._stock.setdefault(" ".join(tokens[i]), i)
            subset = [i for i, g in zip(subset, generic, strict=True) if not g]
            self.subsets[signal] = np.array(subset, dtype=np.int64)
            self.generic[signal] = sum(generic)
            if not subset:
                continue
            sets = self.set_of[subset]
            if signal == "ngram":
                self._ngram = _NgramIndex(
                    [self.items[i].text for i in subset], [tokens[i] for i in subset], sets, params
                )
            elif signal == "minhash":
                self._minhash = _MinHashIndex(
                    [self.items[i].text for i in subset],
                    sets,
                    params,
                    edits="edits" in params.signals,
                )
            else:
                self._semantic = _SemanticIndex([self.items[i].text for i in subset], sets, params)
        if "edits" in params.signals and len(self.subsets.get("minhash", ())):
            self.subsets["edits"] = self.subsets["minhash"]
            self.generic["edits"] = self.generic["minhash"]
        self._calibrations: OrderedDict[bytes, Calibration] = OrderedDict()
        self.uncalibrated = self._thresholds_without_seeds(0)

    # --- matching --------------------------------------------------------------

    def match(self, texts: Sequence[str], weights: _Weights | None = None) -> list[list[Match]]:
        """Per text, the best match of every enabled signal in each eval set, in
        signal order (``ngram``, ``minhash``, ``semantic``) and set order."""
        out: list[list[Match]] = [[] for _ in texts]
        token_lists = [tokenize(t) for t in texts]
        joined = [" ".join(t) for t in token_lists]
        if self._stock:
            for i, j in enumerate(joined):
                item = self._stock.get(j)
                if item is not None:
                    out[i].append(Match("ngram", item, 1.0, stock=True))
        tokens = _TokenRuns(token_hashes(list(texts)))
        # The n-gram signal hashes the tokens of the tokens joined by spaces: the same
        # tokens, unless casefolding and NFKC undo each other somewhere in a text.
        retokenized = all(
            t.isascii() or tokenize(j) == toks
            for t, j, toks in zip(texts, joined, token_lists, strict=True)
        )
        words = tokens if retokenized else _TokenRuns(token_hashes(joined))
        found: list[list[tuple[int, Match]]]
        # The edits signal checks the MinHash index's proposals for these texts.
        by_minhash = self._minhash.match(texts) if self._minhash is not None else []
        for signal in SIGNALS:
            if signal == "ngram" and self._ngram is not None:
                found = self._ngram.match(token_lists, words, tokens)
            elif signal == "edits" and self._minhash is not None and "edits" in self.subsets:
                found = [
                    [(s, m) for s, m in per_set if signal in self.checked[self.names[s]]]
                    for per_set in self._minhash.edits(tokens.per_text)
                ]
            elif signal == "minhash" and self._minhash is not None:
                found = [
                    [(s, m) for s, m in per_set if signal in self.checked[self.names[s]]]
                    for per_set in by_minhash
                ]
            elif signal == "semantic" and self._semantic is not None:
                w = weights or self._semantic.base
                found = self._semantic.match(token_lists, w)
            else:
                continue
            subset = self.subsets[signal]
            for i, per_set in enumerate(found):
                for _, m in sorted(per_set, key=lambda x: x[0]):
                    out[i].append(Match(signal, int(subset[m.item]), m.score, m.run, m.typo))
        return out

    def findings(self, matches: Sequence[Match], calibration: Calibration) -> list[Finding]:
        """The matches that reach their thresholds, in signal and set order."""
        out = []
        for m in matches:
            name = self.items[m.item].eval_set
            t = calibration.threshold(m.signal, name)
            if m.signal == "ngram":
                if m.run == 0 or m.run >= t.value:
                    out.append(Finding(m, t, reject=not m.stock))
                continue
            score = round(m.score, 4)
            if score >= t.value:
                low, above = self.reject_at(t, m.signal)
                out.append(Finding(m, t, reject=score >= low and score > above))
        return out

    def reject_at(self, t: Threshold, signal: Signal) -> tuple[float, float]:
        """Where a similarity hit is rejected rather than reviewed: at or above the first
        value, and above the second (the highest score a seed reached; -1 without
        seeds). Token edits within the threshold are a near copy by definition, so
        they have no review band: only seeds that close send them to review."""
        band = 0.0 if signal == "edits" else self.params.review_band
        low = min(1.0, round(t.value + band, 4))
        calibrated = t.rule in ("floor", "seeds", "cap") and t.scores.max is not None
        return low, t.scores.max if calibrated and t.scores.max is not None else -1.0

    # --- calibration -----------------------------------------------------------

    def calibrate(self, seeds: Sequence[str]) -> Calibration:
        """The thresholds these seeds imply (see the module docstring); cached by the
        seeds' content, so a resumed run or a second filter pays nothing."""
        seeds = [s for s in seeds if s.strip()]
        key = hashlib.blake2b("\x00".join(seeds).encode("utf-8", "surrogatepass")).digest()
        cached = self._calibrations.get(key)
        if cached is not None:
            self._calibrations.move_to_end(key)
            return cached
        result = self._calibrate(seeds)
        self._calibrations[key] = result
        if len(self._calibrations) > 8:
            self._calibrations.popitem(last=False)
        return result

    def _thresholds_without_seeds(self, n: int) -> Calibration:
        p = self.params
        thresholds: dict[tuple[Signal, str], Threshold] = {}
        for name in self.names:
            for signal in SIGNALS:
                label = f"{name} {signal}"
                if signal == "ngram":
                    value = float(p.min_tokens)
                else:
                    value = p.floor(signal)
                if not p.calibrate:
                    thresholds[(signal, name)] = fixed(label, value)
                else:
                    thresholds[(signal, name)] = calibrate(
                        label,
                        [0.0] * n,
                        floor=value,
                        cap=value,
                        quantile=_LEVELS[0],
                        min_seeds=p.min_seeds,
                    )
        return Calibration(n, thresholds)

    def _calibrate(self, seeds: Sequence[str]) -> Calibration:
        p = self.params
        if not p.calibrate or len(seeds) < p.min_seeds:
            return self._thresholds_without_seeds(len(seeds))
        sample = [seeds[i] for i in sample_positions(len(seeds), p.calibration_sample)]
        weights = self._semantic.weights(sample) if self._semantic is not None else None
        # Per eval set: each seed's best score per signal (0: no match), and whether it
        # is a verbatim copy of one of the set's items.
        scores = {(s, name): np.zeros(len(sample)) for s in SIGNALS for name in self.names}
        copy = {name: np.zeros(len(sample), dtype=bool) for name in self.names}
        for i, matches in enumerate(self.match(sample, weights)):
            for m in matches:
                name = self.items[m.item].eval_set
                if m.signal == "ngram" and m.run == 0:
                    copy[name][i] = True
                else:
                    key = (m.signal, name)
                    scores[key][i] = max(scores[key][i], m.run if m.signal == "ngram" else m.score)
        thresholds: dict[tuple[Signal, str], Threshold] = {}
        for name in self.names:
            null = ~copy[name]
            values = {signal: scores[(signal, name)][null] for signal in SIGNALS}
            thresholds.update({(s, name): t for s, t in self._joint(name, values).items()})
        copies = {name: int(copy[name].sum()) for name in self.names}
        return Calibration(len(sample), thresholds, copies, weights)

    def _joint(self, name: str, scores: dict[Signal, np.ndarray]) -> dict[Signal, Threshold]:
        """One eval set's thresholds: every check at the same quantile of the seeds'
        scores, the lowest quantile at which at most ``flag_rate`` of the seeds would be
        flagged by any of the checks together (they overlap: a row close to an item
        tends to be close by every measure)."""
        p = self.params
        n = len(next(iter(scores.values())))

        def at(q: float) -> dict[Signal, Threshold]:
            out: dict[Signal, Threshold] = {}
            for signal, values in scores.items():
                label = f"{name} {signal}"
                if signal == "ngram":
                    out[signal] = _run_threshold(label, values.tolist(), p, q)
                else:
                    cap = max(p.max_threshold, p.floor(signal))
                    out[signal] = calibrate(
                        label,
                        values.tolist(),
                        floor=p.floor(signal),
                        cap=cap,
                        quantile=q,
                        min_seeds=p.min_seeds,
                    )
            return out

        def flagged(ts: dict[Signal, Threshold]) -> float:
            hit = np.zeros(n, dtype=bool)
            for signal in self.checked[name]:
                values, t = scores[signal], ts[signal]
                hit |= (values > 0) & (np.round(values, 4) >= t.value)
            return float(hit.mean()) if n else 0.0

        ts = at(_LEVELS[-1])
        for q in _LEVELS:
            candidate = at(q)
            if flagged(candidate) <= p.flag_rate:
                ts = candidate
                break
        return ts

    def table(self, calibration: Calibration) -> FilterCalibration:
        """The thresholds in use, for ``synth calibrate`` and the audit report."""
        rows: list[Threshold] = []
        notes: list[str] = []
        for name in self.names:
            for signal in self.checked[name]:
                rows.append(calibration.threshold(signal, name))
            level = rows[-1] if rows else None
            if level is not None and level.rule not in ("fixed", "too_few"):
                notes.append(
                    f"{name}: every check at the seeds' q{level.quantile * 100:g}, the lowest"
                    f" quantile at which at most {self.params.flag_rate:.1%} of the seeds"
                    " would be flagged"
                )
            copies = calibration.copies.get(name, 0)
            if copies:
                notes.append(
                    f"{copies} of {calibration.seeds} seeds are verbatim copies of {name}"
                    " items: left out of the calibration (and a leak in the seeds)"
                )
        return FilterCalibration(
            "contamination",
            "ngram: shortest eval item counted inside a row (tokens); minhash: Jaccard;"
            " semantic: TF-IDF cosine; each seed's best match in the eval set",
            tuple(rows),
            tuple(notes),
        )


# The quantiles the joint calibration tries, lowest first.
_LEVELS: tuple[float, ...] = tuple(round(0.95 + 0.0005 * k, 4) for k in range(100))


def _run_threshold(
    label: str, lengths: Sequence[float], p: ContaminationParams, quantile: float
) -> Threshold:
    """The shortest eval item that counts when found inside a row: one token longer
    than the ``quantile`` of the lengths of the items the seeds contain (0: none)."""
    t = calibrate(
        label,
        lengths,
        floor=float(p.min_tokens),
        cap=float(p.ngram),
        quantile=quantile,
        min_seeds=p.min_seeds,
    )
    if t.rule == "too_few" or t.seeds_q is None or t.seeds_q < p.min_tokens:
        return t
    value = min(float(p.ngram), float(int(t.seeds_q) + 1))
    rule: Any = "cap" if value >= p.ngram else "seeds"
    return Threshold(label, value, rule, t.floor, t.cap, t.quantile, t.seeds_q, t.scores)


def _generic_items(tokens: Sequence[list[str]], n: int, limit: int) -> list[bool]:
    """Short items whose token run occurs inside ``limit`` or more other distinct items."""
    short = [i for i, t in enumerate(tokens) if 0 < len(t) < n]
    generic = [False] * len(tokens)
    if not short:
        return generic
    texts = list({" ".join(t) for t in tokens if t})
    for length in sorted({len(tokens[i]) for i in short}):
        # Each distinct item counts once per run it contains, the item itself included.
        spread: Counter[int] = Counter()
        for runs in shingle_hashes(texts, "word", length):
            spread.update(runs.tolist())
        for i in short:
            if len(tokens[i]) == length:
                [run] = shingle_hashes([" ".join(tokens[i])], "word", length)[0].tolist()
                generic[i] = spread[run] - 1 >= limit
    return generic


def _best_per_set(candidates: Iterable[tuple[int, Match]]) -> list[tuple[int, Match]]:
    """The best match of each eval set: an overlap or whole-text match before a short
    item found inside the text; then the highest score, or the longest item; then the
    first item."""

    def rank(m: Match) -> tuple[bool, float, int]:
        return (m.run == 0, m.score if m.run == 0 else float(m.run), -m.item)

    best: dict[int, Match] = {}
    for s, m in candidates:
        old = best.get(s)
        if old is None or rank(m) > rank(old):
            best[s] = m
    return sorted(best.items(), key=lambda x: x[0])


# An item with one word misspelled still counts as the item when it has at least this
# many tokens and the word this many characters: "where is my crad" is a copy of
# "where is my card", "top op" too little text to say.
_TYPO_MIN_TOKENS = 3
_TYPO_MIN_CHARS = 3


def _sorted_keys(table: dict[int, Any]) -> np.ndarray:
    return np.array(sorted(table), dtype=np.uint64)


def _found_in(values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Which of ``values`` are in ``keys`` (sorted)."""
    if not len(keys):
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(keys, values), len(keys) - 1)
    found: np.ndarray = keys[at] == values
    return found


def _by_text(texts: np.ndarray, hashes: np.ndarray) -> dict[int, list[int]]:
    """The distinct hashes of each text, sorted, from parallel arrays of hits."""
    out: dict[int, list[int]] = {}
    for k, h in sorted(set(zip(texts.tolist(), hashes.tolist(), strict=True))):
        out.setdefault(k, []).append(h)
    return out


def _lexsort(keys: Sequence[np.ndarray]) -> np.ndarray:
    """``np.lexsort(keys)``: sorted by the last key, then the one before, ...; ties
    keep their order. The keys are packed into one integer (a float by its rank) and
    sorted once where lexsort would sort once per key, unless their ranges need more
    than 62 bits."""
    packed = np.zeros(len(keys[0]), dtype=np.int64)
    if not len(packed):
        return packed
    span = 1
    for key in reversed(keys):
        if key.dtype.kind == "f":
            _, key = np.unique(key, return_inverse=True)
        low = key.min()
        width = int(key.max()) - int(low) + 1
        span *= width
        if span > 1 << 62:
            order: np.ndarray = np.lexsort(keys)
            return order
        packed = packed * width + (key - low).astype(np.int64)
    return np.argsort(packed, kind="stable")


def _ranked(
    first: np.ndarray, second: np.ndarray, score: np.ndarray, tie: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Positions grouped by (``first``, ``second``), in that order, each group's
    highest ``score`` first and of equal ones the lowest ``tie``; and each one's rank
    in its group (0 for the best)."""
    order = _lexsort((tie, -score, second, first))
    first, second = first[order], second[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = (first[1:] != first[:-1]) | (second[1:] != second[:-1])
    at = np.arange(len(order))
    rank: np.ndarray = at - np.maximum.accumulate(np.where(starts, at, 0))
    return order, rank


# Weights of the positions of a text of up to 2 * 64 tokens (the longest ``ngram``)
# in the key of its token sequence; any odd number will do (they are powers of it).
_WEIGHTS = np.array([pow(0xC2B2AE3D27D4EB4F, e, 1 << 64) for e in range(128)], dtype=np.uint64)
_BLANK = np.uint64(0x165667B19E3779F9)


class _TokenRuns:
    """A batch's token hashes in one array: its runs of n tokens are hashed, and looked
    up, for all texts at once. Nearly no run is in any table; only those that are get
    a look in Python."""

    def __init__(self, per_text: Sequence[np.ndarray]) -> None:
        self.per_text = per_text
        self.lengths = np.fromiter(map(len, per_text), dtype=np.int64, count=len(per_text))
        self.ends = np.cumsum(self.lengths)
        self.starts = self.ends - self.lengths
        self.flat = np.concatenate(per_text) if per_text else np.empty(0, dtype=np.uint64)
        self.text_of = np.repeat(np.arange(len(per_text)), self.lengths)
        self._hashes: dict[int, np.ndarray] = {}

    def hashes(self, n: int) -> np.ndarray:
        """At each position, the hash of the n tokens from there on (those that run
        past the end of their text mean nothing)."""
        if n not in self._hashes:
            self._hashes[n] = shingle_sequence(self.flat, n)
        return self._hashes[n]

    def inside(self, n: int, texts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every run of n tokens inside one of the ``texts`` (a flag per text): the
        text it is in and its hash."""
        runs = self.hashes(n)
        text = self.text_of[: len(runs)]
        keep = (np.arange(len(runs)) + n <= self.ends[text]) & texts[text]
        return text[keep], runs[keep]

    def blanked(self) -> np.ndarray:
        """For each token of each text, a key of the text with that token blanked out:
        two texts equal but for the token at one place share that place's key (and
        other pairs do by chance, so a shared key is checked)."""
        flat, ends, text = self.flat, self.ends, self.text_of
        weights = _WEIGHTS[ends[text] - 1 - np.arange(len(flat))]
        sums = np.concatenate((np.zeros(1, dtype=np.uint64), np.cumsum(flat * weights)))
        whole = sums[ends] - sums[self.starts]
        keys: np.ndarray = whole[text] + (_BLANK - flat) * weights
        return keys


def _one_typo(a: str, b: str) -> bool:
    """Whether two different words are one keystroke apart: a letter replaced, added,
    dropped, or two neighbours swapped."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        i, j = (diff + [0, 0])[:2]
        return len(diff) == 2 and j == i + 1 and a[i] == b[j] and a[j] == b[i]
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    i = next((i for i in range(len(short)) if short[i] != long_[i]), len(short))
    return short[i:] == long_[i + 1 :]


class _NgramIndex:
    """Word n-grams of the long items; whole token runs of the short ones, also with one
    word misspelled."""

    def __init__(
        self,
        texts: Sequence[str],
        tokens: Sequence[list[str]],
        sets: np.ndarray,
        params: ContaminationParams,
    ) -> None:
        n = params.ngram
        self.n = n
        self.min_tokens = params.min_tokens
        self.sets = sets
        long_items = [i for i, t in enumerate(tokens) if len(t) >= n]
        grams = shingle_hashes([" ".join(tokens[i]) for i in long_items], "word", n)
        # n-gram -> the items that have it (nearly always one; a tuple keeps it small)
        self.owners: dict[int, tuple[int, ...]] = {}
        for i, hashes in zip(long_items, grams, strict=True):
            for h in hashes.tolist():
                self.owners[h] = self.owners.get(h, ()) + (i,)
        self.sizes = {i: len(g) for i, g in zip(long_items, grams, strict=True)}
        # Short items: length -> run hash -> items.
        self.runs: dict[int, dict[int, tuple[int, ...]]] = {}
        # Items of up to twice ``n`` tokens with one word blanked out, for a text that is
        # an item with one word misspelled (a typo in a 14-token item breaks both of its
        # 13-grams): key of the item with the word blanked -> (item, position).
        self.tokens = tokens
        self.masked: dict[int, list[tuple[int, int]]] = {}
        for i, t in enumerate(tokens):
            if 0 < len(t) < n:
                [h] = shingle_hashes([" ".join(t)], "word", len(t))[0].tolist()
                table = self.runs.setdefault(len(t), {})
                table[h] = table.get(h, ()) + (i,)
        typo_items = [i for i, t in enumerate(tokens) if _TYPO_MIN_TOKENS <= len(t) <= 2 * n]
        if typo_items:
            hashed = token_hashes([texts[i] for i in typo_items])
            keys = _TokenRuns(hashed).blanked().tolist()
            at = 0
            for i in typo_items:
                for k, word in enumerate(tokens[i]):
                    if len(word) >= _TYPO_MIN_CHARS:
                        self.masked.setdefault(keys[at + k], []).append((i, k))
                at += len(tokens[i])
        # The hashes each table holds, sorted: a batch's hashes are looked up in one
        # vectorised pass, and only the few that are there one by one in Python.
        self.owned = _sorted_keys(self.owners)
        self.run_keys = {length: _sorted_keys(table) for length, table in self.runs.items()}
        self.masked_keys = _sorted_keys(self.masked)

    def match(
        self, token_lists: Sequence[list[str]], words: _TokenRuns, tokens: _TokenRuns
    ) -> list[list[tuple[int, Match]]]:
        """``words``: the hashes of the tokens of the texts' tokens joined by spaces;
        ``tokens``: of the texts' tokens (the same, unless tokenizing is not idempotent
        on some text)."""
        found: list[list[tuple[int, Match]]] = [[] for _ in token_lists]
        texts, grams = words.inside(self.n, np.ones(len(token_lists), dtype=bool))
        hit = _found_in(grams, self.owned)
        for k, known in _by_text(texts[hit], grams[hit]).items():
            shared: Counter[int] = Counter()
            for h in known:
                shared.update(self.owners[h])
            for item, count in shared.items():
                score = min(1.0, count / self.sizes[item])
                found[k].append((int(self.sets[item]), Match("ngram", item, score)))
        self._short(token_lists, words, tokens, found)
        return [_best_per_set(f) for f in found]

    def _short(
        self,
        token_lists: Sequence[list[str]],
        words: _TokenRuns,
        tokens: _TokenRuns,
        found: list[list[tuple[int, Match]]],
    ) -> None:
        """Short items: a text that is one (run 0), or one found inside a text."""
        sizes = tokens.lengths
        for length, table in self.runs.items():
            ks = np.flatnonzero((sizes == length) & (words.lengths == length))
            if not len(ks):
                continue
            whole = words.hashes(length)[words.starts[ks]]
            hit = _found_in(whole, self.run_keys[length])
            for k, h in zip(ks[hit].tolist(), whole[hit].tolist(), strict=True):
                for item in table[h]:
                    found[k].append((int(self.sets[item]), Match("ngram", item, 1.0)))
        if self.masked:
            self._typos(token_lists, tokens, found)
        for length, table in self.runs.items():
            if length < self.min_tokens:
                continue
            texts, runs = words.inside(length, sizes > length)
            hit = _found_in(runs, self.run_keys[length])
            for k, known in _by_text(texts[hit], runs[hit]).items():
                for h in known:
                    for item in table[h]:
                        found[k].append((int(self.sets[item]), Match("ngram", item, 1.0, length)))

    def _typos(
        self,
        token_lists: Sequence[list[str]],
        tokens: _TokenRuns,
        found: list[list[tuple[int, Match]]],
    ) -> None:
        """A text nothing else matched that is an item with one word misspelled."""
        ks = [
            k
            for k, size in enumerate(tokens.lengths.tolist())
            if _TYPO_MIN_TOKENS <= size <= 2 * self.n and not found[k]
        ]
        if not ks:
            return
        runs = _TokenRuns([tokens.per_text[k] for k in ks])
        blanked = runs.blanked()
        hit = np.flatnonzero(_found_in(blanked, self.masked_keys))
        if not len(hit):
            return
        keys = blanked[hit].tolist()
        which = runs.text_of[hit]
        places = (hit - runs.starts[which]).tolist()
        for j, at, key in zip(which.tolist(), places, keys, strict=True):
            k = ks[j]
            t = token_lists[k]
            for item, pos in self.masked[key]:
                other = self.tokens[item]
                if (
                    pos == at
                    and len(other) == len(t)
                    and _one_typo(t[at], other[pos])
                    and other[:pos] == t[:at]
                    and other[pos + 1 :] == t[at + 1 :]
                ):
                    match = Match("ngram", item, 1.0, typo=True)
                    found[k].append((int(self.sets[item]), match))


# Pairs up to this share of token edits apart are scored by the edits signal: the
# seeds' scores need a distribution below any threshold to calibrate on.
_EDITS_SEARCHED = 0.5


class _MinHashIndex:
    """MinHash LSH over the items' shingle sets; the exact Jaccard decides.

    Common shingles (character 3-grams of English) make the LSH propose many items
    per text; the signatures rank the proposals and the ``_VERIFY`` most similar of
    each eval set get the exact Jaccard, so the cost per text stays flat as eval sets
    grow.
    """

    _VERIFY = 8

    def __init__(
        self,
        texts: Sequence[str],
        sets: np.ndarray,
        params: ContaminationParams,
        *,
        edits: bool = False,
    ) -> None:
        self.params = params
        self.sets_of = sets
        self.tokens = token_hashes(list(texts)) if edits else []
        self._proposals: dict[int, list[tuple[int, list[int]]]] = {}
        hashes = self._hashes(texts)
        every = np.concatenate(hashes) if hashes else np.empty(0, dtype=np.uint64)
        # Each item's hashes are distinct: a hash's count is the number of items with it.
        every_distinct, spread = np.unique(every, return_counts=True)
        limit = max(params.stock_df * len(hashes), params.generic_items)
        self.stock = every_distinct[spread > limit]
        self.sets = [h[~_found_in(h, self.stock)] for h in hashes]
        self.signatures = minhash_signatures(self.sets, params.num_perm)
        # Every item's shingles as one sorted array of (item, shingle number) keys: the
        # Jaccard of a batch's pairs is counted in one pass.
        self.sizes = np.fromiter(map(len, self.sets), dtype=np.int64, count=len(self.sets))
        self.shingles = distinct(np.concatenate(self.sets)) if self.sets else every
        self.keys = np.repeat(np.arange(len(self.sets)), self.sizes) * len(self.shingles)
        if len(self.keys):
            self.keys += np.searchsorted(self.shingles, np.concatenate(self.sets))
        # Lean towards proposing too much: proposals are verified. The LSH is tuned to
        # the floor (with datasketch's choice of bands); calibrated thresholds are never
        # lower.
        bands, rows = optimal_bands(params.minhash_threshold, params.num_perm, (0.1, 0.9))
        indexed = np.flatnonzero(self.sizes).astype(np.int64)
        self.lsh = FixedBands(self.signatures[indexed], indexed, bands, rows)

    def _hashes(self, texts: Sequence[str]) -> list[np.ndarray]:
        return shingle_hashes(texts, self.params.minhash_shingle, self.params.minhash_n)

    def match(self, texts: Sequence[str]) -> list[list[tuple[int, Match]]]:
        """Per text, the best Jaccard in each eval set among the ``_VERIFY`` proposals
        the signatures rank highest there. The proposals are kept for :meth:`edits`
        on the same texts."""
        hashes = self._hashes(texts)
        self._proposals = {}
        if not hashes:
            return []
        shingles = np.concatenate(hashes)
        text_of = np.repeat(np.arange(len(hashes)), [len(h) for h in hashes])
        kept = ~_found_in(shingles, self.stock)
        shingles, text_of = shingles[kept], text_of[kept]
        sizes = np.bincount(text_of, minlength=len(hashes))
        signatures = minhash_signatures(
            np.split(shingles, np.cumsum(sizes)[:-1]), self.params.num_perm
        )
        proposals = self.lsh.query_many(signatures)
        counts = np.fromiter(map(len, proposals), dtype=np.int64, count=len(proposals))
        counts[sizes == 0] = 0  # a text without shingles is like nothing
        who = np.repeat(np.arange(len(hashes)), counts)
        proposed = np.concatenate(proposals)[np.repeat(sizes > 0, [len(p) for p in proposals])]
        owners = self.sets_of[proposed]
        # Per text and eval set, the proposals whose signatures agree most, then the
        # lowest items; the first ``_VERIFY`` of them are verified.
        estimate = (self.signatures[proposed] == signatures[who]).sum(axis=1)
        order, rank = _ranked(who, owners, estimate, proposed)
        verified = order[rank < self._VERIFY]
        who, owners, proposed = who[verified], owners[verified], proposed[verified]
        for t, s, i in zip(who.tolist(), owners.tolist(), proposed.tolist(), strict=True):
            per_set = self._proposals.setdefault(t, [])
            if not per_set or per_set[-1][0] != s:
                per_set.append((s, []))
            per_set[-1][1].append(i)
        score = self._jaccard(shingles, text_of, sizes, who, proposed)
        # Per text and eval set, the best Jaccard; of equal ones, the lowest item.
        order, rank = _ranked(who, owners, score, proposed)
        best = order[(rank == 0) & (score[order] > 0)]
        out: list[list[tuple[int, Match]]] = [[] for _ in hashes]
        for t, s, i, j in zip(
            who[best].tolist(),
            owners[best].tolist(),
            proposed[best].tolist(),
            score[best].tolist(),
            strict=True,
        ):
            out[t].append((s, Match("minhash", i, j)))
        return out

    def _jaccard(
        self,
        shingles: np.ndarray,
        text_of: np.ndarray,
        sizes: np.ndarray,
        who: np.ndarray,
        items: np.ndarray,
    ) -> np.ndarray:
        """The exact Jaccard of each pair of a text (``who``) and an item, from the
        texts' shingles (sorted per text, each text's after the previous one's)."""
        if not len(who) or not len(self.shingles):
            return np.zeros(len(who))
        at = np.searchsorted(self.shingles, shingles)
        known = self.shingles[np.minimum(at, len(self.shingles) - 1)] == shingles
        at, text_of = at[known], text_of[known]
        # Each pair's text's known shingles, all pairs' one after another.
        counts = np.bincount(text_of, minlength=len(sizes))
        firsts = np.cumsum(counts) - counts
        lengths = counts[who]
        pair_of = np.repeat(np.arange(len(who)), lengths)
        offsets = np.cumsum(lengths) - lengths
        positions = firsts[who][pair_of] + np.arange(len(pair_of)) - offsets[pair_of]
        keys = items[pair_of] * len(self.shingles) + at[positions]
        shared = np.bincount(pair_of[_found_in(keys, self.keys)], minlength=len(who))
        score: np.ndarray = shared / (sizes[who] + self.sizes[items] - shared)
        return score

    def edits(self, tokens: Sequence[np.ndarray]) -> list[list[tuple[int, Match]]]:
        """Per text (its :func:`token_hashes`), the proposal of each eval set fewest
        token edits away, scored 1 - edits / the longer one's tokens; pairs more than
        half edited are left out. Reads the proposals :meth:`match` kept for the same
        texts."""
        out: list[list[tuple[int, Match]]] = []
        for t, own in enumerate(tokens):
            found: list[tuple[int, Match]] = []
            mine = own.tolist()
            for s, ranked in self._proposals.get(t, []):
                best: tuple[float, int] | None = None
                for i in ranked:
                    share = within(mine, self.tokens[i].tolist(), _EDITS_SEARCHED)
                    if share is not None and (best is None or (share, i) < best):
                        best = (share, i)
                if best is not None:
                    found.append((s, Match("edits", best[1], round(1.0 - best[0], 4))))
            out.append(found)
        return out


def _sublinear(counts: csr_matrix) -> csr_matrix:
    """1 + log(tf) on the stored counts, as ``TfidfVectorizer(sublinear_tf=True)``."""
    out = counts.astype(np.float32, copy=True)
    np.log(out.data, out=out.data)
    out.data += 1.0
    return out


def _rows_normalised(matrix: csr_matrix) -> csr_matrix:
    """Each row scaled to unit length, in place (a row of zeros stays so), its squares
    summed in float64."""
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    squares = np.bincount(
        rows, weights=np.square(matrix.data, dtype=np.float64), minlength=matrix.shape[0]
    )
    norms = np.sqrt(squares.astype(np.float64))  # bincount gives int64 for no entries
    norms[norms == 0.0] = 1.0
    matrix.data /= norms[rows].astype(matrix.data.dtype)
    return matrix


@dataclass(frozen=True)
class _Weights:
    """Term weights (inverse document frequencies) and the items weighted by them."""

    idf: np.ndarray
    items: csr_matrix  # terms x items, each item's column of unit length


class _SemanticIndex:
    """TF-IDF vectors (word 1-2-grams, sublinear tf) of the items; cosine by dot product.

    The term weights are the eval set's smoothed inverse document frequencies, as
    scikit-learn's ``TfidfVectorizer`` computes them; with seeds, a term's document
    share is the larger of its share among the items and among the seeds, so a term
    the user's own rows use all the time carries little weight (:meth:`weights`).
    """

    _CHUNK = 256  # rows per sparse product: bounds memory for large files

    def __init__(self, texts: Sequence[str], sets: np.ndarray, params: ContaminationParams) -> None:
        self.ratio = params.max_length_ratio
        self.sets_of = sets
        token_lists = [tokenize(t) for t in texts]
        self.lengths = np.array([max(1, len(tokens)) for tokens in token_lists])
        # The terms are numbered in sorted order, as scikit-learn's CountVectorizer
        # (word 1-2-grams, this tokenizer) numbers them: what it computes here, without
        # the second of start-up its import costs every run's filter process.
        vocabulary: set[str] = set()
        for tokens in token_lists:
            vocabulary.update(tokens)
            vocabulary.update(map(" ".join, zip(tokens, tokens[1:], strict=False)))
        self.terms: dict[str, int] = {term: i for i, term in enumerate(sorted(vocabulary))}
        # Texts are counted from their tokens (see _counts), a two-word term by the
        # pair of its words' terms: one lookup for a whole batch. Tokens hold no
        # spaces, so a two-word term is one pair.
        pairs = []
        for term, number in self.terms.items():
            if " " in term:
                former, latter = term.split(" ")
                pairs.append((self.terms[former] << 32 | self.terms[latter], number))
        pairs.sort()
        self.pair_keys = np.array([key for key, _ in pairs], dtype=np.int64)
        self.pair_terms = np.array([number for _, number in pairs], dtype=np.int64)
        counts = self._counts(token_lists)
        self.n = counts.shape[0]
        self.df = np.bincount(counts.indices, minlength=counts.shape[1]).astype(np.float64)
        self.tf = _sublinear(counts)
        self.base = self._weigh((self.df + 1) / (self.n + 1))

    def _counts(self, token_lists: Sequence[list[str]]) -> csr_matrix:
        """Term counts of tokenized texts, a row each, as a CountVectorizer fitted on the
        items would ``transform`` them: float32, each row's terms in increasing order."""
        from scipy.sparse import csr_matrix

        lookup = self.terms.get
        words = np.array([lookup(t, -1) for tokens in token_lists for t in tokens], dtype=np.int64)
        lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
        text_of = np.repeat(np.arange(len(token_lists), dtype=np.int64), lengths)
        pair = (text_of[1:] == text_of[:-1]) & (words[1:] >= 0) & (words[:-1] >= 0)
        keys = words[:-1][pair] << 32 | words[1:][pair]
        known = _found_in(keys, self.pair_keys)
        rows = np.concatenate((text_of[words >= 0], text_of[1:][pair][known]))
        terms = np.concatenate(
            (words[words >= 0], self.pair_terms[np.searchsorted(self.pair_keys, keys[known])])
        )
        size = len(self.terms)
        cells, counts = np.unique(rows * size + terms, return_counts=True)
        indptr = np.zeros(len(token_lists) + 1, dtype=np.int64)
        np.cumsum(np.bincount(cells // size, minlength=len(token_lists)), out=indptr[1:])
        return csr_matrix(
            (counts.astype(np.float32), cells % size, indptr), shape=(len(token_lists), size)
        )

    def _weigh(self, share: np.ndarray) -> _Weights:
        idf = (1.0 - np.log(share)).astype(np.float32)
        weighted = _rows_normalised(self.tf.multiply(idf[None, :]).tocsr())
        return _Weights(idf, weighted.T.tocsr())

    def weights(self, seeds: Sequence[str]) -> _Weights:
        """Term weights that also know the seeds: a term's share is the larger of its
        (smoothed) share of the items and its share of the seeds."""
        counts = self._counts([tokenize(s) for s in seeds])
        seed_df = np.bincount(counts.indices, minlength=len(self.df)).astype(np.float64)
        share = np.maximum((self.df + 1) / (self.n + 1), seed_df / max(1, len(seeds)))
        return self._weigh(share)

    def match(
        self, token_lists: Sequence[list[str]], weights: _Weights
    ) -> list[list[tuple[int, Match]]]:
        """The most similar item of comparable length per text (its tokens) and eval
        set."""
        out: list[list[tuple[int, Match]]] = []
        for start in range(0, len(token_lists), self._CHUNK):
            chunk = token_lists[start : start + self._CHUNK]
            query = _sublinear(self._counts(chunk))
            query.data *= weights.idf[query.indices]
            query = _rows_normalised(query)
            sims = (query @ weights.items).tocsr()
            rows = np.repeat(np.arange(len(chunk)), np.diff(sims.indptr))
            mine = np.maximum(1, np.fromiter(map(len, chunk), dtype=np.int64, count=len(chunk)))
            ratio = mine[rows] / self.lengths[sims.indices]
            comparable = (ratio <= self.ratio) & (ratio * self.ratio >= 1) & (sims.data > 0)
            where = np.flatnonzero(comparable)
            rows, items, values = rows[where], sims.indices[where], sims.data[where]
            owners = self.sets_of[items]
            # Per row and eval set, the highest value; of equal ones, the first stored.
            order, rank = _ranked(rows, owners, values, where)
            first = order[rank == 0]
            found: list[list[tuple[int, Match]]] = [[] for _ in chunk]
            for row, s, item, value in zip(
                rows[first].tolist(),
                owners[first].tolist(),
                items[first].tolist(),
                values[first].tolist(),
                strict=True,
            ):
                found[row].append((s, Match("semantic", item, min(1.0, value))))
            out += found
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
    """The index for these settings; reused while the eval files are unchanged, and
    with it the calibrations it has computed."""
    stamps = tuple(_file_key(spec, root) for spec in params.eval_sets)
    return _cached_index(params, os.fspath(root), stamps)


# --- the filter and the file check -------------------------------------------------


def reason(finding: Finding, index: ContaminationIndex) -> str:
    """``contamination: <signal> <eval set> <item> (<score> ...)``: the score first,
    then the threshold it reached and why the threshold is what it is."""
    m, t = finding.match, finding.threshold
    item = index.items[m.item]
    slug = "contamination" if finding.reject else "contamination_review"
    if m.signal == "ngram" and m.run:
        detail = (
            f"1.00: a {m.run}-token item inside the row; items of {int(t.value)}+ tokens"
            f" count: {t.why()}"
        )
    elif m.signal == "ngram" and m.typo:
        detail = "1.00: the whole item, one word misspelled"
    elif m.signal == "ngram" and m.stock:
        limit = index.params.generic_items
        detail = f"1.00: the whole item, stock phrasing found inside {limit}+ other items"
    elif m.signal == "ngram":
        if m.score >= 1.0:
            detail = "1.00: the whole item"
        else:
            detail = f"{m.score:.2f} of its {index.params.ngram}-grams"
    else:
        detail = f"{m.score:.2f} >= {t.value:.2f}: {t.why()}"
        if not finding.reject:
            low, above = index.reject_at(t, m.signal)
            detail += f"; rejects at {low:.2f}"
            if above >= low:
                detail += f" and above {above:.2f}, the closest seed"
    return f"{slug}: {m.signal} {item.eval_set} {item.id} ({detail})"


class ContaminationFilter(Filter):
    """Rejects (or sends to review) candidates an eval-set signal fires on; decisions
    depend on the seeds given to ``prepare``, never on earlier batches."""

    name = "contamination"
    version = "2"

    def __init__(self, params: ContaminationParams, ctx: FilterContext) -> None:
        self.params = params
        self.index = build_index(params, ctx.root)
        self.calibration = self.index.uncalibrated
        self.fields = params.fields

    def prepare(self, seen: Iterable[SeenItem]) -> None:
        """Calibrate on the real rows (kept synthetic rows are not evidence of what the
        user's domain looks like)."""
        self.calibration = self.index.calibrate([s.text for s in seen if s.source is Source.REAL])

    def decide(self, batch: Sequence[Candidate]) -> list[Decision]:
        out = []
        cal = self.calibration
        if self.fields:
            matches = self._match_fields(batch)
        else:
            matches = self.index.match([c.text for c in batch], cal.weights)
        for c, found in zip(batch, matches, strict=True):
            findings = self.index.findings(found, cal)
            hit = next((f for f in findings if f.reject), None) or next(iter(findings), None)
            if hit is None:
                score = max((m.score for m in found if m.signal != "ngram"), default=0.0)
                out.append(self.keep(c, score=round(score, 4)))
            elif hit.reject:
                out.append(self.reject(c, reason(hit, self.index), score=round(hit.match.score, 4)))
            else:
                out.append(self.review(c, reason(hit, self.index), score=round(hit.match.score, 4)))
        return out

    def _match_fields(self, batch: Sequence[Candidate]) -> list[list[Match]]:
        """Each candidate's matches over every field checked, as if one text."""
        texts: list[str] = []
        owners: list[int] = []
        for i, c in enumerate(batch):
            row = c.row
            for name in self.fields:
                value = text_of(row, name)
                if value.strip():
                    texts.append(value)
                    owners.append(i)
        out: list[list[Match]] = [[] for _ in batch]
        for i, found in zip(owners, self.index.match(texts, self.calibration.weights), strict=True):
            out[i].extend(found)
        return out

    def calibration_table(self) -> FilterCalibration:
        return self.index.table(self.calibration)


@dataclass(frozen=True)
class FileCheck:
    """What ``check_file`` found: every hit, the rows read, and the thresholds used."""

    hits: list[ContaminationHit]
    rows: int
    calibration: FilterCalibration
    reference: str  # where the seeds that calibrated the thresholds came from

    @property
    def rejected_rows(self) -> set[str]:
        return {h.row for h in self.hits if h.verdict == "reject"}

    @property
    def review_rows(self) -> set[str]:
        return {h.row for h in self.hits if h.verdict == "review"} - self.rejected_rows


def check_file(
    path: Path | str,
    field: str,
    params: ContaminationParams,
    ctx: FilterContext,
    reference: Sequence[str] | None = None,
    reference_name: str = "",
) -> FileCheck:
    """Every signal that fires on any row of a dataset file, in row order.

    Args:
        path: A JSONL, CSV/TSV or JSON file (optionally gzipped); relative paths
            resolve against ``ctx.root``.
        field: The field holding the text to check.
        params: The eval sets and signals, as for the filter.
        ctx: Gives the project root.
        reference: Real rows of the file's domain that calibrate the thresholds (the
            project's seeds). None: the file's own rows, on the view that most rows
            of a dataset are not copies; the quantile keeps a few that are from
            moving the thresholds, the ``max_threshold`` cap many.
        reference_name: How ``reference`` is named in the result.

    Returns the hits (one per row, signal and eval set that fires, naming the row as
    ``path:line``, each ``reject`` or ``review`` as the filter would decide) and the
    thresholds used.
    """
    shown = os.fspath(path)
    resolved = Path(path) if Path(path).is_absolute() else ctx.root / path
    index = build_index(params, ctx.root)
    records = list(read_records(resolved, shown, EvalSetError))
    texts = [record_text(r, [field]) for r in records]
    if reference is None:
        reference, reference_name = texts, f"the {len(texts)} rows of {shown}"
    calibration = index.calibrate(reference)
    hits: list[ContaminationHit] = []
    for start in range(0, len(records), _FILE_CHUNK):
        chunk = texts[start : start + _FILE_CHUNK]
        for record, found in zip(
            records[start : start + _FILE_CHUNK],
            index.match(chunk, calibration.weights),
            strict=True,
        ):
            for f in index.findings(found, calibration):
                item = index.items[f.match.item]
                hits.append(
                    ContaminationHit(
                        record.where,
                        item.eval_set,
                        item.id,
                        f.match.signal,
                        round(f.match.score, 4),
                        "reject" if f.reject else "review",
                        f.threshold.value,
                    )
                )
    return FileCheck(hits, len(records), index.table(calibration), reference_name)


_FILE_CHUNK = 5_000  # rows matched together: bounds memory on files of any size
