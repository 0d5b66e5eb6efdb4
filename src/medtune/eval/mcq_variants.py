"""The other ways to ask a multiple-choice question, beside lm-eval's MMLU letters (mcq.py).

Protocol alone moves MedQA by ten points, so the report names the protocol of every figure:
- `acc_norm`: each option's text scored as the continuation " {text}", log-likelihood divided by the
  continuation's length in bytes (lm-eval's acc_norm);
- `acc_chat`: the same MMLU prompt sent as a user turn through the model's chat template, the letter
  scored as the first token of the assistant's answer (how a chat model is actually used);
- `acc_gen`: a greedy answer of a few tokens through the chat template, read by `extract_letter`; an
  answer the extractor cannot read counts as wrong and is reported as `unparsed_rate`.
"""

from __future__ import annotations

import re
from typing import Any

from medtune.data.formats import mcq_options
from medtune.eval.mcq import mcq_items, rank_choices
from medtune.model.generate import greedy_answers

GEN_TOKENS = 24
INSTRUCTION = "Answer with the letter of the correct option."


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def extract_letter(answer: str, options: dict[str, str]) -> str | None:
    """The option a free-text answer picks, or None. Tries, in order: "answer is (B)" / "Answer: B",
    a leading letter ("B", "B.", "(B)", "B)"), "option B", then a unique option text inside the answer."""
    letters = "".join(re.escape(k) for k in options)
    text = answer.strip()
    patterns = [
        rf"answer\s*(?:is|:)?\s*(?:option\s*)?\(?([{letters}])\b",
        rf"^\(?([{letters}])(?:[.):\s]|$)",
        rf"\boption\s*\(?([{letters}])\b",
        rf"^\**\(?([{letters}])\)?\**(?:[.):\s]|$)",
    ]
    for pat in patterns:
        m = re.search(pat, text, flags=re.IGNORECASE if pat.startswith("answer") or "option" in pat else 0)
        if m and m.group(1).upper() in options:
            return m.group(1).upper()
    said = _norm(text)
    hits = [k for k, v in options.items() if _norm(str(v)) and _norm(str(v)) in said]
    return hits[0] if len(hits) == 1 else None


def _chat(tok: Any, prompt: str) -> str:
    return tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)


def score_text(model: Any, tok: Any, rows: list[dict[str, Any]]) -> list[float]:
    """acc_norm per scored row: options as text, length-normalised log-likelihood."""
    items, _ = mcq_items(rows)
    prompts = [it[1] for it in items]
    choices = [[f" {t}" for t in mcq_options(rows[it[0]], {}).values()] for it in items]
    pred = rank_choices(model, tok, prompts, choices, normalize=True, desc="options as text")
    return [float(p == it[3]) for p, it in zip(pred, items)]


def score_chat(model: Any, tok: Any, rows: list[dict[str, Any]]) -> list[float]:
    items, _ = mcq_items(rows)
    prompts = [_chat(tok, it[1]) for it in items]
    pred = rank_choices(model, tok, prompts, [[c.strip() for c in it[2]] for it in items], desc="chat template")
    return [float(p == it[3]) for p, it in zip(pred, items)]


def score_generative(model: Any, tok: Any, rows: list[dict[str, Any]]) -> tuple[list[float], float]:
    """(1/0 correct per scored row, share of answers the extractor could not read)."""
    items, _ = mcq_items(rows)
    convs = [[{"role": "user", "content": f"{it[1].rsplit('Answer:', 1)[0]}{INSTRUCTION}"}] for it in items]
    answers = greedy_answers(model, tok, convs, "", GEN_TOKENS, base=False, desc="generative answers")
    correct, unparsed = [], 0
    for it, ans in zip(items, answers):
        opts = {k: str(v) for k, v in mcq_options(rows[it[0]], {}).items()}
        letters = list(opts)
        got = extract_letter(ans, opts)
        unparsed += got is None
        correct.append(float(got is not None and letters.index(got) == it[3]))
    return correct, unparsed / max(len(items), 1)

