"""Held-out comparison of base and tuned: answer-token loss and perplexity, and greedy answers.

Base and tuned are the same PEFT model with the adapter switched off and on, so both see identical
prompts, tokens and decoding. The full evaluation suite (benchmarks, CIs, reports) builds on this.

The held-out loss is reported twice: over all answer tokens, and over the answer's content only (without
the closing disclaimer every built-in answer ends with). Both come from the same forward pass per item
(`item_content_losses`): the content tokens are found by tokenizing, not by a second pass over the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from medtune.data.tokenize import IGNORE, Example, collate, encode
from medtune.eval.style import without_disclaimer
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


@dataclass
class ItemLosses:
    """Per item, in order: summed loss and token count over all answer tokens, and over the content tokens."""

    sums: list[float]
    counts: list[int]
    content_sums: list[float]
    content_counts: list[int]


def strip_disclaimers(row: dict[str, Any]) -> dict[str, Any]:
    """The row with the closing disclaimer removed from every assistant message (`style.without_disclaimer`)."""
    return {**row, "messages": [{**m, "content": without_disclaimer(m["content"])} if m["role"] == "assistant"
                                else m for m in row["messages"]]}


def _answer_spans(labels: list[int]) -> list[tuple[int, int]]:
    """[start, end) of each run of answer labels: one per assistant turn."""
    spans, start = [], None
    for i, t in enumerate([*labels, IGNORE]):
        if t != IGNORE and start is None:
            start = i
        elif t == IGNORE and start is not None:
            spans.append((start, i))
            start = None
    return spans


def content_labels(full: Example, stripped: Example) -> list[int]:
    """`full`'s labels with only its content tokens kept: in each assistant turn, the answer tokens that
    `full` and `stripped` (the same row tokenized without its disclaimer) have in common as a prefix.

    The disclaimer is a suffix of the answer, so this is the answer before it. At the join the two
    tokenizations can differ by a token; that token is not content. The turn's end-of-turn tokens follow the
    disclaimer, so they are not content either — except in a turn without a disclaimer, where both
    encodings are the same and every answer token, end-of-turn included, is content (content == all).
    Turns are paired in order, so earlier turns' disclaimers do not shift later turns' content."""
    out = [IGNORE] * len(full.labels)
    for (a, a_end), (b, b_end) in zip(_answer_spans(full.labels), _answer_spans(stripped.labels)):
        n = 0
        while a + n < a_end and b + n < b_end and full.labels[a + n] == stripped.labels[b + n]:
            n += 1
        out[a: a + n] = full.labels[a: a + n]
    return out


def heldout_examples(rows: list[dict[str, Any]], tok: Any, system_prompt: str,
                     max_length: int) -> tuple[list[Example], list[list[int]]]:
    """The rows tokenized (those with an answer token left after cutting to max_length, in order) and each
    one's content labels (`content_labels`). Tokenizing is cheap; this replaces a forward pass per item."""
    examples, contents = [], []
    for row in rows:
        full = encode(tok, row["messages"], system_prompt, max_length)
        if full.n_answer == 0:
            continue
        examples.append(full)
        contents.append(content_labels(full, encode(tok, strip_disclaimers(row)["messages"], system_prompt,
                                                    max_length)))
    return examples, contents


@torch.no_grad()
def item_content_losses(model: Any, examples: list[Example], contents: list[list[int]], pad_id: int, *,
                        base: bool = False) -> ItemLosses:
    """`item_losses` (all answer tokens) and the same over each item's content tokens (`contents[i]`: labels
    with IGNORE wherever a token is not to be counted, e.g. from `content_labels`), from ONE forward pass
    per item. An item with no content token gets content sum 0 and count 0."""
    if len(contents) != len(examples):
        raise ValueError(f"{len(examples)} examples but {len(contents)} content label lists")
    lm = AnswerLoss(model).eval()
    out = ItemLosses([], [], [], [])
    with adapter_off(model, base):
        for e, c in zip(examples, contents):
            if len(c) != len(e.labels):
                raise ValueError(f"content labels of length {len(c)} for an example of length {len(e.labels)}")
            batch = collate([e], pad_id)
            losses, keep = lm.token_losses(**batch)
            sub = (torch.tensor(c[1:], device=keep.device) != IGNORE)[keep[0]]
            out.sums.append(float(losses.sum()))
            out.counts.append(int(keep.sum()))
            out.content_sums.append(float(losses[sub].sum()))
            out.content_counts.append(int(sub.sum()))
    return out
