"""Diversity: drop a candidate too close (ROUGE-L) to a seed or kept row of its cell.

This is Self-Instruct's and Alpaca's rule: a generated instruction is discarded when
its ROUGE-L F-measure against any seed or any instruction accepted so far exceeds 0.7.
Here the comparison is per cell (slice x label): two rows of different labels may share
wording, and a cell's own near-duplicates are what make it repetitive.

Also :func:`diversity_figures`, the per-cell numbers ``synth status`` reports.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from synth.filters.base import Filter, FilterContext, FilterParams
from synth.filters.rouge import RougeIndex, TokenizerName, nearest_neighbour_scores, tokenize
from synth.records import Candidate, CellKey, Decision, SeenItem

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

    threshold: a candidate whose ROUGE-L F against a seed or kept row of its cell is
        *above* this is too similar (exactly equal passes, see :func:`exceeds`). 0.7 is
        Self-Instruct's and Alpaca's value. Lower keeps a cell more varied and costs more
        generation (more rejects per kept row); short texts (intents of 5-10 words)
        reach high scores on a shared phrase, so classification cells may need 0.8.
        1.0 turns the filter off.
    tokenizer: "unicode" (default) tokenises any script, with one token per CJK
        character; "rouge_score" reproduces Google's rouge_score exactly, ASCII only
        (non-English text scores 0 against everything and always passes). On English
        text both give the same scores.
    action: "reject" drops the candidate; "review" sends it to a human, who sees the
        nearest item's id in the reason.
    """

    kind: Literal["diversity"] = "diversity"
    threshold: float = Field(default=0.7, ge=0.0, le=1.0)
    tokenizer: TokenizerName = "unicode"
    action: Literal["reject", "review"] = "reject"


class DiversityFilter(Filter):
    """Per cell, the max ROUGE-L F of each candidate against seeds, kept rows and the
    candidates kept earlier in the same batch.

    Every decision's score is that max (0.0 for a first row of its cell); a reject
    names the nearest item. Among equally near items the smallest id is named, so a
    resumed run, which loads kept rows in store order, writes the same reasons.
    """

    name = "diversity"
    version = "1"

    def __init__(self, params: DiversityParams, ctx: FilterContext) -> None:
        self.params = params
        self.ctx = ctx
        self._cells: dict[CellKey, RougeIndex] = {}
        self._ids: set[str] = set()

    def _index(self, cell: CellKey) -> RougeIndex:
        index = self._cells.get(cell)
        if index is None:
            index = self._cells[cell] = RougeIndex(self.params.tokenizer)
        return index

    def _add(self, item_id: str, text: str, cell: CellKey) -> None:
        # A row can reach the filter twice (a seed also kept, an admit repeated after a
        # resume); a second copy would change nothing but the work per search.
        if item_id not in self._ids:
            self._ids.add(item_id)
            self._index(cell).add(item_id, text)

    def prepare(self, seen: Iterable[SeenItem]) -> None:
        for item in seen:
            self._add(item.id, item.text, item.cell)

    def decide(self, batch: Sequence[Candidate]) -> list[Decision]:
        # Candidates kept here join their cell's index for the rest of the batch and are
        # taken out again at the end: only ``admit`` (what the whole chain kept) makes
        # them permanent.
        sizes = {cell: len(index) for cell, index in self._cells.items()}
        out = []
        try:
            for c in batch:
                index = self._index(c.cell)
                sizes.setdefault(c.cell, len(index))
                match = index.nearest(c.text)
                if exceeds(match.score, self.params.threshold):
                    reason = f"too_similar: rouge_l={match.score:.3f} with {match.key}"
                    if self.params.action == "review":
                        out.append(self.review(c, reason, score=match.score))
                    else:
                        out.append(self.reject(c, reason, score=match.score))
                else:
                    out.append(self.keep(c, score=match.score))
                    index.add(c.id, c.text)
        finally:
            for cell, size in sizes.items():
                self._cells[cell].truncate(size)
        return out

    def admit(self, kept: Sequence[Candidate]) -> None:
        for c in kept:
            self._add(c.id, c.text, c.cell)


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
