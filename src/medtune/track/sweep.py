"""Hyper-parameter sweeps: run every combination of a small grid, each into its own run folder.

A sweep is only a loop over `load_config` overrides, so every combination is an ordinary run folder
(`out_root/<short name>/`) that `find_runs` lists and `diff_runs` compares like any other. A combination whose
run.json already holds a training block is skipped and one with checkpoints is resumed, so an interrupted or
partly failed sweep is continued by running the same command again; a combination that raises is logged and
shown as failed instead of stopping the others. Every config is built before the first run, so a typo in a key
or value fails at once rather than hours in. The experiment table (markdown, CSV) and a chart are rewritten
after every combination, so they are current even when the sweep is stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medtune import atomic
from medtune.config import Config, load_config, to_dict
from medtune.errors import MedtuneError
from medtune.track.record import RunRecord, build_record, finite, flatten
from medtune.track.runs import best_run, load_metrics, load_run, runs_table

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9.+_-]")
_MAX_NAME = 80
_RESERVED = ("output", "name")  # the sweep sets each run's folder itself
_BEST_COLOR = "tab:orange"  # the best run has this colour in both panels
_OTHER_COLORS = ("tab:blue", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan")


def parse_grid(specs: list[str]) -> dict[str, list[str]]:
    """["train.lr=1e-4,2e-4", "lora.r=8,16"] -> {"train.lr": ["1e-4", "2e-4"], "lora.r": ["8", "16"]}.

    Keys are dotted config paths as in `--set`; values stay text and are typed by load_config.
    """
    grid: dict[str, list[str]] = {}
    for spec in specs:
        key, sep, raw = spec.partition("=")
        key = key.strip()
        if not sep or not key:
            raise MedtuneError(f"sweep: expected KEY=V1,V2,... (e.g. train.lr=1e-4,2e-4), got {spec!r}")
        values = [v.strip() for v in raw.split(",")]
        if not raw.strip() or not all(values):
            raise MedtuneError(f"sweep: {spec!r} has an empty value; give values as {key}=V1,V2,...")
        if len(set(values)) != len(values):
            raise MedtuneError(f"sweep: {spec!r} repeats a value")
        if key in grid:
            raise MedtuneError(f"sweep: '{key}' is given twice; put all its values in one spec ({key}=V1,V2,...)")
        if key in _RESERVED:
            raise MedtuneError(f"sweep: '{key}' cannot be swept: each combination gets its own folder under the "
                               "sweep's output folder")
        grid[key] = values
    return grid


def combinations(grid: dict[str, list[str]]) -> list[dict[str, str]]:
    """Every combination, in grid order with the last key varying fastest."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def run_name(combo: dict[str, str]) -> str:
    """A short folder name: {"train.lr": "1e-4", "lora.r": "8"} -> "lr1e-4-r8".

    Keys are shortened to their last part (unless two share it); a value with characters unsafe in a file
    name is cleaned and tagged with a hash of the original, so distinct values never share a name.
    """
    last = [key.rsplit(".", 1)[-1] for key in combo]
    parts = []
    for key, short in zip(combo, last):
        label = short if last.count(short) == 1 else key
        value = str(combo[key])
        safe = _UNSAFE.sub("_", value)
        parts.append(label + (safe if safe == value else f"{safe}_{_digest(value)}"))
    name = "-".join(parts) or "base"
    if len(name) > _MAX_NAME:
        name = f"{name[:_MAX_NAME - 7]}-{_digest(json.dumps(combo, sort_keys=True))}"
    return name


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:6]


def _unique_names(combos: list[dict[str, str]]) -> list[str]:
    """run_name for each combination; the rare clash (values that look like other labels) gets a hash."""
    names = [run_name(c) for c in combos]
    return [f"{n}-{_digest(json.dumps(c, sort_keys=True))}" if names.count(n) > 1 else n
            for n, c in zip(names, combos)]


def sweep(base_overrides: list[str], config_path: str | None, grid: dict[str, list[str]], out_root: Path,
          run_one: Callable[[Config], Any]) -> list[RunRecord]:
    """Run `run_one(cfg)` for every combination of `grid` into `out_root/<name>/`; write the experiment table.

    Returns one record per combination, in grid order (finished, skipped and failed alike). Writes
    out_root/experiments.md, experiments.csv and experiments.png.
    """
    if not grid:
        raise MedtuneError("sweep: nothing to sweep; give at least one KEY=V1,V2 spec")
    out_root = Path(out_root)
    combos = combinations(grid)
    names = _unique_names(combos)
    configs = [load_config(config_path, _overrides(base_overrides, combo, out_root / name))
               for combo, name in zip(combos, names)]
    records: list[RunRecord] = []
    for i, (name, cfg) in enumerate(zip(names, configs), 1):
        tag = f"sweep {i}/{len(configs)}: {name}"
        run_dir = out_root / name
        error = None
        if _finished(run_dir):
            log.info("%s already finished, skipped", tag)
        else:
            log.info(tag)
            error = _run_combination(cfg, run_dir, run_one, tag)
        records.append(_record(run_dir, name, cfg, error))
        write_reports(records, out_root)
    failed = sum(r.status == "failed" for r in records)
    log.info("sweep done: %d runs, %d failed; table in %s", len(records), failed, out_root / "experiments.md")
    return records


def _overrides(base: list[str], combo: dict[str, str], run_dir: Path) -> list[str]:
    # the folder is JSON-quoted (valid YAML) so no path character is read as YAML syntax
    return [*base, *(f"{k}={v}" for k, v in combo.items()), f"output={json.dumps(str(run_dir))}"]


def _finished(run_dir: Path) -> bool:
    """True when run.json records a finished training (run.json itself is written before training starts)."""
    try:
        info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and isinstance(info.get("training"), dict)


def _run_combination(cfg: Config, run_dir: Path, run_one: Callable[[Config], Any], tag: str) -> str | None:
    """Run one combination; the error text when it raised, else None."""
    if (run_dir / "checkpoints").is_dir() and (run_dir / "data" / "manifest.json").is_file():
        log.info("%s was interrupted; resuming from its checkpoints", tag)
        cfg.train.resume = True
    try:
        run_one(cfg)
    except Exception as e:  # one bad combination must not stop the sweep; Ctrl-C still does
        log.error("%s failed: %s", tag, e, exc_info=not isinstance(e, MedtuneError))
        return str(e) if isinstance(e, MedtuneError) else f"{type(e).__name__}: {e}"
    return None


def _record(run_dir: Path, name: str, cfg: Config, error: str | None) -> RunRecord:
    settings = flatten(to_dict(cfg))
    record = load_run(run_dir, name=name, settings=settings) if (run_dir / "run.json").exists() else None
    if error is None and record is None:
        error = "the run wrote no readable run.json"
    if error is None and record is not None:
        return record
    base = record or build_record(run_dir, {}, settings, name=name, steps_log=load_metrics(run_dir))
    return dataclasses.replace(base, status="failed", error=error)


def write_reports(records: list[RunRecord], out_root: Path) -> None:
    """experiments.md, experiments.csv and experiments.png in out_root."""
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    title = f"# Experiments: {out_root.name}\n\n"
    atomic.write_text(out_root / "experiments.md", title + runs_table(records, "markdown"))
    atomic.write_text(out_root / "experiments.csv", runs_table(records, "csv"))
    plot_runs(records, out_root / "experiments.png")


def plot_runs(records: list[RunRecord], path: Path) -> Path | None:
    """Bar chart of val loss (or perplexity) per run, best highlighted, plus train-loss curves when logged."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        log.warning("matplotlib is not installed (pip install 'medtune[eval]'); %s not written", path)
        return None
    curves = {r.name: c for r in records if (c := _train_curve(r.path))[0]}
    fig = Figure(figsize=(11 if curves else 6, 4.5), layout="constrained")
    FigureCanvasAgg(fig)  # render with Agg without touching pyplot's global backend
    _bars(fig.add_subplot(1, 2 if curves else 1, 1), records)
    if curves:
        _curves(fig.add_subplot(1, 2, 2), curves, best_run(records))
    with atomic.replacing(path) as tmp:
        fig.savefig(tmp, dpi=100)  # the temporary name ends like path: its suffix picks the format
    return Path(path)


def _bars(ax: Any, records: list[RunRecord]) -> None:
    attr, label = ("val_loss", "val loss") if any(finite(r.val_loss) for r in records) else ("perplexity",
                                                                                            "perplexity")
    best = best_run(records)
    has = [finite(getattr(r, attr)) for r in records]
    values = [getattr(r, attr) if ok else 0.0 for r, ok in zip(records, has)]
    labels = [f"{v:.3f}" if ok else (r.status if r.status != "ok" else "n/a") for v, ok, r in zip(values, has, records)]
    colors = [_BEST_COLOR if r is best else _OTHER_COLORS[0] for r in records]
    bars = ax.bar(range(len(records)), values, color=colors)
    ax.bar_label(bars, labels=labels, fontsize=7)
    ax.set_xticks(range(len(records)), [r.name for r in records], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(label)
    ax.set_title(f"{label} per run" + (f" (best: {best.name})" if best else ""))


def _curves(ax: Any, curves: dict[str, tuple[list[float], list[float]]], best: RunRecord | None) -> None:
    others = itertools.cycle(_OTHER_COLORS)
    for name, (steps, losses) in curves.items():
        is_best = best is not None and name == best.name
        ax.plot(steps, losses, label=name + (" (best)" if is_best else ""), linewidth=2.5 if is_best else 1.0,
                color=_BEST_COLOR if is_best else next(others))
    ax.set_xlabel("step")
    ax.set_ylabel("train loss")
    ax.set_title("training loss")
    ax.legend(fontsize=7)


def _train_curve(run_dir: Path) -> tuple[list[float], list[float]]:
    points = [(r["step"], r["loss"]) for r in load_metrics(run_dir) if finite(r.get("step")) and finite(r.get("loss"))]
    return [p[0] for p in points], [p[1] for p in points]
