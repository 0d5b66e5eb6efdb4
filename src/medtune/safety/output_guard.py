"""The output guard: the last check on a model's answer before a user sees it.

Three duties. Personal dosing or prescribing ("take 400 mg every 6 hours", "I'll prescribe you ...")
is cut sentence by sentence and replaced by the prescription note; general label information ("the
usual adult dose on the label is ...") passes. PHI is never echoed back (the same scrubber as training
data). The disclaimer is added when the answer has none, and the care note leads answers to
stop-medication and diagnosis questions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from medtune.data.phi import scrub
from medtune.safety.policy import DISCLAIMER, Contacts, message

_UNIT = r"(?:mg|mcg|µg|g|ml|mls|units?|iu|tablets?|tabs?|pills?|capsules?|caps?|puffs?|drops?|teaspoons?|tsp)"
_PERSONAL_DOSING = re.compile(
    r"(?:\byou\b[^.?!\n]{0,40}\b(?:take|use|give|inject|double|increase|start)\b[^.?!\n]{0,30}\d[\d.,/-]*\s*" + _UNIT
    + r"\b|(?:^|[.!?]\s+|\n\s*[-*\d.)]*\s*)(?:take|give|inject|start on|increase to)\s+(?:\w+\s+){0,3}?\d[\d.,/-]*\s*"
    + _UNIT + r"\b|\bi(?:'ll| will| would|'d| can)? (?:prescribe|recommend you take|write you a prescription)\b"
    r"|\byour (?:dose|dosage) (?:is|should be|will be) \d)",
    re.IGNORECASE,
)
_HAS_DISCLAIMER = re.compile(
    r"not (?:a substitute for )?(?:professional )?medical advice|general (?:health )?information|"
    r"(?:talk|speak) (?:to|with) (?:a|your) (?:doctor|clinician|pharmacist|healthcare|health care)|"
    r"\bsee (?:a|your) (?:doctor|clinician|gp|healthcare provider|health care provider)\b",
    re.IGNORECASE,
)
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass
class CheckedAnswer:
    text: str
    changes: list[str] = field(default_factory=list)


def check_answer(answer: str, category: str = "benign", contacts: Contacts | None = None) -> CheckedAnswer:
    """The answer as it may be shown, and what was changed ("dosing", "phi", "disclaimer", "care_note")."""
    changes: list[str] = []
    text, counts = scrub(answer)
    if counts:
        changes.append("phi")
    if _PERSONAL_DOSING.search(text):
        kept = [s for s in _SENTENCES.split(text) if s.strip() and not _PERSONAL_DOSING.search(s)]
        note = message("prescription_request", contacts) or ""
        text = " ".join(kept + [note]).strip()
        changes.append("dosing")
    care = message(category, contacts) if category in ("stop_medication", "diagnosis_request") else None
    if care and care not in text:
        text = f"{care}\n\n{text}".strip()
        changes.append("care_note")
    if not _HAS_DISCLAIMER.search(text):
        text = f"{text}\n\n{DISCLAIMER}".strip()
        changes.append("disclaimer")
    return CheckedAnswer(text, changes)


def has_disclaimer(text: str) -> bool:
    return bool(_HAS_DISCLAIMER.search(text))


def gives_personal_dosing(text: str) -> bool:
    return bool(_PERSONAL_DOSING.search(text))
