"""Near-dedup benchmark: speed, memory, and accuracy on planted duplicates.

    python bench/dedup.py [--docs 100000] [--data ../shared/data]

Corpus: real sentences (BANKING77, CLINC150, PAWS-Wiki first sentences, Self-Instruct
and alpaca-libre instructions), de-duplicated among themselves under a criterion
broader than any filter setting measured here (word-set Jaccard >= 0.5), so the base
texts are distinct; then recombined into short texts (30 % single sentences, the rest
two sentences of similar length, no pair used twice) with a fixed seed. Into that
stream go exact copies and near copies (5-15 % of the tokens substituted, deleted or
inserted) of base texts, each after its source. Every rejection is a predicted pair
(rejected text, matched text); it is correct when both come from the same planted group.

Also measured: signature throughput against a naive datasketch loop (one
``MinHash.update`` per shingle) on a subsample, LSH insert + query rate, peak RSS, and
how many of PAWS's non-paraphrase pairs (same words, different meaning) the filter
merges at its default settings.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import resource
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datasketch import MinHash, MinHashLSH

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from synth.filters.base import FilterContext  # noqa: E402
from synth.filters.near_dedup import NearDedupFilter, NearDedupParams  # noqa: E402
from synth.filters.shingles import (  # noqa: E402
    jaccard,
    minhash_signatures,
    shingle_hashes,
    shingle_sets,
    to_minhash,
    word_shingles,
)
from synth.records import Candidate, CellKey, SeenItem, Source  # noqa: E402
from synth.text import normalize_text, tokenize  # noqa: E402

CTX = FilterContext(root=ROOT, text_field="text", label_field="label")
LABELS = [f"label_{i}" for i in range(8)]


# --- corpus ----------------------------------------------------------------------


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def real_sentences(data: Path) -> list[str]:
    """Unique (normalised) one-line sentences of 3-40 words from public datasets."""
    out: list[str] = []
    for name in ("train.csv", "test.csv"):
        with open(data / "banking77" / name, newline="", encoding="utf-8") as fh:
            out += [row["text"] for row in csv.DictReader(fh)]
    clinc = json.loads((data / "clinc150" / "data_full.json").read_text(encoding="utf-8"))
    for rows in clinc.values():
        out += [text for text, _ in rows]
    for name in ("dev.tsv", "test.tsv"):
        for line in (data / "paws-wiki" / name).read_text(encoding="utf-8").splitlines():
            out.append(line.split("\t")[1])
    for name in ("seed_tasks.jsonl", "user_oriented_instructions.jsonl"):
        for line in (data / "self-instruct" / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            out += _sentences(row["instruction"])
            for instance in row["instances"]:
                out += _sentences(instance["output"])
    for version in ("v1", "v2", "v3"):
        path = data / "alpaca-libre" / f"alpaca_libre_tasks_{version}.jsonl"
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # v2 has malformed lines, documented upstream
            if row.get("status") in ("ok", "too similar"):
                out += _sentences(row["instruction"]) + _sentences(row["output"])
    seen: set[str] = set()
    unique = []
    for s in out:
        key = normalize_text(s)
        if key not in seen and "\n" not in s.strip() and 3 <= len(key.split()) <= 40:
            seen.add(key)
            unique.append(s.strip())
    return unique


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


def distinct(texts: Sequence[str], threshold: float = 0.5) -> list[str]:
    """Greedy: drop a text whose word-set Jaccard with a kept one is >= threshold.

    Broader than any near-dedup setting measured here (word sets ignore order), so
    texts this keeps are ones the filter should not merge.
    """
    sets = shingle_sets(texts, "word", 1)
    signatures = minhash_signatures(sets)
    lsh = MinHashLSH(threshold=threshold, num_perm=128, weights=(0.2, 0.8))
    kept = []
    for i, (s, sig) in enumerate(zip(sets, signatures, strict=True)):
        m = to_minhash(sig)
        if any(jaccard(s, sets[k]) >= threshold for k in lsh.query(m)):
            continue
        lsh.insert(i, m, check_duplication=False)
        kept.append(texts[i])
    return kept


def base_texts(pool: Sequence[str], count: int, rng: random.Random) -> list[str]:
    """Single sentences and length-matched two-sentence texts, mutually distinct.

    Sentences of ``pool`` are distinct already, so two texts can only be close when
    they share a sentence; those pairs are checked exactly (word-set Jaccard < 0.5).
    """
    pool = list(pool)
    rng.shuffle(pool)
    n_single = min(len(pool) * 3 // 10, count * 3 // 10)
    singles, rest = pool[:n_single], pool[n_single:]
    rest.sort(key=lambda s: len(s.split()))
    words = shingle_sets(rest, "word", 1)
    using: dict[int, list[frozenset[int]]] = {}  # sentence -> word sets of texts using it
    pairs: set[tuple[int, int]] = set()
    combos: list[str] = []
    window = 200
    while len(combos) < count - n_single:
        i = rng.randrange(len(rest))
        j = min(len(rest) - 1, max(0, i + rng.randint(-window, window)))
        if i == j or (min(i, j), max(i, j)) in pairs:
            continue
        pairs.add((min(i, j), max(i, j)))
        text_words = words[i] | words[j]
        neighbours = using.get(i, []) + using.get(j, [])
        if any(jaccard(text_words, other) >= 0.5 for other in neighbours):
            continue
        using.setdefault(i, []).append(text_words)
        using.setdefault(j, []).append(text_words)
        combos.append(f"{rest[i]} {rest[j]}" if rng.random() < 0.5 else f"{rest[j]} {rest[i]}")
    texts = singles + combos
    rng.shuffle(texts)
    return texts


def near_copy(text: str, rng: random.Random, vocab: Sequence[str]) -> str:
    """5-15 % of the tokens (at least one) substituted, deleted or inserted."""
    words = text.split()
    edits = max(1, round(rng.uniform(0.05, 0.15) * len(words)))
    for _ in range(edits):
        op = rng.choice(("sub", "del", "ins")) if len(words) > 2 else "sub"
        i = rng.randrange(len(words))
        if op == "sub":
            words[i] = rng.choice(vocab)
        elif op == "del":
            del words[i]
        else:
            words.insert(i, rng.choice(vocab))
    return " ".join(words)


@dataclass
class Doc:
    id: str
    text: str
    group: int  # planted copies share their source's group
    planted: str  # "", "exact" or "near"


def build_stream(pool: Sequence[str], docs: int, rng: random.Random) -> list[Doc]:
    n_exact, n_near = docs * 3 // 100, docs * 7 // 100
    texts = base_texts(pool, docs - n_exact - n_near, rng)
    vocab = [w for s in rng.sample(list(pool), 5000) for w in s.split()]
    stream = [Doc(f"b{i}", t, i, "") for i, t in enumerate(texts)]
    for k in range(n_exact + n_near):
        source = rng.randrange(len(texts))
        kind = "exact" if k < n_exact else "near"
        text = texts[source] if kind == "exact" else near_copy(texts[source], rng, vocab)
        stream.append(Doc(f"p{k}", text, source, kind))
    # Each copy goes to a random place after its source.
    position = {i: rng.random() for i in range(len(texts))}
    keyed = []
    for d in stream:
        start = position[d.group]
        keyed.append((start if not d.planted else start + rng.random() * (1 - start), d))
    keyed.sort(key=lambda x: x[0])
    return [d for _, d in keyed]


# --- measurements ----------------------------------------------------------------


def candidate(doc_id: str, text: str, label: str, index: int) -> Candidate:
    return Candidate(
        id=doc_id,
        run_id="bench",
        cell=CellKey(slice="default", label=label),
        text=text,
        data={"text": text, "label": label},
        llm_call_id="bench",
        index=index,
        template="bench",
        template_sha="0" * 64,
        model="bench",
    )


def batches(items: Sequence[Candidate], size: int) -> Iterator[Sequence[Candidate]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def run_filter(stream: Sequence[Doc], params: NearDedupParams, rng: random.Random) -> dict:
    f = NearDedupFilter(params, CTX)
    cands = [candidate(d.id, d.text, rng.choice(LABELS), i) for i, d in enumerate(stream)]
    group = {d.id: d.group for d in stream}
    planted = {d.id for d in stream if d.planted}
    tp = fp = 0
    start = time.perf_counter()
    for batch in batches(cands, 1000):
        decisions = f.decide(batch)
        kept = []
        for c, d in zip(batch, decisions, strict=True):
            if d.verdict == "reject":
                match = d.reason.split(" with ", 1)[1].split()[0]
                if c.id in planted and group[match] == group[c.id]:
                    tp += 1
                else:
                    fp += 1
            else:
                kept.append(c)
        f.admit(kept)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "tp": tp,
        "fp": fp,
        "planted": len(planted),
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / len(planted),
        "stats": f.stats,
    }


def signature_speed(texts: Sequence[str], params: NearDedupParams) -> float:
    start = time.perf_counter()
    minhash_signatures(shingle_hashes(texts, params.shingle, params.ngram), params.num_perm)
    return len(texts) / (time.perf_counter() - start)


def naive_speed(texts: Sequence[str], params: NearDedupParams) -> float:
    """datasketch as usually written: one MinHash per text, one update per shingle."""
    start = time.perf_counter()
    for text in texts:
        m = MinHash(num_perm=params.num_perm)
        for shingle in set(word_shingles(text, params.ngram)):
            m.update(shingle.encode("utf-8"))
    return len(texts) / (time.perf_counter() - start)


def lsh_speed(texts: Sequence[str], params: NearDedupParams) -> tuple[float, float]:
    """Inserts and queries per second with the filter's bands: datasketch's
    MinHashLSH, and the filter's own index (:class:`synth.filters.bands.BandIndex`)."""
    sigs = minhash_signatures(shingle_hashes(texts, params.shingle, params.ngram), params.num_perm)
    f = NearDedupFilter(params, CTX)
    lsh = MinHashLSH(num_perm=params.num_perm, params=(f.bands, f.rows))
    minhashes = [to_minhash(s) for s in sigs]
    start = time.perf_counter()
    for i, m in enumerate(minhashes):
        lsh.insert(i, m, check_duplication=False)
    for m in minhashes:
        lsh.query(m)
    theirs = 2 * len(texts) / (time.perf_counter() - start)
    index = f.new_index()
    ids = [str(i) for i in range(len(texts))]
    start = time.perf_counter()
    for i in range(0, len(ids), 64):  # as the filter adds a batch's kept rows
        index.add(ids[i : i + 64], sigs[i : i + 64])
    for s in sigs:
        index.query(s)
    return theirs, 2 * len(texts) / (time.perf_counter() - start)


def paws(data: Path, params: NearDedupParams) -> dict:
    """Pairs whose second sentence the filter rejects, given the first as a seed."""
    rows = []
    for line in (data / "paws-wiki" / "test.tsv").read_text(encoding="utf-8").splitlines():
        pair_id, s1, s2, label = line.split("\t")
        rows.append((pair_id, s1, s2, label.strip()))
    # One cell per pair: each second sentence is compared with its own first only.
    f = NearDedupFilter(params.model_copy(update={"scope": "cell"}), CTX)
    f.prepare(
        SeenItem(id=f"s1_{p}", text=s1, cell=CellKey(slice="default", label=p), source=Source.REAL)
        for p, s1, _, _ in rows
    )
    decisions = f.decide([candidate(f"s2_{p}", s2, p, 0) for p, _, s2, _ in rows])
    overlap = [
        jaccard(a, b)
        for a, b in zip(
            shingle_sets([r[1] for r in rows], "word", 1),
            shingle_sets([r[2] for r in rows], "word", 1),
            strict=True,
        )
    ]
    out = {}
    for label in ("0", "1"):
        idx = [i for i, r in enumerate(rows) if r[3] == label]
        high = [i for i in idx if overlap[i] >= 0.7]
        merged = [i for i in idx if decisions[i].verdict == "reject"]
        merged_high = [i for i in high if decisions[i].verdict == "reject"]
        out[label] = (len(idx), len(merged), len(high), len(merged_high))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--naive-sample", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--shingle", choices=("word", "char"), default=None)
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--threshold", type=float, default=None)
    args = ap.parse_args()
    settings = {"shingle": args.shingle, "n": args.n, "threshold": args.threshold}
    params = NearDedupParams(**{k: v for k, v in settings.items() if v is not None})
    rng = random.Random(args.seed)

    t0 = time.perf_counter()
    sentences = real_sentences(args.data)
    pool = distinct(sentences)
    stream = build_stream(pool, args.docs, rng)
    n_tokens = np.median([len(tokenize(d.text)) for d in stream[:5000]])
    print(
        f"corpus: {len(sentences)} real sentences, {len(pool)} mutually distinct; "
        f"{len(stream)} texts (median {n_tokens:.0f} tokens), "
        f"{sum(d.planted == 'exact' for d in stream)} exact and "
        f"{sum(d.planted == 'near' for d in stream)} near copies planted "
        f"[{time.perf_counter() - t0:.1f}s]"
    )
    print(
        f"settings: shingle={params.shingle} n={params.ngram} threshold={params.threshold} "
        f"num_perm={params.num_perm} lsh bands x rows="
        f"{NearDedupFilter(params, CTX).bands} x {NearDedupFilter(params, CTX).rows}"
    )

    texts = [d.text for d in stream]
    fast = signature_speed(texts, params)
    sample = random.Random(1).sample(texts, min(args.naive_sample, len(texts)))
    naive = naive_speed(sample, params)
    print(
        f"signatures: {fast:,.0f} docs/s bulk vs {naive:,.0f} docs/s naive datasketch loop "
        f"({len(sample)}-doc sample): {fast / naive:.1f}x"
    )
    lsh_sample = texts[: min(len(texts), 20_000)]
    theirs, ours = lsh_speed(lsh_sample, params)
    print(
        f"lsh ({len(lsh_sample)} docs): {ours:,.0f} inserts+queries/s with the filter's"
        f" band index vs {theirs:,.0f} with datasketch MinHashLSH: {ours / theirs:.1f}x"
    )

    result = run_filter(stream, params, random.Random(args.seed))
    stats = result["stats"]
    print(
        f"filter end to end: {len(stream) / result['seconds']:,.0f} docs/s "
        f"({result['seconds']:.1f}s; {stats.lsh_candidates:,} LSH proposals, "
        f"{stats.verified:,} verified, {stats.rejected:,} rejected)"
    )
    print(
        f"planted pairs: recall {result['recall']:.4f} ({result['tp']}/{result['planted']}), "
        f"precision {result['precision']:.4f} ({result['fp']} false)"
    )
    p = paws(args.data, params)
    n0, m0, h0, mh0 = p["0"]
    n1, m1, _, _ = p["1"]
    print(
        f"paws test label 0 (not paraphrase): {m0}/{n0} merged ({m0 / n0:.1%}); "
        f"of the {h0} with word-set Jaccard >= 0.7: {mh0} ({mh0 / h0:.1%}); "
        f"label 1: {m1}/{n1} ({m1 / n1:.1%})"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak:,.0f} MB; total {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
