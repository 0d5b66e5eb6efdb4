"""The guard as a package ships it: runtime code, fitted weights and their SHA-256, nothing that only fits.

The wheel is built from a copy of the checkout (so the build leaves no trace in the tree) and installed into
a folder of its own, so "an installed copy" below is a real one, not a mock.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

from medtune.cli import main
from medtune.errors import MedtuneError
from medtune.safety import encoder, features, guard, weights
from medtune.safety.policy import CATEGORIES

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = weights.SHIPPED_DIR


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """medtune's wheel, built offline with the venv's setuptools from a copy of the checkout."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "checkout"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".tmp-*")
    shutil.copytree(ROOT / "src", src / "src", ignore=ignore)
    shutil.copytree(ROOT / "guard", src / "guard", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    out = work / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(out), str(src)], check=True, capture_output=True, text=True)
    (found,) = out.glob("medtune-*.whl")
    return found


def test_wheel_ships_runtime_weights_and_their_sha_but_no_fitting(wheel: Path):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        shipped = {n: z.read(f"medtune/safety/{n}") for n in (*weights.FILES, weights.SHA_FILE)}
    for name in ("medtune/safety/guard.py", "medtune/safety/weights.py", "medtune/safety/redteam.py",
                 "medtune/safety/redteam/benign.jsonl", "medtune/safety/gloss/es.tsv"):
        assert name in names, name  # runtime code, the suite the run gate and eval read, the glossaries
    fitting = [n for n in names if "redteam_fit" in n or n.startswith(("guard/", "tools/"))
               or n.endswith(("safety/build.py", "make_gibberish_fit_rows.py", "dev_figures.py"))]
    assert fitting == []
    digests = dict(reversed(line.split("  ")) for line in shipped[weights.SHA_FILE].decode().splitlines())
    assert digests == {n: hashlib.sha256(shipped[n]).hexdigest() for n in weights.FILES}
    assert sum(len(b) for b in shipped.values()) < 5_000_000 and max(z.file_size for z in zipfile.ZipFile(wheel)
                                                                      .infolist()) < 5_000_000


def test_rebuild_from_an_installed_copy_says_it_needs_a_checkout(wheel: Path, tmp_path: Path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target),
                    str(wheel)], check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(target), "XDG_DATA_HOME": str(tmp_path / "data")}
    where = subprocess.run([sys.executable, "-c", "import medtune; print(medtune.__file__)"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(target))  # the installed copy, not the checkout's src/
    done = subprocess.run([sys.executable, "-m", "medtune.cli", "guard", "--rebuild"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs a checkout of medtune" in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()  # nothing written
    with pytest.raises(MedtuneError, match="needs a checkout") as err:
        weights.load_builder(tmp_path)  # the same check, on a folder without guard/build.py
    assert "\n" not in str(err.value)
    assert weights.load_builder().FIT_DIR == ROOT / "guard" / "fit"  # this checkout has one


def _toy(bias_category: str, note: str) -> guard.GuardModel:
    """A model that puts all its mass on one category, whatever the text."""
    n = len(CATEGORIES)
    bias = np.full(n, -20.0, dtype=np.float32)
    bias[list(CATEGORIES).index(bias_category)] = 20.0
    return guard.GuardModel(list(CATEGORIES), np.zeros((n, encoder.DIM), np.float32), bias,
                            np.arange(4, dtype=np.int32), np.zeros((n, 4), np.float32),
                            {"escalate": 0.5, "refuse": 0.5}, {"note": note})


def test_tampered_weights_are_refused_with_one_line_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture):
    for name in (*weights.FILES, weights.SHA_FILE):
        shutil.copy(SHIPPED / name, tmp_path / name)
    weights.verify(tmp_path)  # the shipped set, copied, checks out
    data = bytearray((tmp_path / "guard_model.npz").read_bytes())
    data[len(data) // 2] ^= 0x01
    (tmp_path / "guard_model.npz").write_bytes(bytes(data))
    with pytest.raises(MedtuneError, match=r"guard_model\.npz: SHA-256 .* does not match guard_model\.sha256"):
        guard.load_model(tmp_path)
    assert main(["guard", "--set", f"safety.guard_model_dir={tmp_path}", "hello"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path}/guard_model.npz" in err and "Traceback" not in err

    toy = tmp_path / "toy"
    _toy("benign", "toy").save(toy)
    assert guard.load_model(toy).info["note"] == "toy"
    meta = json.loads((toy / "guard_model.json").read_text())
    meta["thresholds"]["refuse"] = 0.99  # a hand edit of the metadata is a change too
    (toy / "guard_model.json").write_text(json.dumps(meta))
    with pytest.raises(MedtuneError, match=r"guard_model\.json: SHA-256"):
        guard.load_model(toy)
    (toy / weights.SHA_FILE).unlink()
    with pytest.raises(MedtuneError, match=r"guard_model\.sha256: missing"):
        guard.load_model(toy)
    with pytest.raises(MedtuneError, match=r"no fitted guard in .*missing \(safety.guard_model_dir\)"):
        guard.use_model_dir(tmp_path / "missing")
        try:
            guard.Guard()
        finally:
            guard.use_model_dir(None)


@pytest.fixture
def rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> Path:
    """`medtune guard --rebuild` with a stand-in for the checkout's guard/build.py (a real fit takes minutes):
    the CLI's part (where it writes, what it says) is what runs."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    calls = []

    def build(data_dir: Path | None, out_dir: Path) -> dict:
        calls.append(out_dir)
        _toy("harm_others", "rebuilt").save(out_dir)
        head = {k: {"value": 0.5} for k in ("escalate_recall", "refuse_recall", "benign_refused", "benign_escalated")}
        return {"seconds": 0.1, "thresholds": {}, "cv_headline": head}

    monkeypatch.setattr(weights, "load_builder", lambda: types.SimpleNamespace(build=build))
    assert main(["guard", "--rebuild"]) == 0
    out = tmp_path / "data" / "medtune" / "guard"
    assert calls == [out]
    err = capsys.readouterr().err
    assert f"written to {out}/" in err and f"--set safety.guard_model_dir={out}" in err
    assert sorted(p.name for p in out.iterdir()) == ["guard_model.json", "guard_model.npz", "guard_model.sha256"]
    yield out
    guard.use_model_dir(None)


def test_rebuild_writes_the_user_folder_and_the_config_key_points_the_guard_at_it(rebuilt: Path, capsys):
    weights.verify(rebuilt)
    assert main(["config", "--set", f"safety.guard_model_dir={rebuilt}"]) == 0
    assert f"guard_model_dir: {rebuilt}" in capsys.readouterr().out
    assert main(["guard", "--set", f"safety.guard_model_dir={rebuilt}", "what are the symptoms of the flu"]) == 0
    assert json.loads(capsys.readouterr().out)["category"] == "harm_others"  # the rebuilt toy's only answer
    assert weights.model_dir() == rebuilt
    config = rebuilt.parent / "c.yaml"
    config.write_text("safety:\n  guard_model_dir: null\n")
    assert main(["guard", "--config", str(config), "--rebuild"]) == 0  # writes the user folder again
    assert weights.model_dir() == weights.SHIPPED_DIR  # unset: the shipped weights


@pytest.mark.parametrize("verb", ["serve", "eval", "chat"])
def test_serve_eval_and_chat_load_the_configured_guard(verb, rebuilt: Path, monkeypatch: pytest.MonkeyPatch):
    import medtune.assistant
    import medtune.eval.suite
    import medtune.serve.chat
    import medtune.serve.server

    seen = []

    def note(*a, **k):
        seen.append(guard.default_guard().model.info["note"])
        return {"datasets": {}}

    monkeypatch.setattr(medtune.serve.server, "serve", note)
    monkeypatch.setattr(medtune.eval.suite, "evaluate_safety", note)
    monkeypatch.setattr(medtune.assistant, "load_assistant", lambda *a, **k: types.SimpleNamespace(defaults=None))
    monkeypatch.setattr(medtune.serve.chat, "run_chat", lambda *a, **k: note() and 0)
    extra = {"eval": ["--suite", "safety", "--output", str(rebuilt.parent / "eval")]}.get(verb, [])
    assert main([verb, *extra, "--set", f"safety.guard_model_dir={rebuilt}"]) == 0
    assert seen == ["rebuilt"]


def test_run_fails_before_training_when_the_configured_guard_is_missing(tmp_path: Path):
    from medtune.config import load_config
    from medtune.pipeline import run

    cfg = load_config(None, [f"safety.guard_model_dir={tmp_path / 'nowhere'}", f"output={tmp_path / 'run'}"])
    try:
        with pytest.raises(MedtuneError, match=r"no fitted guard in .*nowhere \(safety.guard_model_dir\)"):
            run(cfg)
    finally:
        guard.use_model_dir(None)
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def shipped_guard() -> guard.Guard:
    """The shipped pair, SHA-256 checked. Weights that predate a policy category still carry their own labels:
    the feature check below is about features, and load_model refuses such weights elsewhere by name."""
    labels = json.loads((SHIPPED / "guard_model.json").read_text())["labels"]
    with pytest.MonkeyPatch.context() as mp:
        if set(labels) != set(CATEGORIES):
            mp.setattr(guard, "CATEGORIES", tuple(labels))
        g = guard.Guard(guard.load_model(SHIPPED))
    return g


def test_shipped_weights_reproduce_their_dev_figures_with_todays_feature_code(shipped_guard, monkeypatch):
    weights.load_builder()  # puts this checkout's root on sys.path: its guard/ folder imports as `guard`
    from guard import dev_figures  # the top-level guard/ package, not medtune.safety.guard

    labels = json.loads((SHIPPED / "guard_model.json").read_text())["labels"]
    if set(labels) != set(CATEGORIES):
        monkeypatch.setattr(guard, "CATEGORIES", tuple(labels))
    check = shipped_guard.model.info["dev_check"]
    got = dev_figures.reproduce(shipped_guard, check)
    assert got["n"] >= 0.9 * check["n"], f"{got['changed']} recorded dev rows changed since the build: refit"
    assert got["same_category"] >= 0.98, got
    diffs = sorted(got["score_diffs"])
    assert diffs[int(0.98 * len(diffs)) - 1] <= 0.02 and sum(diffs) / len(diffs) <= 0.005, diffs[-5:]
    for key, value in got["recorded"].items():
        assert abs(got["figures"][key] - value) <= 0.03, (key, got["figures"], got["recorded"])

    # the same check on a slice, with one piece of the feature code changed (no n-grams): it must notice
    monkeypatch.setattr(features, "ngrams", lambda texts: _no_ngrams(len(texts)))
    changed = dev_figures.reproduce(shipped_guard, {**check, "rows": check["rows"][:60]})
    assert max(changed["score_diffs"]) > 0.02 or changed["same_category"] < 0.98


def _no_ngrams(rows: int):
    from scipy import sparse

    return sparse.csr_matrix((rows, 2 * features.N_HASH), dtype=np.float32)
