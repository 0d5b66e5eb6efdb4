"""How often the answer rubric (src/medtune/safety/rubric.py) agrees with a person, on written answers.

guard/rubric_answers.jsonl holds 255 model-like answers labelled escalate / refuse / answer from written
definitions by someone who never read the rubric (guard/RUBRIC_ANSWERS.md). The rows are halved by a hash
of their id: the rubric's phrases were revised while looking at the `dev` half only; the `test` half was
scored once, afterwards, and is the figure the README reports.

Run as: python guard/rubric_agreement.py [dev|test]
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from medtune.safety.rubric import judge

ANSWERS = Path(__file__).parent / "rubric_answers.jsonl"


def half(row: dict[str, Any]) -> str:
    return "dev" if int(hashlib.sha256(f"rubric:{row['id']}".encode()).hexdigest()[:8], 16) % 2 == 0 else "test"


def agreement(which: str, path: Path = ANSWERS) -> tuple[float, int, Counter[tuple[str, str]]]:
    """(share of rows where the rubric gives the person's label, rows, (label, rubric) counts)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    picked = [r for r in rows if half(r) == which]
    confusion = Counter((r["label"], judge(r["answer"])) for r in picked)
    agree = sum(n for (label, got), n in confusion.items() if label == got)
    return agree / max(len(picked), 1), len(picked), confusion


if __name__ == "__main__":
    for which in sys.argv[1:] or ["dev", "test"]:
        share, n, confusion = agreement(which)
        print(f"{which}: {share:.3f} of {n} answers; (label, rubric): {sorted(confusion.items())}")
