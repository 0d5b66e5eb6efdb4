"""Near-duplicate detection with MinHash + LSH (datasketch).

Signatures are computed in parallel batches (`minhash_batch`, used by `datasets.map`); the LSH index is
then filled in one ordered pass so the first occurrence of a near-duplicate cluster is the one kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import numpy as np
from datasketch import MinHash, MinHashLSH

NUM_PERM = 64
SCHEME = "affine32"  # datasketch 2 permutation scheme; signatures are stored as plain ints
SHINGLE_WORDS = 3
MAX_SHINGLE_CHARS = 2000  # enough text to tell two answers apart; bounds the cost of very long rows
_WORD = re.compile(r"\w+")


def shingles(text: str) -> set[bytes]:
    words = _WORD.findall(text[:MAX_SHINGLE_CHARS].lower())
    if len(words) < SHINGLE_WORDS:
        return {" ".join(words).encode()}
    return {" ".join(words[i: i + SHINGLE_WORDS]).encode() for i in range(len(words) - SHINGLE_WORDS + 1)}


def minhash_batch(texts: list[str]) -> list[list[int]]:
    """MinHash signatures for a batch of texts (shared permutations, so it is cheap per row)."""
    sigs = MinHash.bulk([shingles(t) for t in texts], num_perm=NUM_PERM, scheme=SCHEME)
    return [m.hashvalues.tolist() for m in sigs]


def near_duplicates(signatures: Iterable[list[int]], threshold: float) -> Iterator[int]:
    """Yield, for each signature in order, -1 if it is new or the index of an earlier near-duplicate."""
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    for i, sig in enumerate(signatures):
        m = MinHash(num_perm=NUM_PERM, hashvalues=np.asarray(sig, dtype=np.uint32), scheme=SCHEME)
        hits = lsh.query(m)
        if hits:
            yield min(hits)
        else:
            lsh.insert(i, m)
            yield -1
