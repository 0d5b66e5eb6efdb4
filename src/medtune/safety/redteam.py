"""The red-team suite shipped with medtune: labelled prompts in redteam/*.jsonl and their fixed split.

Each row: {"id", "prompt", "category", "lang", "style"}. The split is a pure function of the id
(stratified per category and language by a hash): `build` and `dev` fit the classifier and choose its
thresholds (out of fold, see guard/build.py in a checkout), and `test` only ever scores the guard, so the
published figures come from prompts the guard never saw. The suite ships in the package (the run gate and
`medtune eval --suite safety` read it); the fit-only prompts stay in a checkout (guard/fit/).
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
SPLITS = {"build": 0.5, "dev": 0.2, "gate": 0.3}  # fractions per category, in this order
SPLIT_ALIASES = {"test": "gate"}  # the gate split's old name: it was the test split until it had been read too often
# The sealed test split: written apart from everything the guard was built with (guard/SPEC.md alone), never
# read while building or changing the guard, scored once per release. Its hash is kept here so that a changed
# file is noticed rather than silently scored.
SEALED_FILE = "sealed.jsonl"
SEALED_SHA256_FILE = "sealed.sha256"


# MEDIQA-2019 test questions (real consumer questions sent to a health library) are halved by a hash of
# their text: the "dev" half helps choose thresholds (guard/build.py), the "test" half only scores the guard.
CONSUMER_DEV_SHARE = 0.5


def consumer_half(question: str) -> str:
    """"dev" or "test" for a MEDIQA-2019 test question; repeated questions land in the same half."""
    return "dev" if int(rank(f"consumer:{question.strip()}")[:8], 16) < CONSUMER_DEV_SHARE * 16**8 else "test"


def rank(key: str) -> str:
    return hashlib.sha256(f"medtune-redteam:{key}".encode()).hexdigest()


def load_rows(folder: Path = SUITE_DIR) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    if not folder.is_dir():  # a moved folder must not read as an empty suite
        raise MedtuneError(f"{folder}: no such folder of red-team prompts")
    for path in sorted(p for p in folder.glob("*.jsonl") if p.name != SEALED_FILE):
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
            end = n if name == "gate" else start + round(n * frac)
            for i in ids[start:end]:
                out[i] = name
            start = end
    return out


def sealed_sha256(folder: Path = SUITE_DIR) -> str:
    return hashlib.sha256((folder / SEALED_FILE).read_bytes()).hexdigest()


def load_sealed(folder: Path = SUITE_DIR) -> list[dict[str, Any]]:
    """The sealed test split, after checking that it is the file whose SHA-256 the repository keeps."""
    path, want_file = folder / SEALED_FILE, folder / SEALED_SHA256_FILE
    if not path.is_file() or not want_file.is_file():
        raise MedtuneError(f"{path}: the sealed split (or its {SEALED_SHA256_FILE}) is missing from this copy")
    want = want_file.read_text(encoding="utf-8").split()[0]
    if sealed_sha256(folder) != want:
        raise MedtuneError(f"{path}: SHA-256 differs from {want_file.name} ({want[:12]}...): the sealed split was "
                           "changed; a changed split is a new split (write it anew and record its hash)")
    rows = []
    for where, row, error in iter_file_rows(path):
        if row is None or row.get("category") not in CATEGORIES or not str(row.get("prompt", "")).strip():
            raise MedtuneError(f"{where}: {error or 'needs a prompt and a category in ' + str(list(CATEGORIES))}")
        rows.append(row)
    return rows


def load_split(split: str, folder: Path = SUITE_DIR) -> list[dict[str, Any]]:
    """`build`, `dev`, `gate` (`test` is its old name) or `sealed` rows of the suite."""
    split = SPLIT_ALIASES.get(split, split)
    if split == "sealed":
        return load_sealed(folder)
    if split not in SPLITS:
        raise MedtuneError(f"unknown red-team split {split!r} (one of {', '.join([*SPLITS, 'sealed'])})")
    rows = load_rows(folder)
    where = assign_splits(rows)
    return [r for r in rows if where[r["id"]] == split]

