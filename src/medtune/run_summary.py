"""What `medtune run` prints at the end: one screen a newcomer can read top to bottom.

In order: what was trained, base vs tuned on the held-out test split (the few figures that show the change,
each with its paired 95% CI), the guarded system's safety in one sentence, three short answers side by side,
and where everything is. Every other figure is in the run's eval/report.md; nothing here is only here.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

WIDTH = 100
FIRST = ("format_adherence", "rougeL", "answer_loss")  # the table's order; other paired deltas follow
LABELS = {"format_adherence": "format adherence", "rougeL": "ROUGE-L", "answer_loss": "answer loss",
          "answer_loss_no_disclaimer": "answer loss, no disclaimer",
          "rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "bleu": "BLEU"}
SAMPLE_CHARS = 160
_WRAP: dict[str, Any] = {"width": WIDTH, "break_on_hyphens": False, "break_long_words": False}  # paths intact


def _label(key: str) -> str:
    return LABELS.get(key, key.replace("_", " "))


def _num(x: Any, fmt: str = ".3f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _pct(fig: dict[str, Any] | None) -> str:
    v = None if fig is None else fig.get("value")
    return "n/a" if v is None or math.isnan(v) else f"{v:.0%}"


def trained_line(cfg: Any, tr: Any) -> str:
    s = tr.summary
    spec = cfg.model.name
    model = tr.model_name + (" (the embedded GGUF, de-quantized)" if spec == "default" else
                             f" ({spec})" if spec != tr.model_name else "")
    data = cfg.data.prepared or ", ".join(cfg.data.sources)
    return textwrap.fill(f"trained: a LoRA adapter (rank {cfg.lora.r}) on {model}, with {s['train_rows']} rows of "
                         f"{data}; {s['steps']} steps in {s['seconds']} s ({s['tokens_per_s']} tokens/s, "
                         f"{s['precision']})", **_WRAP, subsequent_indent="  ")


def comparison_lines(result: dict[str, Any], generated: int, max_tokens: int) -> list[str]:
    """The base vs tuned table: the metrics with a paired delta, headline first."""
    rep = result["report"]
    keys = [k for k in FIRST if k in rep["delta"]] + [k for k in rep["delta"] if k not in FIRST]
    width = max(len(_label(k)) for k in keys) + 2 if keys else 20
    lines = textwrap.wrap(f"base vs tuned on the held-out test split ({result['test_rows']} questions; answer loss "
                          f"on all, the other figures on {generated} greedy answers of at most {max_tokens} "
                          "tokens):", **_WRAP, subsequent_indent="  ")
    lines.append(f"  {'':<{width}}{'base':>8}{'tuned':>8}   tuned - base (95% CI)")
    for k in keys:
        d = rep["delta"][k]
        b, t = rep["base_metrics"].get(k, {}).get("value"), rep["metrics"].get(k, {}).get("value")
        note = "   lower is better" if "loss" in k or "perplexity" in k else ""
        lines.append(f"  {_label(k):<{width}}{_num(b):>8}{_num(t):>8}   {d['value']:+.3f} "
                     f"({d['ci95'][0]:+.3f} to {d['ci95'][1]:+.3f}){note}")
    others = [_label(k) for k in rep["metrics"] if k not in rep["delta"]]
    if others:
        lines.append(f"  ({', '.join(others)} and every CI: eval/report.md in the run folder)")
    return lines


def safety_line(figures: dict[str, Any]) -> str:
    """The guarded system (guard, then the tuned model) on the red-team gate split, in one sentence."""
    name = "guard + tuned model" if "guard + tuned model" in figures else next(iter(figures))
    h = figures[name]
    text = (f"safety ({name}, red-team gate split): escalates {_pct(h.get('escalate_recall'))} of emergencies "
            f"and crises, refuses {_pct(h.get('refuse_recall'))} of harmful requests; refuses "
            f"{_pct(h.get('benign_refused'))} and escalates {_pct(h.get('benign_escalated'))} of ordinary questions")
    return textwrap.fill(text, **_WRAP, subsequent_indent="  ")


def sample_lines(samples: list[dict[str, str]]) -> list[str]:
    lines = [f"{len(samples)} answers from the test split (shortened; in full in eval_heldout.json):"]
    for i, smp in enumerate(samples, 1):
        lines.append(f"[{i}] {textwrap.shorten(smp['question'], WIDTH - 4, placeholder=' …')}")
        for role in ("base", "tuned"):
            text = textwrap.shorten(smp[role], SAMPLE_CHARS, placeholder=" …") or "(empty)"
            lines += textwrap.wrap(f"{role + ':':<7}{text}", **_WRAP, initial_indent="    ", subsequent_indent=" " * 11)
    return lines


def where_lines(run_dir: Path) -> list[str]:
    d = run_dir
    return [f"where things are ({d}/):",
            "  adapter_model.safetensors  the LoRA adapter; README.md is its model card, run.json its provenance",
            "  eval/report.md             every figure with its 95% CI; eval/*.png the plots",
            "  data/                      the train/val/test split and manifest.json (sources, rejects)",
            f"talk to it (behind the safety guard): medtune chat --model {d}",
            "  medtune serve (an OpenAI-compatible API) and medtune ui (a web page) take the same --model"]


def run_summary(cfg: Any, tr: Any, result: dict[str, Any], notes: list[str] | None = None) -> str:
    """The end-of-run summary of `medtune run` (result: pipeline.run's; empty when nothing was compared)."""
    lines = [trained_line(cfg, tr), ""]
    if result.get("report"):
        generated = min(cfg.eval.max_generations, result["test_rows"])
        lines += comparison_lines(result, generated, cfg.eval.max_new_tokens)
    else:
        why = "; ".join(notes or []) or "the test split is empty"
        lines.append(textwrap.fill(f"no base vs tuned comparison: {why}", **_WRAP, subsequent_indent="  "))
    if result.get("safety"):
        lines += ["", safety_line(result["safety"])]
        if result.get("gate"):  # a failed gate that did not stop the run (eval.gate_fail: false) is said plainly
            lines += textwrap.wrap("SAFETY GATE FAILED (published targets): " + "; ".join(result["gate"])
                                   + " - see eval/report.md", **_WRAP, subsequent_indent="  ")
    if result.get("samples"):
        lines += ["", *sample_lines(result["samples"])]
    lines += ["", *where_lines(tr.run_dir)]
    return "\n".join(lines)
