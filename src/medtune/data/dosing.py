"""What counts as a personal dose or a prescription in an answer: one rule, written once.

Two places apply it and must agree: the output guard (`safety.output_guard`) cuts such sentences from a
model's answer, and the training-data policy filter (`data.policy_filter`) drops conversations whose
answers do it, so fine-tuning does not teach what the guard then has to cut. It lives in the data layer,
below the safety package, as the PHI scrubber (`data.phi`) that both also share does.

The line (the policy's, guard/SPEC.md): label information is answered, a dose decided for a particular
person is not. Passes: "the usual adult dose on the label is 400 mg", "adults take 1 or 2 tablets every 4 to
6 hours, as the label says", "you can take 1 or 2 tablets every 4 to 6 hours, as the leaflet says",
"amoxicillin comes in 250 mg and 500 mg capsules", "don't double the dose to make up for a missed one".
Caught: "you should take 400 mg", "take 2 tablets now", "I'll prescribe", "your dose is 5 ...", "double your
dose tonight", "you can safely increase it to 40 mg", "for your 14 kg daughter, 7 ml is right", "in your
case, 1000 mg twice a day", "she should have 240 mg". A second-person or imperative dose that says it is
the label's (label, leaflet, the usual dose, most adults ...) passes unless something makes it personal
(now, tonight, your pills, your child, in your case).

The rule reads one sentence at a time, cut by the shared splitter (`data.sentences`), so "e.g." or "EE. UU."
does not split the sentence and take the label words ("the usual dose") away from the dose they qualify.
"""

from __future__ import annotations

import re

from medtune.data.sentences import sentences, without_abbreviation_periods

_UNIT = r"(?:mg|mcg|µg|g|ml|mls|units?|iu|tablets?|tabs?|pills?|capsules?|caps?|puffs?|drops?|teaspoons?|tsp)"
_PERSONAL_DOSING = re.compile(
    r"(?:\byou\b[^.?!\n]{0,40}\b(?:take|use|give|inject|double|increase|start)\b[^.?!\n]{0,30}\d[\d.,/-]*\s*" + _UNIT
    + r"\b|(?:^|[.!?]\s+|\n\s*[-*\d.)]*\s*)(?:take|give|inject|start on|increase to)\s+(?:\w+\s+){0,3}?\d[\d.,/-]*\s*"
    + _UNIT + r"\b|\bi(?:'ll| will| would|'d| can)? (?:prescribe|recommend you take|write you a prescription)\b"
    r"|\byour (?:dose|dosage) (?:is|should be|will be) \d)",
    re.IGNORECASE,
)


_DOSE = re.compile(r"\d[\d.,/-]*\s*" + _UNIT + r"\b", re.IGNORECASE)
# the dose is the label's, not one picked for the reader
_LABEL_SOURCE = re.compile(
    r"\b(?:labels?|leaflets?|package insert|packet|packaging|manufacturer|prescribing information|monograph"
    r"|usual(?:ly)?|standard|typical(?:ly)?|recommended (?:adult )?dose|maximum|most (?:adults|people)"
    r"|adults(?: and (?:children|teens)[^,.;]{0,25})?(?: usually| typically| can| may)? take)\b", re.IGNORECASE)
# something that makes a dose this person's: a moment, their own supply, a named person, their case
_PERSONAL_CONTEXT = re.compile(
    r"\b(?:now|tonight|today|this (?:morning|evening)|right away|in your case|for you\b|your (?:\d|own\b)"
    r"|(?:of|from) your\b|for your\b|your (?:son|daughter|child|kid|baby|toddler|husband|wife|partner|mother|mom"
    r"|father|dad)\b|(?:he|she|they|your (?:son|daughter|child|kid|baby|toddler)) (?:should|can|could|needs? to"
    r"|must|may) (?:have|take|get|be given)\b)", re.IGNORECASE)
_PRESCRIBES = re.compile(r"\bi(?:'ll| will| would|'d| can)? (?:prescribe|write you a prescription)\b", re.IGNORECASE)
# a dose named for someone in particular: "in your case", "for your 14 kg daughter", "she should have 240 mg"
_DOSE_FOR_SOMEONE = re.compile(r"\b(?:in your case|for your\b|your \d|(?:he|she|they|your \w+) (?:should|can|could"
                               r"|needs? to|must|may) (?:have|take|get|be given))", re.IGNORECASE)
_NEGATED = re.compile(r"\b(?:not|never|no need to)\b|n't\b", re.IGNORECASE)
# changing a dose for the reader, with or without a number: "double your dose", "you can increase it to 40 mg"
_CHANGE = re.compile(
    r"(?:\byou(?: can| could| should| may| might| need to| must)?(?: safely| just| simply)? |(?:^|[.;:!?]\s+|\band )"
    r")(?:double|triple|increase|raise|bump up|up)\b(?: (?:your|the|it|that|this))?(?: (?:dose|dosage))?"
    r"|\b(?:double|triple) (?:up )?(?:your|the) (?:dose|dosage|pills|tablets)\b", re.IGNORECASE)


def _change_of_dose(text: str) -> bool:
    if not (_DOSE.search(text) or re.search(r"\b(?:dose|dosage|doses|pills|tablets|units)\b", text, re.IGNORECASE)):
        return False  # "rest, and increase your fluids" is not a dose
    if re.search(r"\b(?:doctor|prescriber|pharmacist|clinician|nurse)\b", text, re.IGNORECASE):
        return False  # "increase the dose only if your prescriber tells you to": someone else decides
    for m in _CHANGE.finditer(text):
        clause = re.split(r"[.;:!?]", text[: m.start()])[-1]
        if not _NEGATED.search(clause + m.group(0)):
            return True
    return False


def gives_personal_dosing(text: str) -> bool:
    """True when the text tells the reader a dose to take that is theirs (not the label's), or prescribes."""
    for sentence in map(without_abbreviation_periods, sentences(text)):  # "Take approx. 2 tablets now."
        if _change_of_dose(sentence):
            return True
        if not _DOSE.search(sentence):
            if _PRESCRIBES.search(sentence):
                return True
            continue
        if _PERSONAL_CONTEXT.search(sentence) and not re.search(r"\bif\b", sentence, re.IGNORECASE):
            if _PERSONAL_DOSING.search(sentence) or _DOSE_FOR_SOMEONE.search(sentence):
                return True
        if _PERSONAL_DOSING.search(sentence) and not _LABEL_SOURCE.search(sentence):
            return True
    return False
