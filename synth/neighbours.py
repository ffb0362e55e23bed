"""Near-duplicate search over a fixed set of texts, for splits, leakage and audits.

The near-dedup filter's measure and machinery (``synth.filters.shingles``): word
n-gram shingle sets, MinHash signatures computed in bulk, a datasketch LSH index that
proposes pairs, and the exact Jaccard of the shingle sets that decides every pair, so
an LSH false positive never counts. Unlike the filter there is no template
boilerplate to discount: a pair called near here is one a reader would call near.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from synth.filters.shingles import jaccard, minhash_signatures, shingle_hashes, to_minhash

NUM_PERM = 128
# Every LSH proposal is verified, so the bands lean towards not missing pairs, as the
# near-dedup filter's do.
LSH_WEIGHTS = (0.1, 0.9)


@dataclass(frozen=True)
class NearPair:
    a: int  # index into the texts given, a < b
    b: int
    jaccard: float


class NearIndex:
    """Texts indexed once; :meth:`pairs` among them, :meth:`nearest` for new texts.

    Parameters:
        texts: the texts to index.
        n: word n-gram length of the shingles (2, as near dedup's default).
        threshold: exact Jaccard at or above which two texts are near duplicates.
    """

    def __init__(self, texts: Sequence[str], *, n: int = 2, threshold: float = 0.5) -> None:
        from datasketch import MinHashLSH  # here: datasketch takes 0.3 s to import

        self.n = n
        self.threshold = threshold
        self._hashes = shingle_hashes(list(texts), "word", n)
        self._sets = [frozenset(h.tolist()) for h in self._hashes]
        self._signatures = minhash_signatures(self._hashes, NUM_PERM)
        # The LSH only proposes; above 0.9 it would have too few bands to exist, and
        # proposing more pairs costs only their exact check.
        lsh_threshold = min(threshold, 0.9)
        self._lsh = MinHashLSH(threshold=lsh_threshold, num_perm=NUM_PERM, weights=LSH_WEIGHTS)
        for i, h in enumerate(self._hashes):
            if len(h):
                self._lsh.insert(i, to_minhash(self._signatures[i]), check_duplication=False)

    def __len__(self) -> int:
        return len(self._sets)

    def pairs(self) -> list[NearPair]:
        """Every pair of indexed texts at or above the threshold, sorted."""
        out = []
        for i, h in enumerate(self._hashes):
            if not len(h):
                continue
            for j in self._lsh.query(to_minhash(self._signatures[i])):
                if j > i:
                    sim = jaccard(self._sets[i], self._sets[j])
                    if sim >= self.threshold:
                        out.append(NearPair(i, j, sim))
        return sorted(out, key=lambda p: (p.a, p.b))

    def nearest(self, texts: Sequence[str]) -> list[tuple[int, float] | None]:
        """For each text, the indexed text most like it (index, Jaccard) if one
        reaches the threshold; ties go to the lower index."""
        hashes = shingle_hashes(list(texts), "word", self.n)
        signatures = minhash_signatures(hashes, NUM_PERM)
        out: list[tuple[int, float] | None] = []
        for h, sig in zip(hashes, signatures, strict=True):
            best: tuple[int, float] | None = None
            if len(h):
                own = frozenset(h.tolist())
                for j in sorted(self._lsh.query(to_minhash(np.asarray(sig)))):
                    sim = jaccard(own, self._sets[j])
                    if sim >= self.threshold and (best is None or sim > best[1]):
                        best = (j, sim)
            out.append(best)
        return out
