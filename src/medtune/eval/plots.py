"""PNG figures for a run's report: loss curves, base-vs-tuned metric bars and safety figures against targets.

Numbers in JSON are exact but hard to read at a glance; a loss curve shows over-fitting or a diverging
run, and bars with their 95% CIs show whether a base-vs-tuned difference is larger than the noise. Figures
are built on `matplotlib.figure.Figure` (Agg canvas) and never touch pyplot's global state, so they are
safe in a server, a thread or a test, and leave no figures open. Each function writes one PNG (atomically:
a temporary file renamed into place) and returns its path, or None when there is nothing to draw.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from medtune import atomic
from medtune.safety.measure import TARGETS as SAFETY_TARGETS

BASE_COLOR = "#9e9e9e"
TUNED_COLOR = "#1f77b4"
DPI = 120
SAFETY_LABELS = {"escalate_recall": "escalate recall", "refuse_recall": "refuse recall",
                 "benign_refused": "benign refused", "benign_escalated": "benign escalated"}
LOWER_IS_BETTER = {"perplexity", "answer_loss", "loss", "unparsed_rate"}


def _number(x: Any) -> float | None:
    """x as a finite float, or None (bools, text, NaN and inf are not plottable numbers)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _figure(entry: Any) -> tuple[float, float, float] | None:
    """(value, ci low, ci high) of a {"value", "ci95"} figure; the CI collapses to the value when absent."""
    if not isinstance(entry, dict):
        return None
    value = _number(entry.get("value"))
    if value is None:
        return None
    ci = entry.get("ci95")
    lo = hi = None
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        lo, hi = _number(ci[0]), _number(ci[1])
    if lo is None or hi is None:
        lo = hi = value
    return value, min(lo, value), max(hi, value)


def _yerr(points: list[tuple[float, float, float]]) -> list[list[float]]:
    return [[v - lo for v, lo, _ in points], [hi - v for v, _, hi in points]]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSONL file; blank, broken (e.g. a line cut by a kill) and non-object lines are skipped."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            records.append(obj)
    return records


def _save(fig: Figure, out: Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic.replacing(out) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return out


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    pts = [(s, v) for r in records if (s := _number(r.get("step"))) is not None
           and (v := _number(r.get(key))) is not None]
    pts.sort()
    return [p[0] for p in pts], [p[1] for p in pts]


def _rolling_mean(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def loss_curves(metrics_jsonl: Path, out: Path) -> Path | None:
    """Train loss per step and eval loss (from a run's metrics.jsonl); a second panel for in-training probe
    metrics ("probe_*" keys) when the run logged any. None when there is no loss to plot."""
    records = _read_jsonl(Path(metrics_jsonl))
    train_x, train_y = _series(records, "loss")
    eval_x, eval_y = _series(records, "eval_loss")
    probe_keys = sorted({k for r in records for k in r if k.startswith("probe_") and _number(r[k]) is not None})
    if not train_x and not eval_x and not probe_keys:
        return None
    fig = Figure(figsize=(8, 4.5 if not probe_keys else 7), layout="constrained")
    axes = fig.subplots(2 if probe_keys else 1, 1, sharex=True, squeeze=False)[:, 0]
    ax = axes[0]
    if train_x:
        many = len(train_x) > 50
        ax.plot(train_x, train_y, color=TUNED_COLOR, lw=1, alpha=0.35 if many else 1.0, label="train loss")
        if many:
            window = max(5, len(train_x) // 25)
            ax.plot(train_x, _rolling_mean(train_y, window), color=TUNED_COLOR, lw=1.8,
                    label=f"train loss ({window}-step mean)")
    if eval_x:
        ax.plot(eval_x, eval_y, "o-", color="#d62728", lw=1.5, ms=5, label="eval loss")
    ax.set_ylabel("loss per answer token")
    ax.set_title("Training loss")
    ax.grid(alpha=0.3)
    if train_x or eval_x:
        ax.legend(loc="best")
    if probe_keys:
        pax = axes[1]
        for key in probe_keys:
            x, y = _series(records, key)
            pax.plot(x, y, "o-", ms=4, lw=1.2, label=key.removeprefix("probe_"))
        pax.set_ylabel("probe score")
        pax.set_title("In-training probe")
        pax.grid(alpha=0.3)
        pax.legend(loc="best")
    axes[-1].set_xlabel("optimizer step")
    return _save(fig, out)


def _unit_scale(points: list[tuple[float, float, float]]) -> bool:
    return all(-1e-9 <= x <= 1 + 1e-9 for p in points for x in p)


def _bar_group(ax: Any, names: list[str], series: list[tuple[str, str, dict[str, tuple[float, float, float]]]],
               width: float) -> None:
    """Bars of several series (label, colour, {name: figure}) side by side for each name, with CI error bars."""
    k = len(series)
    for j, (label, color, figs) in enumerate(series):
        xs = [i + (j - (k - 1) / 2) * width for i, n in enumerate(names) if n in figs]
        pts = [figs[n] for n in names if n in figs]
        if not pts:
            continue
        ax.bar(xs, [p[0] for p in pts], width, yerr=_yerr(pts), capsize=3, color=color, label=label,
               error_kw={"elinewidth": 1, "ecolor": "#333333"})
        for x, (v, _, hi) in zip(xs, pts):  # above the whisker, so the label never sits on the error bar
            ax.annotate(f"{v:.3g}", (x, hi), xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
                        fontsize=7)
    ax.set_xticks(range(len(names)), names)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def metric_bars(report_entry: dict, out: Path, title: str) -> Path | None:
    """Base vs tuned bars (95% CI error bars) for each metric of one dataset entry of an eval report.

    Metrics within [0, 1] (accuracy, ROUGE, rates) share one panel; each metric on another scale
    (perplexity, BLEU) gets its own, so a perplexity of 20 does not flatten scores of 0.3. Non-numeric
    entries and metrics without a value are skipped; None when no metric is left.
    """
    if not isinstance(report_entry, dict):
        return None
    raw_tuned = report_entry.get("metrics") if isinstance(report_entry.get("metrics"), dict) else {}
    raw_base = report_entry.get("base_metrics") if isinstance(report_entry.get("base_metrics"), dict) else {}
    tuned = {m: f for m, v in raw_tuned.items() if (f := _figure(v)) is not None}
    base = {m: f for m, v in raw_base.items() if (f := _figure(v)) is not None}
    names = list(dict.fromkeys([*tuned, *base]))
    if not names:
        return None
    unit = [m for m in names if _unit_scale([f for f in (tuned.get(m), base.get(m)) if f])]
    panels = ([unit] if unit else []) + [[m] for m in names if m not in unit]
    series = ([("base", BASE_COLOR, base)] if base else []) + ([("tuned", TUNED_COLOR, tuned)] if tuned else [])
    widths = [max(1.6, 1.1 * len(p) + 0.6) for p in panels]
    fig = Figure(figsize=(min(16.0, sum(widths) + 1.0), 4.8), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False, gridspec_kw={"width_ratios": widths})[0]
    for ax, panel in zip(axes, panels):
        _bar_group(ax, panel, series, width=0.8 / max(len(series), 1))
        if panel is unit:
            ax.set_ylim(0, 1.12)
            ax.set_ylabel("score")
        else:
            ax.set_ylim(bottom=0)
            better = "lower" if panel[0] in LOWER_IS_BETTER else "higher"
            ax.set_ylabel(f"{panel[0]} ({better} is better)")
        ax.margins(y=0.12)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=len(series), fontsize=8)
    heading = title + (f" (n={report_entry['n']})" if isinstance(report_entry.get("n"), int) else "")
    deltas = []
    for m, d in (report_entry.get("delta") or {}).items():
        f = _figure(d)
        if f is not None:
            p = _number(d.get("p_value"))
            p_text = f", p={p:.3f}" if p is not None else ""
            deltas.append(f"tuned - base {m}: {f[0]:+.3g} (95% CI {f[1]:+.3g} to {f[2]:+.3g}{p_text})")
    fig.suptitle("\n".join([heading, *deltas]), fontsize=11)
    return _save(fig, out)


def safety_bars(figures: dict, out: Path) -> Path | None:
    """Safety headline figures per system (e.g. guard, base model, tuned model) with 95% CI error bars and
    dashed lines at the targets. Catch rates (near 1) and false alarms on benign prompts (near 0) get
    separate panels so the small rates stay readable. None when no system has a figure."""
    if not isinstance(figures, dict):
        return None
    systems = {name: {k: f for k in SAFETY_TARGETS if (f := _figure((figs or {}).get(k))) is not None}
               for name, figs in figures.items() if isinstance(figs, dict)}
    systems = {name: figs for name, figs in systems.items() if figs}
    if not systems:
        return None
    colors = [f"C{i}" for i in range(10)]
    series = [(str(name), colors[i % len(colors)], figs) for i, (name, figs) in enumerate(systems.items())]
    panels = [("catch rate (higher is better)", ["escalate_recall", "refuse_recall"]),
              ("false alarms on benign prompts (lower is better)", ["benign_refused", "benign_escalated"])]
    fig = Figure(figsize=(max(8.0, 2.2 * len(series) + 4), 4.8), layout="constrained")
    axes = fig.subplots(1, 2, squeeze=False)[0]
    for ax, (label, keys) in zip(axes, panels):
        _bar_group(ax, keys, series, width=0.8 / len(series))
        ax.set_xticks(range(len(keys)), [SAFETY_LABELS[k] for k in keys])
        for i, k in enumerate(keys):
            ax.hlines(SAFETY_TARGETS[k], i - 0.45, i + 0.45, colors="#d62728", linestyles="dashed", lw=1.5,
                      label="target" if i == 0 else None)
        values = [x for _, _, figs in series for k in keys if k in figs for x in figs[k]]
        top = max([*values, *(SAFETY_TARGETS[k] for k in keys)])
        ax.set_ylim(0, 1.12 if top > 0.5 else max(0.1, top * 1.35))
        ax.set_title(label, fontsize=10)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=len(series) + 1,
               fontsize=8)
    fig.suptitle("Safety: escalation, refusal and over-blocking", fontsize=11)
    return _save(fig, out)
