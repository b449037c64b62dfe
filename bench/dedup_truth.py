"""Ground truth for near-duplicate benchmarks: every pair with Jaccard >= t, exactly.

Brute force over the same shingles the dedup stage uses
(``tokenmill.dedup.minhash.shingles``), made feasible by the AllPairs
prefix filter (Bayardo et al., WWW 2007): order each shingle set by global
shingle frequency (rarest first); two sets with Jaccard >= t must share a
shingle among the first ``|A| - ceil(t * |A|) + 1`` of each. An inverted
index over those prefixes yields the candidates, and every candidate's
exact Jaccard is computed from the full sets. No pair is estimated.

    python -m bench.dedup_truth DOCS.parquet OUT.json [--threshold 0.8]
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter, defaultdict

from tokenmill.dedup.minhash import shingles


def shingle_sets(docs: list[tuple[str, str]], n: int = 5, kind: str = "word") -> dict[str, frozenset]:
    """id -> set of shingle hashes (Python's 64-bit hash of the shingle bytes); empty sets dropped."""
    out = {}
    for doc_id, text in docs:
        s = frozenset(hash(x) for x in shingles(text or "", n, kind))
        if s:
            out[doc_id] = s
    return out


def all_pairs(sets: dict[str, frozenset], threshold: float) -> dict[tuple[str, str], float]:
    """{(a, b): jaccard} for every pair a < b with jaccard >= threshold."""
    freq = Counter(x for s in sets.values() for x in s)
    index: dict[int, list[str]] = defaultdict(list)
    pairs: dict[tuple[str, str], float] = {}
    # Visit sets by size so the length filter |B| >= t|A| only looks back.
    for doc_id in sorted(sets, key=lambda d: (len(sets[d]), d)):
        s = sets[doc_id]
        ordered = sorted(s, key=lambda x: (freq[x], x))
        prefix = ordered[:len(s) - math.ceil(threshold * len(s)) + 1]
        seen = set()
        for x in prefix:
            for other in index[x]:
                if other in seen or len(sets[other]) < threshold * len(s):
                    continue
                seen.add(other)
                o = sets[other]
                inter = len(s & o)
                j = inter / (len(s) + len(o) - inter)
                if j >= threshold:
                    pairs[(min(doc_id, other), max(doc_id, other))] = j
            index[x].append(doc_id)
    return pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("docs", help="Parquet file with id and text columns")
    ap.add_argument("out")
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--ngram", type=int, default=5)
    args = ap.parse_args()
    import pyarrow.parquet as pq

    t = pq.read_table(args.docs, columns=["id", "text"])
    docs = list(zip(t.column("id").to_pylist(), t.column("text").to_pylist()))
    pairs = all_pairs(shingle_sets(docs, args.ngram), args.threshold)
    with open(args.out, "w") as f:
        json.dump([[a, b, j] for (a, b), j in sorted(pairs.items())], f)
    print(f"{len(pairs)} pairs with Jaccard >= {args.threshold}")


if __name__ == "__main__":
    main()
