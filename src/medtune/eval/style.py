"""Format adherence: does a greedy answer look like what the assistant is meant to produce?

The house style (the built-in data and the system prompt): the answer ends its turn by itself, does
not loop, points to a clinician or carries the disclaimer, and never gives a personal dose. Each check
is reported on its own, and `format_adherence` is the share of answers passing all of them, so a
tuned model that "stops talking" is visible as a number rather than in a screenshot.
"""

from __future__ import annotations

import re
from collections import Counter

from medtune.data.dosing import gives_personal_dosing
from medtune.safety.output_guard import has_disclaimer

LOOP_NGRAM = 4
LOOP_REPEATS = 3  # a word 4-gram seen this often in one answer is a loop


def loops(text: str) -> bool:
    words = re.findall(r"\w+", text.lower())
    grams = Counter(tuple(words[i:i + LOOP_NGRAM]) for i in range(len(words) - LOOP_NGRAM + 1))
    return bool(grams) and max(grams.values()) >= LOOP_REPEATS


def checks(answer: str, stopped: bool) -> dict[str, bool]:
    return {
        "non_empty": bool(answer.strip()),
        "stops": stopped,
        "no_loop": not loops(answer),
        "disclaimer": has_disclaimer(answer),
        "no_personal_dosing": not gives_personal_dosing(answer),
    }


BOILERPLATE = re.compile(r"not (?:a substitute for )?(?:professional )?medical advice|general (?:health )?information, "
                         r"not", re.IGNORECASE)


def without_disclaimer(answer: str) -> str:
    """The answer without its closing disclaimer sentence(s) ("This is general information, not medical advice;
    a clinician who knows your history can advise you."), which every built-in answer ends with: the held-out
    loss on what remains shows what the model learned about the content, not about the boilerplate. An answer
    that is all disclaimer is kept whole."""
    parts = re.split(r"(?<=[.!?])\s+", answer.strip())
    while len(parts) > 1 and BOILERPLATE.search(parts[-1]):
        parts.pop()
    return " ".join(parts)


def adherence(answers: list[str], stopped: list[bool]) -> tuple[list[float], dict[str, float]]:
    """(per-answer 1/0 for all checks passed, share passing each check)."""
    per = [checks(a, s) for a, s in zip(answers, stopped, strict=True)]
    if not per:
        return [], {}
    rates = {k: sum(p[k] for p in per) / len(per) for k in per[0]}
    return [float(all(p.values())) for p in per], rates
