"""Held-out comparison of base and tuned: answer-token loss and perplexity, and greedy answers.

Base and tuned are the same PEFT model with the adapter switched off and on, so both see identical
prompts, tokens and decoding. The full evaluation suite (benchmarks, CIs, reports) builds on this.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from tqdm.auto import tqdm

from medtune.data.tokenize import Example, collate, prompt_ids
from medtune.train.loss import AnswerLoss


def _adapter_off(model: Any, base: bool) -> Any:
    return model.disable_adapter() if base and hasattr(model, "disable_adapter") else contextlib.nullcontext()


def greedy_answers(model: Any, tok: Any, conversations: list[list[dict[str, str]]], system_prompt: str,
                   max_new_tokens: int, *, base: bool, batch_size: int = 8, repetition_penalty: float = 1.0,
                   desc: str = "generating") -> list[str]:
    """Greedy answers, batched with left padding; stops at the end-of-turn token."""
    return greedy_generate(model, tok, conversations, system_prompt, max_new_tokens, base=base,
                           batch_size=batch_size, repetition_penalty=repetition_penalty, desc=desc)[0]


@torch.no_grad()
def item_losses(model: Any, examples: list[Example], pad_id: int, *,
                base: bool = False) -> tuple[list[float], list[int]]:
    """Per-item summed answer-token loss and answer-token count, in order (for perplexity and for pairing
    items between two models)."""
    lm = AnswerLoss(model).eval()
    sums, counts = [], []
    with _adapter_off(model, base):
        for e in examples:
            loss, n = lm(**collate([e], pad_id))
            sums.append(float(loss))
            counts.append(int(n))
    return sums, counts


@torch.no_grad()
def greedy_generate(model: Any, tok: Any, conversations: list[list[dict[str, str]]], system_prompt: str,
                    max_new_tokens: int, *, base: bool, batch_size: int = 8, repetition_penalty: float = 1.0,
                    desc: str = "generating") -> tuple[list[str], list[bool]]:
    """(answers, stopped): stopped is True when the model ended its turn within max_new_tokens."""
    model.eval()
    prompts = [prompt_ids(tok, c, system_prompt) for c in conversations]
    out: list[str] = [""] * len(prompts)
    stopped: list[bool] = [False] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    device = next(model.parameters()).device
    with _adapter_off(model, base):
        for s in tqdm(range(0, len(order), batch_size), desc=desc, leave=False):
            idx = order[s: s + batch_size]
            width = max(len(prompts[i]) for i in idx)
            ids = torch.full((len(idx), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, i in enumerate(idx):
                ids[r, width - len(prompts[i]):] = torch.tensor(prompts[i])
                mask[r, width - len(prompts[i]):] = 1
            gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                                 max_new_tokens=max_new_tokens, eos_token_id=tok.eos_token_id,
                                 repetition_penalty=repetition_penalty,
                                 pad_token_id=tok.pad_token_id)
            for r, i in enumerate(idx):
                new = gen[r, width:]
                out[i] = tok.decode(new, skip_special_tokens=True).strip()
                stopped[i] = bool((new == tok.eos_token_id).any())
    return out, stopped
