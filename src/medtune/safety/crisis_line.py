"""Whether a crisis line named in a model's answer fits the conversation, and what replaces it when it does not.

Why: a small tuned model learns that "call 988" is something safe answers say, and then says it anywhere ("an
ear infection usually clears up in a few days ... call 988 for an emergency situation"). 988 is the US Suicide &
Crisis Lifeline (call or text), for suicidal thoughts and mental-health or emotional distress; it is not an
emergency number. Someone with chest pain or a child who cannot breathe who calls it loses minutes. In an
emergency the number is 911 (US), 112 (EU) or 999 (UK), or the local emergency number.

The check, kept deliberately simple and cheap (a few regular expressions over folded text, see rules.fold):

- A sentence of the answer *names a crisis line* when it has 988 (or the other crisis numbers the fixed texts
  name: 024 Spain, 3114 France, the Telefonseelsorge numbers) or a crisis-line name ("Suicide & Crisis
  Lifeline", "crisis line", "línea de crisis", "ligne d'écoute", "Telefonseelsorge", "Krisendienst", ...).
- The mention *fits* when distress is spoken of: in what the user wrote (any user turn; a question about the
  crisis line itself counts too), in an earlier sentence of the answer, or in the sentence itself once the
  crisis-line name is taken out (so "Suicide & Crisis Lifeline" does not vouch for itself). Distress is a short
  word list per language (en, es, fr, de; all lists are applied, whatever the answer's language, because a model
  may answer a Spanish question in English): suicide, self-harm, harming or killing oneself, ending one's life,
  wanting to die, thoughts of harming someone (the fixed harm_others text names the crisis line too), depression,
  hopelessness, mental health, anxiety or panic, a mental or emotional crisis.
  Medical crises ("hypertensive crisis", "sickle cell crisis") are not distress.
- A misplaced mention is fixed at the sentence, the unit the output guard already releases: a sentence that
  speaks of an emergency ("emergency", "urgent", "ambulance", 911/112/999, "urgencia", "urgence", "Notfall", ...)
  is replaced by the emergency note ("If this is an emergency, call your local emergency number (911 in the US,
  112 in the EU, 999 in the UK).", numbers from the configured Contacts, once per answer); any other such
  sentence is dropped. The rest of the answer is kept. Rewriting the number inside the sentence was rejected:
  the sentence around a misplaced number is rarely worth keeping, and a fixed, reviewed note cannot go wrong.

Left alone on purpose: an emergency number where a crisis line would fit (calling 911 when someone is in danger
is never wrong), and a crisis line where distress is mentioned only later in the answer (the streamed guard
cannot see ahead; the whole-answer guard gives the same text). Errors fall on the side of keeping the sentence:
"if you hurt yourself while running" reads as self-harm and keeps a 988 there, which is today's behaviour.

REVIEW STATUS: the Spanish, French and German notes below were drafted by an AI coding assistant, not reviewed
by a native speaker with clinical experience (as translations.py).
"""

from __future__ import annotations

import re
from typing import Literal

from medtune.safety import translations
from medtune.safety.policy import Contacts
from medtune.safety.rules import fold

Placement = Literal["none", "fits", "emergency", "drop"]

_CRISIS_LINE = re.compile("|".join([
    # not part of a longer number ("1-800-988-...", "2024") nor an amount ("988 mg", "988 patients")
    r"(?<![\d.,/-])(?:988|024|3114)(?![\d]|[.,/-]\d| ?(?:%|(?:mg|mcg|g|kg|ml|l|iu|units?|mmol|kcal|calories|mm|cm"
    r"|people|patients|cases|deaths|adults|children|personas|pacientes|personnes|menschen)\b))",
    r"\b0800 ?111 ?0 ?(?:111|222)\b",  # Telefonseelsorge
    # en
    r"\b(?:suicide (?:and|&) crisis|suicide prevention|crisis|988) life ?line\b",
    r"\b(?:suicide|crisis)(?: text)? (?:hot ?line|help ?line|line)s?\b", r"\bsamaritans\b",
    # es
    r"\blineas? (?:024|de crisis|de prevencion del suicidio|de atencion a la conducta suicida)\b",
    # fr
    r"\blignes? (?:d'ecoute|de crise)\b", r"\bnumero national de prevention du suicide\b",
    # de
    r"\btelefonseelsorge\b", r"\bkrisendienst\w*", r"\bkrisentelefon\w*",
]))

_SELF = r"(?:my|your|him|her|them|one|our)sel(?:f|ves)"
_DISTRESS = re.compile("|".join([
    r"\bsuicid\w*", r"\bdepres\w*",  # en, es, fr ("suicidio", "suicidaire", "depresion", "depressif")
    # en
    r"\bself[- ]?(?:harm|injur)\w*", rf"\b(?:harm|hurt|kill|injur)\w* {_SELF}\b",
    r"\b(?:end|ending|ended|take|taking|took) (?:my|your|his|her|their) (?:own )?li(?:fe|ves)\b",
    r"\b(?:want|wants|wanted|wanting|wish|wishing) to die\b", r"\bbetter off dead\b",
    r"\b(?:no reason|(?:do not|don'?t|doesn'?t) want) to live\b", r"\bhopeless\w*", r"\bdespair\w*",
    r"\bmental health\b", r"\b(?:emotional|mental|psychological) (?:distress|crisis|pain)\b", r"\bin crisis\b",
    r"\banxi(?:ety|ous)\b", r"\bpanic attacks?\b", r"\bthoughts of (?:death|dying|harming|hurting|killing)\b",
    # es
    r"\bautoles\w*", r"\bhacer(?:te|se|me) dano\b", r"\b(?:te|se|me) (?:haces|hace|hago|hagas) dano\b",
    r"\bquitar(?:te|se|me) la vida\b", r"\bmatar(?:te|se|me)\b", r"\b(?:quiero|quieres|quiere|ganas de) morir\b",
    r"\bno (?:quiero|quieres|quiere) (?:seguir )?vivir\b", r"\bsin ganas de vivir\b", r"\bdesesperanza\b",
    r"\bpensamientos de (?:hacer\w* dano|suicid\w*|muerte)\b", r"\bsalud mental\b", r"\bansiedad\b",
    r"\bangustia\b", r"\bataques? de panico\b", r"\bcrisis (?:de ansiedad|de panico|emocional|de salud mental)\b",
    r"\ben crisis\b",
    # fr
    r"\bautomutilation\w*", r"\b(?:vous|te|se|me) (?:faire|faites|fais|fait) du mal\b",
    r"\bpens\w* a (?:vous |te |se |me )?faire du mal\b", r"\bmettre fin a (?:ses|vos|mes|tes|leurs) jours\b",
    r"\bmettre fin a (?:sa|votre|ma|ta|leur) vie\b", r"\benvie de mourir\b", r"\b(?:veux|voulez|veut) mourir\b",
    r"\bdesespoir\b", r"\bsante mentale\b", r"\banxiete\b", r"\bangoisse\w*",
    r"\bcrises? (?:de panique|d'angoisse|suicidaire)\b", r"\ben crise\b",
    r"\bdetresse (?:psychologique|emotionnelle|morale)\b", r"\bidees noires\b",
    # de
    r"\bsuizid\w*", r"\bselbstmord\w*", r"\bselbstverletz\w*",
    r"\b(?:sich|mir|dir|jemandem) (?:selbst )?(?:etwas |was )?an(?:zu)?tun\b",
    r"\b(?:sich|mir|dir) das leben (?:zu )?nehmen\b", r"\b(?:will|mochte|mochten|wollen) sterben\b",
    r"\bnicht mehr leben\b", r"\blebensmude\b", r"\bhoffnungslos\w*", r"\bverzweif\w*",
    r"\b(?:psychisch|seelisch)\w* (?:gesundheit|krise|not|belastung)\b", r"\blebenskrise\b", r"\bin einer krise\b",
    r"\bangststorung\w*", r"\bpanikattacke\w*",
]))

_EMERGENCY = re.compile(
    r"\bemergenc\w*|\burgen\w*|\bambulanc\w*|\b(?:911|112|999)\b|\blife[- ]threatening\b|\bsamu\b|"
    r"\bnotfall\w*|\bnotruf\w*|\bnotaufnahme\b|\brettungsdienst\b|\bnotarzt\w*"
)

_NOTES = {  # {emergency} is Contacts.emergency; each is a conditional safety net, as the rubric reads it
    "en": "If this is an emergency, call your local emergency number ({emergency}).",
    "es": "Si es una emergencia, llama al número de emergencias de tu zona ({emergency}).",
    "fr": "En cas d'urgence, appelez le numéro d'urgence local ({emergency}).",
    "de": "Wenn es sich um einen Notfall handelt, rufen Sie die örtliche Notrufnummer ({emergency}) an.",
}


def names_crisis_line(text: str) -> bool:
    """Whether the text names a crisis line (988, "Suicide & Crisis Lifeline", "línea de crisis", ...)."""
    return bool(_CRISIS_LINE.search(fold(text)))


def speaks_of_distress(text: str) -> bool:
    """Whether the text speaks of suicide, self-harm, wanting to die or mental-health distress; a crisis-line
    name does not count (it would vouch for itself)."""
    return bool(_DISTRESS.search(_CRISIS_LINE.sub(" ", fold(text))))


def user_context_fits(user_text: str) -> bool:
    """Whether what the user wrote makes a crisis line fitting: distress, or a question about the line itself."""
    return speaks_of_distress(user_text) or names_crisis_line(user_text)


def placement(sentence: str, context_fits: bool = False) -> Placement:
    """"none" when the sentence names no crisis line; "fits" when it does and the context (`context_fits`) or the
    sentence itself speaks of distress; otherwise "emergency" when the sentence speaks of an emergency (replace
    it with `emergency_note`), else "drop"."""
    folded = fold(sentence)
    if not _CRISIS_LINE.search(folded):
        return "none"
    rest = _CRISIS_LINE.sub(" ", folded)
    if context_fits or _DISTRESS.search(rest):
        return "fits"
    return "emergency" if _EMERGENCY.search(rest) else "drop"


def emergency_note(contacts: Contacts | None = None, lang: str = "en") -> str:
    """The sentence that replaces a misplaced crisis line in an emergency instruction, in the answer's language."""
    if lang not in _NOTES:
        lang = "en"
    if contacts is None:
        contacts = Contacts(**translations.CONTACTS[lang]) if lang in translations.CONTACTS else Contacts()
    return _NOTES[lang].format(emergency=contacts.emergency)
