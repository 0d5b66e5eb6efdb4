"""The API's audit log: one SQLite row per chat request (who, when, what the guard decided, what it cost).

Text is stored only as SHA-256 hashes unless `serve.audit_raw` is on, so the log can be kept and shared
for review without holding patient text. Rows are written by one background thread (SQLite in WAL mode):
the event loop only puts a dict on a queue, and `close()` drains the queue before returning, so a
graceful shutdown loses no row. Retention (days) is applied at start and once a day.

Run as: medtune audit [--path FILE] [--since 2026-12-01|7d] [--format table|csv|jsonl]
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
import os
import queue
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from medtune.errors import MedtuneError

PRUNE_EVERY_S = 24 * 3600
COLUMNS = {  # name -> SQLite type; order is the export order
    "id": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "time": "TEXT NOT NULL",  # ISO 8601 UTC
    "ts": "REAL NOT NULL",  # unix seconds, for --since and retention
    "request_id": "TEXT",
    "key_id": "TEXT",
    "model": "TEXT",
    "status": "INTEGER",
    "action": "TEXT",
    "category": "TEXT",
    "score": "REAL",
    "finish_reason": "TEXT",
    "stream": "INTEGER",
    "latency_s": "REAL",
    "first_text_s": "REAL",
    "prompt_tokens": "INTEGER",
    "completion_tokens": "INTEGER",
    "messages_sha256": "TEXT",
    "answer_sha256": "TEXT",
    "error": "TEXT",
    "messages_raw": "TEXT",
    "answer_raw": "TEXT",
}
TABLE_COLUMNS = ("time", "key_id", "status", "action", "category", "latency_s", "first_text_s", "prompt_tokens",
                 "completion_tokens", "finish_reason")

log = logging.getLogger("medtune.serve")


def default_audit_path() -> Path:
    """$XDG_DATA_HOME/medtune/audit.sqlite3 (default ~/.local/share/medtune/audit.sqlite3)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "medtune" / "audit.sqlite3"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def messages_digest(messages: Any) -> str:
    """A stable hash of the request's messages (canonical JSON)."""
    return sha256_text(json.dumps(messages, sort_keys=True, ensure_ascii=False, default=str))


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    cols = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
    con.execute(f"CREATE TABLE IF NOT EXISTS requests ({cols})")
    con.execute("CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts)")
    con.commit()
    return con


class AuditLog:
    """Background SQLite writer. `record()` never blocks on disk; `close()` flushes every queued row."""

    def __init__(self, path: str | Path | None = None, *, raw: bool = False, retention_days: int = 30) -> None:
        self.path = Path(path).expanduser() if path else default_audit_path()
        self.raw, self.retention_days = raw, retention_days
        try:
            self._con = _connect(self.path)
        except (OSError, sqlite3.Error) as e:
            raise MedtuneError(f"audit log {self.path}: cannot open it ({e}); set serve.audit_path") from e
        self._last_prune = 0.0
        self.prune()
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._written = 0
        self._thread = threading.Thread(target=self._writer, name="medtune-audit", daemon=True)
        self._thread.start()

    def record(self, row: dict[str, Any]) -> None:
        """Queue one row (unknown keys are an error; raw text is dropped unless raw logging is on)."""
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise ValueError(f"audit row: unknown columns {sorted(unknown)}")
        now = time.time()
        row = {"ts": now, "time": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="milliseconds"), **row}
        if not self.raw:
            row.pop("messages_raw", None)
            row.pop("answer_raw", None)
        self._queue.put(row)

    @property
    def written(self) -> int:
        return self._written

    def close(self) -> None:
        """Write every queued row, then stop the writer (idempotent)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        try:
            self._con.close()
        except sqlite3.Error:
            pass

    def prune(self) -> int:
        """Delete rows older than the retention period; returns how many."""
        self._last_prune = time.time()
        if self.retention_days <= 0:
            return 0
        cutoff = time.time() - self.retention_days * 86400
        cur = self._con.execute("DELETE FROM requests WHERE ts < ?", (cutoff,))
        self._con.commit()
        return cur.rowcount

    def _writer(self) -> None:
        while True:
            rows = [self._queue.get()]
            while True:  # batch whatever else is waiting into one transaction
                try:
                    rows.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in rows
            real = [r for r in rows if r is not None]
            try:  # the writer outlives a bad disk moment: it logs, drops that batch, and keeps writing
                if real:
                    self._insert(real)
                if not stop and time.time() - self._last_prune > PRUNE_EVERY_S:
                    self.prune()
            except (sqlite3.Error, RuntimeError) as e:
                log.error("audit log %s: %s (%d rows lost)", self.path, e, len(real))
            finally:
                for _ in rows:
                    self._queue.task_done()
            if stop:
                return

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        names = [c for c in COLUMNS if c != "id"]
        sql = f"INSERT INTO requests ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        for attempt in range(5):
            try:
                with self._con:
                    self._con.executemany(sql, [tuple(r.get(n) for n in names) for r in rows])
                self._written += len(rows)
                return
            except sqlite3.OperationalError:  # locked by a reader for longer than the timeout: retry
                time.sleep(0.2 * (attempt + 1))
        raise RuntimeError(f"audit log {self.path}: could not write {len(rows)} rows")


def parse_since(value: str | None) -> float | None:
    """`7d`, `12h`, `30m` (ago) or an ISO date/time (UTC when no zone) -> unix seconds."""
    if not value:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhm])\s*", value)
    if m:
        seconds = float(m.group(1)) * {"d": 86400, "h": 3600, "m": 60}[m.group(2)]
        return time.time() - seconds
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise MedtuneError(f"--since {value}: expected a date (2026-12-01), a time (2026-12-01T08:00) "
                           "or an age (7d, 12h, 30m)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def read_rows(path: str | Path | None = None, since: str | None = None) -> list[dict[str, Any]]:
    """Rows of an audit log, oldest first (optionally only those newer than `since`)."""
    p = Path(path).expanduser() if path else default_audit_path()
    if not p.is_file():
        raise MedtuneError(f"no audit log at {p} (the server writes it at serve.audit_path; pass --path FILE)")
    cutoff = parse_since(since)
    try:
        con = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=30)
        con.row_factory = sqlite3.Row
        try:
            if cutoff is None:
                rows = con.execute("SELECT * FROM requests ORDER BY id").fetchall()
            else:
                rows = con.execute("SELECT * FROM requests WHERE ts >= ? ORDER BY id", (cutoff,)).fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        raise MedtuneError(f"{p}: not a medtune audit log ({e})") from None
    return [{k: r[k] for k in r.keys() if k != "ts"} for r in rows]


def format_rows(rows: list[dict[str, Any]], fmt: str = "table") -> str:
    """table (a summary for people), csv or jsonl (every column)."""
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if fmt == "csv":
        buf = io.StringIO()
        names = [c for c in COLUMNS if c != "ts"]
        w = csv.DictWriter(buf, fieldnames=names, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()
    if fmt != "table":
        raise MedtuneError(f"--format {fmt}: choose table, csv or jsonl")
    cells = [[_cell(r.get(c)) for c in TABLE_COLUMNS] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(TABLE_COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(TABLE_COLUMNS, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
