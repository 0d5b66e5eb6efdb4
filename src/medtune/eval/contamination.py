"""Contamination check: which evaluation items share a long word n-gram with a run's training data.

medAlpaca's training mix contained the MMLU test set; a tuned model scored on items it saw in training
measures memory, not skill. Overlapping items are listed in the report and left out of the headline
figure. Texts are lower-cased word sequences; an item shorter than N words overlaps when the whole item
appears inside a training text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from medtune.data.prepare import load_split

NGRAM = 8  # words; GPT-3 used 13, but medical exam questions are often short
_WORD = re.compile(r"\w+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _grams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i: i + n]) for i in range(len(words) - n + 1)}


def training_ngrams(texts: Iterable[str], n: int = NGRAM) -> tuple[set[tuple[str, ...]], list[str]]:
    """The n-gram set of the training texts, and the texts themselves joined (for short-item lookups)."""
    grams: set[tuple[str, ...]] = set()
    joined = []
    for t in texts:
        w = _words(t)
        grams |= _grams(w, n)
        joined.append(" ".join(w))
    return grams, joined


def item_text(row: dict[str, Any]) -> str:
    """What an item shows the model: its question, prompt, context and options."""
    parts = [str(row.get(k) or "") for k in ("question", "prompt", "context")]
    opts = row.get("options")
    if isinstance(opts, dict):
        parts += [str(v) for v in opts.values()]
    return " ".join(p for p in parts if p)


def overlapping(rows: list[dict[str, Any]], grams: set[tuple[str, ...]], joined: list[str],
                n: int = NGRAM) -> list[int]:
    """Indices of rows that share an n-gram with the training data."""
    hits = []
    for i, row in enumerate(rows):
        w = _words(item_text(row))
        if len(w) >= n:
            if _grams(w, n) & grams:
                hits.append(i)
        elif w and any(" ".join(w) in t for t in joined):
            hits.append(i)
    return hits


def run_training_texts(run_dir: str) -> list[str]:
    """Every message of a run's prepared train and val splits."""
    texts = []
    for split in ("train", "val"):
        try:
            rows = load_split(f"{run_dir}/data", split)
        except Exception:  # noqa: BLE001 - a run prepared elsewhere has no data folder: nothing to compare
            continue
        texts += [m["content"] for r in rows for m in r["messages"]]
    return texts
