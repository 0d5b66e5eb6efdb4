"""One writer per run folder: an advisory lock (`fcntl.flock`) on `RUN/.medtune.lock`.

Two trainings writing the same folder would interleave checkpoints and metrics and leave a run that
resumes to nonsense. The kernel drops a `flock` when its holder dies, so the lock of a killed run (even
by SIGKILL) is taken over by the next one without any stale-pid guessing; the holder's pid is written
into the file only so that the refusal can name it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from medtune.errors import MedtuneError

LOCK_NAME = ".medtune.lock"


class RunLock:
    """`with RunLock(run_dir):` — refuses at once (MedtuneError) when another live process holds it."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise MedtuneError(f"{self.path.parent} is being written by another medtune process (pid {holder}); "
                               "wait for it to finish or choose another --output") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
