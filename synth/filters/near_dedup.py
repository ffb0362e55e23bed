"""Near dedup: MinHash LSH over shingles, every match verified by exact Jaccard and by
token edit distance.

A candidate is rejected when the Jaccard similarity of its shingle set with a seed, a
kept row or an earlier kept candidate of the same batch reaches the threshold for
that pair: one for a row of the same cell (slice x label), one for a row of another
cell. The LSH index only proposes pairs; the decision is always the exact Jaccard of
the stored shingle sets, so LSH false positives never reject anything.

Thresholds calibrated on the seeds: real rows of one intent are often near
duplicates of each other by any lexical measure (in BANKING77, one train message in
twenty is within one word of another), and the configured ``threshold``, measured on
planted edits of longer texts, would reject them. So each threshold is the higher of
``threshold`` and the ``quantile`` of the seeds' own nearest-neighbour Jaccard, over
the same kind of pair (see :mod:`synth.filters.calibration`). Rows of different labels
are further apart than rows of one label, so a near copy of another label's seed (a
row that contradicts the seed's label) is still caught at a lower score.

Token edits: a near duplicate is a text with a few tokens deleted, inserted or
replaced, and on short texts Jaccard measures that badly. One replaced word of eight
leaves a word-bigram Jaccard of 0.56, below the thresholds that short real rows of one
intent calibrate to (they share more with their nearest seed than that), so a
calibrated threshold alone lets one-word edits of short rows through. Every pair the
index proposes is therefore also checked by its token Levenshtein distance over the
longer text's length: within ``max_edits`` it is a near duplicate whatever its
Jaccard (reason ``near_dup: e=...``; a pair that reaches its Jaccard threshold keeps
the Jaccard reason). The index is tuned to propose pairs down to ``lsh_threshold``,
below the Jaccard that a 15 % edit of a short text can fall to, so those pairs reach
the check. Long texts are caught by Jaccard as before (a moved paragraph is many
token edits and little change in shingles).

Template boilerplate: a generation template makes rows open and close alike, and
those shared shingles would make distinct rows look like copies, across labels too
(the template is the same for every cell). A shingle is boilerplate in a cell when
it is found in more than ``boilerplate_df`` of the cell's generated items and at least
``boilerplate_lift`` times as often there as among the real rows (the cell's seeds,
or its label's, leaning on all seeds where they are few), beyond what chance explains.
So
phrasing the user's own rows share ("my card") is never boilerplate however common,
and a template is recognised however many seeds the cell has. Boilerplate is left out
of both the signatures and the verification Jaccard, once the cell has
``boilerplate_min_items`` generated items; the generated items counted are the cell's
kept rows plus, while a batch is decided, that batch's candidates for the cell, so a
new template is recognised in its first batch. A repeated set of shingles counts
once. Against a seed, the seed's own shingles always count: a model that repeats one
seed with small edits in many rows makes that seed's phrasing frequent among the
generated rows, and must not turn its copies into boilerplate.

A template that each cell uses in only a few of its rows is not frequent in any cell,
yet it is in all of them: shingles that the generated rows of at least
``boilerplate_cells`` cells share, and that all generated rows use ``boilerplate_lift``
times as often as the seeds of their own cells do, beyond chance, are boilerplate
across labels, left out of the verification (Jaccard and token edits) but not of the
signatures.

Frequency cannot tell a template from a model repeating one generated text with
small edits in many of a cell's rows: both are "shared by most generated items". The
check runs after exact dedup in the chain, and once a cell's rows are kept, only they
count.

State is a function of the kept items alone (a cell is re-signed when its
boilerplate changes, the calibration depends on the seeds only), so a fresh filter
prepared with everything kept so far decides exactly as one that ran from the start.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import repeat
from typing import Literal, NamedTuple

import numpy as np
from pydantic import Field, model_validator

from synth.filters.bands import BandIndex, distinct, optimal_bands
from synth.filters.base import Filter, FilterContext, FilterParams
from synth.filters.calibration import (
    FilterCalibration,
    PhraseCounts,
    Threshold,
    calibrate,
    fixed,
    nearest_jaccard,
    overused_many,
    real_share,
    real_shares,
    sample_positions,
)
from synth.filters.digests import DigestMap, DigestSet, digest64
from synth.filters.edits import SHORT_TEXT_TOKENS, edit_cut, within
from synth.filters.shingles import (
    ShingleKind,
    jaccard,
    minhash_signatures,
    shingle_hashes,
    shingle_sequence,
    token_hashes,
)
from synth.records import Candidate, CellKey, Decision, SeenItem, Source, Verdict

DEFAULT_N: dict[str, int] = {"word": 2, "char": 5}


class NearDedupParams(FilterParams):
    """Settings of the near-duplicate filter.

    The floor (``threshold``) was measured in ``bench/dedup.py`` (100,000 short texts
    built from real sentences, with planted exact copies and near copies of 5-15 %
    token edits):

    ==================  ======  =========  ===============================
    shingles, threshold recall  precision  PAWS non-paraphrase pairs merged
    ==================  ======  =========  ===============================
    word 2, 0.5 (dflt)  0.990   0.999      53 %
    word 2, 0.55        0.956   1.000      39 %
    word 3, 0.4         0.939   0.997      27 %
    char 5, 0.5         0.989   0.996      95 %
    word 1, 0.7         0.989   1.000      99 %
    word 5, 0.8         0.343   1.000      0.2 %
    ==================  ======  =========  ===============================

    (Rows other than the default from a 20,000-text run.) Word 2-grams at 0.5 are the
    setting that finds >= 0.95 of the edited copies while merging the fewest PAWS
    pairs: sentences of the same words in another order ("flights from A to B" /
    "from B to A"). Those are 5-15 % token edits too, so no lexical setting catches
    edits and spares them.

    That floor holds where real rows are unlike each other. Short rows of one intent
    are not: of 150 real BANKING77 messages, 13 % share half their word pairs with a
    seed of their own intent, so the thresholds are calibrated on the seeds (module
    docstring). Measured with ``bench/calibration.py --frontier`` (the demo's 171
    seeds; fresh real messages flagged, planted near copies caught):

    ======================================  ======  ==========  ==============
    setting                                 fresh   near copy   other intent
    ======================================  ======  ==========  ==============
    defaults (q95 other cells, q99 same)    11 %    0.99        1.00
    ``same_cell_quantile = 0.95``           16 %    0.99        1.00
    ``quantile = 0.99``                     9 %     0.99        0.85
    no calibration                          25 %    1.00        1.00
    ======================================  ======  ==========  ==============

    (With the diversity filter of the same chain, which judges closeness within a
    cell too.)

    Attributes:
        shingle: ``"word"`` shingles are n consecutive tokens; ``"char"`` shingles are
            n consecutive characters of the tokens joined by spaces. Character
            shingles tolerate inflection and typos ("card"/"cards") but also match
            texts that merely share words in any order.
        n: Shingle length (default 2 for words, 5 for characters). Larger n demands
            longer verbatim runs: fewer false matches between texts that share words,
            more misses after small edits (one changed word breaks n shingles).
        threshold: The floor of the Jaccard threshold: the calibrated thresholds are
            never lower. Lower catches heavier edits and merges more distinct texts.
        calibrate: Raise the thresholds to the seeds' own nearest-neighbour Jaccard
            (same cell, other cells) where that is higher. Off: ``threshold`` for
            every pair.
        quantile: Which quantile of the seeds' nearest-neighbour Jaccard across
            labels sets the other-cell threshold. A generated row is rejected when it
            is closer to a row of another label than all but ``1 - quantile`` of the
            seeds are to theirs: higher rejects fewer rows like the user's own and
            lets more near copies of another label's rows (label noise) through.
        same_cell_quantile: The same within a cell. Higher by default than
            ``quantile``: a near copy within a cell is only redundant, not
            contradictory, and the diversity filter judges closeness within a cell
            as well.
        max_threshold: Calibration never raises a threshold above this, however
            many near duplicates the seeds hold.
        max_edits: A pair whose token Levenshtein distance is at most this share of
            the longer text's tokens is a near duplicate, whatever its Jaccard. 0.15
            is the definition the filter is measured against (copies with 5-15 %
            token edits). Tokens covered by template phrasing that both rows contain
            are left out first; here a template is boilerplate that more than half of
            a cell's generated rows have, or that is shared across cells, since
            phrasing a model repeats in a fraction of a cell's rows is also frequent
            enough for ``boilerplate_df`` and leaving it out would make a one-word
            edit of a short row look like a new text. Real short rows come this close too: of
            BANKING77's 10,003 train messages, 2.6 % have a message of the same
            intent within 10 % token edits, 9.7 % within 15 % and 16.8 % within
            20 % (CLINC150's 15,000: 3.7, 13.4 and 24.8 %); those pairs are the
            same request in nearly the same words ("How do I top up?" / "How can I
            top up?" is 20 %), which is what a near duplicate is. Lower spares more of
            them and misses heavier edits; 0 turns the check off (Jaccard only).
        min_seeds: Fewer seeds than this: no calibration, ``threshold`` everywhere.
        calibration_sample: At most this many seeds are scored against all seeds (a
            fixed sample), so preparing stays fast for large seed sets.
        num_perm: MinHash permutations. More gives the LSH a sharper cut-off (fewer
            missed pairs near the threshold, fewer pairs to verify) at linear cost in
            time and memory.
        lsh_weights: ``(false_positive_weight, false_negative_weight)`` for
            datasketch's choice of LSH bands and rows, tuned to the floor. Every LSH
            hit is verified, so the default leans towards not missing pairs: 42 bands
            of 3 rows at the default ``lsh_threshold`` find 99.6 % of pairs at 0.5
            and 94 % at 0.4, at about 480 bytes of index per kept row
            (:mod:`synth.filters.bands`). Proposals whose signatures estimate a
            Jaccard 3.5 standard errors below this one are chance collisions and
            are not verified.
        scope: ``"global"`` compares against everything kept, across labels (a near
            copy under another label is a contradiction as much as a duplicate);
            ``"cell"`` only within the same slice and label.
        boilerplate_df: A shingle found in more than this share of a cell's generated
            items (and ``boilerplate_lift`` times as often as among the real rows) is
            template boilerplate and ignored. Lower recognises a template that only
            some rows use; 1.0 disables the guard.
        boilerplate_lift: How much more common among generated rows than among real
            ones a shingle must be to count as boilerplate. Lower also ignores the
            model's favourite phrases (which are no evidence of copying either);
            higher ignores only what the real rows never say.
        boilerplate_min_items: Generated items a cell needs before shingle
            frequencies are trusted. Lower recognises templates sooner; higher keeps
            a small cell's chance phrases from counting as boilerplate.
        boilerplate_cells: A shingle the generated rows of at least this many cells
            contain, and that all generated rows use ``boilerplate_lift`` times as
            often as their cells' seeds, beyond chance, is boilerplate everywhere,
            however few rows of each cell have it: a template mixed into every cell's
            rows. Three cells, because a model repeating a text with small edits does
            it within one cell, and a near copy under another label adds one more;
            0 disables it.
        lsh_threshold: The Jaccard the LSH's bands and rows are tuned for (with
            ``lsh_weights``; the lower of this and ``threshold`` is used). It only
            decides which pairs are verified. A 15 % token edit of a short text can
            fall to a word-bigram Jaccard of 0.5 (one word replaced in seven leaves
            4 of 8 bigrams); at 0.4 the index has 42 bands of 3 rows and proposes
            99.6 % of pairs at 0.5 (87 % at the 0.5 tuning), at the cost of more
            pairs to verify.
        seed: Seeds the MinHash permutations.
    """

    kind: Literal["near_dedup"] = "near_dedup"
    shingle: ShingleKind = "word"
    n: int | None = Field(default=None, ge=1, le=64)
    threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    calibrate: bool = True
    quantile: float = Field(default=0.95, gt=0.5, lt=1.0)
    same_cell_quantile: float = Field(default=0.99, gt=0.5, lt=1.0)
    max_threshold: float = Field(default=0.8, gt=0.0, le=1.0)
    max_edits: float = Field(default=0.15, ge=0.0, lt=1.0)
    min_seeds: int = Field(default=20, ge=2)
    calibration_sample: int = Field(default=2_000, ge=100)
    num_perm: int = Field(default=128, ge=16, le=1024)
    lsh_weights: tuple[float, float] = Field(default=(0.1, 0.9), strict=False)
    lsh_threshold: float = Field(default=0.4, gt=0.0, le=1.0)
    scope: Literal["global", "cell"] = "global"
    boilerplate_df: float = Field(default=0.1, gt=0.0, le=1.0)
    boilerplate_lift: float = Field(default=2.0, ge=1.0)
    boilerplate_min_items: int = Field(default=5, ge=2)
    boilerplate_cells: int = Field(default=3, ge=0)
    seed: int = Field(default=1, ge=0)

    @model_validator(mode="after")
    def _weights_sum_to_one(self) -> NearDedupParams:
        fp, fn = self.lsh_weights
        if min(fp, fn) < 0 or abs(fp + fn - 1.0) > 1e-9:
            raise ValueError("lsh_weights must be two non-negative numbers summing to 1")
        return self

    @property
    def ngram(self) -> int:
        return self.n if self.n is not None else DEFAULT_N[self.shingle]


@dataclass
class NearDedupStats:
    """Counters since the filter was built: cheap, for logs and benchmarks."""

    checked: int = 0
    rejected: int = 0
    lsh_candidates: int = 0  # pairs the LSH proposed
    verified: int = 0  # pairs whose exact Jaccard was computed
    rebuilds: int = 0  # cells re-signed because their boilerplate changed


Hashes = frozenset[int]
_NONE: Hashes = frozenset()
_HASH_BITS = (1 << 64) - 1  # a str's hash as an unsigned 64-bit digest


@dataclass(frozen=True, slots=True)
class _Item:
    """One row: its shingle hashes (sorted, unique) and token hashes (in order) packed
    one after the other. Kept rows are not held as these (see :class:`_Items`)."""

    id: str
    cell: str  # one string object per cell, shared by its rows
    packed: bytes | array[int]  # the shingle hashes, then the token hashes, as uint64
    n_shingles: int
    seed: bool = False  # a real row: its own shingles are never boilerplate against it

    @classmethod
    def of(
        cls, id_: str, cell: str, shingles: np.ndarray, tokens: np.ndarray, seed: bool = False
    ) -> _Item:
        return cls(id_, cell, shingles.tobytes() + tokens.tobytes(), len(shingles), seed)

    @property
    def shingles(self) -> np.ndarray:
        """Sorted unique 64-bit shingle hashes of the full text (a set is built only for
        the pairs verified)."""
        return np.frombuffer(self.packed, dtype=np.uint64, count=self.n_shingles)

    @property
    def tokens(self) -> np.ndarray:
        """The text's token hashes in order, for the edit distance."""
        return np.frombuffer(self.packed, dtype=np.uint64, offset=8 * self.n_shingles)

    @property
    def n_tokens(self) -> int:
        """How many tokens the text has, without making the array (a verified pair
        asks for both rows' counts, and most pairs need nothing more)."""
        return memoryview(self.packed).nbytes // 8 - self.n_shingles

    def grams(self, n: int) -> list[int]:
        """The token n-gram hashes in order (:func:`shingle_sequence`)."""
        values: list[int] = shingle_sequence(self.tokens, n).tolist()
        return values


class _Items:
    """The kept rows, column by column: every row's hashes in one array, its cell, seed
    flag and where its hashes start in others, and a map from id to row number.

    An object and a bytes object per row cost ~110 bytes of headers beside the hashes,
    and small objects that live as long as the run, allocated among a batch's
    short-lived ones, leave the allocator's pages part-used once those are freed.
    Here a row costs its hashes, 21 bytes, and 16 in a :class:`DigestMap` from its id's
    hash to its number (a dict entry and an int cost ~60); an :class:`_Item` is made
    when one is asked for.
    """

    def __init__(self) -> None:
        self._row = DigestMap()  # hash(id) -> row number
        self._clashes: dict[str, int] = {}  # the rows whose id's hash another has
        self._ids: list[str] = []
        self._cell_names: list[str] = []
        self._cell_codes: dict[str, int] = {}
        self._cell_of = array("i")
        self._seed = bytearray()
        self._n_shingles = array("i")
        self._starts = array("q", [0])
        self._values = array("Q")

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, id_: object) -> bool:
        return isinstance(id_, str) and self._number(id_) is not None

    def __getitem__(self, id_: str) -> _Item:
        row = self._number(id_)
        if row is None:
            raise KeyError(id_)
        return self._at(row)

    def get(self, id_: str) -> _Item | None:
        row = self._number(id_)
        return None if row is None else self._at(row)

    def _number(self, id_: str) -> int | None:
        row = self._row.get(hash(id_) & _HASH_BITS)
        if row is not None and self._ids[row] == id_:
            return row
        return self._clashes.get(id_)

    def values(self) -> Iterator[_Item]:
        return (self._at(row) for row in range(len(self._ids)))

    def add(self, item: _Item) -> None:
        """Add a row whose id is not here yet."""
        row = len(self._ids)
        if self._row.setdefault(hash(item.id) & _HASH_BITS, row) != row:
            self._clashes[item.id] = row
        self._ids.append(item.id)
        code = self._cell_codes.get(item.cell)
        if code is None:
            code = self._cell_codes[item.cell] = len(self._cell_names)
            self._cell_names.append(item.cell)
        self._cell_of.append(code)
        self._seed.append(item.seed)
        self._n_shingles.append(item.n_shingles)
        self._values.frombytes(item.packed)
        self._starts.append(len(self._values))

    def rows(self, ids: Sequence[str]) -> list[tuple[_Item, list[int]] | None]:
        """Each of ``ids``'s row and its shingles as a list, None for an id not here:
        the numbers found in one binary search, not one per id (a candidate in a big
        cell has tens of proposals, each a lookup of microseconds)."""
        digests = np.fromiter(
            (hash(id_) & _HASH_BITS for id_ in ids), dtype=np.uint64, count=len(ids)
        )
        out: list[tuple[_Item, list[int]] | None] = []
        for id_, row in zip(ids, self._row.get_many(digests).tolist(), strict=True):
            if row < 0 or self._ids[row] != id_:
                row = self._clashes.get(id_, -1)
            if row < 0:
                out.append(None)
                continue
            start = self._starts[row]
            shingles = self._values[start : start + self._n_shingles[row]].tolist()
            out.append((self._at(row), shingles))
        return out

    def _at(self, row: int) -> _Item:
        packed = self._values[self._starts[row] : self._starts[row + 1]]  # a copy
        cell, seed = self._cell_names[self._cell_of[row]], bool(self._seed[row])
        return _Item(self._ids[row], cell, packed, self._n_shingles[row], seed)

    def having(self, cell: str, hashes: Iterable[int], below: int) -> list[str]:
        """The ids of the rows of ``cell`` among the first ``below`` whose shingles
        include any of ``hashes``: read from the columns, 65,536 rows at a time."""
        code = self._cell_codes.get(cell)
        wanted = np.fromiter(hashes, dtype=np.uint64)
        if code is None or not len(wanted):
            return []
        found: list[str] = []
        # Views of the arrays, dropped on return (an array cannot grow while viewed).
        values = np.frombuffer(self._values, dtype=np.uint64)
        starts = np.frombuffer(self._starts, dtype=np.int64)
        sizes = np.frombuffer(self._n_shingles, dtype=np.int32)
        cells = np.frombuffer(self._cell_of, dtype=np.int32)
        for lo in range(0, below, 1 << 16):
            hi = min(below, lo + (1 << 16))
            first = starts[lo]
            hit = np.isin(values[first : starts[hi]], wanted)
            counts = np.concatenate(([0], np.cumsum(hit, dtype=np.int32)))
            begin = starts[lo:hi] - first
            rows = (counts[begin + sizes[lo:hi]] > counts[begin]) & (cells[lo:hi] == code)
            found += [self._ids[lo + r] for r in np.flatnonzero(rows).tolist()]
        return found


# A row left with fewer of its own shingles than this once boilerplate is taken out is
# compared whole. A template leaves each row its own words ("lost my card" keeps three
# word pairs with the junction); a text the model repeats with one word changed leaves
# one or two, and must still meet its twins as a near duplicate, however often it
# is repeated.
_MIN_OWN = 3
# The edit distance leaves out only stretches of boilerplate at least this many
# tokens long: a template's opening or closing is a phrase, while a lone frequent word
# pair inside a short row ("from my", "i'd like") is phrasing; taking it out of an
# eight-token row would leave six, and make one changed word count as 17 % of it.
_MIN_TEMPLATE_RUN = 4
# Without real rows to compare with, nothing tells a template from phrasing that is
# merely common, and only what more than half of a cell's generated rows share counts.
_SHARE_WITHOUT_REFERENCE = 0.5


def _without(shingles: np.ndarray, drop: Hashes) -> np.ndarray:
    """The shingles minus boilerplate; all of them if too few are left."""
    if not drop or not len(shingles):
        return shingles
    # A row has tens of shingles and ``drop`` may have thousands: a set lookup per
    # shingle is ten times faster than np.isin building an array of ``drop``.
    rest = [h for h in shingles.tolist() if h not in drop]
    if len(rest) == len(shingles):
        return shingles
    return (
        np.array(rest, dtype=np.uint64) if len(rest) >= min(_MIN_OWN, len(shingles)) else shingles
    )


def _pair_jaccard(mine: set[int], theirs: Sequence[int], shared: int, drop: set[int]) -> float:
    """The Jaccard of two rows' shingles as compared: without boilerplate (``drop``),
    unless either row would be left with too few of its own (a repeat, not a template
    instance: both whole). Counted, not made (``theirs``: distinct shingles;
    ``shared``: how many of them ``mine`` has), as ``jaccard`` of the two sets."""
    dropped = drop.intersection(theirs)
    return _counted_jaccard(
        len(mine), len(theirs), shared, len(drop & mine), len(dropped), len(dropped & mine)
    )


def _counted_jaccard(
    a: int, b: int, shared: int, a_dropped: int, b_dropped: int, shared_dropped: int
) -> float:
    """:func:`_pair_jaccard` from counts: the two rows' distinct shingles, how many
    they share, and how many of each and of the shared ones are boilerplate."""
    rest_a, rest_b = a - a_dropped, b - b_dropped
    if rest_a >= min(_MIN_OWN, a) and rest_b >= min(_MIN_OWN, b):
        a, b, shared = rest_a, rest_b, shared - shared_dropped
    return shared / (a + b - shared) if a and b else 0.0


def _own_tokens(tokens: list[int], grams: list[int], n: int, drop: Hashes) -> list[int] | None:
    """The tokens not covered by boilerplate word n-grams (``grams``: the tokens'
    n-grams in order), in order; None if too few are left (the row is then compared
    whole, as :func:`_pair_jaccard` does). A stretch of covered tokens shorter than
    ``_MIN_TEMPLATE_RUN`` stays. Plain lists: a row has tens of tokens, too few for
    numpy to pay for its calls."""
    if not drop or len(tokens) < n:
        return tokens
    starts = [at for at, gram in enumerate(grams) if gram in drop]
    if not starts:
        return tokens
    # The covered stretches are the boilerplate n-grams' spans, merged where they
    # overlap or touch: walked span by span, not token by token.
    rest: list[int] = []
    own_from = 0
    i, found = 0, len(starts)
    while i < found:
        low = starts[i]
        high = low + n
        i += 1
        while i < found and starts[i] <= high:
            high = starts[i] + n
            i += 1
        rest += tokens[own_from:low]
        if high - low < _MIN_TEMPLATE_RUN:
            rest += tokens[low:high]
        own_from = high
    rest += tokens[own_from:]
    return rest if len(rest) >= min(_MIN_OWN, len(tokens)) else None


def _surely_apart(differ: int, a: int, b: int, n: int, cut: float) -> bool:
    """Whether two whole rows (of ``a`` and ``b`` tokens; ``differ``: how many word
    n-gram hashes one has and the other lacks) are surely more than ``edit_cut`` token
    edits apart, without counting them. An edit removes at most n of a row's n-grams
    and adds at most n, so d edits leave the two sets differing in at most 2 n d
    (hashes that collide only make them differ less). In a big cell most proposed pairs
    are settled so: a fifth to two fifths of their word pairs alike, they differ in far
    more than 15 % edits allow."""
    if min(a, b) < n:
        return False  # shorter than one n-gram: its one shingle is padded
    allowed = int(edit_cut(cut, a, b) * max(a, b) + 1e-9)
    return differ > 2 * n * allowed


def _edit_pair(
    a: _Item, b: _Item, drop: Hashes, run: _BatchRun, n: int
) -> tuple[list[int], list[int]]:
    """Two rows' tokens as the edit distance compares them: without the tokens covered
    by boilerplate that both rows contain (a template's opening and closing), unless
    either row would be left with too few of its own (the rule of :func:`_pair_jaccard`
    for shingle sets). Boilerplate only one row has stays: an edit that falls on
    frequent phrasing is still an edit, and taking it out of one side would count the
    rest of that phrase as edits too. ``drop``: the boilerplate both rows contain."""
    own_a, own_b = run.own_tokens(a, drop, n), run.own_tokens(b, drop, n)
    if own_a is None or own_b is None:
        return run.tokens(a), run.tokens(b)
    return own_a, own_b


def _distinct(signatures: list[np.ndarray]) -> list[np.ndarray]:
    """The signatures, each once."""
    out: list[np.ndarray] = []
    for sig in signatures:
        if not any(np.array_equal(sig, seen) for seen in out):
            out.append(sig)
    return out


def _asked(
    index: BandIndex, members: Sequence[int], asks: Sequence[list[np.ndarray]], floor: float
) -> Iterator[tuple[int, list[str]]]:
    """What ``index`` finds for each signature each of ``members`` asks with: (member,
    ids), in one vectorised query."""
    owners = [i for i in members for _ in asks[i]]
    queries = np.stack([sig for i in members for sig in asks[i]])
    return zip(owners, index.query_many(queries, floor), strict=True)


class _Hashed(NamedTuple):
    """A row's hashes, as decided; with the signature it was asked with and the
    boilerplate that was left out of it (a kept row whose cell's boilerplate did not
    move is indexed by it)."""

    shingles: np.ndarray
    tokens: np.ndarray
    signed: tuple[np.ndarray, Hashes] | None = None


# The pair fewest token edits apart: edit share, its Jaccard, id, "same cell" or
# "other cell"; None when none is within max_edits.
_Edited = tuple[float, float, str, str] | None


def _digest(shingles: np.ndarray) -> int:
    return digest64(shingles.tobytes())


class _Frequencies:
    """Shingle document frequencies of one cell's generated items, and the boilerplate
    they imply against the real rows' frequencies (``reference``).

    With a ``base``, an overlay: a batch's candidates counted on top of the cell's
    stored counts without copying them.
    """

    def __init__(
        self,
        share: float,
        min_items: int,
        lift: float,
        reference: _Reference | None,
        base: _Frequencies | None = None,
    ) -> None:
        self.share = share
        self.min_items = min_items
        self.lift = lift
        self.reference = reference
        self.base = base
        self.counts: Counter[int] = Counter()
        self.digests = DigestSet()  # shingle sets already counted
        self.n: int = base.n if base is not None else 0
        self.boilerplate: Hashes = base.boilerplate if base is not None else _NONE

    def seen(self, digest: int) -> bool:
        return digest in self.digests or (self.base is not None and self.base.seen(digest))

    def add(self, sets: Sequence[np.ndarray]) -> bool:
        """Count the sets (each distinct, non-empty one once); True if the boilerplate
        changed."""
        if self.share >= 1.0:
            return False
        before = self.n
        touched: set[int] = set()
        for s in sets:
            if not len(s):
                continue  # a text without tokens says nothing about the template
            digest = _digest(s)
            if self.seen(digest):
                continue
            self.digests.add(digest)
            self.n += 1
            values = s.tolist()
            self.counts.update(values)
            touched.update(values)
        if self.n < self.min_items or self.n == before:
            return False
        # A shingle's share only rises when it is counted, so only touched shingles can
        # join; every shingle is looked at once, when the cell first is large enough.
        pool = self._keys() if before < self.min_items else touched | self.boilerplate
        boilerplate = self._common(pool)
        changed = boilerplate != self.boilerplate
        self.boilerplate = boilerplate
        return changed

    def _common(self, pool: Iterable[int]) -> Hashes:
        own = self.counts
        base = self.base.counts if self.base is not None else None  # one level deep
        ref = self.reference
        share = self.share if ref is not None else max(self.share, _SHARE_WITHOUT_REFERENCE)
        limit = share * self.n
        frequent: list[int] = []
        counts: list[int] = []
        for h in pool:
            count = own[h] + (base[h] if base is not None else 0)
            if count > limit:
                frequent.append(h)
                counts.append(count)
        if ref is None or not frequent:
            return frozenset(frequent)
        # Weighed together: a binomial tail per shingle was most of a batch's counting.
        hot = overused_many(
            np.array(counts, np.float64), self.n, ref.many(frequent), share, self.lift
        )
        return frozenset(frequent[i] for i in np.flatnonzero(hot))

    def majority(self) -> Hashes:
        """The boilerplate that more than half of the cell's generated items have: what
        a template is (every row it writes has it), unlike phrasing a model repeats in
        a fraction of a cell's rows, which frequency alone also makes boilerplate."""
        base = self.base.counts if self.base is not None else None
        limit = _SHARE_WITHOUT_REFERENCE * self.n
        return frozenset(
            h
            for h in self.boilerplate
            if self.counts[h] + (base[h] if base is not None else 0) > limit
        )

    def _keys(self) -> set[int]:
        own = set(self.counts)
        return own | self.base._keys() if self.base is not None else own


class _Shared:
    """Shingle frequencies over every cell's generated items, for the template phrasing
    that no one cell has enough of its rows to show: a template used by a few rows of
    each of many cells. A shingle is shared boilerplate when generated rows of at least
    ``min_cells`` cells have it and all generated rows use it at least ``lift`` times as
    often as the real rows do, beyond chance (:func:`overused`, with no share floor:
    over thousands of rows the binomial test is the guard against chance). A model
    repeating one text with small edits does so within a cell; its phrasing is not
    found across cells, and stays evidence of copying.

    ``counts`` and ``cells`` are of the kept items; :meth:`with_batch` adds a batch
    without changing them.
    """

    def __init__(self, min_cells: int, lift: float) -> None:
        self.min_cells = min_cells
        self.lift = lift
        self.counts: Counter[int] = Counter()
        self.cells: dict[int, tuple[str, ...]] = {}  # up to min_cells cells per shingle
        # Shingles found in min_cells cells or more, in the order they got there, and
        # where each is in that list: what every batch weighs.
        self.spread: list[int] = []
        self.spread_at: dict[int, int] = {}
        self._rows: tuple[_RealRates, np.ndarray] | None = None  # the spread's, in rates
        self.digests = DigestSet()
        self.n = 0
        self.per_cell: Counter[str] = Counter()  # items counted per cell

    def add(self, cell: str, sets: Iterable[np.ndarray]) -> None:
        for s in sets:
            if not len(s):
                continue
            digest = _digest(s)
            if digest in self.digests:
                continue
            self.digests.add(digest)
            self.n += 1
            self.per_cell[cell] += 1
            for h in s.tolist():
                self.counts[h] += 1
                seen = self.cells.get(h, ())
                if len(seen) < self.min_cells and cell not in seen:
                    self.cells[h] = seen = (*seen, cell)
                    if len(seen) >= self.min_cells:
                        self.spread_at[h] = len(self.spread)
                        self.spread.append(h)

    def with_batch(self, by_cell: dict[str, list[np.ndarray]], rates: _RealRates | None) -> Hashes:
        """The shared boilerplate with a batch's items counted too. The real rows' rate
        a shingle is compared with is that of each generated row's own cell's seeds
        (``rates``), averaged over the generated rows: generated rows drawn mostly
        from cells that say "my account" are expected to say it more than all the
        seeds do."""
        if rates is None:
            return _NONE
        if not self.spread and len(self.per_cell.keys() | by_cell.keys()) < self.min_cells:
            return _NONE  # too few cells for any shingle to be shared (one big cell)
        per_cell = Counter(self.per_cell)
        new: list[np.ndarray] = []
        owners: list[int] = []
        digests: set[int] = set()
        for k, (cell, sets) in enumerate(by_cell.items()):
            for s in sets:
                digest = _digest(s)
                if digest in self.digests or digest in digests:
                    continue
                digests.add(digest)
                per_cell[cell] += 1
                new.append(s)
                owners.append(k)
        n = self.n + len(new)
        pool = list(self.spread)
        added = np.zeros(len(pool), dtype=np.float64)  # the batch's counts
        rows = self._spread_rows(rates)
        if new:
            # The batch's shingles counted in numpy: a Counter update per shingle was
            # most of this method's time.
            hashes, extra, cells, batch_cells = _batch_counts(new, owners, len(by_cell))
            names = list(by_cell)
            position, cells_of = self.spread_at.get, self.cells.get
            hit: list[int] = []
            hit_at: list[int] = []
            gained: list[int] = []
            for i, (h, in_cells) in enumerate(zip(hashes.tolist(), cells.tolist(), strict=True)):
                p = position(h)
                if p is not None:
                    hit.append(i)
                    hit_at.append(p)
                    continue
                # Only a shingle found in enough cells can count: those of the kept
                # items, and those the batch brings to enough.
                kept = cells_of(h, ())
                if in_cells + len(kept) < self.min_cells:
                    continue
                if in_cells < self.min_cells:
                    theirs = {names[c] for c in batch_cells(i)}
                    if len(theirs.union(kept)) < self.min_cells:
                        continue
                gained.append(i)
            added[hit_at] = extra[hit]
            pool += hashes[gained].tolist()
            added = np.concatenate([added, extra[gained]])
            rows = np.concatenate([rows, rates.rows(pool[len(self.spread) :])])
        if not pool:
            return _NONE
        count_of = self.counts.get
        counts = np.fromiter((count_of(h, 0) for h in pool), np.float64, len(pool)) + added
        hot = overused_many(counts, n, rates.mixed(rows, per_cell), 0.0, self.lift)
        return frozenset(pool[i] for i in np.flatnonzero(hot))

    def _spread_rows(self, rates: _RealRates) -> np.ndarray:
        """The spread shingles' rows in ``rates``, each looked up once."""
        if self._rows is None or self._rows[0] is not rates:
            self._rows = (rates, rates.rows(self.spread))
        known = self._rows[1]
        if len(known) < len(self.spread):
            known = np.concatenate([known, rates.rows(self.spread[len(known) :])])
            self._rows = (rates, known)
        return known


def _batch_counts(
    sets: Sequence[np.ndarray], owners: Sequence[int], n_cells: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Callable[[int], list[int]]]:
    """A batch's distinct shingles (``sets``: each set's owner a cell number), how many
    sets and how many cells have each, and a function giving the cells of the i-th."""
    flat = np.concatenate(sets)
    owner = np.repeat(np.asarray(owners, dtype=np.int64), [len(s) for s in sets])
    hashes, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    pairs = distinct(inverse.astype(np.int64) * n_cells + owner)  # (shingle, cell) once
    of_shingle = pairs // n_cells
    starts = np.searchsorted(of_shingle, np.arange(len(hashes) + 1))

    def cells_of(i: int) -> list[int]:
        cells: list[int] = (pairs[starts[i] : starts[i + 1]] % n_cells).tolist()
        return cells

    return hashes, counts.astype(np.float64), np.diff(starts), cells_of


class _RealRates:
    """The real rows' share of shingles (:func:`real_share`) for a mix of cells' generated
    rows, computed for thousands of shingles at once: the seeds' counts as a sparse
    matrix of shingles by reference (a cell's seeds, a label's), so a batch's mix is one
    matrix-vector product rather than a sum over cells for every shingle."""

    def __init__(
        self,
        refs: dict[tuple[str, str], PhraseCounts[int]],
        narrow_of: Callable[[str], tuple[str, str] | None],
    ) -> None:
        from scipy.sparse import csr_matrix

        wide = refs[("all", "")]
        self.narrow_of = narrow_of
        self.wide_n = wide.n
        self.row_of = {h: i for i, h in enumerate(wide.counts)}
        self.wide_counts = np.fromiter(
            wide.counts.values(), dtype=np.float64, count=len(wide.counts)
        )
        keys = [k for k in refs if k[0] != "all"]
        self.col_of = {k: j for j, k in enumerate(keys)}
        self.narrow_n = np.array([refs[k].n for k in keys], dtype=np.float64)
        rows: list[int] = []
        cols: list[int] = []
        values: list[int] = []
        for j, k in enumerate(keys):
            for h, c in refs[k].counts.items():
                rows.append(self.row_of[h])
                cols.append(j)
                values.append(c)
        self.matrix = csr_matrix(
            (np.array(values, dtype=np.float64), (rows, cols)), shape=(len(self.row_of), len(keys))
        )

    def rows(self, hashes: Sequence[int]) -> np.ndarray:
        """Each shingle's row in the seeds' counts; -1 for one no seed has."""
        return np.fromiter(map(self.row_of.get, hashes, repeat(-1)), np.int64, len(hashes))

    def mixed(self, rows: np.ndarray, per_cell: Counter[str]) -> np.ndarray:
        """The real share of shingles (by :meth:`rows`) averaged over ``per_cell``
        generated rows."""
        weights = np.zeros(len(self.col_of), dtype=np.float64)
        base = 0.0  # the weight of the all-seeds rate
        for cell, k in per_cell.items():
            key = self.narrow_of(cell)
            j = self.col_of.get(key) if key is not None else None
            if j is None or not self.narrow_n[j]:
                base += k
            else:
                share = k / (self.narrow_n[j] + 1)
                weights[j] += share
                base += share
        known = rows >= 0
        wide = np.zeros(len(rows), dtype=np.float64)
        wide[known] = self.wide_counts[rows[known]]
        out = (wide + 0.5) / (self.wide_n + 1) * base
        out[known] += (self.matrix @ weights)[rows[known]]
        return out / max(1, sum(per_cell.values()))


class _Reference(NamedTuple):
    """:func:`real_share` against one cell's seeds (``narrow``) and all (``wide``)."""

    narrow: PhraseCounts[int] | None
    wide: PhraseCounts[int]

    def __call__(self, shingle: int) -> float:
        return real_share(shingle, self.narrow, self.wide)

    def many(self, shingles: Sequence[int]) -> np.ndarray:
        return real_shares(shingles, self.narrow, self.wide)


@dataclass
class _Cell:
    freq: _Frequencies


class NearDedupFilter(Filter):
    """Rejects candidates whose shingle Jaccard with anything kept reaches the threshold
    for that pair (same cell, or another cell), or that are within ``max_edits`` token
    edits of it."""

    name = "near_dedup"
    version = "3"

    def __init__(self, params: NearDedupParams, ctx: FilterContext) -> None:
        self.params = params
        self.stats = NearDedupStats()
        tuned = min(params.lsh_threshold, params.threshold)
        fp = params.lsh_weights[0]  # the weights as datasketch would take them: summing to 1.0
        self.bands, self.rows = optimal_bands(tuned, params.num_perm, (fp, 1.0 - fp))
        # Proposals whose signatures estimate a Jaccard 3.5 standard errors below the
        # one the bands are tuned for are chance band collisions, not near pairs: a
        # pair at the tuned Jaccard falls that low once in 4,000 (0.25 at 0.4 with
        # 126 values; a 15 % token edit of a short row sits near 0.5, 5 errors above).
        k = self.bands * self.rows
        self.floor = max(0.0, tuned - 3.5 * (tuned * (1 - tuned) / k) ** 0.5)
        self._items = _Items()
        self._cells: dict[str, _Cell] = {}
        self._indexes: dict[str, BandIndex] = {}
        # Real rows' shingle frequencies: per cell, per label, and over all of them.
        self._labels: dict[str, str] = {}  # cell -> its label
        self._refs: dict[tuple[str, str], PhraseCounts[int]] = {}
        self._shared = _Shared(params.boilerplate_cells, params.boilerplate_lift)
        self._rates: _RealRates | None = None  # built from _refs when first needed
        # The last batch's hashes, so admit does not hash the kept ones again.
        self._pending: dict[tuple[str, str], _Hashed] = {}
        self.same_cell, self.other_cell = self._thresholds([], [])

    # --- the Filter contract -------------------------------------------------------

    def prepare(self, seen: Iterable[SeenItem]) -> None:
        """Index the seeds and kept rows; calibrate the thresholds on the seeds."""
        items = list(seen)
        real = [s for s in items if s.source is Source.REAL]
        fresh = [s for s in real if s.id not in self._items]
        texts = [s.text for s in fresh]
        for s, shingles, tokens in zip(
            fresh, self._shingles(texts), token_hashes(texts), strict=True
        ):
            cell = str(s.cell)
            self._labels[cell] = s.cell.label
            for key in (("cell", cell), ("label", s.cell.label), ("all", "")):
                self._refs.setdefault(key, PhraseCounts()).add(shingles.tolist())
            self._pending[(s.id, s.text)] = _Hashed(shingles, tokens)
        if fresh:
            self._rates = None
        self._add([(s.id, s.cell, s.text, s.source is Source.REAL) for s in items])
        seeds = [x for x in self._items.values() if x.seed]
        self.same_cell, self.other_cell = self._thresholds(
            [x.shingles for x in seeds], [x.cell for x in seeds]
        )

    def decide(self, batch: Sequence[Candidate]) -> list[Decision]:
        texts = [c.text for c in batch]
        sets = self._shingles(texts)
        tokens = token_hashes(texts)
        cells = [str(c.cell) for c in batch]
        for c in batch:
            self._labels.setdefault(str(c.cell), c.cell.label)
        # Stored items were signed with their cell's stored boilerplate; so is the query.
        boilerplates = [self._boilerplate(k) for k in cells]
        stored = self._sign([_without(s, b) for s, b in zip(sets, boilerplates, strict=True)])
        self._pending = {
            (c.id, c.text): _Hashed(sets[i], tokens[i], (stored[i], boilerplates[i]))
            for i, c in enumerate(batch)
        }
        run = _BatchRun(self, cells, sets)
        signatures = run.signatures(stored)
        # Rows with boilerplate taken out also ask with all their shingles: a row that is
        # a near copy of another whole (a repeated text) is signed whole.
        reduced = [
            i
            for i, (k, s) in enumerate(zip(cells, sets, strict=True))
            if len(_without(s, run.boilerplate(k))) != len(s)
        ]
        whole = dict(zip(reduced, self._sign([sets[i] for i in reduced]), strict=True))
        # The batch may make more of a row boilerplate than the stored items were
        # signed without: its own part may be a near copy of a stored row (a seed
        # behind a template), so it asks with each of its signatures.
        asks = [
            _distinct([stored[i], signatures[i]] + ([whole[i]] if i in whole else []))
            for i in range(len(batch))
        ]
        scopes: dict[str, list[int]] = {}  # the candidates with shingles, by scope
        for i, cell in enumerate(cells):
            if len(sets[i]):
                scopes.setdefault(self._scope(cell), []).append(i)
        # The stored rows do not change while a batch is decided: one query for all.
        found: list[set[str]] = [set() for _ in batch]
        for scope, members in scopes.items():
            index = self._indexes.get(scope)
            if index is not None:
                for i, ids in _asked(index, members, asks, self.floor):
                    found[i].update(ids)
        run.fetch(set().union(*found))
        run.propose([c.id for c in batch], signatures, scopes, asks)
        out = []
        for i, c in enumerate(batch):
            self.stats.checked += 1
            if not len(sets[i]):
                out.append(self.keep(c, score=0.0))
                continue
            item = _Item.of(c.id, cells[i], sets[i], tokens[i])
            keys = found[i]
            keys.update(run.kept_proposals(i))
            same, other, edited = self._best_match(item, keys, run)
            decision = self.conclude(
                c, same, other, edited, partial(self._long_enough, item, run=run)
            )
            out.append(decision)
            if decision.verdict is Verdict.KEEP:
                run.items[item.id] = item
        return out

    def conclude(
        self,
        c: Candidate,
        same: tuple[float, str | None],
        other: tuple[float, str | None],
        edited: _Edited | Callable[[], _Edited],
        long_enough: Callable[[str], bool],
    ) -> Decision:
        """The decision on a candidate from its best verified matches (as
        ``_best_match`` gives them): the one place its reasons are worded, for the
        local chain and for the Ray backend (:mod:`synth.distributed`) alike.
        ``edited`` may be a function that finds it: it is asked only when no Jaccard
        threshold is reached (token edits are the slower measure)."""
        fired = [
            (j, match, kind, t)
            for (j, match), kind, t in (
                (same, "same cell", self.same_cell),
                (other, "other cell", self.other_cell),
            )
            if match is not None and j >= t.value and long_enough(match)
        ]
        if fired:
            j, match, kind, t = max(fired, key=lambda f: f[0] - f[3].value)
            self.stats.rejected += 1
            reason = f"near_dup: j={j:.2f} with {match} (>= {t.value:.2f} {kind}: {t.why()})"
            return self.reject(c, reason, score=round(j, 4))
        if callable(edited):
            edited = edited()
        if edited is not None:
            # Within the edit cut: a near duplicate by definition, whatever its
            # Jaccard (the pair's Jaccard is the score, as for every decision).
            e, j, match, kind = edited
            self.stats.rejected += 1
            reason = (
                f"near_dup: e={e:.2f} with {match} (<= {self.params.max_edits:.2f}"
                f" token edits, {kind})"
            )
            return self.reject(c, reason, score=round(j, 4))
        return self.keep(c, score=round(max(same[0], other[0]), 4))

    def _long_enough(self, item: _Item, match: str, *, run: _BatchRun) -> bool:
        """Whether the pair is long enough for its Jaccard to say "near duplicate"
        (short pairs are judged by their token edits alone)."""
        other = self._items.get(match) or run.items.get(match)
        shorter = min(item.n_tokens, other.n_tokens) if other is not None else 0
        return shorter >= SHORT_TEXT_TOKENS

    def admit(self, kept: Sequence[Candidate]) -> None:
        self._add([(c.id, c.cell, c.text, False) for c in kept])
        self._pending = {}

    # --- for the Ray backend (synth.distributed) ------------------------------------

    def stored_items(self) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
        """(id, cell, shingles, tokens) of everything indexed: what a new row is
        compared with besides the rows before it."""
        return [(x.id, x.cell, x.shingles, x.tokens) for x in self._items.values()]

    def shingles(self, texts: Sequence[str]) -> list[np.ndarray]:
        return self._shingles(texts)

    def sign(self, sets: Sequence[np.ndarray]) -> np.ndarray:
        """MinHash signatures, one row per set, as the index is built with."""
        return self._sign(sets)

    def scope(self, cell: str) -> str:
        """Rows are compared only within one scope: their cell, or all of them."""
        return self._scope(cell)

    def pair_scores(
        self, shingles: tuple[np.ndarray, np.ndarray], tokens: tuple[np.ndarray, np.ndarray]
    ) -> tuple[float, float | None]:
        """A proposed pair's exact Jaccard, and its token edit share if within
        ``max_edits``, with no boilerplate left out (as ``_best_match`` measures a
        pair of cells without any)."""
        j = jaccard(set(shingles[0].tolist()), set(shingles[1].tolist()))
        cut = self.params.max_edits
        if cut <= 0:
            return j, None
        a, b = tokens[0].tolist(), tokens[1].tolist()
        return j, within(a, b, edit_cut(cut, len(a), len(b)))

    def new_index(self) -> BandIndex:
        """An empty LSH index with this filter's bands and rows."""
        return BandIndex(self.bands, self.rows)

    def calibration_table(self) -> FilterCalibration:
        thresholds: tuple[Threshold, ...] = (self.same_cell,)
        if self.params.scope == "global":
            thresholds += (self.other_cell,)
        return FilterCalibration(
            self.name,
            f"{self.params.shingle} {self.params.ngram}-gram Jaccard of each seed's nearest"
            " other seed",
            thresholds,
        )

    # --- calibration ---------------------------------------------------------------

    def _thresholds(
        self, shingles: Sequence[np.ndarray], cells: Sequence[str]
    ) -> tuple[Threshold, Threshold]:
        """The same-cell and other-cell thresholds these seeds imply."""
        p = self.params
        if not p.calibrate:
            return fixed("same cell", p.threshold), fixed("other cell", p.threshold)
        if len(shingles) >= p.min_seeds:
            queries = sample_positions(len(shingles), p.calibration_sample)
            same, other = nearest_jaccard(shingles, cells, queries)
        else:
            same = other = [0.0] * len(shingles)
        cap = max(p.max_threshold, p.threshold)
        return (
            calibrate(
                "same cell",
                same,
                floor=p.threshold,
                cap=cap,
                quantile=p.same_cell_quantile,
                min_seeds=p.min_seeds,
            ),
            calibrate(
                "other cell",
                other,
                floor=p.threshold,
                cap=cap,
                quantile=p.quantile,
                min_seeds=p.min_seeds,
            ),
        )

    # --- matching ------------------------------------------------------------------

    def _best_match(
        self, item: _Item, keys: set[str], run: _BatchRun
    ) -> tuple[tuple[float, str | None], tuple[float, str | None], Callable[[], _Edited]]:
        """The highest exact Jaccard among the LSH's proposals in the item's own cell and
        in other cells, and a function finding the proposal fewest token edits away if
        that is within ``max_edits`` (edit share, its Jaccard, id, "same cell" or "other
        cell"); ties go to the smaller id."""
        self.stats.lsh_candidates += len(keys)
        best: dict[bool, tuple[float, str | None]] = {True: (0.0, None), False: (0.0, None)}
        own_drop = run.dropped(item.cell)
        mine = set(item.shingles.tolist())  # made once, for every pair it is in
        mine_dropped = mine & own_drop
        pairs: list[tuple[str, _Item, list[int], float, int]] = []
        for key in sorted(keys):
            row = run.row(key)
            if row is None or key == item.id:
                continue
            other, theirs = row
            self.stats.verified += 1
            same = other.cell == item.cell
            shared = len(mine.intersection(theirs))
            # What the candidate's cell leaves out of the other row (``mine_dropped``:
            # of its own).
            their_dropped = own_drop.intersection(theirs) if own_drop else set()
            if same and not other.seed:
                # The common pair, counted without making its boilerplate.
                j = _counted_jaccard(
                    len(mine),
                    len(theirs),
                    shared,
                    len(mine_dropped),
                    len(their_dropped),
                    len(mine_dropped.intersection(their_dropped)),
                )
            else:
                # Only the boilerplate in the pair matters: intersections cost the size
                # of the pair, a union of boilerplate its thousands of shingles.
                drop = mine_dropped | their_dropped
                if not same:
                    boilerplate = run.boilerplate(other.cell)
                    drop |= (mine & boilerplate) | boilerplate.intersection(theirs)
                if other.seed and drop:
                    # A seed's own shingles count in full against that seed.
                    drop = drop.difference(theirs)
                j = _pair_jaccard(mine, theirs, shared, drop)
            if j > best[same][0]:
                best[same] = (j, key)
            pairs.append((key, other, theirs, j, shared))
        return best[True], best[False], partial(self._fewest_edits, item, mine, pairs, run)

    def _fewest_edits(
        self,
        item: _Item,
        mine: set[int],
        pairs: list[tuple[str, _Item, list[int], float, int]],
        run: _BatchRun,
    ) -> _Edited:
        """Of the verified pairs (in id order), the one fewest token edits apart, if
        within ``max_edits``."""
        cut = self.params.max_edits
        if cut <= 0:
            return None
        # Token n-grams are what boilerplate is made of only with word shingles.
        n = self.params.ngram if self.params.shingle == "word" else 0
        own_template = run.template(item.cell)
        edited: _Edited = None
        for key, other, theirs, j, shared_count in pairs:
            drop = _NONE
            # Against a seed, none of its own shingles is boilerplate: nothing both share.
            if n and not other.seed and (own_template or other.cell != item.cell):
                shared = mine.intersection(theirs)
                found = shared & own_template
                if other.cell != item.cell:
                    found |= shared & run.template(other.cell)
                drop = frozenset(found)
            differ = len(mine) + len(theirs) - 2 * shared_count
            if n and not drop and _surely_apart(differ, item.n_tokens, other.n_tokens, n, cut):
                continue
            a, b = _edit_pair(item, other, drop, run, n)
            e = within(a, b, edit_cut(cut, len(a), len(b)))
            if e is not None and (edited is None or e < edited[0]):
                same = other.cell == item.cell
                edited = (e, j, key, "same cell" if same else "other cell")
        return edited

    # --- state ---------------------------------------------------------------------

    def _add(self, items: Sequence[tuple[str, CellKey, str, bool]]) -> None:
        """Index kept items; re-sign a cell whose boilerplate changed."""
        new: dict[str, tuple[str, str, bool]] = {}
        for id_, cell, text, real in items:
            if id_ not in self._items and id_ not in new:
                new[id_] = (str(cell), text, real)
                self._labels.setdefault(str(cell), cell.label)
        if not new:
            return
        missing = [text for id_, (_, text, _) in new.items() if (id_, text) not in self._pending]
        computed = zip(self._shingles(missing), token_hashes(missing), strict=True)
        by_cell: dict[str, list[_Item]] = {}
        before = len(self._items)
        signed: dict[str, tuple[np.ndarray, Hashes] | None] = {}
        for id_, (cell_name, text, real) in new.items():
            pending = self._pending.get((id_, text))
            if pending is None:
                shingles, tokens = next(computed)
            else:
                shingles, tokens, signed[id_] = pending
            # Packed into bytes of its own: the batch's arrays were cut from one buffer
            # per batch, which a view would keep whole, rejected rows' hashes included.
            item = _Item.of(id_, cell_name, shingles, tokens, seed=real)
            self._items.add(item)
            by_cell.setdefault(cell_name, []).append(item)
        for key, cell_items in by_cell.items():
            group = self._cells.get(key)
            if group is None:
                group = self._cells[key] = _Cell(self.frequencies(key))
            generated = [x.shingles for x in cell_items if not x.seed]
            if self.params.boilerplate_cells:
                self._shared.add(key, generated)
            boilerplate = group.freq.boilerplate
            if generated and group.freq.add(generated):
                # Only rows holding a shingle that joined or left the boilerplate are
                # signed differently now; the rest keep their signatures. A few
                # thousand at a time: a signature is 1 KB until it is indexed.
                self.stats.rebuilds += 1
                moved = boilerplate ^ group.freq.boilerplate
                stale = self._items.having(key, moved, before)
                self._unindex(stale)
                for at in range(0, len(stale), 4096):
                    self._index([self._items[i] for i in stale[at : at + 4096]])
        # The new rows last, in one pass: their cells' boilerplate is settled by now.
        self._index([x for cell_items in by_cell.values() for x in cell_items], signed)

    def _index(
        self,
        items: Sequence[_Item],
        signed: dict[str, tuple[np.ndarray, Hashes] | None] | None = None,
    ) -> None:
        """Index rows by their signatures under their cell's boilerplate, taken from
        ``signed`` (by id: a signature and the boilerplate it was made without) where
        that boilerplate is still the cell's."""
        items = [x for x in items if len(x.shingles)]
        known: dict[int, np.ndarray] = {}
        for k, x in enumerate(items):
            at_hand = signed.get(x.id) if signed else None
            if at_hand is not None and at_hand[1] == self._boilerplate(x.cell):
                known[k] = at_hand[0]
        unsigned = [k for k in range(len(items)) if k not in known]
        signatures = self._sign(
            [_without(items[k].shingles, self._boilerplate(items[k].cell)) for k in unsigned]
        )
        if known:
            fresh = signatures
            signatures = np.empty((len(items), fresh.shape[1]), dtype=fresh.dtype)
            signatures[unsigned] = fresh
            signatures[list(known)] = np.stack(list(known.values()))
        by_scope: dict[str, list[int]] = {}
        for k, item in enumerate(items):
            by_scope.setdefault(self._scope(item.cell), []).append(k)
        for scope, positions in by_scope.items():
            index = self._indexes.get(scope)
            if index is None:
                index = self._indexes[scope] = self.new_index()
            index.add([items[k].id for k in positions], signatures[positions])

    def _unindex(self, ids: Sequence[str]) -> None:
        by_scope: dict[str, list[str]] = {}
        for id_ in ids:
            by_scope.setdefault(self._scope(self._items[id_].cell), []).append(id_)
        for scope, scoped in by_scope.items():
            index = self._indexes.get(scope)
            if index is not None:
                index.remove(scoped)

    def reference(self, cell: str) -> _Reference | None:
        """The real rows' share of each shingle that a cell's generated rows are compared
        with: the cell's seeds (else its label's) with one extra row at the rate of all
        seeds (:func:`real_share`); None without any seed."""
        wide = self._refs.get(("all", ""))
        if wide is None or not wide.n:
            return None
        key = self._narrow(cell)
        return _Reference(self._refs[key] if key else None, wide)

    def _narrow(self, cell: str) -> tuple[str, str] | None:
        """Whose seeds a cell's generated rows are compared with: its own, else its
        label's."""
        for key in (("cell", cell), ("label", self._labels.get(cell, ""))):
            if key in self._refs:
                return key
        return None

    def real_rates(self) -> _RealRates | None:
        wide = self._refs.get(("all", ""))
        if wide is None or not wide.n:
            return None
        if self._rates is None:
            self._rates = _RealRates(self._refs, self._narrow)
        return self._rates

    def frequencies(self, cell: str, base: _Frequencies | None = None) -> _Frequencies:
        p = self.params
        return _Frequencies(
            p.boilerplate_df,
            p.boilerplate_min_items,
            p.boilerplate_lift,
            self.reference(cell),
            base,
        )

    def stored_frequencies(self, cell: str) -> _Frequencies | None:
        state = self._cells.get(cell)
        return state.freq if state is not None else None

    def _boilerplate(self, cell: str) -> Hashes:
        state = self._cells.get(cell)
        return state.freq.boilerplate if state is not None else _NONE

    def _scope(self, cell: str) -> str:
        return cell if self.params.scope == "cell" else ""

    def _sign(self, sets: Sequence[np.ndarray]) -> np.ndarray:
        return minhash_signatures(sets, self.params.num_perm, self.params.seed)

    def _shingles(self, texts: Sequence[str]) -> list[np.ndarray]:
        return shingle_hashes(texts, self.params.shingle, self.params.ngram)


class _BatchRun:
    """One batch being decided: each cell's boilerplate with the batch counted, and the
    candidates kept so far, matched by the LSH's own rule (:meth:`BandIndex.query`)."""

    def __init__(
        self, owner: NearDedupFilter, cells: Sequence[str], sets: Sequence[np.ndarray]
    ) -> None:
        self.owner = owner
        self.cells = cells
        self.sets = sets
        self.items: dict[str, _Item] = {}  # the candidates kept so far
        self.proposed: list[list[str]] = [[] for _ in cells]
        self._own: dict[tuple[str, Hashes], list[int] | None] = {}
        self._tokens: dict[str, list[int]] = {}
        self._rows: dict[str, tuple[_Item, list[int]]] = {}
        self._grams: dict[str, list[int]] = {}
        self._templates: dict[str, Hashes] = {}
        self._dropped: dict[str, Hashes] = {}
        by_cell: dict[str, list[np.ndarray]] = {}
        for cell, s in zip(cells, sets, strict=True):
            if len(s):
                by_cell.setdefault(cell, []).append(s)
        self.drop: dict[str, Hashes] = {}
        self.majority: dict[str, Hashes] = {}
        self.shared: Hashes = _NONE
        if owner.params.boilerplate_cells and owner.params.boilerplate_df < 1.0:
            self.shared = owner._shared.with_batch(by_cell, owner.real_rates())
        for cell, cell_sets in by_cell.items():
            freq = owner.frequencies(cell, owner.stored_frequencies(cell))
            freq.add(cell_sets)
            self.drop[cell] = freq.boilerplate
            self.majority[cell] = freq.majority()

    def template(self, cell: str) -> Hashes:
        """What the edit distance leaves out for a row of this cell: the cell's
        boilerplate that most of its rows have, and what is shared across cells (made
        once per cell and batch)."""
        template = self._templates.get(cell)
        if template is None:
            majority = self.majority.get(cell)
            if majority is None:
                state = self.owner.stored_frequencies(cell)
                majority = state.majority() if state is not None else _NONE
            template = self._templates[cell] = majority | self.shared
        return template

    def dropped(self, cell: str) -> Hashes:
        """What Jaccard leaves out for a row of this cell: its boilerplate and what is
        shared across cells (made once per cell and batch)."""
        dropped = self._dropped.get(cell)
        if dropped is None:
            dropped = self._dropped[cell] = self.boilerplate(cell) | self.shared
        return dropped

    def boilerplate(self, cell: str) -> Hashes:
        drop = self.drop.get(cell)
        return drop if drop is not None else self.owner._boilerplate(cell)

    def signatures(self, stored: np.ndarray) -> np.ndarray:
        """Signatures under this batch's boilerplate, re-signing only where it moved."""
        moved = [
            i
            for i, cell in enumerate(self.cells)
            if self.boilerplate(cell) != self.owner._boilerplate(cell)
        ]
        if not moved:
            return stored
        out = stored.copy()
        views = [_without(self.sets[i], self.boilerplate(self.cells[i])) for i in moved]
        out[moved] = self.owner._sign(views)
        return out

    def fetch(self, ids: Iterable[str]) -> None:
        """Look up the stored rows among ``ids`` at once, for :meth:`row`."""
        wanted = [id_ for id_ in ids if id_ not in self._rows]
        for id_, row in zip(wanted, self.owner._items.rows(wanted), strict=True):
            if row is not None:
                self._rows[id_] = row

    def row(self, id_: str) -> tuple[_Item, list[int]] | None:
        """A stored row or a kept candidate, and its shingles as a list: made once per
        batch, as a row near many candidates is proposed to each. A list, not a set:
        counting what a candidate's set shares with it costs a pass over it, and most
        pairs need nothing more."""
        row = self._rows.get(id_)
        if row is None:
            item = self.owner._items.get(id_) or self.items.get(id_)
            if item is None:
                return None
            row = self._rows[id_] = (item, item.shingles.tolist())
        return row

    def tokens(self, item: _Item) -> list[int]:
        """A row's token hashes as a list, made once per batch."""
        tokens = self._tokens.get(item.id)
        if tokens is None:
            tokens = self._tokens[item.id] = item.tokens.tolist()
        return tokens

    def own_tokens(self, item: _Item, drop: Hashes, n: int) -> list[int] | None:
        """:func:`_own_tokens`, once per row and boilerplate in a batch: a candidate
        meets the same template in most of its pairs, and a popular stored row meets it
        in many candidates' pairs."""
        tokens = self.tokens(item)
        if not drop:
            return tokens
        key = (item.id, drop)
        if key not in self._own:
            grams = self._grams.get(item.id)
            if grams is None:
                grams = self._grams[item.id] = item.grams(n)
            self._own[key] = _own_tokens(tokens, grams, n, drop)
        return self._own[key]

    def propose(
        self,
        ids: Sequence[str],
        signatures: np.ndarray,
        scopes: dict[str, list[int]],
        asks: Sequence[list[np.ndarray]],
    ) -> None:
        """Pair the batch's candidates before any is decided: each one's asks against
        every other's signature under this batch's boilerplate (what a kept one is
        indexed by), in one index per scope (``scopes``: the candidates of each). One
        vectorised pass costs less than a query per ask against the candidates kept
        so far; only those count (:meth:`kept_proposals`)."""
        for members in scopes.values():
            index = self.owner.new_index()
            index.add([ids[i] for i in members], signatures[members])
            for i, found in _asked(index, members, asks, self.owner.floor):
                self.proposed[i] += found

    def kept_proposals(self, i: int) -> list[str]:
        """The candidates kept so far that candidate ``i`` was paired with."""
        return [id_ for id_ in self.proposed[i] if id_ in self.items]
