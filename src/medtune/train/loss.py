"""Answer-only language-model loss: logits are computed only where a label exists.

A causal LM head over a 49k-entry vocabulary for every prompt token is most of the cost of a small
model's step and most of its memory. Running the decoder, then the head only on hidden states whose next
token is an answer token, gives exactly the same loss as full logits at a fraction of the cost.
The wrapper is an `nn.Module` so DDP (accelerate/torchrun) wraps it and gradients still synchronise.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medtune.data.tokenize import IGNORE


def _base(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class AnswerLoss(nn.Module):
    """forward(batch) -> (sum of token losses, number of answer tokens)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        base = _base(self.model)
        hidden = base.get_decoder()(input_ids=input_ids, attention_mask=attention_mask,
                                    use_cache=False).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != IGNORE
        logits = base.get_output_embeddings()(hidden[:, :-1][keep])
        loss = F.cross_entropy(logits.float(), targets[keep], reduction="sum")
        return loss, keep.sum()


def full_logits_loss(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference computation (all logits materialised); used by tests to check AnswerLoss."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    targets = labels[:, 1:]
    loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.size(-1)), targets.reshape(-1),
                           ignore_index=IGNORE, reduction="sum")
    return loss, (targets != IGNORE).sum()
