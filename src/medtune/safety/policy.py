"""What the guard decides and what the assistant says instead of answering.

Every category maps to one action. `escalate` and `refuse` replace the model's answer with a fixed,
reviewed message (the model never improvises an emergency instruction); `answer` lets the model reply,
and for stop_medication / diagnosis_request the assistant adds a care note before the answer, for
medication_info a pharmacist note after it (guard/SPEC.md is the written policy, with examples). The numbers in the
messages are configurable because emergency and crisis numbers differ by country.
"""

from __future__ import annotations

from dataclasses import dataclass

from medtune.safety import translations

ESCALATE, REFUSE, ANSWER = "escalate", "refuse", "answer"

CATEGORY_ACTION: dict[str, str] = {
    "emergency": ESCALATE,
    "self_harm": ESCALATE,
    "lethal_dose": REFUSE,
    "harm_others": REFUSE,
    "prescription_request": REFUSE,
    "unethical_practice": REFUSE,
    "stop_medication": ANSWER,
    "medication_info": ANSWER,
    "diagnosis_request": ANSWER,
    "out_of_scope": ANSWER,
    "benign": ANSWER,
}
CATEGORIES: tuple[str, ...] = tuple(CATEGORY_ACTION)
ESCALATE_CATEGORIES = tuple(c for c, a in CATEGORY_ACTION.items() if a == ESCALATE)
REFUSE_CATEGORIES = tuple(c for c, a in CATEGORY_ACTION.items() if a == REFUSE)
ANSWER_CATEGORIES = tuple(c for c, a in CATEGORY_ACTION.items() if a == ANSWER)

DISCLAIMER = "This is general information, not medical advice; a clinician who knows your history can advise you."


@dataclass(frozen=True)
class Contacts:
    """The numbers named in escalations and refusals (defaults: US / EU / UK)."""

    emergency: str = "911 in the US, 112 in the EU, 999 in the UK"
    crisis: str = "call or text 988 (Suicide & Crisis Lifeline) in the US"
    poison: str = "Poison Help 1-800-222-1222 in the US"


def message(category: str, contacts: Contacts | None = None, lang: str = "en") -> str | None:
    """The fixed reply for a category whose action is not `answer`; a care note for the careful answers.
    `lang` (en, es, fr, de: the languages the guard reads) picks the wording; unknown languages get English.
    Without `contacts`, each language names its own default numbers."""
    if lang != "en" and lang in translations.TEXTS:
        c = contacts or Contacts(**translations.CONTACTS[lang])
        text = translations.TEXTS[lang].get(category)
        return text.format(emergency=c.emergency, crisis=c.crisis, poison=c.poison) if text else None
    c = contacts or Contacts()
    texts = {
        "emergency": (
            f"This could be a medical emergency. Call your local emergency number now ({c.emergency}). "
            "Stay with the person if it is safe, and follow the dispatcher's instructions; they can talk you "
            "through first aid such as CPR until help arrives. Please don't wait for an answer online."
        ),
        "self_harm": (
            "I'm really sorry you're going through this, and I'm glad you said something. You don't have to face "
            f"it alone. Please reach out now: {c.crisis}, or contact your local crisis line. If you might act on "
            f"these thoughts or have already hurt yourself, call your local emergency number ({c.emergency}). "
            "If you can, tell someone you trust and stay with them."
        ),
        "lethal_dose": (
            "I can't help with lethal or harmful amounts of any medicine or substance. If someone may have taken "
            f"too much of something, contact poison control ({c.poison}) or call your local emergency number "
            f"({c.emergency}) now. If you are thinking about harming yourself, please {c.crisis} or contact your "
            "local crisis line."
        ),
        "harm_others": (
            "I can't help with anything that could hurt another person. If someone is in danger right now, call "
            f"your local emergency number ({c.emergency}). If you are having thoughts of harming someone, a doctor, "
            f"a counsellor or a crisis line can help ({c.crisis}, or your local crisis line)."
        ),
        "prescription_request": (
            "I can't prescribe medicines or work out a personal dose. A doctor, nurse practitioner or pharmacist "
            "who knows your health, your other medicines and your allergies can do that safely. I can explain "
            "what a medicine is generally used for, its common side effects, and questions to ask at your visit."
        ),
        "unethical_practice": (
            "I can't help with that: it would put patients at risk or break duties of honesty, consent, "
            "confidentiality or fair treatment. If you are under pressure to do this, your ethics committee, "
            "compliance office or professional body can advise you confidentially."
        ),
        "stop_medication": (
            "Please don't stop or change a prescribed medicine on your own: some need to be tapered, and stopping "
            "suddenly can be harmful. Talk to the clinician or pharmacist who prescribed it about side effects or "
            "concerns; there is often an alternative."
        ),
        "medication_info": (
            "This is general information, as on the medicine's label or leaflet. Your pharmacist or prescriber can "
            "check it against your other medicines, allergies and health conditions."
        ),
        "diagnosis_request": (
            "I can't tell what you have from a message, but I can share general information. A clinician who can "
            "examine you and ask about your history is the right person to make a diagnosis."
        ),
    }
    return texts.get(category)


def action_of(category: str) -> str:
    return CATEGORY_ACTION[category]
