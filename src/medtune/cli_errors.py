"""How the command line fails: one readable line, never a Python traceback.

A `MedtuneError` is the user's input (a file, row, field or flag) and exits 2. Anything else is a bug in
medtune or a library: the user gets one line with the log file holding the full trace, and exit 1. Flags
must be spelled out (argparse's prefix matching would take `--epoch` for `--epochs`), and an unknown flag
gets the closest real one as a suggestion.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """argparse without abbreviations, and with "did you mean" for unknown flags and commands."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def parse_args(self, args: Sequence[str] | None = None, namespace: object = None) -> argparse.Namespace:
        """As argparse's, but an unknown flag is reported by the command it was given to (so the suggestion
        comes from that command's flags)."""
        parsed, extras = self.parse_known_args(args, namespace)  # type: ignore[arg-type]
        if extras:
            sub = self._subparser(getattr(parsed, "command", None))
            (sub or self).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _subparser(self, name: str | None) -> argparse.ArgumentParser | None:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and name in action.choices:
                return action.choices[name]
        return None

    def error(self, message: str) -> NoReturn:
        hint = self._suggestion(message)
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}{hint}\n")

    def _suggestion(self, message: str) -> str:
        if message.startswith("unrecognized arguments:"):
            words = message.split(":", 1)[1].split()
            known = [s for a in self._actions for s in a.option_strings]
            for word in words:
                if word.startswith("-"):
                    close = difflib.get_close_matches(word.split("=", 1)[0], known, n=1, cutoff=0.6)
                    if close:
                        return f" (did you mean {close[0]}?)"
        if message.startswith("argument COMMAND: invalid choice:"):
            word = message.split("'")[1] if "'" in message else ""
            choices = [c for a in self._actions if isinstance(a, argparse._SubParsersAction) for c in a.choices]
            close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
            if close:
                return f" (did you mean {close[0]}?)"
        return ""


def log_dir() -> Path:
    """Where crash traces go: $XDG_STATE_HOME/medtune/logs (default ~/.local/state/medtune/logs)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "medtune" / "logs"


def report_crash(exc: BaseException, argv: list[str]) -> int:
    """Write the full trace to a log file and print one line naming it; returns exit status 1."""
    trace = "".join(traceback.format_exception(exc))
    where = "(could not write a log file)"
    try:
        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        path.write_text(f"medtune {' '.join(argv)}\n\n{trace}", encoding="utf-8")
        where = f"full trace in {path}"
    except OSError:
        pass
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    print(f"medtune: internal error: {type(exc).__name__}{': ' + first if first else ''} ({where}; "
          "please report it with that file)", file=sys.stderr)
    return 1
