"""Shingles and MinHash signatures, computed a whole batch at a time.

Texts are split by :func:`synth.text.tokenize` (NFKC, casefolded, one token per CJK
character), so the dedup and contamination filters agree with the length check and
with each other on what a word is.

A shingle is either ``n`` consecutive tokens (``word``) or ``n`` consecutive
characters of the tokens joined by single spaces (``char``, so punctuation and
spacing changes do not matter). A text shorter than ``n`` has one shingle: all of it.

Shingles are hashed to 64 bits (set membership and exact Jaccard use these; a
collision between two distinct shingles of two short texts has odds of about 2^-64)
and MinHash signatures are computed from the top 32 bits with datasketch's
``affine32`` scheme (MurmurHash3 finaliser, then ``a * h + b mod 2^32`` per
permutation), over a matrix of all shingles of a batch at once. The result equals
``datasketch.MinHash(num_perm, seed, hashfunc=lambda h: h).update_batch(hashes32)``
and can be indexed by ``datasketch.MinHashLSH``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Sequence
from collections.abc import Set as AbstractSet
from functools import cache
from typing import TYPE_CHECKING, Literal

import numpy as np

from synth.text import tokenize

if TYPE_CHECKING:
    from datasketch import MinHash

ShingleKind = Literal["word", "char"]

# A 64-bit value no real token hashes to in practice: pads texts shorter than n so
# that they still have one shingle.
_PAD = np.uint64(0x9E3779B97F4A7C15)
# Odd multiplier of the polynomial that combines n element hashes into one.
_POLY = np.uint64(0xD6E8FEB86659FD93)
_CHAR_SALT = np.uint64(0x243F6A8885A308D3)
_MAX32 = np.uint32(0xFFFFFFFF)
# Shingles per numpy step of the signature computation: 4 MB at 128 permutations, so
# a batch of any size runs in bounded memory and the working set stays in cache.
_CHUNK_SHINGLES = 8_192
# Token hashes are cached; the cache is dropped when it grows past this many entries.
_TOKEN_CACHE_MAX = 1 << 20


def word_shingles(text: str, n: int) -> list[str]:
    """The word n-grams of ``text`` as strings (tokens joined by spaces), in order.

    For reading and testing; the filters use :func:`shingle_hashes`.
    """
    toks = tokenize(text)
    if not toks:
        return []
    if len(toks) < n:
        return [" ".join(toks)]
    return [" ".join(toks[i : i + n]) for i in range(len(toks) - n + 1)]


def char_shingles(text: str, n: int) -> list[str]:
    """The character n-grams of the token stream (tokens joined by single spaces)."""
    stream = " ".join(tokenize(text))
    if not stream:
        return []
    if len(stream) < n:
        return [stream]
    return [stream[i : i + n] for i in range(len(stream) - n + 1)]


# --- hashing ---------------------------------------------------------------------

_token_cache: dict[str, int] = {}


def _token_hash(token: str) -> int:
    h = _token_cache.get(token)
    if h is None:
        if len(_token_cache) >= _TOKEN_CACHE_MAX:
            _token_cache.clear()
        digest = hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        h = _token_cache[token] = int.from_bytes(digest, "little")
    return h


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: a bijection that spreads every input bit."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    out: np.ndarray = h ^ (h >> np.uint64(33))
    return out


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser, as datasketch applies it before permuting."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    out: np.ndarray = h ^ (h >> np.uint32(16))
    return out


# The last few batches' token hashes: the chain's filters tokenize the same batch of
# texts several times (near dedup for its shingles and its token edits, contamination
# once per n-gram length it looks for), and tokenizing is most of hashing.
_RECENT_BATCHES = 4
_recent_words: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}


def _elements(texts: Sequence[str], kind: ShingleKind) -> tuple[np.ndarray, np.ndarray]:
    """Per-element 64-bit hashes of all texts concatenated, and each text's length
    (read-only arrays)."""
    if kind == "word":
        key = tuple(texts)
        known = _recent_words.get(key)
        if known is not None:
            return known
        token_lists = [tokenize(t) for t in texts]
        lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(texts))
        flat = np.fromiter(
            (_token_hash(tok) for toks in token_lists for tok in toks),
            dtype=np.uint64,
            count=int(lengths.sum()),
        )
        flat.setflags(write=False)
        lengths.setflags(write=False)
        if len(_recent_words) >= _RECENT_BATCHES:
            del _recent_words[next(iter(_recent_words))]
        _recent_words[key] = flat, lengths
        return flat, lengths
    if kind == "char":
        streams = [" ".join(tokenize(t)) for t in texts]
        lengths = np.fromiter((len(s) for s in streams), dtype=np.int64, count=len(texts))
        codes = np.frombuffer(
            "".join(streams).encode("utf-32-le", "surrogatepass"), dtype=np.uint32
        )
        return _fmix64(codes.astype(np.uint64) ^ _CHAR_SALT), lengths
    raise ValueError(f"unknown shingle kind {kind!r}")


def token_hashes(texts: Sequence[str]) -> list[np.ndarray]:
    """Each text's tokens, in order, as 64-bit hashes (the elements word shingles are
    built from): what a token edit distance compares."""
    if not texts:
        return []
    elems, lengths = _elements(texts, "word")
    return list(np.split(elems, np.cumsum(lengths)[:-1]))


def shingle_sequence(tokens: np.ndarray, n: int) -> np.ndarray:
    """One text's word n-gram hashes in order (position i: the n-gram that starts at
    token i), from its :func:`token_hashes`; each is the hash :func:`shingle_hashes`
    gives that n-gram. Empty for a text shorter than ``n``."""
    return _fmix64(_rolling(tokens, n) ^ np.uint64(n))


def shingle_hashes(texts: Sequence[str], kind: ShingleKind, n: int) -> list[np.ndarray]:
    """Each text's set of shingles as a sorted array of unique 64-bit hashes.

    Args:
        texts: The texts, hashed together (vectorised over the whole batch).
        kind: ``"word"`` for token n-grams, ``"char"`` for character n-grams.
        n: Shingle length in tokens or characters. Larger n makes two texts alike
            only if they share longer verbatim runs (fewer false matches between
            texts built from the same words, more misses after small edits).

    A text with no tokens has an empty set; one shorter than ``n`` has a single
    shingle, the whole text.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    if not texts:
        return []
    elems, lengths = _elements(texts, kind)
    # Pad texts shorter than n up to n elements so each has exactly one window.
    padded = np.where(lengths > 0, np.maximum(lengths, n), 0)
    pad_counts = padded - lengths
    if pad_counts.any():
        elems = _insert_padding(elems, lengths, pad_counts)
    windows = _rolling(elems, n)
    n_windows = np.where(padded > 0, padded - n + 1, 0)
    starts = np.concatenate(([0], np.cumsum(padded)[:-1]))
    doc_of_window = np.repeat(np.arange(len(texts)), n_windows)
    offsets = np.concatenate(([0], np.cumsum(n_windows)[:-1]))
    window_index = starts[doc_of_window] + (
        np.arange(int(n_windows.sum())) - offsets[doc_of_window]
    )
    hashes = _fmix64(windows[window_index] ^ np.uint64(n))
    return _unique_per_doc(hashes, doc_of_window, len(texts))


def _insert_padding(elems: np.ndarray, lengths: np.ndarray, pad_counts: np.ndarray) -> np.ndarray:
    ends = np.cumsum(lengths)
    positions = np.repeat(ends, pad_counts)
    return np.insert(elems, positions, _PAD)


def _rolling(elems: np.ndarray, n: int) -> np.ndarray:
    """h[i] = sum(elems[i + k] * POLY^(n-1-k)) mod 2^64 for every start i."""
    count = len(elems) - n + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint64)
    out = elems[:count].copy()
    for k in range(1, n):
        out *= _POLY
        out += elems[k : k + count]
    return out


def _unique_per_doc(hashes: np.ndarray, doc: np.ndarray, n_docs: int) -> list[np.ndarray]:
    order = np.lexsort((hashes, doc))
    hashes, doc = hashes[order], doc[order]
    keep = np.ones(len(hashes), dtype=bool)
    keep[1:] = (hashes[1:] != hashes[:-1]) | (doc[1:] != doc[:-1])
    hashes, doc = hashes[keep], doc[keep]
    bounds = np.searchsorted(doc, np.arange(n_docs + 1))
    return [hashes[bounds[i] : bounds[i + 1]] for i in range(n_docs)]


# --- MinHash ---------------------------------------------------------------------


@cache
def permutations(num_perm: int, seed: int = 1) -> np.ndarray:
    """datasketch's ``affine32`` permutation parameters, rows ``a`` (odd) and ``b``,
    drawn as ``MinHash(num_perm, seed, scheme="affine32")`` draws them (the tests hold
    the two equal). Drawn here rather than asked of datasketch: importing it costs
    0.4 s (its LSH imports scipy.integrate), which every run's filter process paid
    before its first decision.

    The array is cached and shared by every caller: it is read-only.
    """
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    perms = np.ascontiguousarray([a, b], dtype=np.uint32)
    perms.setflags(write=False)
    return perms


def minhash_signatures(
    sets: Sequence[np.ndarray | Collection[int]], num_perm: int = 128, seed: int = 1
) -> np.ndarray:
    """MinHash signatures of many shingle sets at once, one row per set.

    Args:
        sets: 64-bit shingle hashes per text (from :func:`shingle_hashes`, or any
            collection of ints below 2^64).
        num_perm: Permutations per signature. More permutations estimate Jaccard
            more precisely (standard error about ``sqrt(j(1-j)/num_perm)``) at
            proportional cost in time and memory.
        seed: Seeds the permutations; signatures are comparable only with the
            same ``num_perm`` and ``seed``.

    Returns a ``(len(sets), num_perm)`` uint32 array; an empty set gets the all-max
    signature datasketch gives an empty MinHash.
    """
    a, b = permutations(num_perm, seed)
    arrays = [s if isinstance(s, np.ndarray) else _as_array(s) for s in sets]
    out = np.full((len(arrays), num_perm), _MAX32, dtype=np.uint32)
    # Permutations along rows and shingles along columns: the min-reduction then runs
    # over contiguous memory, several times faster than the transposed layout.
    buf = np.empty((num_perm, _CHUNK_SHINGLES), dtype=np.uint32)
    for chunk in _chunks(arrays):
        rows = [i for i in chunk if len(arrays[i])]
        if not rows:
            continue
        flat = np.concatenate([arrays[i] for i in rows])
        hv = _fmix32((flat >> np.uint64(32)).astype(np.uint32))
        if len(hv) > _CHUNK_SHINGLES:  # one very long text: its minimum, slice by slice
            [row] = rows
            for at in range(0, len(hv), _CHUNK_SHINGLES):
                part = _permuted(hv[at : at + _CHUNK_SHINGLES], a, b, buf)
                out[row] = np.minimum(out[row], part.min(axis=1))
            continue
        matrix = _permuted(hv, a, b, buf)
        sizes = np.fromiter((len(arrays[i]) for i in rows), dtype=np.int64, count=len(rows))
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        out[rows] = np.minimum.reduceat(matrix, starts, axis=1).T
    return out


def _permuted(hv: np.ndarray, a: np.ndarray, b: np.ndarray, buf: np.ndarray) -> np.ndarray:
    """``a * h + b mod 2^32`` for every permutation (rows) and hash (columns), in buf."""
    matrix = buf[:, : len(hv)]
    np.multiply(a[:, None], hv[None, :], out=matrix)  # wraps mod 2^32, as intended
    matrix += b[:, None]
    return matrix


def _as_array(values: Collection[int]) -> np.ndarray:
    return np.fromiter(values, dtype=np.uint64, count=len(values))


def _chunks(sets: Sequence[np.ndarray]) -> Iterable[list[int]]:
    """Runs of consecutive sets with at most _CHUNK_SHINGLES shingles (or one set)."""
    chunk: list[int] = []
    size = 0
    for i, s in enumerate(sets):
        if chunk and size + len(s) > _CHUNK_SHINGLES:
            yield chunk
            chunk, size = [], 0
        chunk.append(i)
        size += len(s)
    if chunk:
        yield chunk


def to_minhash(signature: np.ndarray, seed: int = 1) -> MinHash:
    """A datasketch MinHash holding ``signature``, for ``MinHashLSH.insert``/``query``."""
    from datasketch import MinHash

    return MinHash(
        seed=seed,
        hashvalues=signature,
        permutations=permutations(len(signature), seed),
        scheme="affine32",
    )


def jaccard(a: AbstractSet[int], b: AbstractSet[int]) -> float:
    """Exact Jaccard similarity of two shingle sets (0.0 if either is empty)."""
    if not a or not b:
        return 0.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def shingle_sets(texts: Sequence[str], kind: ShingleKind, n: int) -> list[frozenset[int]]:
    """:func:`shingle_hashes` as Python sets, for fast exact Jaccard on small sets."""
    return [frozenset(h.tolist()) for h in shingle_hashes(texts, kind, n)]
