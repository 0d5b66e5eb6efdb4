"""Yes/no/maybe questions (PubMedQA) by log-likelihood, with and without the abstract.

Prompt as lm-evaluation-harness's pubmedqa task: "Abstract: {context}\\nQuestion: {question}\\nAnswer:",
continuations " yes", " no", " maybe". Without the context, the "Abstract:" line is left out: the gap
between the two shows how much the model reads the evidence rather than guessing from the question.
"""

from __future__ import annotations

from typing import Any

from medtune.eval.mcq import rank_choices

LABELS = ("yes", "no", "maybe")


def pubmedqa_prompt(row: dict[str, Any], with_context: bool) -> str:
    ctx = row.get("context") or ""
    if isinstance(ctx, dict):  # hub PubMedQA: {"contexts": [...], "labels": [...]}
        ctx = ctx.get("contexts") or ""
    if isinstance(ctx, list):
        ctx = " ".join(map(str, ctx))
    question = f"Question: {str(row['question']).strip()}\nAnswer:"
    return f"Abstract: {str(ctx).strip()}\n{question}" if with_context and ctx else question


def yesno_items(rows: list[dict[str, Any]]) -> tuple[list[tuple[int, int]], list[dict[str, Any]]]:
    """(row index, gold label index) per valid row; rejects [{id, reason}] for the rest."""
    items, rejects = [], []
    for i, row in enumerate(rows):
        gold = str(row.get("answer") or row.get("final_decision") or "").strip().lower()
        if gold not in LABELS or not str(row.get("question") or "").strip():
            rejects.append({"id": row.get("id", f"row {i + 1}"), "reason": f"answer {gold!r} is not yes, no or maybe"
                            if gold not in LABELS else "missing field 'question'"})
            continue
        items.append((i, LABELS.index(gold)))
    return items, rejects


def score_yesno(model: Any, tok: Any, rows: list[dict[str, Any]], *, with_context: bool,
                batch_size: int = 4) -> tuple[list[int], list[int], list[dict[str, Any]]]:
    """(predicted label index, gold label index, rejects) for the valid rows, in row order."""
    items, rejects = yesno_items(rows)
    prompts = [pubmedqa_prompt(rows[i], with_context) for i, _ in items]
    preds = rank_choices(model, tok, prompts, [[f" {x}" for x in LABELS]] * len(items), batch_size=batch_size,
                         desc="yes/no/maybe" + (" + context" if with_context else ""))
    return preds, [g for _, g in items], rejects


def macro_f1(preds: list[int], golds: list[int], n_labels: int = len(LABELS)) -> float:
    """Mean F1 over the labels that occur in gold or predictions (as scikit-learn's macro average)."""
    scores = []
    for k in range(n_labels):
        tp = sum(1 for p, g in zip(preds, golds) if p == k and g == k)
        fp = sum(1 for p, g in zip(preds, golds) if p == k and g != k)
        fn = sum(1 for p, g in zip(preds, golds) if p != k and g == k)
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores) if scores else 0.0
