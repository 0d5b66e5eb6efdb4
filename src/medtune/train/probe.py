"""A cheap in-training probe of what the loss curve cannot show, and the best checkpoint it selects.

Answer-token loss keeps falling while a small model forgets how to pick the right option of a
multiple-choice question or starts rambling; the probe measures both every N optimizer steps, on a few
rows, so a run can keep the adapter from its best step instead of its last:

- probe_acc: log-likelihood accuracy on a few multiple-choice questions (`medtune.eval.mcq.score_mcq`,
  lm-eval's MMLU protocol), which projects onto the vocabulary only at the last prompt token;
- probe_rougeL: ROUGE-L F1 (stemmed) of a few short greedy answers against the reference answers
  (`medtune.model.generate.greedy_answers`; generation keeps logits for the newest token only).

Neither holds full-vocabulary logits for whole sequences, and neither draws random numbers (greedy
decoding, dropout off), so a probed run stays bit-for-bit resumable.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medtune import atomic
from medtune.data.sources import iter_file_rows
from medtune.errors import MedtuneError
from medtune.eval.mcq import mcq_items, score_mcq
from medtune.model.generate import greedy_answers

METRICS = ("probe_acc", "probe_rougeL", "eval_loss")
LOWER_IS_BETTER = frozenset({"eval_loss"})
BEST_FILE = "best.json"


@dataclass
class Probe:
    """A few multiple-choice rows ({"question", "options", "answer", "subject"}) and a few QA rows
    ({"question", "answer"}), scored by `run`."""

    mcq_rows: list[dict]
    qa_rows: list[dict]
    system_prompt: str
    max_new_tokens: int = 48
    batch_size: int = 8

    def run(self, model: Any, tok: Any, autocast: Callable[[], Any] = contextlib.nullcontext) -> dict[str, float]:
        """{"probe_acc", "probe_rougeL"} (only the parts that have rows), each in [0, 1].

        model is the (PEFT) causal LM; autocast is the training loop's autocast factory (needed when the
        frozen weights are bf16). The model is put back in the train/eval mode it was in.
        """
        was_training = model.training
        out: dict[str, float] = {}
        try:
            with torch.no_grad(), autocast():
                model.eval()
                if self.mcq_rows:
                    correct, _ = score_mcq(model, tok, self.mcq_rows, batch_size=self.batch_size, desc="probe mcq")
                    if correct:
                        out["probe_acc"] = round(sum(correct) / len(correct), 4)
                if self.qa_rows:
                    answers = greedy_answers(model, tok, [[{"role": "user", "content": r["question"]}]
                                                          for r in self.qa_rows],
                                             self.system_prompt, self.max_new_tokens, base=False,
                                             batch_size=self.batch_size, desc="probe answers")
                    out["probe_rougeL"] = round(rouge_l([r["answer"] for r in self.qa_rows], answers), 4)
        finally:
            model.train(was_training)
        return out


def rouge_l(references: list[str], predictions: list[str]) -> float:
    """Mean ROUGE-L F1 (rouge-score, stemmed), as the evaluation suite computes it."""
    from rouge_score import rouge_scorer, tokenizers

    if not references:
        return 0.0
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=tokenizers.DefaultTokenizer(True))  # no log line
    return sum(scorer.score(r, p)["rougeL"].fmeasure for r, p in zip(references, predictions)) / len(references)


def _qa_pair(row: dict[str, Any]) -> dict[str, str] | None:
    """{"question", "answer"} from a QA row or a prepared row ({"messages": [...]}); None when it has neither."""
    q, a = row.get("question"), row.get("answer")
    if isinstance(q, str) and isinstance(a, str) and q.strip() and a.strip():
        return {"question": q.strip(), "answer": a.strip()}
    msgs = row.get("messages")
    if isinstance(msgs, list):
        for i, m in enumerate(msgs[:-1]):
            nxt = msgs[i + 1]
            if (isinstance(m, dict) and isinstance(nxt, dict) and m.get("role") == "user"
                    and nxt.get("role") == "assistant" and str(m.get("content") or "").strip()
                    and str(nxt.get("content") or "").strip()):
                return {"question": str(m["content"]).strip(), "answer": str(nxt["content"]).strip()}
    return None


def _read_mcq(path: Path, n: int) -> list[dict[str, Any]]:
    """The first n valid multiple-choice rows of a JSONL file (invalid rows are skipped, as scoring would)."""
    if not path.exists():
        raise MedtuneError(f"probe multiple-choice file not found: {path}")
    rows: list[dict[str, Any]] = []
    for where, row, error in iter_file_rows(path):
        if len(rows) >= n:
            break
        if row is None:
            raise MedtuneError(f"{where}: {error}")
        if mcq_items([row])[0]:
            rows.append(row)
    return rows


def load_probe(mcq_file: str | None, qa_rows: list[dict], n_mcq: int, n_qa: int, system_prompt: str) -> Probe | None:
    """A probe of the first n_mcq valid rows of mcq_file (JSONL; none when mcq_file is None) and the first n_qa
    of qa_rows ({"question", "answer"} or prepared {"messages"} rows); None when both parts are empty."""
    mcq_rows = _read_mcq(Path(mcq_file), n_mcq) if mcq_file and n_mcq > 0 else []
    pairs = [p for r in qa_rows if (p := _qa_pair(r)) is not None][:max(n_qa, 0)]
    if not mcq_rows and not pairs:
        return None
    return Probe(mcq_rows=mcq_rows, qa_rows=pairs, system_prompt=system_prompt)


def choose_metric(metric: str, probe: Probe | None) -> str:
    """The metric that selects the best checkpoint: "auto" is probe_acc when the probe has multiple-choice rows,
    else probe_rougeL when it has QA rows, else eval_loss. A probe metric the probe cannot produce is an error
    before training starts, not a best checkpoint that silently never appears."""
    if metric == "auto":
        if probe and probe.mcq_rows:
            return "probe_acc"
        return "probe_rougeL" if probe and probe.qa_rows else "eval_loss"
    if metric not in METRICS:
        raise MedtuneError(f"best-checkpoint metric must be auto or one of {', '.join(METRICS)}, got {metric!r}")
    if metric == "probe_acc" and not (probe and probe.mcq_rows):
        raise MedtuneError("best metric probe_acc needs multiple-choice probe rows (set train.probe_mcq)")
    if metric == "probe_rougeL" and not (probe and probe.qa_rows):
        raise MedtuneError("best metric probe_rougeL needs probe questions (keep a val split, train.probe_qa_rows > 0)")
    return metric


class BestCheckpoint:
    """The best value of one metric seen so far and the step it was seen at.

    Higher is better for probe_acc and probe_rougeL, lower for eval_loss. `update` ignores steps whose
    metrics lack the chosen key, so it can be fed every metrics record of the loop.
    """

    def __init__(self, metric: str = "probe_acc") -> None:
        if metric not in METRICS:
            raise MedtuneError(f"best-checkpoint metric must be one of {', '.join(METRICS)}, got {metric!r}")
        self.metric = metric
        self.lower_is_better = metric in LOWER_IS_BETTER
        self.best_step: int | None = None
        self.best_value: float | None = None

    def update(self, step: int, metrics: dict[str, Any]) -> bool:
        """Record this step's metrics; True when they hold a new best (strictly better, so ties keep the earlier
        step)."""
        value = metrics.get(self.metric)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # value != value: NaN
            return False
        value = float(value)
        if self.best_value is not None and (value >= self.best_value if self.lower_is_better
                                            else value <= self.best_value):
            return False
        self.best_step, self.best_value = step, value
        return True

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "best_step": self.best_step, "best_value": self.best_value,
                "lower_is_better": self.lower_is_better}

    @classmethod
    def restore(cls, folder: Path, metric: str, max_step: int) -> BestCheckpoint:
        """A tracker continuing from folder/best.json (written by `save_best`) when it is for the same metric and
        not past max_step (the step a run resumes from); otherwise a fresh one (a new run passes max_step=0)."""
        best = cls(metric)
        try:
            saved = json.loads((Path(folder) / BEST_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return best
        step, value = saved.get("best_step"), saved.get("best_value")
        if saved.get("metric") == metric and isinstance(step, int) and 0 < step <= max_step \
                and isinstance(value, (int, float)):
            best.best_step, best.best_value = step, float(value)
        return best


def save_best(model: Any, folder: Path, best: BestCheckpoint, extra: dict[str, Any] | None = None) -> Path:
    """Write the adapter (`model.save_pretrained`, loadable like a run's own adapter) and best.json into folder,
    replacing it atomically: a kill mid-write leaves the previous best intact."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with atomic.replacing(folder) as tmp:
        tmp.mkdir()
        model.save_pretrained(tmp)
        (tmp / BEST_FILE).write_text(json.dumps({**best.as_dict(), **(extra or {})}, indent=2), encoding="utf-8")
    return folder
