"""The output guard: the last check on a model's answer before a user sees it.

Four duties. Personal dosing or prescribing ("take 400 mg every 6 hours", "I'll prescribe you ...")
is cut sentence by sentence and replaced by the prescription note; general label information ("the
usual adult dose on the label is ...") passes. PHI is never echoed back (the same scrubber as training
data). The disclaimer is added when the answer has none, and the care note leads answers to
stop-medication and diagnosis questions. A crisis line (988, the US Suicide & Crisis Lifeline) named where
nobody spoke of suicide, self-harm or mental-health distress is not left standing: that sentence becomes the
emergency-number note if it spoke of an emergency, and is dropped otherwise (safety/crisis_line.py says why and
how). For that the guard is given what the user wrote (`user_text`); without it, only the answer is read.

The unit is the sentence (split_sentences: end punctuation or a line break, but not after a short list of
abbreviations such as "e.g.", "Dr.", "EE. UU.", "z. B."); a cut or dropped sentence takes its whitespace with it.
The splitter lives in `data.sentences`, shared with the dosing rule, the training-data policy filter and the
answer rubric.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from medtune.data.dosing import gives_personal_dosing
from medtune.data.phi import scrub
from medtune.data.sentences import split_sentences
from medtune.safety import crisis_line
from medtune.safety.policy import DISCLAIMER, Contacts, message

_HAS_DISCLAIMER = re.compile(
    r"not (?:a substitute for )?(?:professional )?medical advice|general (?:health )?information|"
    r"(?:talk|speak) (?:to|with) (?:a|your) (?:doctor|clinician|pharmacist|healthcare|health care)|"
    r"\bsee (?:a|your) (?:doctor|clinician|gp|healthcare provider|health care provider)\b",
    re.IGNORECASE,
)
CARE_NOTE_CATEGORIES = ("stop_medication", "diagnosis_request")  # a note before the answer
CLOSING_NOTE_CATEGORIES = ("medication_info",)  # a note after it: label information, then who checks it for you


@dataclass
class CheckedAnswer:
    text: str
    changes: list[str] = field(default_factory=list)


def check_answer(answer: str, category: str = "benign", contacts: Contacts | None = None,
                 lang: str = "en", *, user_text: str = "") -> CheckedAnswer:
    """The answer as it may be shown, and what was changed ("dosing", "phi", "disclaimer", "care_note",
    "pharmacist_note", "crisis_line"). `user_text`: what the user wrote (all their turns), read only for
    whether a crisis line fits."""
    release = SentenceRelease(category, contacts, lang, user_text=user_text)
    text = "".join(release.feed(answer) + release.finish())
    return CheckedAnswer(text.strip(), release.changes)


def filter_sentence(sentence: str, lang: str = "en") -> tuple[str, list[str]]:
    """One sentence as it may be shown: PHI scrubbed; personal dosing or prescribing cut ("" then). `lang`: the
    conversation's language; a German sentence is too short for the scrubber to tell German "im" from "I'm"."""
    changes: list[str] = []
    text, counts = scrub(sentence, lang)
    if counts:
        changes.append("phi")
    if gives_personal_dosing(text):
        return "", [*changes, "dosing"]
    return text, changes


class SentenceRelease:
    """The output guard for streamed text: a sentence is released only once it is complete and checked.

    `feed` takes raw model text and returns what may be sent now (whole sentences, each through
    `filter_sentence`); `finish` returns the rest, the prescription note if any sentence was cut, and the
    disclaimer when the answer had none. The care note for stop-medication and diagnosis questions is
    released first. `check_answer` is this class run on a whole answer, so streamed and plain replies are
    the same text, however the stream is cut into pieces.

    Whitespace between sentences is held and sent in front of the next sentence shown, never after one: a
    sentence that is cut or dropped then takes its whitespace with it, and nothing already sent can leave a
    double space, a space before a line break or a blank line before a note. Across a dropped sentence the
    wider of the two gaps around it is kept (a paragraph break wins over a space; `_gap_across_drop`)."""

    def __init__(self, category: str = "benign", contacts: Contacts | None = None, lang: str = "en", *,
                 user_text: str = "") -> None:
        self.contacts, self.lang = contacts, lang
        self.changes: list[str] = []
        self._buffer = ""
        self._gaps = [""]  # whitespace held since the last sentence shown; a new entry after each dropped sentence
        self._spoke = False  # whether a sentence of the answer has been shown
        self._released: list[str] = []
        self._cut = False
        self._crisis_fits = crisis_line.user_context_fits(user_text)  # later: or an earlier sentence spoke of it
        self._emergency_noted = False
        care = message(category, contacts, lang) if category in CARE_NOTE_CATEGORIES else None
        self._pending = [care + "\n\n"] if care else []
        if care:
            self.changes.append("care_note")
        self._closing = message(category, contacts, lang) if category in CLOSING_NOTE_CATEGORIES else None

    def feed(self, text: str) -> list[str]:
        self._buffer += text
        parts = split_sentences(self._buffer)
        # parts alternate sentence, whitespace; the last sentence has no end yet and stays buffered, and so does a
        # sentence whose whitespace runs to the end of the buffer (the next word decides "U.S. Call" / "U.S. or")
        held = 3 if len(parts) > 1 and not parts[-1] else 1
        out, self._pending = self._pending, []
        self._buffer = "".join(parts[-held:])
        for i in range(0, len(parts) - held, 2):
            out += self._take(parts[i] + parts[i + 1])
        return self._emit(out)

    def finish(self) -> list[str]:
        parts = split_sentences(self._buffer)
        out = self._pending
        for i in range(0, len(parts), 2):
            out += self._take("".join(parts[i:i + 2]))
        self._buffer, self._pending, self._gaps = "", [], [""]  # whitespace after the last sentence is not sent
        if self._cut:
            out.append(" " + (message("prescription_request", self.contacts, self.lang) or ""))
        if self._closing:
            out.append(("\n\n" if "".join(self._released + out).strip() else "") + self._closing)
            self.changes.append("pharmacist_note")
        so_far = "".join(self._released + out)
        if not so_far.strip() or not _HAS_DISCLAIMER.search(so_far):
            out.append(("\n\n" if so_far.strip() else "") + DISCLAIMER)
            self.changes.append("disclaimer")
        return self._emit(out)

    def _take(self, text: str) -> list[str]:
        """One sentence with the whitespace around it: [gap + sentence] when it is shown (the gap held since the
        last sentence shown, none before the first), [] when it is whitespace only, cut or dropped."""
        body = text.strip()
        if not body:
            self._gaps[-1] += text
            return []
        self._gaps[-1] += text[:len(text) - len(text.lstrip())]
        tail = text[len(text.rstrip()):]
        shown = self._check(body)
        if not shown:  # its gaps stay apart, so the wider one is kept, not both
            self._gaps.append(tail)
            return []
        gap = "" if not self._spoke else self._gaps[0] if len(self._gaps) == 1 else _gap_across_drop(self._gaps)
        self._gaps, self._spoke = [tail], True
        return [gap + shown]

    def _check(self, sentence: str) -> str:
        """The sentence as it may be shown; "" when cut (dosing) or dropped (a misplaced crisis line)."""
        text, changes = filter_sentence(sentence, self.lang)
        for c in changes:
            if c not in self.changes:
                self.changes.append(c)
        if "dosing" in changes:
            self._cut = True
            return ""
        return self._place_crisis_line(text) if text else ""

    def _place_crisis_line(self, text: str) -> str:
        """The sentence, or the emergency note / "" when it names a crisis line that does not fit."""
        where = crisis_line.placement(text, self._crisis_fits)
        if where in ("none", "fits"):  # a sentence that spoke of distress makes a later crisis line fit
            self._crisis_fits = self._crisis_fits or crisis_line.speaks_of_distress(text)
            return text
        if "crisis_line" not in self.changes:
            self.changes.append("crisis_line")
        if where == "emergency" and not self._emergency_noted:
            self._emergency_noted = True
            return crisis_line.emergency_note(self.contacts, self.lang)
        return ""

    def _emit(self, pieces: list[str]) -> list[str]:
        pieces = [p for p in pieces if p]
        if not self._released and pieces:  # no leading blank lines before the first words
            pieces[0] = pieces[0].lstrip()
        self._released += pieces
        return [p for p in pieces if p]


def _gap_across_drop(gaps: list[str]) -> str:
    """The whitespace to show where sentences were dropped between `gaps`: the most line breaks any gap has, with
    the indent of the last such gap (it is the next line's), or one space when none breaks the line."""
    widest = max(reversed(gaps), key=lambda g: g.count("\n"))
    breaks = widest.count("\n")
    return "\n" * breaks + widest[widest.rfind("\n") + 1:] if breaks else " "


def has_disclaimer(text: str) -> bool:
    return bool(_HAS_DISCLAIMER.search(text))
