"""Diversity: drop a candidate too close (ROUGE-L) to a seed or kept row of its cell.

This is Self-Instruct's and Alpaca's rule: a generated instruction is discarded when
its ROUGE-L F-measure against any seed or any instruction accepted so far exceeds 0.7.
Here the comparison is per cell (slice x label): two rows of different labels may share
wording, and a cell's own near-duplicates are what make it repetitive.

0.7 was chosen for instructions of 10-30 words that are meant to differ in task.
Classification rows of one intent are alike by nature: among the demo's BANKING77
seeds, the median is at ROUGE-L 0.52 from its nearest seed of the same intent and one
in twenty above 0.83 ("How do I turn on my new card?" / "How can I switch on my new
card?" is 0.75). So the threshold is calibrated on the seeds: the higher of ``threshold`` and
the ``quantile`` of the seeds' nearest-neighbour ROUGE-L within their own cells (see
:mod:`synth.filters.calibration`). A generated row is then too similar only when it
is closer to a row of its cell than almost every real row is to its own nearest
neighbour.

Template boilerplate ("Hello, I am a long-time customer and I have a question about
my account: ...") would make every templated row of a cell look like the others.
Word pairs found in more than ``boilerplate_df`` of a cell's generated rows and at
least ``boilerplate_lift`` times as often as among the real rows are template
phrasing: the tokens they cover are left out of generated rows before ROUGE-L is
computed. Seeds are never stripped, and a stripped candidate is also compared whole
with the seeds of its cell: a model that keeps repeating one seed makes that seed's
phrasing frequent among generated rows, and must not turn its copies into
boilerplate.

Also :func:`diversity_figures`, the per-cell numbers ``synth status`` reports.
"""

from __future__ import annotations

import random
import statistics
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import compress
from typing import Literal

import numpy as np
from pydantic import Field

from synth.filters.base import Filter, FilterContext, FilterParams
from synth.filters.calibration import (
    FilterCalibration,
    PhraseCounts,
    Threshold,
    calibrate,
    fixed,
    overused_many,
    real_share,
    sample_positions,
)
from synth.filters.digests import DigestSet, digest64
from synth.filters.rouge import RougeIndex, TokenizerName, nearest_neighbour_scores, tokenize
from synth.records import Candidate, CellKey, Decision, SeenItem, Source

# Scores are ratios 2 LCS / (m + n) computed in floating point, and rouge_score's
# formula (kept bit for bit) puts an exact 0.7 (7 of 10 tokens) at 0.7000000000000001.
# A real excess over a threshold of up to 3 decimals is at least 1 / (1000 (m + n)),
# above this margin for any pair of texts under a hundred thousand tokens.
_EPS = 1e-9


def exceeds(score: float, threshold: float) -> bool:
    """Whether a ROUGE-L score is above the threshold, ignoring floating-point noise.

    Self-Instruct compares the raw float (``> 0.7``), so it also drops pairs at exactly
    0.7; alpaca-libre compares the score rounded to 3 decimals and keeps them. Both
    agree with this on every other score.
    """
    return score > threshold + _EPS


class DiversityParams(FilterParams):
    """Settings of the ROUGE-L diversity filter.

    threshold: the floor of the threshold; calibration never goes below it. A candidate
        whose ROUGE-L F against a seed or kept row of its cell is *above* the
        threshold is too similar (exactly equal passes, see :func:`exceeds`). 0.7 is
        Self-Instruct's and Alpaca's value. 1.0 turns the filter off.
    calibrate: raise the threshold to the seeds' own nearest-neighbour ROUGE-L (within
        their cells) where that is higher. Off: ``threshold`` as given.
    quantile: which quantile of the seeds' nearest-neighbour scores sets the
        threshold. Higher rejects fewer rows that are as close to a seed as real rows
        are to each other and lets more one-word edits of short rows through.
        Measured with ``bench/calibration.py --frontier`` (the demo's 171 seeds,
        with the near-dedup filter of the same chain): 0.9 flags 19 % of fresh real
        messages and catches every planted near copy, 0.95 (default) 11 % and 0.99
        of them, 0.98 9 % and 0.88; Self-Instruct's fixed 0.7 with the near-dedup
        floor flags 25 %.
    max_threshold: calibration never raises the threshold above this, however alike
        the seeds are: a row above it is a copy with cosmetic edits.
    min_seeds: fewer seeds than this: no calibration.
    calibration_sample: at most this many seeds (a fixed sample) are scored, each
        against all the seeds of its cell: with 10,000 seeds in one cell, 1,000 take
        about 5 s when a run starts (10,000 in 77 cells: 0.3 s). More is a closer
        estimate of the quantile and slower.
    boilerplate_df, boilerplate_lift, boilerplate_min_items: a word pair found in
        more than ``boilerplate_df`` of a cell's generated rows and at least
        ``boilerplate_lift`` times as often as among the real rows (the cell's, else
        its label's, leaning on all seeds where they are few), beyond what chance
        explains, is template phrasing and
        left out of generated rows; counted once the cell has
        ``boilerplate_min_items`` generated rows. Lower ``boilerplate_df``
        recognises templates only some rows use; 1.0 disables the guard.
    tokenizer: "unicode" (default) tokenises any script, with one token per CJK
        character; "rouge_score" reproduces Google's rouge_score exactly, ASCII only
        (non-English text scores 0 against everything and always passes). On English
        text both give the same scores.
    action: "reject" drops the candidate; "review" sends it to a human, who sees the
        nearest item's id in the reason.
    """

    kind: Literal["diversity"] = "diversity"
    threshold: float = Field(default=0.7, ge=0.0, le=1.0)
    calibrate: bool = True
    quantile: float = Field(default=0.99, gt=0.5, lt=1.0)
    max_threshold: float = Field(default=0.95, ge=0.0, le=1.0)
    min_seeds: int = Field(default=20, ge=2)
    calibration_sample: int = Field(default=1_000, ge=100)
    boilerplate_df: float = Field(default=0.1, gt=0.0, le=1.0)
    boilerplate_lift: float = Field(default=2.0, ge=1.0)
    boilerplate_min_items: int = Field(default=5, ge=2)
    tokenizer: TokenizerName = "unicode"
    action: Literal["reject", "review"] = "reject"


Bigram = tuple[str, str]


def _bigrams(tokens: Sequence[str]) -> set[Bigram]:
    return set(zip(tokens, tokens[1:], strict=False))


# A row left with fewer of its own tokens than this is compared whole: a template
# leaves each row its own words, a text repeated with a word changed leaves one.
_MIN_OWN = 3
# Without real rows to compare with, nothing tells a template from phrasing that is
# merely common ("Write a ..." in instructions): only what more than half of a cell's
# generated rows share counts.
_SHARE_WITHOUT_REFERENCE = 0.5


def strip_boilerplate(tokens: Sequence[str], boilerplate: frozenset[Bigram]) -> list[str]:
    """The tokens not covered by a boilerplate word pair; all of them if too few are
    left."""
    if not boilerplate or len(tokens) < 2:
        return list(tokens)
    covered = [False] * len(tokens)
    for i in range(len(tokens) - 1):
        if (tokens[i], tokens[i + 1]) in boilerplate:
            covered[i] = covered[i + 1] = True
    rest = [t for t, c in zip(tokens, covered, strict=True) if not c]
    return rest if len(rest) >= min(_MIN_OWN, len(tokens)) else list(tokens)


def _strip_rows(
    words: np.ndarray, lengths: np.ndarray, boilerplate: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`strip_boilerplate` of many rows at once: the rows as word numbers, one
    after another (row ``k`` has ``lengths[k]`` of them), the boilerplate as pairs of
    word numbers (``first << 32 | second``). The words left and each row's count."""
    if not len(boilerplate) or len(words) < 2:
        return words, lengths
    hit = np.isin(words[:-1].astype(np.int64) << 32 | words[1:], boilerplate)
    starts = np.cumsum(lengths)
    between = starts[(starts > 0) & (starts < len(words))]
    hit[between - 1] = False  # a row's last word and the next row's first
    covered = np.zeros(len(words), dtype=bool)
    covered[:-1] = hit
    covered[1:] |= hit
    left = np.r_[0, np.cumsum(~covered)][np.r_[0, starts]]
    own = left[1:] - left[:-1]
    whole = own < np.minimum(_MIN_OWN, lengths)
    covered &= ~np.repeat(whole, lengths)
    return words[~covered], np.where(whole, lengths, own)


def _id_key(id_: str) -> int:
    """An id as 64 bits (Python's own string hash, kept with the string): what the
    set of admitted ids holds instead of the string."""
    return hash(id_) & 0xFFFF_FFFF_FFFF_FFFF


def _digest(tokens: Sequence[str]) -> int:
    return digest64("\x00".join(tokens).encode("utf-8", "surrogatepass"))


class _Counts:
    """Word-pair document frequencies of a set of rows (each distinct row once).

    ``frequent`` holds every pair found in more than ``share`` of the rows (and maybe
    some that no longer are): boilerplate is looked for among those and a batch's own
    pairs, never by reading every pair of a cell that may hold 100,000 rows.
    """

    def __init__(self, share: float) -> None:
        self.counts: Counter[Bigram] = Counter()
        self.n = 0
        self.digests = DigestSet()
        self.share = share
        self.frequent: set[Bigram] = set()

    def add(self, tokens: Sequence[str]) -> bool:
        if not tokens:
            return False
        digest = _digest(tokens)
        if digest in self.digests:
            return False
        self.digests.add(digest)
        self.n += 1
        # A pair left out here has at most share x n rows, and n only grows.
        limit = self.share * self.n
        counts = self.counts
        for bigram in _bigrams(tokens):
            count = counts[bigram] = counts[bigram] + 1
            if count > limit:
                self.frequent.add(bigram)
        return True

    def prune(self) -> None:
        limit = self.share * self.n
        self.frequent = {b for b in self.frequent if self.counts[b] > limit}

    def with_batch(self, batch: Iterable[Sequence[str]]) -> tuple[int, Counter[Bigram]]:
        """The number of distinct rows and the counts of the pairs that could be
        boilerplate once ``batch`` is counted in; nothing is changed."""
        extra: Counter[Bigram] = Counter()
        n = self.n
        digests: set[int] = set()
        for tokens in batch:
            if not tokens:
                continue
            digest = _digest(tokens)
            if digest in self.digests or digest in digests:
                continue
            digests.add(digest)
            extra.update(_bigrams(tokens))
            n += 1
        counts = self.counts
        out = Counter({b: counts[b] for b in self.frequent})
        for bigram, count in extra.items():
            out[bigram] = counts[bigram] + count
        return n, out


@dataclass
class _Cell:
    generated: _Counts
    seeds: list[tuple[str, Sequence[str]]] = field(default_factory=list)
    # The seeds' tokens as word numbers too, one after another.
    seed_words: array[int] = field(default_factory=lambda: array("i"))
    seed_lengths: array[int] = field(default_factory=lambda: array("i"))
    # Kept generated rows: their ids, and their tokens as word numbers (see _words),
    # one flat array for the cell (4 bytes a token, not a tuple of references a row).
    row_ids: list[str] = field(default_factory=list)
    row_words: array[int] = field(default_factory=lambda: array("i"))
    row_starts: array[int] = field(default_factory=lambda: array("q", [0]))

    def add_row(self, id_: str, words: Sequence[int]) -> None:
        self.row_ids.append(id_)
        self.row_words.extend(words)
        self.row_starts.append(len(self.row_words))

    # The last index built: the seeds and kept rows, the rows stripped of boilerplate.
    index: RougeIndex | None = None
    boilerplate: frozenset[Bigram] = frozenset()
    seed_index: RougeIndex | None = None  # the seeds alone, for stripped candidates


class DiversityFilter(Filter):
    """Per cell, the max ROUGE-L F of each candidate against seeds, kept rows and the
    candidates kept earlier in the same batch, above a threshold calibrated on the
    seeds.

    A reject's score is that max, and it names the nearest item and the threshold;
    among equally near items the smallest id is named, so a resumed run, which loads
    kept rows in store order, writes the same reasons. The search is exact for every
    item that could exceed the threshold and reads nothing else (see
    :meth:`RougeIndex.nearest_tokens`'s ``floor``): the postings of the rarest of a
    candidate's words, as many as could lift a row above the threshold, which grow
    with the cell (``bench/scale.py``'s one
    cell: 0.05 ms of CPU per search at 10,000 rows, 0.19 at 100,000). A kept row's
    score is its nearest among the items that could have exceeded the threshold (by
    the tokens they share), a lower bound of its nearest ROUGE-L; 0.0 when none could.
    """

    name = "diversity"
    version = "2"

    def __init__(self, params: DiversityParams, ctx: FilterContext) -> None:
        self.params = params
        self.ctx = ctx
        self._cells: dict[CellKey, _Cell] = {}
        self._ids = DigestSet()  # of the ids admitted: hash(id), 64 bits
        self._refs: dict[tuple[str, str], PhraseCounts[Bigram]] = {}
        # Every distinct word once, numbered: a kept row's tokens are stored as their
        # numbers (a cell can hold 100,000 rows), and the indexes share the numbering,
        # so that one is built from those numbers at once.
        self._words: dict[str, int] = {}
        # The last batch decided, by text: its tokens, which ``admit`` needs again.
        self._tokenized: dict[str, list[str]] = {}
        self.threshold = self._calibrate()

    def _cell(self, cell: CellKey) -> _Cell:
        state = self._cells.get(cell)
        if state is None:
            state = self._cells[cell] = _Cell(_Counts(self.params.boilerplate_df))
        return state

    def _tokens(self, text: str) -> list[str]:
        return tokenize(text, self.params.tokenizer)

    def _numbered(self, tokens: Sequence[str]) -> list[int]:
        words = self._words
        return [words.setdefault(t, len(words)) for t in tokens]

    def _index(self) -> RougeIndex:
        return RougeIndex(self.params.tokenizer, self._words)

    # --- the Filter contract -------------------------------------------------------

    def prepare(self, seen: Iterable[SeenItem]) -> None:
        """Index the seeds and kept rows; calibrate the threshold on the seeds."""
        for s in seen:
            if not self._ids.add(_id_key(s.id)):
                continue
            tokens = self._tokens(s.text)
            state = self._cell(s.cell)
            if s.source is Source.REAL:
                state.seeds.append((s.id, tokens))
                state.seed_words.extend(self._numbered(tokens))
                state.seed_lengths.append(len(tokens))
                for key in (("cell", str(s.cell)), ("label", s.cell.label), ("all", "")):
                    self._refs.setdefault(key, PhraseCounts()).add(_bigrams(tokens))
            else:
                state.add_row(s.id, self._numbered(tokens))
                state.generated.add(tokens)
        for state in self._cells.values():
            state.generated.prune()
            state.index = state.seed_index = None  # rebuilt when next needed
        self.threshold = self._calibrate()

    def decide(self, batch: Sequence[Candidate]) -> list[Decision]:
        # Per cell: the boilerplate with this batch counted in, and an index under it.
        # Candidates kept here join that index for the rest of the batch; only
        # ``admit`` (what the whole chain kept) makes them permanent.
        tokens = [self._tokens(c.text) for c in batch]
        self._tokenized = dict(zip([c.text for c in batch], tokens, strict=True))
        by_cell: dict[CellKey, list[list[str]]] = {}
        for c, toks in zip(batch, tokens, strict=True):
            by_cell.setdefault(c.cell, []).append(toks)
        indexes: dict[CellKey, tuple[_Cell, RougeIndex, frozenset[Bigram], int]] = {}
        for cell, cell_tokens in by_cell.items():
            state = self._cell(cell)
            n, counts = state.generated.with_batch(cell_tokens)
            boilerplate = self._boilerplate(cell, n, counts)
            index = self._stored_index(state, boilerplate)
            indexes[cell] = (state, index, boilerplate, len(index))
        out = []
        limit = self.threshold
        try:
            for c, toks in zip(batch, tokens, strict=True):
                state, index, boilerplate, _ = indexes[c.cell]
                own = strip_boilerplate(toks, boilerplate)
                match = index.nearest_tokens(own, floor=limit.value)
                if len(own) != len(toks):
                    seeds = self._seed_index(state)
                    whole = seeds.nearest_tokens(toks, floor=limit.value)
                    if whole.key is not None and (whole.score, match.key or "") > (
                        match.score,
                        whole.key,
                    ):
                        match = whole
                if exceeds(match.score, limit.value):
                    reason = (
                        f"too_similar: rouge_l={match.score:.3f} with {match.key}"
                        f" (> {limit.value:.3f}: {limit.why()})"
                    )
                    if self.params.action == "review":
                        out.append(self.review(c, reason, score=match.score))
                    else:
                        out.append(self.reject(c, reason, score=match.score))
                else:
                    out.append(self.keep(c, score=match.score))
                    index.add_tokens(c.id, own)
        finally:
            for _, index, _, size in indexes.values():
                index.truncate(size)
        return out

    def admit(self, kept: Sequence[Candidate]) -> None:
        # A row can reach the filter twice (a seed also kept, an admit repeated after a
        # resume); a second copy would change nothing but the work per search.
        touched: set[CellKey] = set()
        for c in kept:
            if not self._ids.add(_id_key(c.id)):
                continue
            tokens = self._tokenized.get(c.text)
            if tokens is None:
                tokens = self._tokens(c.text)
            state = self._cell(c.cell)
            state.add_row(c.id, self._numbered(tokens))
            state.generated.add(tokens)
            touched.add(c.cell)
        for cell in touched:
            self._cells[cell].generated.prune()

    def calibration_table(self) -> FilterCalibration:
        return FilterCalibration(
            self.name, "ROUGE-L F of each seed's nearest other seed in its cell", (self.threshold,)
        )

    # --- state ---------------------------------------------------------------------

    def _seed_index(self, state: _Cell) -> RougeIndex:
        if state.seed_index is None:
            state.seed_index = self._index()
            for key, tokens in state.seeds:
                state.seed_index.add_tokens(key, tokens)
        return state.seed_index

    def _stored_index(self, state: _Cell, boilerplate: frozenset[Bigram]) -> RougeIndex:
        """The seeds and kept rows, the rows stripped of ``boilerplate``. The cell
        keeps the last one asked for: under the same boilerplate, the rows admitted
        since join it at once; under another, it is built again (see :meth:`_build`)."""
        if state.index is None or boilerplate != state.boilerplate:
            # Let the old one go first: a cell's index is its biggest object, and two at
            # once would set the peak memory of a big cell.
            state.index = None
            state.index = self._build(state, boilerplate)
            state.boilerplate = boilerplate
        else:
            indexed = len(state.index) - len(state.seeds)
            if indexed < len(state.row_ids):
                state.index.extend(*self._stripped_rows(state, boilerplate, indexed))
        return state.index

    def _build(self, state: _Cell, boilerplate: frozenset[Bigram]) -> RougeIndex:
        """The seeds and the kept rows stripped of ``boilerplate``: built again for
        most batches, as a batch's rows change which pairs are boilerplate."""
        keys, rows, lengths = self._stripped_rows(state, boilerplate, 0)
        index = self._index()
        index.extend(
            [key for key, _ in state.seeds] + keys,
            np.concatenate((np.frombuffer(state.seed_words, dtype=np.int32), rows)),
            np.concatenate((np.frombuffer(state.seed_lengths, dtype=np.int32), lengths)),
        )
        return index

    def _stripped_rows(
        self, state: _Cell, boilerplate: frozenset[Bigram], first: int
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The kept rows from the ``first``-th on, stripped of ``boilerplate``: their
        ids, their words left (as numbers) and how many each has left."""
        words = self._words
        pairs = [
            words[former] << 32 | words[latter]
            for former, latter in boilerplate
            if former in words and latter in words
        ]
        starts = np.frombuffer(state.row_starts, dtype=np.int64)[first:]
        rows, lengths = _strip_rows(
            np.frombuffer(state.row_words, dtype=np.int32)[starts[0] :],
            np.diff(starts),
            np.array(pairs, dtype=np.int64),
        )
        return state.row_ids[first:], rows, lengths

    def _reference(self, cell: CellKey) -> Callable[[Bigram], float] | None:
        """The real rows' share of each word pair: the cell's seeds (else its label's)
        with one extra row at the rate of all seeds (:func:`real_share`)."""
        wide = self._refs.get(("all", ""))
        if wide is None or not wide.n:
            return None
        narrow = self._refs.get(("cell", str(cell))) or self._refs.get(("label", cell.label))
        return partial(real_share, narrow=narrow, wide=wide)

    def _boilerplate(self, cell: CellKey, n: int, counts: Counter[Bigram]) -> frozenset[Bigram]:
        """The pairs of ``counts`` (those of ``n`` distinct generated rows that could be
        boilerplate) that are."""
        p = self.params
        if p.boilerplate_df >= 1.0 or n < p.boilerplate_min_items:
            return frozenset()
        ref = self._reference(cell)
        share = (
            p.boilerplate_df if ref is not None else max(p.boilerplate_df, _SHARE_WITHOUT_REFERENCE)
        )
        limit = share * n
        frequent = [bigram for bigram, count in counts.items() if count > limit]
        if ref is None or not frequent:
            return frozenset(frequent)
        # All at once: one binomial tail at a time costs more than the rest of a batch's
        # boilerplate check.
        flags = overused_many(
            np.array([counts[b] for b in frequent], dtype=np.float64),
            n,
            np.array([ref(b) for b in frequent], dtype=np.float64),
            share,
            p.boilerplate_lift,
        )
        return frozenset(compress(frequent, flags.tolist()))

    def _calibrate(self) -> Threshold:
        """The threshold the seeds imply: the quantile of their nearest-neighbour
        ROUGE-L within their own cells."""
        p = self.params
        if not p.calibrate:
            return fixed("cell", p.threshold)
        # Each distinct seed once: a seed stored twice says nothing about how alike
        # different real rows are (exact copies are exact dedup's business).
        distinct = {
            cell: list(dict.fromkeys(tuple(t) for _, t in state.seeds))
            for cell, state in self._cells.items()
        }
        seeds = [(cell, i) for cell, seqs in distinct.items() for i in range(len(seqs))]
        scores: list[float] = []
        if len(seeds) >= p.min_seeds:
            indexes: dict[CellKey, RougeIndex] = {}
            for at in sample_positions(len(seeds), p.calibration_sample):
                cell, i = seeds[at]
                index = indexes.get(cell)
                if index is None:
                    index = indexes[cell] = RougeIndex(p.tokenizer)
                    for k, seq in enumerate(distinct[cell]):
                        index.add_tokens(str(k), seq)
                scores.append(index.nearest_item(i).score)
        else:
            scores = [0.0] * len(seeds)
        cap = max(p.max_threshold, p.threshold)
        return calibrate(
            "cell", scores, floor=p.threshold, cap=cap, quantile=p.quantile, min_seeds=p.min_seeds
        )


@dataclass(frozen=True)
class DiversityFigures:
    """How varied a set of texts is (one cell's, for ``synth status``).

    distinct_1, distinct_2: unique unigrams / bigrams over all unigrams / bigrams of all
        texts (0.0 when there are none). Higher is more varied; they fall as a cell
        grows even when it stays varied, so compare cells of similar size.
    mean_nn_rouge_l, median_nn_rouge_l, max_nn_rouge_l: each text's highest ROUGE-L F
        against any other text, averaged / median / max. Lower is more varied; a max
        above the diversity threshold means near-duplicates got in (seeds are never
        filtered). None with fewer than 2 texts.
    texts: how many texts were given.
    nn_sampled: how many texts the nearest-neighbour figures were computed for. When
        less than ``texts``, a random sample (fixed seed) was scored, each sampled text
        against all texts, so the mean and median are unbiased estimates and the max
        is a lower bound.
    """

    texts: int
    distinct_1: float
    distinct_2: float
    mean_nn_rouge_l: float | None
    median_nn_rouge_l: float | None
    max_nn_rouge_l: float | None
    nn_sampled: int

    @property
    def sampled(self) -> bool:
        return self.nn_sampled < self.texts


def diversity_figures(
    texts: Sequence[str],
    *,
    tokenizer: TokenizerName = "unicode",
    max_sample: int = 300,
    seed: int = 0,
) -> DiversityFigures:
    """Distinct-1, distinct-2 and nearest-neighbour ROUGE-L of ``texts``.

    Parameters:
        texts: the texts of one cell.
        tokenizer: as the diversity filter's setting.
        max_sample: at most this many texts get their nearest neighbour searched, each
            against all texts, so the cost is ``max_sample x len(texts)`` pairs (300 x
            2,000 short texts takes about half a second). Larger is a closer estimate
            and slower; distinct-n always uses every text (it is linear).
        seed: the sample's random seed, fixed so that figures are reproducible.
    """
    if max_sample < 1:
        raise ValueError(f"max_sample must be >= 1, got {max_sample}")
    unigrams: set[str] = set()
    bigrams: set[tuple[str, str]] = set()
    n_uni = n_bi = 0
    for text in texts:
        tokens = tokenize(text, tokenizer)
        unigrams.update(tokens)
        bigrams.update(zip(tokens, tokens[1:], strict=False))
        n_uni += len(tokens)
        n_bi += max(0, len(tokens) - 1)
    distinct_1 = len(unigrams) / n_uni if n_uni else 0.0
    distinct_2 = len(bigrams) / n_bi if n_bi else 0.0

    if len(texts) < 2:
        return DiversityFigures(len(texts), distinct_1, distinct_2, None, None, None, 0)
    queries = None
    if len(texts) > max_sample:
        queries = sorted(random.Random(seed).sample(range(len(texts)), max_sample))
    scores = nearest_neighbour_scores(texts, tokenizer, queries=queries)
    return DiversityFigures(
        texts=len(texts),
        distinct_1=distinct_1,
        distinct_2=distinct_2,
        mean_nn_rouge_l=statistics.fmean(scores),
        median_nn_rouge_l=statistics.median(scores),
        max_nn_rouge_l=max(scores),
        nn_sampled=len(scores),
    )
