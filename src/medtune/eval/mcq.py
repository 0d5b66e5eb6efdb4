"""Multiple-choice accuracy by log-likelihood, as lm-evaluation-harness's MMLU task scores it.

Zero-shot, no chat template: "The following are multiple choice questions (with answers) about
{subject}.\\n\\n{question}\\nA. …\\nB. …\\nAnswer:" scored on the continuations " A", " B", …; the option
with the highest log-likelihood is the prediction. When every continuation is a single token (the
usual case) one forward pass per question scores all options at once; batches are length-sorted.
"""

from __future__ import annotations

from typing import Any

import torch
from tqdm.auto import tqdm

from medtune.data.formats import RowError, mcq_answer, mcq_options


def mmlu_prompt(row: dict[str, Any], options: dict[str, str]) -> str:
    subject = str(row.get("subject") or "medicine").replace("_", " ")
    body = "".join(f"{k}. {v}\n" for k, v in options.items())
    return (f"The following are multiple choice questions (with answers) about {subject}.\n\n"
            f"{str(row['question']).strip()}\n{body}Answer:")


def _continuation(tok: Any, ctx_ids: list[int], ctx: str, letter: str) -> list[int]:
    """Tokens of " X" after the context, split exactly as lm-eval splits context + continuation."""
    return tok(ctx + " " + letter, add_special_tokens=False)["input_ids"][len(ctx_ids):]


@torch.no_grad()
def score_mcq(model: Any, tok: Any, rows: list[dict[str, Any]], *, batch_size: int = 8,
              desc: str = "multiple choice") -> tuple[list[int], list[dict[str, Any]]]:
    """Returns (1/0 correct per scored row, rejects [{id, reason}]) in row order."""
    items, rejects = [], []
    for i, row in enumerate(rows):
        try:
            opts = mcq_options(row, {})
            gold = mcq_answer(row, {}, opts)
            if not str(row.get("question") or "").strip():
                raise RowError("missing field 'question'")
        except RowError as e:
            rejects.append({"id": row.get("id", f"row {i + 1}"), "reason": str(e)})
            continue
        ctx = mmlu_prompt(row, opts)
        ctx_ids = tok(ctx, add_special_tokens=False)["input_ids"]
        conts = [_continuation(tok, ctx_ids, ctx, k) for k in opts]
        items.append((ctx_ids, conts, list(opts).index(gold)))
    device = next(model.parameters()).device
    correct: list[int] = [0] * len(items)
    order = sorted(range(len(items)), key=lambda i: len(items[i][0]))
    for s in tqdm(range(0, len(order), batch_size), desc=desc, leave=False):
        idx = order[s: s + batch_size]
        single = [i for i in idx if all(len(c) == 1 for c in items[i][1])]
        if single:
            _score_single(model, items, single, tok.pad_token_id, device, correct)
        for i in idx:
            if i not in single:
                correct[i] = _score_multi(model, items[i], device)
    return correct, rejects


def _score_single(model: Any, items: list, idx: list[int], pad: int, device: Any, correct: list[int]) -> None:
    width = max(len(items[i][0]) for i in idx)
    ids = torch.full((len(idx), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, i in enumerate(idx):
        n = len(items[i][0])
        ids[r, :n] = torch.tensor(items[i][0])
        mask[r, :n] = 1
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
    for r, i in enumerate(idx):
        last = torch.log_softmax(logits[r, len(items[i][0]) - 1].float(), -1)
        scores = [float(last[c[0]]) for c in items[i][1]]
        correct[i] = int(max(range(len(scores)), key=scores.__getitem__) == items[i][2])


def _score_multi(model: Any, item: tuple, device: Any) -> int:
    ctx_ids, conts, gold = item
    scores = []
    for cont in conts:
        ids = torch.tensor([ctx_ids + cont], device=device)
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
        tgt = ids[0, 1:]
        scores.append(float(logp[torch.arange(len(tgt)), tgt][-len(cont):].sum()))
    return int(max(range(len(scores)), key=scores.__getitem__) == gold)
