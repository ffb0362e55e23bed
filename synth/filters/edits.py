"""Token edit distance: how a near duplicate is defined.

A near duplicate is a text with a few tokens deleted, inserted or replaced; "5-15 %
edits" means the token Levenshtein distance is 5-15 % of the longer text's length.
Shingle Jaccard is a proxy for that share that the MinHash index can search; on short
texts it is a poor one (one replaced word of eight leaves a word-bigram Jaccard of
0.56, while two real messages of one intent often share more), so the near-duplicate
filter checks the pairs its index proposes by this measure too.
"""

from __future__ import annotations

from collections.abc import Sequence

from rapidfuzz.distance import Levenshtein


def edit_distance(a: Sequence[int], b: Sequence[int], cutoff: int | None = None) -> int:
    """Levenshtein distance between two token sequences (unit cost insert, delete,
    replace); with a ``cutoff``, any distance above it is returned as ``cutoff + 1``.

    rapidfuzz's bit-parallel Levenshtein (Hyyro's form of Myers' algorithm, in C++):
    0.3 us for a pair of 16-token texts, where the same algorithm over Python integers
    took 5.7 us, and near dedup checks a few such pairs for every candidate.
    """
    return int(Levenshtein.distance(a, b, score_cutoff=cutoff))


def edit_share(a: Sequence[int], b: Sequence[int]) -> float:
    """Token edits between two sequences over the longer one's length: 0.0 equal, 1.0
    nothing in common in order. Two empty sequences are equal."""
    longer = max(len(a), len(b))
    return edit_distance(a, b) / longer if longer else 0.0


def within(a: Sequence[int], b: Sequence[int], share: float) -> float | None:
    """The edit share of the pair if it is at most ``share`` (with a margin for
    floating point: 3 edits of 20 tokens is within 0.15), else None. The length
    difference alone is a lower bound on the distance, so most pairs far apart in
    length are settled without computing it."""
    longer = max(len(a), len(b))
    if not longer:
        return 0.0
    allowed = share * longer + 1e-9
    if abs(len(a) - len(b)) > allowed:
        return None
    d = edit_distance(a, b, int(allowed))
    return d / longer if d <= allowed else None


# A pair whose shorter text has fewer tokens than this is near by its token edits
# alone, and one token edited is always near (15 % of six tokens allows none). In a
# short text each word moves the word-pair Jaccard by 0.1-0.2, and two real messages
# of different intents ("Can I get a card in person?", "Where can I get a card in the
# EU?") reach a Jaccard of 0.5 by sharing a few common phrases; the edits measure the
# change itself. On the quality benchmark (three draws) a Jaccard rule on short pairs
# rejected 0.3-1.7 % of fresh real rows and caught no near copy the edits missed.
SHORT_TEXT_TOKENS = 10

# The share of token edits that makes two texts near duplicates, by default.
MAX_EDITS = 0.15


def edit_cut(share: float, a: int, b: int) -> float:
    """The share of edits within which a pair of ``a`` and ``b`` tokens is near:
    ``share``, or one token in a pair too short for its shingle Jaccard to say "near"
    (see ``SHORT_TEXT_TOKENS``)."""
    longer = max(a, b)
    return max(share, 1.0 / longer) if longer and min(a, b) < SHORT_TEXT_TOKENS else share
