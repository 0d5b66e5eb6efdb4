"""Resumable checkpoints: adapter weights, optimizer, scheduler, RNG state and the step reached.

Only trainable (LoRA) weights are saved, so a checkpoint of a 135M model is a few MB. Each checkpoint is
written into a temporary folder, flushed to disk and renamed into place, so a kill during the write
leaves the previous checkpoint intact and never a half-written `step-N/`. `step.json` (written last)
records every file's size; a checkpoint that fails that check on load (a disk that lost its tail, a
copy that stopped half-way) is skipped with a warning and the one before it used.
"""

from __future__ import annotations

import json
import logging
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from medtune import atomic
from medtune.errors import MedtuneError

log = logging.getLogger("medtune.train")
PREFIX = "step-"
FILES = ("trainable.safetensors", "state.pt")


def _trainable_state(model: Any) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def save(folder: Path, step: int, model: Any, optimizer: Any, scheduler: Any, keep: int, *,
         processes: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{PREFIX}{step}"
    with atomic.replacing(final) as tmp:  # synced, then renamed into place (or swapped with an older step-N)
        tmp.mkdir()
        save_file(_trainable_state(model), str(tmp / FILES[0]))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state(),
                    "python_rng": random.getstate()}, tmp / FILES[1])
        sizes = {name: (tmp / name).stat().st_size for name in FILES}
        (tmp / "step.json").write_text(json.dumps({"step": step, "processes": processes, "files": sizes}))
    for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoint folders that were renamed into place, oldest first (not yet verified: see `problem`)."""
    if not folder.exists():
        return []
    found = [p for p in folder.iterdir() if p.name.startswith(PREFIX) and p.name[len(PREFIX):].isdigit()
             and (p / "step.json").exists()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def problem(path: Path) -> str | None:
    """Why a checkpoint folder cannot be trusted, or None when it is complete."""
    try:
        meta = json.loads((path / "step.json").read_text())
        int(meta["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return "step.json is missing or unreadable"
    for name, size in (meta.get("files") or {}).items():
        f = path / name
        if not f.exists() or f.stat().st_size != size:
            return f"{name} is missing or truncated"
    return None


def load_latest(folder: Path, model: Any, optimizer: Any, scheduler: Any, *, processes: int = 1) -> tuple[Path, int]:
    """Restore the newest complete checkpoint (damaged ones are skipped); returns it and its step."""
    found = list_checkpoints(folder)
    if not found:
        raise MedtuneError(f"--resume: no checkpoint in {folder}")
    reason = ""
    for path in reversed(found):
        reason = problem(path) or ""
        if not reason:
            try:
                return path, load(path, model, optimizer, scheduler, processes=processes)
            except _Damaged as e:
                reason = str(e)
        log.warning("checkpoint %s is damaged (%s); trying the one before it", path, reason)
    raise MedtuneError(f"--resume: no usable checkpoint in {folder} (newest problem: {reason}); "
                       "start the run again in a new --output")


def check_processes(folder: Path, processes: int) -> None:
    """Refuse early (before workers start) to resume with another process count than the newest checkpoint's."""
    for path in reversed(list_checkpoints(folder)):
        if problem(path) is None:
            _same_processes(path, int(json.loads((path / "step.json").read_text()).get("processes", 1)), processes)
            return


def _same_processes(path: Path, saved: int, processes: int) -> None:
    if saved != processes:
        raise MedtuneError(f"--resume: {path} was written by {saved} training process(es), this run has "
                           f"{processes}; resume with --nproc {saved} (the data order depends on it)")


class _Damaged(Exception):
    pass


def load(path: Path, model: Any, optimizer: Any, scheduler: Any, *, processes: int = 1) -> int:
    """Restore everything saved by `save`; returns the step to continue from.

    A checkpoint written for another model, LoRA setup or number of processes is a MedtuneError naming
    what differs; an unreadable file is reported as damaged so that `load_latest` can fall back.
    """
    meta = json.loads((path / "step.json").read_text())
    _same_processes(path, int(meta.get("processes", 1)), processes)
    try:
        weights = load_file(str(path / FILES[0]))
        state = torch.load(path / FILES[1], weights_only=False)
    except (OSError, SafetensorError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        raise _Damaged(f"unreadable: {str(e).splitlines()[0][:120]}") from None
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    missing = sorted(set(params) ^ set(weights))
    shapes = [n for n in weights if n in params and tuple(weights[n].shape) != tuple(params[n].shape)]
    if missing or shapes:
        what = (f"{shapes[0]}: saved {tuple(weights[shapes[0]].shape)}, model {tuple(params[shapes[0]].shape)}"
                if shapes else f"{missing[0]} is in only one of them")
        raise MedtuneError(f"--resume: {path} was written for a different model or LoRA setup ({what}); resume "
                           "with the run's own config.yaml or start a new --output")
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor)
    try:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    except (ValueError, KeyError) as e:
        raise MedtuneError(f"--resume: {path} holds an optimizer state that does not fit this run ({e})") from None
    torch.set_rng_state(state["torch_rng"])
    np.random.set_state(state["numpy_rng"])
    random.setstate(state["python_rng"])
    return int(meta["step"])
