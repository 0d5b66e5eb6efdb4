"""What one run folder says about itself, as a `RunRecord`.

Kept apart from the folder scanning and the tables so that the rules for reading run.json live in one
place: the evaluation block has two shapes (old runs: flat "perplexity (tuned)" keys; new runs:
{"metrics", "base_metrics", "delta"} of {"value", "ci95"}), `eval/report.json` may add figures, and
metrics.jsonl fills losses an interrupted run never wrote to run.json. Anything missing or of the wrong
type becomes None, so a record can always be built.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any


@dataclass
class RunRecord:
    """One run folder read back: headline settings and metrics as fields, everything else in the two dicts."""

    path: Path
    name: str
    created: str | None = None
    status: str = "ok"  # ok | incomplete (run.json has no training block yet) | failed (a sweep combination raised)
    error: str | None = None
    model: str | None = None
    lr: float | None = None
    batch_size: int | None = None
    grad_accum: int | None = None
    effective_batch: int | None = None
    epochs: float | None = None
    max_steps: int | None = None
    lora_r: int | None = None
    steps: int | None = None
    train_loss: float | None = None
    val_loss: float | None = None
    perplexity: float | None = None
    bleu: float | None = None
    rougeL: float | None = None
    format_adherence: float | None = None
    peak_memory_mb: float | None = None
    minutes: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


METRIC_FIELDS = ("steps", "train_loss", "val_loss", "perplexity", "bleu", "rougeL", "format_adherence",
                 "peak_memory_mb", "minutes")
_EVAL_HEADLINE = ("perplexity", "bleu", "rougeL", "format_adherence")
_TRAINING_USED = ("steps", "final_loss", "eval_loss", "peak_memory_mb", "seconds")
_OLD_KEY = re.compile(r"^(.*?)\s*\((tuned|base)\)$")



def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'train': {'lr': 1e-4}} -> {'train.lr': 1e-4} (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def build_record(path: Path, info: dict[str, Any], settings: dict[str, Any], *, name: str | None = None,
                 report: dict[str, Any] | None = None, steps_log: list[dict[str, Any]] | None = None) -> RunRecord:
    """A RunRecord from already-read pieces (run.json, flattened config, eval/report.json, metrics.jsonl)."""
    training = _as_dict(info.get("training"))
    metrics = {k: v for k, v in training.items() if k not in _TRAINING_USED}
    metrics.update(_evaluation_values(_as_dict(info.get("evaluation")), report or {}))
    train_loss, val_loss, last_epoch = _from_steps_log(steps_log or [])
    if last_epoch is not None:
        metrics["epochs_trained"] = last_epoch
    batch, accum = _int(settings.get("train.batch_size")), _int(settings.get("train.grad_accum"))
    seconds = _num(training.get("seconds"))
    headline = {k: _num(metrics.pop(k, None)) for k in _EVAL_HEADLINE}
    return RunRecord(
        path=Path(path), name=name or Path(path).name, created=_created(path, info),
        status="ok" if training else "incomplete",
        model=info.get("base_model") or settings.get("model.name"),
        lr=_num(settings.get("train.lr")), batch_size=batch, grad_accum=accum,
        effective_batch=batch * accum if batch is not None and accum is not None else None,
        epochs=_num(settings.get("train.epochs")), max_steps=_int(settings.get("train.max_steps")),
        lora_r=_int(settings.get("lora.r")), steps=_int(training.get("steps")),
        train_loss=_first(_num(training.get("final_loss")), train_loss),
        val_loss=_first(_num(training.get("eval_loss")), val_loss),
        peak_memory_mb=_num(training.get("peak_memory_mb")),
        minutes=seconds / 60 if seconds is not None else None,
        **headline,
        settings=dict(settings), metrics=metrics,
    )


def _evaluation_values(evaluation: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """Flat evaluation values from run.json (new {metrics, base_metrics, delta} or old flat keys) and report.json."""
    out: dict[str, Any] = {}
    if isinstance(evaluation.get("metrics"), dict):
        for section, prefix in (("metrics", ""), ("base_metrics", "base."), ("delta", "delta.")):
            out.update(_metric_values(_as_dict(evaluation.get(section)), prefix))
        out.update({k: v for k, v in evaluation.items() if not isinstance(v, dict)})
    else:  # old runs: "perplexity (tuned)", "test loss (base)", "test rows"
        for key, value in evaluation.items():
            match = _OLD_KEY.match(key)
            stem = _snake(match.group(1) if match else key)
            out[f"base.{stem}" if match and match.group(2) == "base" else stem] = value
    for dataset, entry in _as_dict(report.get("datasets")).items():
        values = _metric_values(_as_dict(_as_dict(entry).get("metrics")), "")
        for key, value in values.items():
            out[f"report.{dataset}.{key}"] = value
            if key in _EVAL_HEADLINE and out.get(key) is None:
                out[key] = value
    return out


def _metric_values(section: dict[str, Any], prefix: str) -> dict[str, Any]:
    """{'bleu': {'value': 12, 'ci95': [..]}} -> {'bleu': 12, 'bleu.ci95': [..]}."""
    out: dict[str, Any] = {}
    for key, entry in section.items():
        if isinstance(entry, dict):
            out[f"{prefix}{key}"] = entry.get("value")
            out.update({f"{prefix}{key}.{sub}": v for sub, v in entry.items() if sub != "value"})
        else:
            out[f"{prefix}{key}"] = entry
    return out


def _from_steps_log(rows: list[dict[str, Any]]) -> tuple[float | None, float | None, float | None]:
    """(last train loss, last eval_loss, last epoch) from metrics.jsonl, for runs whose run.json lacks them."""
    def last(key: str) -> float | None:
        return next((v for r in reversed(rows) if (v := _num(r.get(key))) is not None), None)
    return last("loss"), last("eval_loss"), last("epoch")


def _created(path: Path, info: dict[str, Any]) -> str | None:
    for key in ("created", "created_at", "started"):
        if isinstance(info.get(key), str):
            return info[key]
    try:
        return datetime.fromtimestamp(Path(path).stat().st_mtime).isoformat(timespec="seconds")
    except OSError:
        return None


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _snake(text: str) -> str:
    return re.sub(r"\W+", "_", text.strip()).strip("_").lower()


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):  # YAML 1.1 reads 1e-4 as text
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _int(value: Any) -> int | None:
    number = _num(value)
    return int(number) if number is not None and math.isfinite(number) and number.is_integer() else None


def _first(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


