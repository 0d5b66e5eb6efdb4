"""Multiple-choice accuracy by log-likelihood, as lm-evaluation-harness's MMLU task scores it.

Zero-shot, no chat template: "The following are multiple choice questions (with answers) about
{subject}.\\n\\n{question}\\nA. …\\nB. …\\nAnswer:" scored on the continuations " A", " B", …; the option
with the highest log-likelihood is the prediction. When every continuation is a single token (the
usual case) one forward pass per question scores all options at once; batches are length-sorted.
"""

from __future__ import annotations

from typing import Any

import torch

from medtune.data.formats import RowError, mcq_answer, mcq_options
from medtune.progress import progress


def mmlu_prompt(row: dict[str, Any], options: dict[str, str]) -> str:
    subject = str(row.get("subject") or "medicine").replace("_", " ")
    body = "".join(f"{k}. {v}\n" for k, v in options.items())
    return (f"The following are multiple choice questions (with answers) about {subject}.\n\n"
            f"{str(row['question']).strip()}\n{body}Answer:")


def _continuation(tok: Any, ctx_ids: list[int], ctx: str, cont: str) -> list[int]:
    """Tokens of the continuation after the context, split exactly as lm-eval splits context + continuation."""
    return tok(ctx + cont, add_special_tokens=False)["input_ids"][len(ctx_ids):]


def mcq_items(rows: list[dict[str, Any]]) -> tuple[list[tuple[int, str, list[str], int]], list[dict[str, Any]]]:
    """(row index, prompt, continuations, gold index) per valid row; rejects [{id, reason}] for the rest."""
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
        items.append((i, mmlu_prompt(row, opts), [f" {k}" for k in opts], list(opts).index(gold)))
    return items, rejects


@torch.no_grad()
def rank_choices(model: Any, tok: Any, prompts: list[str], choices: list[list[str]], *, batch_size: int = 8,
                 normalize: bool = False, desc: str = "scoring") -> list[int]:
    """Index of the most likely continuation for each prompt (sum of continuation token log-probs; with
    normalize, divided by the continuation's length in bytes, as lm-eval's acc_norm)."""
    items = []
    for ctx, conts in zip(prompts, choices):
        ctx_ids = tok(ctx, add_special_tokens=False)["input_ids"]
        items.append((ctx_ids, [_continuation(tok, ctx_ids, ctx, c) for c in conts]))
    device = next(model.parameters()).device
    best: list[int] = [0] * len(items)
    order = sorted(range(len(items)), key=lambda i: len(items[i][0]))
    for s in progress(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False):
        idx = order[s: s + batch_size]
        single = [] if normalize else [i for i in idx if all(len(c) == 1 for c in items[i][1])]
        if single:
            _score_single(model, items, single, tok.pad_token_id, device, best)
        for i in idx:
            if i not in single:
                lengths = [len(c.encode()) for c in choices[i]] if normalize else None
                best[i] = _score_multi(model, items[i], device, lengths)
    return best


def score_mcq(model: Any, tok: Any, rows: list[dict[str, Any]], *, batch_size: int = 8,
              desc: str = "multiple choice") -> tuple[list[int], list[dict[str, Any]]]:
    """Returns (1/0 correct per scored row, rejects [{id, reason}]) in row order."""
    items, rejects = mcq_items(rows)
    pred = rank_choices(model, tok, [it[1] for it in items], [it[2] for it in items], batch_size=batch_size,
                        desc=desc)
    return [int(p == it[3]) for p, it in zip(pred, items)], rejects


def _score_single(model: Any, items: list, idx: list[int], pad: int, device: Any, best: list[int]) -> None:
    """All options of each question from one forward pass; the vocabulary projection only at the last token."""
    width = max(len(items[i][0]) for i in idx)
    ids = torch.full((len(idx), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, i in enumerate(idx):
        n = len(items[i][0])
        ids[r, :n] = torch.tensor(items[i][0])
        mask[r, :n] = 1
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = base.get_decoder()(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
    last = hidden[torch.arange(len(idx)), mask.sum(1).to(device) - 1]
    logp = torch.log_softmax(base.get_output_embeddings()(last).float(), -1)
    for r, i in enumerate(idx):
        scores = [float(logp[r, c[0]]) for c in items[i][1]]
        best[i] = max(range(len(scores)), key=scores.__getitem__)


def _score_multi(model: Any, item: tuple, device: Any, lengths: list[int] | None = None) -> int:
    """All options of one question in one right-padded batch; the vocabulary projection only at the
    positions that predict continuation tokens (a few per option instead of the whole prompt)."""
    ctx_ids, conts = item
    seqs = [ctx_ids + c for c in conts]
    width = max(len(x) for x in seqs)
    ids = torch.zeros((len(seqs), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, x in enumerate(seqs):
        ids[r, :len(x)] = torch.tensor(x)
        mask[r, :len(x)] = 1
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = base.get_decoder()(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
    scores = []
    for r, cont in enumerate(conts):
        start = len(ctx_ids) - 1  # the position whose output predicts the first continuation token
        logp = torch.log_softmax(base.get_output_embeddings()(hidden[r, start:start + len(cont)]).float(), -1)
        total = float(logp[torch.arange(len(cont)), torch.tensor(cont, device=logp.device)].sum())
        scores.append(total / lengths[r] if lengths else total)
    return max(range(len(scores)), key=scores.__getitem__)
