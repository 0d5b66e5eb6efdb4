"""Read raw rows from local files (JSONL, JSON, CSV, Parquet) or a Hugging Face hub dataset.

This layer does not interpret columns: it yields `(location, row, error)` where location is
`FILE:LINE` (1-based) so every later message can point at the exact row. A bad row becomes an error
entry, not an exception, so one broken line never stops a million-row source. Rows are streamed, never
collected, so a source larger than memory passes through: a .json list too (ijson), where a break in the
middle (a torn download) keeps the items before it and becomes one named row ending in TORN. A UTF-8 BOM
is skipped; a lone surrogate escape (a torn emoji, valid JSON but not text) reads as U+FFFD.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import ijson

from medtune.errors import MedtuneError

RawRow = tuple[str, dict[str, Any] | None, str | None]
TORN = "the rest of the file was not read"  # ends the reason of a break that stops a file (a torn .json)
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


_LONE_SURROGATE = (r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
                   r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}")
_LONE_SURROGATE_ESCAPE = re.compile(_LONE_SURROGATE)  # \udXXX without its pair: not text, cannot be UTF-8
_LONE_SURROGATE_ESCAPE_BYTES = re.compile(_LONE_SURROGATE.encode())


def _jsonl(path: Path) -> Iterator[RawRow]:
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            where = f"{path}:{n}"
            if n == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)  # a BOM (Notepad, Excel) is not part of the first row
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
            if "\\u" in text:  # a lone surrogate escape (a torn emoji) reads as U+FFFD, as in .json files
                text = _LONE_SURROGATE_ESCAPE.sub(r"\\ufffd", text)
            try:
                row = json.loads(text.rstrip("\r\n"))
            except json.JSONDecodeError as e:
                yield where, None, f"broken JSON ({e.msg} at column {e.colno})"
                continue
            if not isinstance(row, dict):
                yield where, None, f"expected a JSON object, got {type(row).__name__}"
                continue
            yield where, row, None


def _lone_surrogate(value: Any) -> bool:
    """True when a string in `value` holds a surrogate without its pair (it cannot be written as UTF-8)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_lone_surrogate(k) or _lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_lone_surrogate(v) for v in value)
    return False


class _LineFeed:
    """A binary file handed to ijson one line per read, so a parse error can be placed on its line."""

    def __init__(self, f: BinaryIO) -> None:
        self._f, self.line = f, 0
        self._ended_line = True

    def read(self, size: int = -1) -> bytes:
        if size == 0:  # ijson probes the type of the file with read(0)
            return b""
        piece = self._f.readline(size)
        if self.line == 0 and piece.startswith(codecs.BOM_UTF8):
            piece = piece[len(codecs.BOM_UTF8):] or b" "  # a BOM (Notepad, Excel) is not part of the JSON
        if piece:
            self.line += self._ended_line
            self._ended_line = piece.endswith(b"\n")
        if b"\\u" in piece:  # yajl stops the whole file at a lone low surrogate escape: make it U+FFFD
            piece = _LONE_SURROGATE_ESCAPE_BYTES.sub(rb"\\ufffd", piece)
        return piece


def _ijson_reason(e: Exception, line: int) -> str:
    """yajl's first line ('parse error: premature EOF') without its text excerpt (rows' text is never shown)."""
    msg = e.args[0] if e.args else ""
    if isinstance(e, UnicodeDecodeError):
        msg = "not UTF-8 text"
    elif isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    text = str(msg).strip()
    first = text.splitlines()[0] if text else type(e).__name__
    first = first.removeprefix("parse error: ").removeprefix("lexical error: ").rstrip(".")
    return f"broken JSON ({first} at line {line})"


def _json_rows_prefix(path: Path) -> str:
    """Where the rows are: 'item' for a top-level list, 'KEY.item' for an object with one key holding a
    list. An object is scanned as events (nothing is built), so the file is never held in memory."""
    lists: list[str] = []
    wrong = MedtuneError(f"{path}: expected a JSON list of objects (or an object with one key holding that list)")
    with path.open("rb") as f:
        feed = _LineFeed(f)
        events = ijson.parse(feed, use_float=True)
        try:
            _, first, _ = next(events)
            if first == "start_array":
                return "item"
            if first != "start_map":
                raise wrong
            key: str | None = None
            for prefix, event, value in events:
                if key is not None:  # the first event of a top-level key's value
                    if event == "start_array":
                        lists.append(key)
                    key = None
                elif prefix == "" and event == "map_key":
                    key = value
        except StopIteration:
            raise MedtuneError(f"{path}: no JSON in the file") from None
        except (ijson.JSONError, UnicodeDecodeError) as e:
            if len(lists) != 1:
                raise MedtuneError(f"{path}: {_ijson_reason(e, feed.line)} before any list of rows") from None
    if len(lists) != 1:
        raise MedtuneError(f"{wrong}" + (f"; keys holding lists: {', '.join(lists)}" if lists else ""))
    return f"{lists[0]}.item" if lists[0] else "item"


def _json(path: Path) -> Iterator[RawRow]:
    """A JSON list of objects, streamed item by item with ijson. A file broken or torn in the middle
    keeps the items before the break and names the break; one broken before its first item is an error."""
    prefix = _json_rows_prefix(path)
    n = 0
    with path.open("rb") as f:
        feed = _LineFeed(f)
        try:
            for n, row in enumerate(ijson.items(feed, prefix, use_float=True), 1):
                where = f"{path}:item {n}"
                if isinstance(row, dict):
                    yield where, row, None
                else:
                    yield where, None, f"expected a JSON object, got {type(row).__name__}"
        except (ijson.JSONError, UnicodeDecodeError) as e:
            if n == 0:
                raise MedtuneError(f"{path}: {_ijson_reason(e, feed.line)} before its first item") from None
            yield f"{path}:item {n + 1}", None, f"{_ijson_reason(e, feed.line)}; {TORN}"


class _CountedLines:
    """A text file's lines for csv, counted: `n` is the last line handed out, `first` the first non-blank
    one since the caller reset it (where a row starts; csv skips blank lines between rows)."""

    def __init__(self, f: TextIO) -> None:
        self._f, self.n, self.first = f, 0, None

    def __iter__(self) -> _CountedLines:
        return self

    def __next__(self) -> str:
        line = next(self._f)
        self.n += 1
        if self.first is None and line.strip("\r\n"):
            self.first = self.n
        return line


def _csv(path: Path) -> Iterator[RawRow]:
    csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE_BYTES))  # a long answer is a row, not an error
    try:  # utf-8-sig: Excel's BOM is not part of the first column name; a non-UTF-8 byte is one bad row
        with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
            lines = _CountedLines(f)
            reader = csv.DictReader(lines, strict=True)  # strict: a stray quote is an error, not glued-on text
            if reader.fieldnames is not None and _lone_surrogate(reader.fieldnames):
                raise MedtuneError(f"{path}:1: the header is not UTF-8 text; re-save the file as UTF-8")
            while True:
                lines.first = None
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as e:  # the reader goes on with the next line; the broken row is named
                    if reader.fieldnames is None:
                        raise
                    start, end = lines.first or lines.n, lines.n  # csv's own line_num lags at an error
                    span = f"; lines {start}-{end} were read as this row" if end > start else ""
                    yield f"{path}:{start}", None, f"broken CSV quoting ({e}){span}"
                    continue
                where = f"{path}:{reader.line_num}"
                if None in row:  # more cells than header names
                    yield where, None, f"{len(row[None]) if row[None] else 0} cells more than the header has"
                    continue
                if _lone_surrogate(row):  # surrogateescape keeps an undecodable byte as a lone surrogate
                    yield where, None, "not UTF-8 text (re-save the file as UTF-8)"
                    continue
                yield where, {k: v for k, v in row.items() if k is not None}, None
    except csv.Error as e:
        raise MedtuneError(f"{path}: CSV error: {e}") from None


def _parquet(path: Path) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise MedtuneError(f"{path}: not a readable Parquet file ({e})") from None
    n = 0
    batches = pf.iter_batches(batch_size=4096)
    while True:
        try:  # a corrupt page or invalid UTF-8 in a string column breaks the file from that batch on
            batch = next(batches, None)
            rows = batch.to_pylist() if batch is not None else []
        except Exception as e:  # pyarrow raises several types (ArrowInvalid, OSError, UnicodeDecodeError)
            reason = f"unreadable Parquet data ({type(e).__name__}: {str(e)[:200]})"
            if n == 0:
                raise MedtuneError(f"{path}: {reason}") from None
            yield f"{path}:row {n + 1}", None, f"{reason}; {TORN}"
            return
        if batch is None:
            return
        for row in rows:
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
