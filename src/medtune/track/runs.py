"""Experiment tracking over run folders: find runs, tabulate them, diff two of them.

Medical fine-tuning projects keep an experiment table by hand (lr, batch, losses, BLEU, ROUGE-L, memory,
minutes) and it drifts from what was actually run. Here the run folders are the only source of truth: every
figure is read back from `run.json`, `config.yaml`, `metrics.jsonl` and `eval/report.json`, so the table can be
rebuilt at any time and there is no index to fall out of date. Runs written before the evaluation block
changed shape (flat "perplexity (tuned)" keys) are read too, and a missing or unreadable value is None rather
than an error, so one odd folder never hides the others.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from pathlib import Path
from typing import Any

import yaml

from medtune.track.record import METRIC_FIELDS, RunRecord, build_record, finite, flatten

log = logging.getLogger(__name__)


# ---- reading -------------------------------------------------------------------------------------------------

def find_runs(root: Path = Path("runs")) -> list[RunRecord]:
    """Every run folder (one holding run.json) at `root` or one or two levels below it, oldest first."""
    root = Path(root)
    records = []
    for run_dir in _run_dirs(root, depth=2):
        name = run_dir.relative_to(root).as_posix() if run_dir != root else root.name
        record = load_run(run_dir, name=name)
        if record is not None:
            records.append(record)
    return sorted(records, key=lambda r: (r.created or "", r.name))


def _run_dirs(folder: Path, depth: int) -> list[Path]:
    if (folder / "run.json").is_file():
        return [folder]  # a run's own subfolders (checkpoints, data, eval) are never runs
    if depth == 0 or not folder.is_dir():
        return []
    children = sorted(c for c in folder.iterdir() if c.is_dir() and not c.name.startswith("."))
    return [run for child in children for run in _run_dirs(child, depth - 1)]


def load_run(path: Path, name: str | None = None, settings: dict[str, Any] | None = None) -> RunRecord | None:
    """Read one run folder; None (and a warning naming the file) when its run.json is unreadable.

    `settings` (flattened config) is used when the folder has no config.yaml, e.g. a sweep that knows the config.
    """
    path = Path(path)
    info_path = path / "run.json"
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        if not isinstance(info, dict):
            raise ValueError("expected a JSON object")
    except (OSError, ValueError) as e:
        log.warning("skipping %s: unreadable run.json (%s)", info_path, e)
        return None
    found = _read_settings(path)
    report = _read_json_quietly(path / "eval" / "report.json")
    return build_record(path, info, found or settings or {}, name=name, report=report, steps_log=load_metrics(path))


def load_metrics(path: Path) -> list[dict[str, Any]]:
    """The lines of a run's metrics.jsonl (training steps, some with eval_loss); bad lines are skipped."""
    try:
        lines = (Path(path) / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError):
        return []
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _read_settings(path: Path) -> dict[str, Any]:
    config_path = path / "config.yaml"
    if not config_path.is_file():
        return {}
    try:
        values = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError) as e:
        log.warning("%s: unreadable config.yaml, settings left empty (%s)", config_path, e)
        return {}
    return flatten(values) if isinstance(values, dict) else {}


def _read_json_quietly(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        log.warning("%s: unreadable, ignored (%s)", path, e)
        return {}
    return value if isinstance(value, dict) else {}


# ---- the experiment table --------------------------------------------------------------------------------------

COLUMNS = ("run", "status", "lr", "batch", "effective batch", "epochs", "steps", "train loss", "val loss",
           "perplexity", "BLEU", "ROUGE-L", "peak memory (MB)", "minutes", "best")
_FORMATS = {"lr": ".3g", "epochs": ".3g", "train loss": ".4f", "val loss": ".4f", "perplexity": ".3f",
            "BLEU": ".2f", "ROUGE-L": ".3f", "peak memory (MB)": ".0f", "minutes": ".1f"}
_TEXT_COLUMNS = ("run", "status", "best")


def best_run(records: list[RunRecord]) -> RunRecord | None:
    """The finished run with the lowest val loss (or, when no run has one, the lowest perplexity)."""
    for attr in ("val_loss", "perplexity"):
        candidates = [r for r in records if r.status == "ok" and finite(getattr(r, attr))]
        if candidates:
            return min(candidates, key=lambda r: getattr(r, attr))
    return None


def runs_table(records: list[RunRecord], fmt: str = "markdown") -> str:
    """The experiment table as markdown (aligned, for reading) or CSV (full precision, for spreadsheets)."""
    best = best_run(records)
    rows = [_table_row(r, r is best) for r in records]
    if fmt == "csv":
        return _csv(rows)
    if fmt == "markdown":
        return _markdown(rows, records)
    raise ValueError(f"unknown table format {fmt!r} (markdown or csv)")


def _table_row(r: RunRecord, is_best: bool) -> dict[str, Any]:
    epochs = r.metrics.get("epochs_trained")
    if not finite(epochs):
        epochs = r.epochs if not r.max_steps else None  # with max_steps the configured epochs are ignored
    values = (r.name, r.status, r.lr, r.batch_size, r.effective_batch, epochs, r.steps, r.train_loss, r.val_loss,
              r.perplexity, r.bleu, r.rougeL, r.peak_memory_mb, r.minutes, "best" if is_best else "")
    return dict(zip(COLUMNS, values))


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return buffer.getvalue()


def _markdown(rows: list[dict[str, Any]], records: list[RunRecord]) -> str:
    cells = [list(COLUMNS)] + [[_cell(col, row[col]) for col in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]

    def line(values: list[str]) -> str:
        return "| " + " | ".join(v.ljust(w) if c in _TEXT_COLUMNS else v.rjust(w)
                                 for c, v, w in zip(COLUMNS, values, widths)) + " |"

    rule = "|" + "|".join("-" * (w + 1) + (":" if c not in _TEXT_COLUMNS else "-") for c, w in zip(COLUMNS, widths))
    out = [line(cells[0]), rule + "|"] + [line(c) for c in cells[1:]]
    failures = [f"- {r.name}: {r.error}" for r in records if r.status == "failed"]
    return "\n".join(out + (["", "Failed runs:", *failures] if failures else [])) + "\n"


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and column in _FORMATS:
        return format(value, _FORMATS[column])
    return str(value)


# ---- diff ------------------------------------------------------------------------------------------------------

def diff_runs(a: RunRecord, b: RunRecord) -> list[tuple[str, Any, Any]]:
    """(dotted key, value in a, value in b) for every differing setting, then every differing metric; each sorted."""
    return _diff(a.settings, b.settings) + _diff(_all_metrics(a), _all_metrics(b))


def _all_metrics(r: RunRecord) -> dict[str, Any]:
    return {**{k: getattr(r, k) for k in METRIC_FIELDS}, **r.metrics}


def _diff(x: dict[str, Any], y: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    return [(k, x.get(k), y.get(k)) for k in sorted(x.keys() | y.keys()) if not _same(x.get(k), y.get(k))]


def _same(x: Any, y: Any) -> bool:
    both_nan = isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y)
    return both_nan or x == y


def format_diff(diff: list[tuple[str, Any, Any]], a_label: str = "a", b_label: str = "b") -> str:
    """The diff as three aligned columns: key, value in a, value in b."""
    if not diff:
        return "no differences\n"
    rows = [("key", a_label, b_label)] + [(k, _show(x), _show(y)) for k, x, y in diff]
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    return "".join(f"{k.ljust(widths[0])}  {x.ljust(widths[1])}  {y}".rstrip() + "\n" for k, x, y in rows)


def _show(value: Any, limit: int = 60) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = format(value, ".6g")
    elif isinstance(value, (list, tuple)):
        text = ",".join(_show(v) for v in value)
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
