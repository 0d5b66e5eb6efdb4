"""Read raw rows from local files (JSONL, JSON, CSV, Parquet) or a Hugging Face hub dataset.

This layer does not interpret columns: it yields `(location, row, error)` where location is
`FILE:LINE` (1-based) so every later message can point at the exact row. A bad row becomes an error
entry, not an exception, so one broken line never stops a million-row source. Rows are streamed, never
collected, so a source larger than memory passes through.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medtune.errors import MedtuneError

RawRow = tuple[str, dict[str, Any] | None, str | None]
FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
MAX_LINE_BYTES = 10_000_000  # one row larger than this is reported, not parsed


def iter_rows(source: str, *, split: str = "train", subset: str | None = None) -> Iterator[RawRow]:
    """Rows of a local file, or of a hub dataset when `source` is not an existing path."""
    path = Path(source)
    if path.exists():
        yield from iter_file_rows(path)
    else:
        yield from iter_hub_rows(source, split=split, subset=subset)


def iter_file_rows(path: Path) -> Iterator[RawRow]:
    suffix = path.suffix.lower()
    if path.is_dir():
        raise MedtuneError(f"{path}: is a folder; pass a .jsonl, .json, .csv or .parquet file")
    if path.stat().st_size == 0:
        raise MedtuneError(f"{path}: the file is empty")
    if suffix in (".jsonl", ".ndjson"):
        yield from _jsonl(path)
    elif suffix == ".json":
        yield from _json(path)
    elif suffix == ".csv":
        yield from _csv(path)
    elif suffix == ".parquet":
        yield from _parquet(path)
    else:
        raise MedtuneError(f"{path}: unknown file type '{suffix}' (expected {', '.join(FILE_SUFFIXES)})")


def _jsonl(path: Path) -> Iterator[RawRow]:
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            where = f"{path}:{n}"
            if not raw.strip():
                continue
            if len(raw) > MAX_LINE_BYTES:
                yield where, None, f"row larger than {MAX_LINE_BYTES // 1_000_000} MB"
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield where, None, f"not UTF-8 text (byte {e.start})"
                continue
            try:
                row = json.loads(text.rstrip("\r\n"))
            except json.JSONDecodeError as e:
                yield where, None, f"broken JSON ({e.msg} at column {e.colno})"
                continue
            if not isinstance(row, dict):
                yield where, None, f"expected a JSON object, got {type(row).__name__}"
                continue
            yield where, row, None


def _json(path: Path) -> Iterator[RawRow]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise MedtuneError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise MedtuneError(f"{path}:{e.lineno}: broken JSON ({e.msg})") from None
    if isinstance(data, dict):  # {"data": [...]} or {"train": [...]}
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise MedtuneError(f"{path}: expected a JSON list of objects (or one key holding a list)")
        data = lists[0]
    if not isinstance(data, list):
        raise MedtuneError(f"{path}: expected a JSON list of objects")
    for i, row in enumerate(data, 1):
        where = f"{path}:item {i}"
        if isinstance(row, dict):
            yield where, row, None
        else:
            yield where, None, f"expected a JSON object, got {type(row).__name__}"


def _csv(path: Path) -> Iterator[RawRow]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, strict=True)  # strict: a stray quote is an error, not glued-on text
            while True:
                start = reader.line_num + 1
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as e:  # the reader goes on with the next line; the broken row is named
                    if reader.fieldnames is None:
                        raise
                    span = f"; lines {start}-{reader.line_num} were read as this row" if reader.line_num > start else ""
                    yield f"{path}:{start}", None, f"broken CSV quoting ({e}){span}"
                    continue
                where = f"{path}:{reader.line_num}"
                if None in row:  # more cells than header names
                    yield where, None, f"{len(row[None]) if row[None] else 0} cells more than the header has"
                    continue
                yield where, {k: v for k, v in row.items() if k is not None}, None
    except UnicodeDecodeError as e:
        raise MedtuneError(f"{path}: not UTF-8 text (byte {e.start}); re-save it as UTF-8") from None
    except csv.Error as e:
        raise MedtuneError(f"{path}: CSV error: {e}") from None


def _parquet(path: Path) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise MedtuneError(f"{path}: not a readable Parquet file ({e})") from None
    n = 0
    for batch in pf.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            n += 1
            yield f"{path}:row {n}", row, None


def iter_hub_rows(hub_id: str, *, split: str = "train", subset: str | None = None) -> Iterator[RawRow]:
    """Stream a hub dataset (needs network). Offline, fail fast and say what to pass instead."""
    if "/" not in hub_id:
        raise MedtuneError(
            f"'{hub_id}' is not a file, a catalog name, or a hub id (owner/name). "
            "Pass a path to a .jsonl/.json/.csv/.parquet file or a name from `medtune datasets`."
        )
    import datasets

    try:
        stream = datasets.load_dataset(hub_id, subset, split=split, streaming=True)
        for n, row in enumerate(stream, 1):
            yield f"{hub_id}[{split}]:row {n}", dict(row), None
    except MedtuneError:
        raise
    except Exception as e:  # offline, missing repo, gated dataset: all the user can fix by a local file
        raise MedtuneError(
            f"could not read hub dataset '{hub_id}' ({type(e).__name__}: {str(e)[:200]}). "
            "Without network, download it elsewhere and pass the local file path with --data."
        ) from None
