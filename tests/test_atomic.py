"""Artifacts are replaced atomically: a process killed mid-write leaves the old file or the new one, never a mix."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from medtune import atomic

MB = 1 << 20

# Rewrites ARTIFACT forever, alternating two ~3 MB contents, half the time through write_bytes (one write call)
# and half through replacing() with 64 KB chunks (a library writing a file itself); prints "ready" once the file
# holds a complete content, so the parent kills a process that is really rewriting.
WRITER = r"""
import sys
from pathlib import Path
from medtune import atomic

path = Path(sys.argv[1])
contents = [bytes([65 + k]) * (3 * 2**20 + 17 * k) for k in (0, 1)]
n = 0
while True:
    data = contents[n % 2]
    if n % 4 < 2:
        atomic.write_bytes(path, data)
    else:
        with atomic.replacing(path) as tmp, open(tmp, "wb") as f:
            for i in range(0, len(data), 65536):
                f.write(data[i:i + 65536])
    if n == 0:
        print("ready", flush=True)
    n += 1
"""


def test_kill_mid_write_leaves_old_or_new_content(tmp_path: Path) -> None:
    target = tmp_path / "artifact.bin"
    contents = {bytes([65 + k]) * (3 * MB + 17 * k) for k in (0, 1)}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    rng = random.Random(14)
    for attempt in range(6):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, env=env)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
            time.sleep(rng.uniform(0.0, 0.25))  # a random moment; what follows holds at every moment
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert target.read_bytes() in contents, f"kill {attempt}: torn or mixed content"
        visible = [p.name for p in tmp_path.iterdir() if not p.name.startswith(atomic.TMP_PREFIX)]
        assert visible == ["artifact.bin"], visible
        leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(atomic.TMP_PREFIX)]
        assert all(p.name.endswith(".artifact.bin") for p in leftovers)  # hidden, never under the final name


def test_error_inside_replacing_keeps_old_file_and_removes_temp(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    atomic.write_json(target, {"v": 1})
    with pytest.raises(RuntimeError, match="boom"), atomic.replacing(target) as tmp:
        tmp.write_text('{"v": 2, "half', encoding="utf-8")
        raise RuntimeError("boom")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_error_inside_replacing_a_folder_keeps_old_folder(tmp_path: Path) -> None:
    target = tmp_path / "best"
    target.mkdir()
    (target / "weights").write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic.replacing(target) as tmp:
        tmp.mkdir()
        (tmp / "weights").write_text("new, half written")
        raise KeyboardInterrupt
    assert (target / "weights").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["best"]


def test_nothing_written_is_an_error_and_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "plot.png"
    target.write_bytes(b"old")
    with pytest.raises(FileNotFoundError, match="nothing was written"), atomic.replacing(target):
        pass
    assert target.read_bytes() == b"old"


def test_folder_is_replaced_whole(tmp_path: Path) -> None:
    target = tmp_path / "step-5"
    target.mkdir()
    (target / "a").write_text("old a")
    (target / "stale").write_text("only in the old folder")
    with atomic.replacing(target) as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("new a")
    assert sorted(p.name for p in target.iterdir()) == ["a"] and (target / "a").read_text() == "new a"
    assert [p.name for p in tmp_path.iterdir()] == ["step-5"]


def test_keep_existing_discards_the_second_writer(tmp_path: Path) -> None:
    target = tmp_path / "cache"
    with atomic.replacing(target, keep_existing=True) as tmp:
        tmp.mkdir()
        (tmp / "x").write_text("first")
    with atomic.replacing(target, keep_existing=True) as tmp:
        tmp.mkdir()
        (tmp / "x").write_text("second")
    assert (target / "x").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]


def test_written_like_path_write_text(tmp_path: Path) -> None:
    """Same bytes and same permissions as a plain write; only how they get there differs."""
    text = "dose: ask your clinician — naïve\n"
    plain, safe = tmp_path / "plain.md", tmp_path / "safe.md"
    plain.write_text(text, encoding="utf-8")
    atomic.write_text(safe, text)
    assert safe.read_bytes() == plain.read_bytes()
    assert safe.stat().st_mode == plain.stat().st_mode
    obj = {"b": [1, 2.5, None], "a": "é"}
    atomic.write_json(tmp_path / "x.json", obj, indent=2, ensure_ascii=False, end="\n")
    assert (tmp_path / "x.json").read_text(encoding="utf-8") == json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def test_temporary_name_keeps_the_suffix_for_libraries(tmp_path: Path) -> None:
    """numpy appends .npz and matplotlib picks the format from the suffix: the temporary name ends like the final."""
    target = tmp_path / "guard_model.npz"
    with atomic.replacing(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".") and tmp.name.endswith(".guard_model.npz")
        np.savez_compressed(tmp, w=np.arange(3))
    assert np.load(target)["w"].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["guard_model.npz"]


def test_staging_folder_publishes_files_into_a_folder_that_holds_others(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("kept")
    (run / "adapter_config.json").write_text("old")
    with atomic.staging_folder(run, last=("adapter_config.json",)) as tmp:
        (tmp / "adapter_model.safetensors").write_bytes(b"w")
        (tmp / "adapter_config.json").write_text("new")
    assert sorted(p.name for p in run.iterdir()) == ["adapter_config.json", "adapter_model.safetensors", "config.yaml"]
    assert (run / "adapter_config.json").read_text() == "new" and (run / "config.yaml").read_text() == "kept"
    with pytest.raises(OSError), atomic.staging_folder(run) as tmp:
        (tmp / "adapter_config.json").write_text("torn")
        raise OSError("disk full")
    assert (run / "adapter_config.json").read_text() == "new"
    assert sorted(p.name for p in run.iterdir()) == ["adapter_config.json", "adapter_model.safetensors", "config.yaml"]


def test_guard_weight_pair_survives_a_failed_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from medtune.safety import encoder, guard
    from medtune.safety.policy import CATEGORIES

    def model(fill: float) -> guard.GuardModel:
        n = len(CATEGORIES)
        return guard.GuardModel(list(CATEGORIES), np.full((n, encoder.DIM), fill), np.zeros(n), np.arange(3),
                                np.full((n, 3), fill), {"escalate": 0.5, "refuse": 0.5}, {"note": "first"})

    model(1.0).save(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(before) == ["guard_model.json", "guard_model.npz", "guard_model.sha256"]
    monkeypatch.setattr(guard.json, "dumps", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        model(2.0).save(tmp_path)  # the weights were written, the metadata failed: neither is replaced
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    monkeypatch.undo()
    assert guard.load_model(tmp_path).weight[0, 0] == 1.0
