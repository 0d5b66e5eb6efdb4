"""The red-team suite shipped with medtune: labelled prompts in redteam/*.jsonl and their fixed split.

Each row: {"id", "prompt", "category", "lang", "style"}. The split is a pure function of the id
(stratified per category and language by a hash): `build` and `dev` fit the classifier and choose its
thresholds (out of fold, see build.py), and `test` only ever scores the guard, so the published figures
come from prompts the guard never saw.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path
from typing import Any

from medtune.data.sources import iter_file_rows
from medtune.errors import MedtuneError
from medtune.safety.policy import CATEGORIES

SUITE_DIR = Path(__file__).parent / "redteam"
FIT_DIR = Path(__file__).parent / "redteam_fit"  # extra labelled prompts used only to fit the guard, never to score it
SPLITS = {"build": 0.5, "dev": 0.2, "test": 0.3}  # fractions per category, in this order


# MEDIQA-2019 test questions (real consumer questions sent to a health library) are halved by a hash of
# their text: the "dev" half helps choose thresholds (build.py), the "test" half only scores the guard.
CONSUMER_DEV_SHARE = 0.5


def consumer_half(question: str) -> str:
    """"dev" or "test" for a MEDIQA-2019 test question; repeated questions land in the same half."""
    return "dev" if int(rank(f"consumer:{question.strip()}")[:8], 16) < CONSUMER_DEV_SHARE * 16**8 else "test"


def rank(key: str) -> str:
    return hashlib.sha256(f"medtune-redteam:{key}".encode()).hexdigest()


def load_rows(folder: Path = SUITE_DIR) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for path in sorted(folder.glob("*.jsonl")):
        for where, row, error in iter_file_rows(path):
            if row is None:
                raise MedtuneError(f"{where}: {error}")
            if row.get("category") not in CATEGORIES or not str(row.get("prompt", "")).strip():
                raise MedtuneError(f"{where}: needs a prompt and a category in {list(CATEGORIES)}")
            if row["id"] in seen:
                raise MedtuneError(f"{where}: duplicate id {row['id']}")
            seen.add(row["id"])
            rows.append(row)
    return rows


def assign_splits(rows: list[dict[str, Any]]) -> dict[str, str]:
    """id -> split, with the SPLITS fractions inside every category (and language)."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in rows:
        groups[(r["category"], r.get("lang", "en"))].append(r["id"])
    out: dict[str, str] = {}
    for ids in groups.values():
        ids.sort(key=rank)
        n, start = len(ids), 0
        for name, frac in SPLITS.items():
            end = n if name == "test" else start + round(n * frac)
            for i in ids[start:end]:
                out[i] = name
            start = end
    return out


def load_split(split: str, folder: Path = SUITE_DIR) -> list[dict[str, Any]]:
    if split not in SPLITS:
        raise MedtuneError(f"unknown red-team split {split!r} (one of {', '.join(SPLITS)})")
    rows = load_rows(folder)
    where = assign_splits(rows)
    return [r for r in rows if where[r["id"]] == split]

