"""Where the guard's fitted weights live, and the SHA-256 that proves they are the ones written.

The package ships runtime code and the fitted pair `guard_model.npz` + `guard_model.json` with their
SHA-256 (`guard_model.sha256`, in `sha256sum` format); the fit-only prompts and the fitting code stay in a
checkout of medtune (`guard/` beside `src/`), because a user's install never fits. The weights are checked
at every load: a file changed after it was written (a hand edit, a torn copy, a half-synced folder) is
refused with one line naming it, rather than silently classifying with weights nobody measured.

`medtune guard --rebuild` (a checkout only) writes a new pair to a user folder (`user_dir()`, or the
configured folder) and config key `safety.guard_model_dir` points the guard at it; unset = the shipped pair.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

from medtune.errors import MedtuneError

SHIPPED_DIR = Path(__file__).parent
FILES = ("guard_model.npz", "guard_model.json")
SHA_FILE = "guard_model.sha256"

_configured: Path | None = None


def user_dir() -> Path:
    """$XDG_DATA_HOME/medtune/guard (default ~/.local/share/medtune/guard): where a rebuilt guard goes."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "medtune" / "guard"


def configure(folder: str | Path | None) -> None:
    """Load the guard from `folder` from now on (config key safety.guard_model_dir); None = the shipped pair."""
    global _configured
    _configured = Path(folder).expanduser() if folder else None


def model_dir() -> Path:
    """The configured folder, else the weights shipped in the package."""
    return _configured or SHIPPED_DIR


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def digest_text(files: dict[str, Path]) -> str:
    """`sha256sum` lines for final name -> file holding its bytes (a temporary name while saving)."""
    return "".join(f"{sha256_of(path)}  {name}\n" for name, path in files.items())


def verify(folder: Path) -> None:
    """Raise a one-line MedtuneError unless both files of the pair match guard_model.sha256 in `folder`."""
    sha_path = folder / SHA_FILE
    if not sha_path.exists():
        raise MedtuneError(f"{sha_path}: missing, so the guard weights in {folder} cannot be checked; rebuild them "
                           "with `medtune guard --rebuild` (or reinstall medtune for the shipped ones)")
    expected: dict[str, str] = {}
    for n, line in enumerate(sha_path.read_text(encoding="utf-8").splitlines(), 1):
        digest, _, name = line.strip().partition("  ")
        if len(digest) != 64 or not name:
            raise MedtuneError(f"{sha_path}:{n}: expected '<sha256>  <file name>', got {line!r}")
        expected[name.lstrip("*")] = digest.lower()
    for name in FILES:
        if name not in expected:
            raise MedtuneError(f"{sha_path}: no SHA-256 for {name}")
        actual = sha256_of(folder / name)
        if actual != expected[name]:
            raise MedtuneError(f"{folder / name}: SHA-256 {actual[:16]}... does not match {SHA_FILE} "
                               f"({expected[name][:16]}...): the file changed after it was written; rebuild it "
                               "with `medtune guard --rebuild` (or reinstall medtune for the shipped weights)")


def checkout_root(root: Path | None = None) -> Path:
    """The medtune checkout this package runs from (the folder that holds `guard/build.py` beside `src/`).

    An installed copy has no such folder: `medtune guard --rebuild` then says, in one line, that it needs one."""
    root = root or Path(__file__).resolve().parents[3]  # <root>/src/medtune/safety/weights.py
    if not (root / "guard" / "build.py").is_file():
        raise MedtuneError(f"medtune guard --rebuild needs a checkout of medtune (its fitting code and fit-only "
                           f"prompts are not installed with the package; no guard/build.py in {root}): clone the "
                           "repository, `pip install -e .` and run it there")
    return root


def load_builder(root: Path | None = None) -> ModuleType:
    """The checkout's `guard/build.py` as module `guard.build` (with the checkout's root on sys.path)."""
    root = checkout_root(root)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module("guard.build")
