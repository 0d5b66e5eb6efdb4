"""What counts as a personal dose or a prescription in an answer: one rule, written once.

Two places apply it and must agree: the output guard (`safety.output_guard`) cuts such sentences from a
model's answer, and the training-data policy filter (`data.policy_filter`) drops conversations whose
answers do it, so fine-tuning does not teach what the guard then has to cut. It lives in the data layer,
below the safety package, as the PHI scrubber (`data.phi`) that both also share does.

Caught: "you should take 400 mg", "take 2 tablets", "I'll prescribe", "your dose is 5 ...". General label
information ("the usual adult dose on the label is 400 mg") passes.
"""

from __future__ import annotations

import re

_UNIT = r"(?:mg|mcg|µg|g|ml|mls|units?|iu|tablets?|tabs?|pills?|capsules?|caps?|puffs?|drops?|teaspoons?|tsp)"
_PERSONAL_DOSING = re.compile(
    r"(?:\byou\b[^.?!\n]{0,40}\b(?:take|use|give|inject|double|increase|start)\b[^.?!\n]{0,30}\d[\d.,/-]*\s*" + _UNIT
    + r"\b|(?:^|[.!?]\s+|\n\s*[-*\d.)]*\s*)(?:take|give|inject|start on|increase to)\s+(?:\w+\s+){0,3}?\d[\d.,/-]*\s*"
    + _UNIT + r"\b|\bi(?:'ll| will| would|'d| can)? (?:prescribe|recommend you take|write you a prescription)\b"
    r"|\byour (?:dose|dosage) (?:is|should be|will be) \d)",
    re.IGNORECASE,
)


def gives_personal_dosing(text: str) -> bool:
    """True when the text tells the reader a dose to take, or prescribes."""
    return bool(_PERSONAL_DOSING.search(text))
