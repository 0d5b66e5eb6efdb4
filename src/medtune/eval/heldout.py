"""Held-out comparison of base and tuned: answer-token loss and perplexity, and greedy answers.

Base and tuned are the same PEFT model with the adapter switched off and on, so both see identical
prompts, tokens and decoding. The full evaluation suite (benchmarks, CIs, reports) builds on this.
"""

from __future__ import annotations

from typing import Any

import torch

from medtune.data.tokenize import Example, collate
from medtune.model.generate import adapter_off
from medtune.model.loss import AnswerLoss


@torch.no_grad()
def item_losses(model: Any, examples: list[Example], pad_id: int, *,
                base: bool = False) -> tuple[list[float], list[int]]:
    """Per-item summed answer-token loss and answer-token count, in order (for perplexity and for pairing
    items between two models)."""
    lm = AnswerLoss(model).eval()
    sums, counts = [], []
    with adapter_off(model, base):
        for e in examples:
            loss, n = lm(**collate([e], pad_id))
            sums.append(float(loss))
            counts.append(int(n))
    return sums, counts
