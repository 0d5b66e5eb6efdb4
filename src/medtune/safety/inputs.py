"""Reading prompt files for the guard: rows with `prompt` or `question` and an optional `id`.

A bad line (not JSON, not an object, no prompt) is reported with FILE:LINE and skipped, so one broken
row never costs the verdicts of the others.
"""

from __future__ import annotations

import json
from pathlib import Path

from medtune.errors import MedtuneError


def read_prompts(path: str | Path) -> tuple[list[tuple[object, str]], list[tuple[str, str]]]:
    """([(id, text)], [(FILE:LINE, reason)]); rows without an id get their line number."""
    path = Path(path)
    if not path.exists():
        raise MedtuneError(f"{path}: no such file")
    items: list[tuple[object, str]] = []
    bad: list[tuple[str, str]] = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                bad.append((where, f"not valid JSON ({e.msg})"))
                continue
            if not isinstance(row, dict):
                bad.append((where, "not a JSON object"))
                continue
            text = row.get("prompt", row.get("question"))
            if not isinstance(text, str):
                bad.append((where, "no `prompt` or `question` text"))
                continue
            items.append((row.get("id", n), text))
    return items, bad
