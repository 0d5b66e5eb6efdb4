"""Answer-only language-model loss: logits are computed only where a label exists.

A causal LM head over a 49k-entry vocabulary for every prompt token is most of the cost of a small
model's step and most of its memory. Running the decoder, then the head only on hidden states whose next
token is an answer token, gives exactly the same loss as full logits at a fraction of the cost.
The wrapper is an `nn.Module` so DDP (accelerate/torchrun) wraps it and gradients still synchronise.
It sits in the model layer because training minimises it and the held-out evaluation
(`eval.heldout`) reports it per item: both must compute exactly the same number. The held-out evaluation
also needs the loss of each answer token (`AnswerLoss.token_losses`, no gradient), to sum it over all
answer tokens and over a subset of them from one forward pass.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medtune.data.tokenize import IGNORE


def _base(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


CE_CHUNK = 512  # answer tokens per slice of the vocabulary projection: bounds memory to CE_CHUNK x vocab


class _LinearCrossEntropy(torch.autograd.Function):
    """sum(cross_entropy(hidden @ weight.T, targets)) for a *frozen* weight, never holding N x vocab logits.

    The gradient with respect to `hidden` is computed slice by slice during the forward pass (softmax minus
    one-hot, times the weight), so backward only scales it. Same arithmetic as full logits, with peak
    memory of one slice instead of four N x vocab buffers (logits, log-softmax, and their gradients).
    The idea is Liger-Kernel's fused linear cross-entropy, which is Triton/GPU-only; this is a CPU-friendly
    torch version of it.
    """

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        for s in range(0, hidden.size(0), CE_CHUNK):
            h, t = hidden[s: s + CE_CHUNK].to(weight.dtype), targets[s: s + CE_CHUNK]
            logits = (h @ weight.t()).float()
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
            if grad is not None:
                probs = torch.exp_(logits.sub_(lse[:, None]))
                probs[torch.arange(t.numel(), device=t.device), t] -= 1.0
                grad[s: s + CE_CHUNK] = (probs.to(weight.dtype) @ weight).to(hidden.dtype)
        ctx.save_for_backward(grad)
        return total

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        (grad,) = ctx.saved_tensors
        return (grad * grad_out.to(grad.dtype) if grad is not None else None), None, None


def answer_cross_entropy(hidden: torch.Tensor, head: nn.Module, targets: torch.Tensor,
                         fused: bool = True) -> torch.Tensor:
    """Summed cross-entropy of `head(hidden)` against targets; memory-light when the head is frozen.

    `fused=False` calls the head as a module: needed where its weight is sharded and only gathered inside
    the module's own forward (DeepSpeed ZeRO-3, FSDP)."""
    weight = getattr(head, "weight", None)
    if fused and weight is not None and not weight.requires_grad and getattr(head, "bias", None) is None:
        return _LinearCrossEntropy.apply(hidden, weight, targets)
    return F.cross_entropy(head(hidden).float(), targets, reduction="sum")


@torch.no_grad()
def answer_token_losses(hidden: torch.Tensor, head: nn.Module, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of `head(hidden)` against targets, one value per token (no gradient: evaluation).

    Same arithmetic as `answer_cross_entropy` (slices of CE_CHUNK tokens, the frozen weight used directly
    when it can be), so the values sum to what the fused path returns."""
    weight = getattr(head, "weight", None)
    direct = weight is not None and not weight.requires_grad and getattr(head, "bias", None) is None
    out = [torch.zeros(0, dtype=torch.float32, device=hidden.device)]
    for s in range(0, hidden.size(0), CE_CHUNK):
        h, t = hidden[s: s + CE_CHUNK], targets[s: s + CE_CHUNK]
        logits = (h.to(weight.dtype) @ weight.t()).float() if direct else head(h).float()
        out.append(torch.logsumexp(logits, dim=-1) - logits.gather(1, t[:, None]).squeeze(1))
    return torch.cat(out)


class AnswerLoss(nn.Module):
    """forward(batch) -> (sum of token losses, number of answer tokens)."""

    def __init__(self, model: Any, fused: bool = True) -> None:
        super().__init__()
        self.model = model
        self.fused = fused

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        base = _base(self.model)
        hidden = base.get_decoder()(input_ids=input_ids, attention_mask=attention_mask,
                                    use_cache=False).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != IGNORE
        loss = answer_cross_entropy(hidden[:, :-1][keep], base.get_output_embeddings(), targets[keep],
                                    self.fused)
        return loss, keep.sum()

    @torch.no_grad()
    def token_losses(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the loss of every answer token, the mask of answer targets `labels[:, 1:] != IGNORE`): the losses
        are in the mask's row-major order, so `losses[other_mask[keep]]` selects a subset of the answer tokens.
        Summed, they are what `forward` returns (evaluation only: no gradient)."""
        base = _base(self.model)
        hidden = base.get_decoder()(input_ids=input_ids, attention_mask=attention_mask,
                                    use_cache=False).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != IGNORE
        return answer_token_losses(hidden[:, :-1][keep], base.get_output_embeddings(), targets[keep]), keep


def full_logits_loss(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference computation (all logits materialised); used by tests to check AnswerLoss."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    targets = labels[:, 1:]
    loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.size(-1)), targets.reshape(-1),
                           ignore_index=IGNORE, reduction="sum")
    return loss, (targets != IGNORE).sum()
