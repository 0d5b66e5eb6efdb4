"""Where a sentence ends: one splitter for every place that judges text sentence by sentence.

Three places do, and must cut text the same way: the output guard (`safety.output_guard`) releases and checks a
model's answer one sentence at a time, the personal-dosing rule (`data.dosing`) reads one sentence at a time, and
the training-data policy filter (`data.policy_filter`) finds and hedges diagnosing sentences. A splitter that ends
a sentence at "e.g." or inside "EE. UU." hands each of them half a sentence, without the words it is judged by
("the usual adult dose, e.g." / "400 mg ..."). It lives in the data layer, the lowest that needs it, as the dosing
rule and the PHI scrubber do.

A sentence ends at end punctuation followed by whitespace, or at a line break, but not right after a short list of
abbreviations ("Dr.", "e.g.", "z. B.", "EE. UU." ...).
"""

from __future__ import annotations

import re

SENTENCE_END = re.compile(r"((?<=[.!?])\s+|\n+)")  # captured: split keeps the whitespace
# No sentence ends right after these (split_sentences). Case matters: "d." (d. h.) never ends a sentence, "D."
# (vitamin D.) may. The first word of a spaced one ("EE." of "EE. UU.", "p." of "p. ej.") does not end one either.
ABBREVIATIONS: tuple[str, ...] = ("Dr.", "Dra.", "Mr.", "Mrs.", "Ms.", "Prof.", "St.", "vs.", "e.g.", "i.e.", "approx.",
                                  "p. ej.", "p. ex.", "z. B.", "z.B.", "d. h.", "u. a.")
# A title joins the next word unless that word is an instruction: "ask your Dr. Give her 5 ml now." is two sentences,
# and the second must be judged alone (the dosing rule reads "if" and "label" in the first as a condition).
TITLES: tuple[str, ...] = ("Dr.", "Dra.", "Mr.", "Mrs.", "Ms.", "Prof.")
INSTRUCTIONS = frozenset("Take Give Inject Use Apply Double Increase Start Stop Call Go Ask Try Do Don't Never Always "
                         "Keep Avoid Seek Get Rest Drink Eat Wait See Tell Check".split())
# ... and these do unless the next word starts in lower case or a digit ("in the U.S. Call 911", "en EE. UU. o al 112").
ABBREVIATIONS_AT_END: tuple[str, ...] = ("U.S.", "EE. UU.")


def _ends_with(forms: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = sorted(forms, key=len, reverse=True)
    return re.compile(r"(?<![\w.])(?:" + "|".join(map(re.escape, alternatives)) + r")$")


_HEADS = tuple(f[: i + 1] for f in ABBREVIATIONS + ABBREVIATIONS_AT_END for i in range(len(f)) if f.startswith(". ", i))
_JOINS = _ends_with(ABBREVIATIONS + _HEADS)
_JOINS_BEFORE_LOWER = _ends_with(ABBREVIATIONS_AT_END)
_TITLE = _ends_with(TITLES)
_ABBREVIATION = re.compile(r"(?<![\w.])(?:" + "|".join(map(re.escape, sorted(ABBREVIATIONS + ABBREVIATIONS_AT_END,
                                                                                key=len, reverse=True))) + r")")


def split_sentences(text: str) -> list[str]:
    """`text` as sentence, whitespace, sentence, ..., sentence (the last one unfinished or ""), as
    `SENTENCE_END.split` gives it, but not split inside or right after an abbreviation (ABBREVIATIONS; those in
    ABBREVIATIONS_AT_END only when the next word starts in lower case or with a digit), nor rejoined across a line
    break. Why: the guard judges one sentence at a time, and half a sentence loses the words it is judged by
    ("If it is an emergency in EE." / "UU. call 988." reads as a crisis line with no emergency, and is dropped)."""
    parts = SENTENCE_END.split(text)
    out = parts[:1]
    for gap, nxt in zip(parts[1::2], parts[2::2]):
        before = out[-1]
        instruction = _TITLE.search(before) and nxt.split(" ", 1)[0].rstrip(",") in INSTRUCTIONS
        if "\n" not in gap and not instruction and (_JOINS.search(before) or (
                _JOINS_BEFORE_LOWER.search(before) and (nxt[:1].islower() or nxt[:1].isdigit()))):
            out[-1] = before + gap + nxt
        else:
            out += [gap, nxt]
    return out


def without_abbreviation_periods(text: str) -> str:
    """`text` with the periods of ABBREVIATIONS removed ("approx. 2 tablets" -> "approx 2 tablets"), for rules whose
    patterns stop at a period and would otherwise not see across one inside a sentence."""
    return _ABBREVIATION.sub(lambda m: m.group(0).replace(".", ""), text)


def sentences(text: str) -> list[str]:
    """The sentences of `text` alone (split_sentences without the whitespace between them)."""
    return split_sentences(text)[::2]
