"""Render conversations with the model's own chat template and mask everything but assistant turns.

Labels are -100 everywhere except the tokens of each assistant reply *including* its end-of-turn token,
found by rendering the conversation prefix with and without the reply. Masking by pad id would also
mask the EOS when pad == EOS (SmolLM2) and the model would never learn to stop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from medtune.data.formats import Conversation
from medtune.errors import MedtuneError

IGNORE = -100


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]

    @property
    def n_answer(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE)


def with_system(conv: Conversation, system_prompt: str) -> Conversation:
    """Our system prompt first (templates like SmolLM2's insert their own default otherwise)."""
    if conv and conv[0]["role"] == "system":
        return list(conv)
    return [{"role": "system", "content": system_prompt}, *conv]


def _render(tokenizer: Any, conv: Conversation, *, generation_prompt: bool) -> list[int]:
    ids = tokenizer.apply_chat_template(conv, tokenize=True, add_generation_prompt=generation_prompt,
                                        return_dict=False)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return list(ids)


def encode(tokenizer: Any, conv: Conversation, system_prompt: str, max_length: int) -> Example:
    """One conversation -> input ids and labels (answer tokens only), cut to max_length."""
    conv = with_system(conv, system_prompt)
    ids: list[int] = []
    labels: list[int] = []
    for k, msg in enumerate(conv):
        if msg["role"] != "assistant":
            continue
        prefix = _render(tokenizer, conv[:k], generation_prompt=True)
        full = _render(tokenizer, conv[: k + 1], generation_prompt=False)
        if full[: len(prefix)] != prefix or prefix[: len(ids)] != ids:
            raise MedtuneError("the chat template does not render conversations as growing prefixes; "
                               "pass model.chat_template with a template that does")
        answer = full[len(prefix):]
        answer = _through_eos(answer, tokenizer.eos_token_id)
        labels += [IGNORE] * (len(prefix) - len(ids)) + answer
        ids = prefix + answer
    if not ids:
        raise MedtuneError("conversation has no assistant turn")
    return Example(ids[:max_length], labels[:max_length])


def _through_eos(answer: list[int], eos_id: int | None) -> list[int]:
    """Keep the reply up to and including its end-of-turn token (drop the template's trailing newline)."""
    if eos_id is not None and eos_id in answer:
        return answer[: answer.index(eos_id) + 1]
    return answer


def prompt_ids(tokenizer: Any, conv: Conversation, system_prompt: str) -> list[int]:
    """The tokens a model sees before it answers the last user turn (for generation)."""
    conv = with_system([m for m in conv if m["role"] != "assistant"] if conv[-1]["role"] == "assistant"
                       else conv, system_prompt)
    return _render(tokenizer, conv, generation_prompt=True)


def collate(examples: Sequence[Example], pad_id: int, multiple: int = 1) -> dict[str, torch.Tensor]:
    """Right-pad a batch; labels of padding are -100, attention mask marks real tokens.

    `multiple` rounds the width up (e.g. 32): fewer distinct shapes means the CPU matmul library (oneDNN)
    reuses its cached kernels instead of building and keeping one per sequence length.
    """
    width = max(len(e.input_ids) for e in examples)
    width = -(-width // multiple) * multiple
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def length_grouped_batches(lengths: Sequence[int], batch_size: int, generator: torch.Generator,
                           group_by_length: bool) -> list[list[int]]:
    """Shuffled batches; with grouping, similar lengths share a batch (less padding, same randomness).

    Indices are shuffled, cut into mega-batches of 32 batches, sorted by length inside each, batched,
    and the batch order shuffled again: the data order stays random while padding nearly vanishes.
    """
    order = torch.randperm(len(lengths), generator=generator).tolist()
    if group_by_length:
        mega = batch_size * 32
        order = [i for s in range(0, len(order), mega)
                 for i in sorted(order[s: s + mega], key=lambda i: -lengths[i])]
    batches = [order[s: s + batch_size] for s in range(0, len(order), batch_size)]
    if group_by_length:
        perm = torch.randperm(len(batches), generator=generator).tolist()
        batches = [batches[p] for p in perm]
    return batches
