"""Resume that cannot lie, through the real CLI on the tiny random Llama: SIGKILL after a checkpoint and
during a checkpoint write, then plain `--resume` (no flags) ends at the uninterrupted run's step with the
same adapter; torn metrics lines and damaged checkpoints fall back; contradicting flags, folders that are
not runs, a second writer and a checkpoint from another LoRA setup are clear errors.

The training subprocess is slowed (and, for the write fault, paused inside `torch.save` of the second
checkpoint) by a wrapper script that patches torch in that subprocess only; medtune itself has no test hook.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from conftest import ASSETS
from medtune.config import Config
from medtune.errors import MedtuneError
from medtune.model.load import load_for_training
from medtune.train import checkpoint
from medtune.train.lock import RunLock

ARGS = ["--data", str(ASSETS / "qa_small.jsonl"), "--val-fraction", "0", "--batch-size", "2", "--epochs", "2",
        "--max-length", "256", "--lora-r", "8", "--lr", "5e-3", "--seed", "3", "--save-steps", "2",
        "--set", "train.precision=fp32", "--set", "train.warmup_ratio=0", "--set", "data.system_prompt=Be careful.",
        "--set", "train.save_total_limit=3"]
STEPS = 12  # 12 rows / batch 2 = 6 steps an epoch, 2 epochs

WRAPPER = r"""
import os, sys, time, pathlib, torch
fault = os.environ.get("FAULT", "")
real_step = torch.optim.AdamW.step
def slow_step(self, *a, **k):
    time.sleep(0.3)
    return real_step(self, *a, **k)
torch.optim.AdamW.step = slow_step
if fault == "in-checkpoint":
    real_save, calls = torch.save, {"n": 0}
    def hanging_save(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint: state.pt half-written, then stuck until killed
            pathlib.Path(a[1]).write_bytes(b"half")
            pathlib.Path(os.environ["MARKER"]).write_text("in write")
            time.sleep(600)
        return real_save(*a, **k)
    torch.save = hanging_save
from medtune.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _env(**extra):
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **extra}


def _medtune(*args, timeout=600, **env):
    return subprocess.run([sys.executable, "-c", WRAPPER, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=_env(**env))


def _start(*args, **env):
    return subprocess.Popen([sys.executable, "-c", WRAPPER, *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=_env(**env))


def _wait_for(cond, proc, seconds=300):
    end = time.time() + seconds
    while time.time() < end and not cond():
        assert proc.poll() is None, "training ended before the fault could be injected"
        time.sleep(0.1)
    assert cond(), "fault point never reached"


def _kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)


def _losses(run):
    return [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]


def _assert_same_run(a, b):
    assert json.loads((b / "run.json").read_text())["training"]["steps"] == STEPS
    assert [json.loads(x)["step"] for x in (b / "metrics.jsonl").read_text().splitlines()] == list(range(1, STEPS + 1))
    for x, y in zip(_losses(a), _losses(b)):
        assert x == pytest.approx(y, rel=1e-5)
    wa, wb = load_file(a / "adapter_model.safetensors"), load_file(b / "adapter_model.safetensors")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def straight(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    res = _medtune("train", "--model", tiny_model_dir, *ARGS, "--output", out)
    assert res.returncode == 0, res.stderr[-2000:]
    return out


def test_sigkill_after_a_checkpoint_then_plain_resume(straight, tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    proc = _start("train", "--model", tiny_model_dir, *ARGS, "--output", run)
    _wait_for(lambda: (run / "checkpoints" / "step-4").exists(), proc)
    _kill(proc)
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 99, "lo')  # the kill cut the last record short
    res = _medtune("train", "--output", run, "--resume")  # no other flag: the saved config is used
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and "unreadable record" in res.stderr
    _assert_same_run(straight, run)


def test_sigkill_during_a_checkpoint_write_then_plain_resume(straight, tiny_model_dir, tmp_path):
    run, marker = tmp_path / "run", tmp_path / "marker"
    proc = _start("train", "--model", tiny_model_dir, *ARGS, "--output", run, FAULT="in-checkpoint", MARKER=marker)
    _wait_for(marker.exists, proc)
    _kill(proc)
    ckpts = run / "checkpoints"
    assert list(ckpts.glob(".tmp-*.step-4")) and not (ckpts / "step-4").exists() and (ckpts / "step-2").exists()
    res = _medtune("train", "--output", run, "--resume")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resuming from" in res.stderr and "step-2" in res.stderr
    _assert_same_run(straight, run)


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(straight, tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    proc = _start("train", "--model", tiny_model_dir, *ARGS, "--output", run)
    _wait_for(lambda: (run / "checkpoints" / "step-6").exists(), proc)
    _kill(proc)
    newest = checkpoint.list_checkpoints(run / "checkpoints")[-1]
    state = newest / "state.pt"
    state.write_bytes(state.read_bytes()[:100])  # a disk that lost the file's tail
    res = _medtune("train", "--output", run, "--resume")
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"checkpoint {newest} is damaged" in res.stderr
    _assert_same_run(straight, run)


def _main(capsys, *args):
    """The CLI in this process (fast refusals); returns (exit status, stdout, stderr)."""
    from medtune.cli import main

    status = main([str(a) for a in args])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_contradicting_flags_are_refused_and_repeated_ones_accepted(straight, tiny_model_dir, capsys):
    status, _, err = _main(capsys, "train", "--output", straight, "--resume", "--epochs", "3")
    assert status == 2 and "--epochs 3" in err and "train.epochs" in err
    status, _, err = _main(capsys, "train", "--output", straight, "--resume", "--set", "lora.r=4")
    assert status == 2 and "lora.r" in err
    status, _, err = _main(capsys, "train", "--output", straight, "--resume", "--set", "train.nonsense=1")
    assert status == 2 and "train.nonsense" in err
    # the original command plus --resume is accepted (it finds the finished run's final checkpoint)
    status, out, err = _main(capsys, "train", "--model", tiny_model_dir, *ARGS, "--output", straight, "--resume")
    assert status == 0, err[-2000:]
    assert f"trained {STEPS} steps" in out


def test_resume_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    status, _, err = _main(capsys, "train", "--output", tmp_path / "missing", "--resume")
    assert status == 2 and "does not exist" in err
    (tmp_path / "plain").mkdir()
    status, _, err = _main(capsys, "train", "--output", tmp_path / "plain", "--resume")
    assert status == 2 and "not a medtune run folder" in err
    status, _, err = _main(capsys, "train", "--resume")
    assert status == 2 and "--output" in err


def test_two_writers_are_refused_and_a_dead_holder_is_taken_over(tiny_model_dir, tmp_path, capsys):
    run = tmp_path / "run"
    with RunLock(run):  # flock is per open file: a second open in this same process conflicts too
        status, _, err = _main(capsys, "train", "--model", tiny_model_dir, *ARGS, "--max-steps", "1", "--output", run)
        assert status == 2 and f"pid {os.getpid()}" in err
    assert not (run / "config.yaml").exists()  # refused before writing anything
    (run / ".medtune.lock").write_text("999999\n")  # left by a killed run: no live flock behind it
    status, _, err = _main(capsys, "train", "--model", tiny_model_dir, *ARGS, "--max-steps", "1", "--output", run)
    assert status == 0, err[-2000:]


def test_checkpoint_from_another_lora_setup_is_a_clear_error(tiny_model_dir, tmp_path):
    cfg = Config()
    cfg.model.name = str(tiny_model_dir)
    cfg.lora.r = 8
    model, _, _ = load_for_training(cfg.model, cfg.lora)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    checkpoint.save(tmp_path / "ck", 3, model, opt, sched, keep=2)
    assert checkpoint.load_latest(tmp_path / "ck", model, opt, sched)[1] == 3
    cfg.lora.r = 4
    other, _, _ = load_for_training(cfg.model, cfg.lora)
    opt2 = torch.optim.AdamW([p for p in other.parameters() if p.requires_grad])
    with pytest.raises(MedtuneError, match="different model or LoRA setup"):
        checkpoint.load_latest(tmp_path / "ck", other, opt2, sched)
    with pytest.raises(MedtuneError, match="--nproc 1"):
        checkpoint.load_latest(tmp_path / "ck", model, opt, sched, processes=2)
