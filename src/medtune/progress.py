"""Progress that suits where the output goes: a live tqdm bar on a terminal, one line per stage in a log.

A bar redrawn into a file or a pipe (`medtune run > run.log 2>&1`, CI, a worker's captured stderr) becomes
hundreds of carriage-return fragments. There, each stage writes one line instead: what it does when it
starts and how long it took when it ends ("base answers: 4 batches ... done in 12 s"). Every progress bar
of medtune goes through `progress`, which picks one of the two by whether the stream is a terminal.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

_open: StageLine | None = None  # the stage whose line is still waiting for its "done in" part


def is_terminal(stream: TextIO | None = None) -> bool:
    """True when `stream` (default stderr) is an interactive terminal."""
    stream = stream or sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def _seconds(s: float) -> str:
    if s >= 100:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"


class StageLine:
    """The part of tqdm's interface medtune uses (iterate, update, set_postfix, close, `with`), written as one
    line per stage: "DESC: N UNITs ..." at the start, "done in T s" (or "stopped at n/N") at the end."""

    def __init__(self, iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "working",
                 unit: str = "it", initial: int = 0, disable: bool = False, file: TextIO | None = None,
                 **_ignored: Any) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n, self.initial, self.disable = initial, initial, disable
        self.file = file or sys.stderr
        self.postfix = ""
        self.started = time.perf_counter()
        self.closed = disable
        self._resumed_line = False
        if not disable:
            self._start()

    def _write(self, text: str) -> None:
        try:
            self.file.write(text)
            self.file.flush()
        except (ValueError, OSError):  # the stream went away: progress is never worth a crash
            pass

    def _start(self) -> None:
        global _open
        if _open is not None:  # a stage inside another (e.g. a probe during training): end the outer line first
            _open._write("\n")
            _open._resumed_line = True
        left = None if self.total is None else self.total - self.initial
        plural = self.unit + ("es" if self.unit.endswith(("s", "x", "ch", "sh")) else "s")
        size = "" if left is None else f" {left} {self.unit if left == 1 else plural}"
        self._write(f"{self.desc}:{size} ...")
        _open = self

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("this progress line was created without an iterable")
        try:
            for item in self.iterable:
                yield item
                self.n += 1
        finally:
            self.close()

    def __enter__(self) -> StageLine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kw: Any) -> None:
        items = {**(ordered_dict or {}), **kw}
        self.postfix = ", ".join(f"{k} {v}" for k, v in items.items())

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or self.desc

    def close(self) -> None:
        global _open
        if self.closed:
            return
        self.closed = True
        took = _seconds(time.perf_counter() - self.started)
        if self.total is not None and self.n < self.total:
            end = f"stopped at {self.n}/{self.total} after {took}"
        else:
            end = f"done in {took}"
        if self.postfix:
            end += f" ({self.postfix})"
        if _open is not self or self._resumed_line:  # another line was written since ours began
            self._write(f"{self.desc}: {end}\n")
        else:
            self._write(f" {end}\n")
        if _open is self:
            _open = None


def progress(iterable: Iterable[Any] | None = None, **kw: Any) -> Any:
    """tqdm on a terminal, a `StageLine` otherwise; takes tqdm's keywords (desc, total, unit, initial,
    disable, leave, file, dynamic_ncols)."""
    if is_terminal(kw.get("file")):
        from tqdm.auto import tqdm

        return tqdm(iterable, **kw)
    return StageLine(iterable, **kw)
