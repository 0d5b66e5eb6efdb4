"""Every artifact medtune writes goes through here: written under a temporary name in its own folder,
flushed to disk, then renamed over the final name.

Why: a run is killed at any moment (Ctrl-C, the OOM killer, a preempted job, a full disk), and the next
stage trusts what it finds: a torn run.json or half a safetensors file would be read as garbage or fail
far from its cause. A rename within one file system is atomic, so the final name always holds either the
previous complete file or the new complete one. After a kill the only trace is a hidden `.tmp-*` file
beside it, never a partial file under the final name.

Plain content goes through `write_text` / `write_bytes` / `write_json`; a library that writes files itself
(matplotlib's savefig, safetensors' save_file, PEFT's save_pretrained into a folder) writes to the path that
`replacing(path)` yields, and the file or folder is renamed into place when the block ends without error.
A folder is swapped in one step where the kernel allows it (Linux renameat2 RENAME_EXCHANGE); elsewhere the
old folder is renamed aside first, so a kill in between leaves it under a hidden name, not a mix of both.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TMP_PREFIX = ".tmp-"  # hidden, and the final name's suffix is kept (numpy and matplotlib read it)


def temp_path(path: str | Path) -> Path:
    """A fresh, hidden name beside `path` that ends like it: `.tmp-<random>.<name>`."""
    path = Path(path)
    return path.with_name(f"{TMP_PREFIX}{secrets.token_hex(6)}.{path.name}")


def write_bytes(path: str | Path, data: bytes) -> None:
    """Like Path.write_bytes (same permissions: 0o666 less the umask), atomically."""
    with replacing(path) as tmp:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except OSError as e:  # name the file the caller asked for, not the temporary one
            raise type(e)(e.errno, e.strerror, str(path)) from None
        with os.fdopen(fd, "wb") as f:
            f.write(data)


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Like Path.write_text (no newline translation), atomically."""
    write_bytes(path, text.encode(encoding))


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2, ensure_ascii: bool = True,
               default: Any = None, end: str = "") -> None:
    """`json.dumps(obj, indent=..., ensure_ascii=..., default=...) + end`, written atomically."""
    write_text(path, json.dumps(obj, indent=indent, ensure_ascii=ensure_ascii, default=default) + end)


@contextlib.contextmanager
def replacing(path: str | Path, *, keep_existing: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write a file or a folder to; on leaving the block without error
    the temporary is synced to disk and renamed to `path` (replacing what was there). On error it is removed
    and `path` is left as it was.

    keep_existing: when `path` already exists at that moment (another process published it first), keep it and
    discard the temporary: for caches that any writer may fill.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        if not os.path.lexists(tmp):
            raise FileNotFoundError(f"{tmp}: nothing was written there to replace {path} with")
        if keep_existing and os.path.lexists(path):
            return
        publish(tmp, path)
    finally:
        _remove(tmp)


def publish(tmp: str | Path, path: str | Path) -> None:
    """Sync the finished file or folder `tmp` (beside `path`) to disk and rename it to `path`, replacing what was
    there; a folder replacing a folder is swapped in one step and the old one removed."""
    tmp, path = Path(tmp), Path(path)
    _sync(tmp)
    _move_into_place(tmp, path)
    _fsync_path(path.parent)
    _remove(tmp)  # after a swap: the old folder


def publish_files(staging: Path, dest: Path, *, last: tuple[str, ...] = ()) -> list[Path]:
    """Move each file of the folder `staging` into the folder `dest`, one atomic rename per file (the names in
    `last` go last: the file that marks the set complete), then remove `staging`. For a library that writes
    several files into a folder that already holds other things (PEFT's adapter inside a run folder)."""
    names = [n for n in sorted(os.listdir(staging)) if n not in last] + [n for n in last if (staging / n).exists()]
    moved = []
    for name in names:
        publish(staging / name, dest / name)
        moved.append(dest / name)
    _remove(staging)
    return moved


@contextlib.contextmanager
def staging_folder(dest: str | Path, *, last: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield an empty temporary folder inside `dest`; what is written there is moved into `dest` file by file
    (see publish_files) when the block ends without error, and removed on error."""
    dest = Path(dest)
    tmp = temp_path(dest / "staging")
    tmp.mkdir()
    try:
        yield tmp
        publish_files(tmp, dest, last=last)
    finally:
        _remove(tmp)


def _move_into_place(tmp: Path, path: Path) -> None:
    if tmp.is_dir() and not tmp.is_symlink() and path.is_dir() and not path.is_symlink():
        if _exchange(tmp, path):  # tmp now holds the old folder; the finally of replacing removes it
            return
        aside = temp_path(path)
        os.replace(path, aside)
        try:
            os.replace(tmp, path)
        except OSError:
            os.replace(aside, path)
            raise
        _remove(aside)
        return
    os.replace(tmp, path)


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


@functools.cache
def _renameat2() -> Any:
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2); False where the C library or file system lacks it."""
    fn = _renameat2()
    return fn is not None and fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def _sync(path: Path) -> None:
    """fsync a file, or every file and folder under a folder, so the rename never publishes unwritten data."""
    if path.is_dir() and not path.is_symlink():
        for root, _dirs, files in os.walk(path):
            for name in files:
                if not (Path(root) / name).is_symlink():
                    _fsync_file(Path(root) / name)
            _fsync_path(Path(root))
    elif not path.is_symlink():
        _fsync_file(path)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_path(path: Path) -> None:
    """fsync a folder (its entries: the rename itself), where the platform allows it."""
    with contextlib.suppress(OSError):
        _fsync_file(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
