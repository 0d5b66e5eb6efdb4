"""Reading prompt files for the guard: rows with `prompt` or `question` and an optional `id`.

A bad line (not JSON, not an object, no prompt) is reported with FILE:LINE and skipped, so one broken
row never costs the verdicts of the others.
"""

from __future__ import annotations

from pathlib import Path

from medtune.data.sources import iter_file_rows
from medtune.errors import MedtuneError


def read_prompts(path: str | Path) -> tuple[list[tuple[object, str]], list[tuple[str, str]]]:
    """([(id, text)], [(FILE:LINE, reason)]); rows without an id get their line number."""
    path = Path(path)
    if not path.exists():
        raise MedtuneError(f"{path}: no such file")  # iter_file_rows reports empty files and unknown types
    items: list[tuple[object, str]] = []
    bad: list[tuple[str, str]] = []
    for where, row, error in iter_file_rows(path):
        if row is None:
            bad.append((where, error))
            continue
        text = row.get("prompt", row.get("question"))
        if not isinstance(text, str):
            bad.append((where, "no `prompt` or `question` text"))
            continue
        items.append((row["id"] if row.get("id") not in (None, "") else _number(where), text))  # CSV: "" = none
    return items, bad


def _number(where: str) -> int | str:
    """The line, item or row number of FILE:LINE, FILE:item N or FILE:row N (as the id of a row without one)."""
    tail = where.rsplit(":", 1)[-1].rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else where
