"""Text generation shared by evaluation, export parity checks and the assistant.

Greedy batched generation (evaluation: identical decoding for base and tuned) lives here beside the
stop-token handling, so a run's end-of-turn tokens from `run.json` stop every generator the same way:
SmolLM2's `<|im_end|>` is its EOS, but Llama 3 ends turns with `<|eot_id|>`, which is not its EOS.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from medtune.data.tokenize import prompt_ids
from medtune.progress import progress


def adapter_off(model: Any, base: bool) -> Any:
    """Context manager: the PEFT adapter switched off when `base` (same weights, same prompts)."""
    return model.disable_adapter() if base and hasattr(model, "disable_adapter") else contextlib.nullcontext()


def stop_token_ids(tok: Any, stop_tokens: list[str] | None = None) -> list[int]:
    """Token ids that end a turn: the EOS plus every stop token the run recorded that is one token."""
    ids = [tok.eos_token_id] if tok.eos_token_id is not None else []
    vocab = tok.get_vocab()
    for s in stop_tokens or []:
        if s in vocab and vocab[s] not in ids:
            ids.append(vocab[s])
    return ids


@torch.no_grad()
def greedy_generate(model: Any, tok: Any, conversations: list[list[dict[str, str]]], system_prompt: str,
                    max_new_tokens: int, *, base: bool, batch_size: int = 8, repetition_penalty: float = 1.0,
                    desc: str = "generating", stop_tokens: list[str] | None = None) -> tuple[list[str], list[bool]]:
    """(answers, stopped): stopped is True when the model ended its turn within max_new_tokens."""
    model.eval()
    prompts = [prompt_ids(tok, c, system_prompt) for c in conversations]
    out: list[str] = [""] * len(prompts)
    stopped: list[bool] = [False] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    device = next(model.parameters()).device
    stops = stop_token_ids(tok, stop_tokens)
    with adapter_off(model, base):
        for s in progress(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False):
            idx = order[s: s + batch_size]
            width = max(len(prompts[i]) for i in idx)
            ids = torch.full((len(idx), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, i in enumerate(idx):
                ids[r, width - len(prompts[i]):] = torch.tensor(prompts[i])
                mask[r, width - len(prompts[i]):] = 1
            gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                                 max_new_tokens=max_new_tokens, eos_token_id=stops,
                                 repetition_penalty=repetition_penalty, pad_token_id=tok.pad_token_id)
            for r, i in enumerate(idx):
                new = gen[r, width:]
                out[i] = tok.decode(new, skip_special_tokens=True).strip()
                stopped[i] = bool(torch.isin(new, torch.tensor(stops)).any())
    return out, stopped


def greedy_answers(model: Any, tok: Any, conversations: list[list[dict[str, str]]], system_prompt: str,
                   max_new_tokens: int, *, base: bool, batch_size: int = 8, repetition_penalty: float = 1.0,
                   desc: str = "generating") -> list[str]:
    """Greedy answers only (see greedy_generate)."""
    return greedy_generate(model, tok, conversations, system_prompt, max_new_tokens, base=base,
                           batch_size=batch_size, repetition_penalty=repetition_penalty, desc=desc)[0]
