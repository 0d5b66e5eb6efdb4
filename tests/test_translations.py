"""The Spanish, French and German fixed texts: complete, formattable, naming the right numbers and phrases,
and shown by the assistant when the guard takes over in that language."""

from __future__ import annotations

import string
import threading
from collections.abc import Iterator

import pytest

from medtune.assistant.core import Assistant
from medtune.assistant.engines import Generation, GenParams
from medtune.safety import translations
from medtune.safety.policy import CATEGORIES, Contacts, message

LANGS = ("es", "fr", "de")
# categories with an English text in policy.message: every language must have all of them
ENGLISH = tuple(c for c in CATEGORIES if message(c) is not None)
# the phrase each language uses for "your local emergency number", "your local crisis line", "poison control"
LOCAL_EMERGENCY = {"es": "número de emergencias de tu zona", "fr": "numéro d'urgence local",
                   "de": "örtliche Notrufnummer"}
LOCAL_CRISIS = {"es": "línea de crisis de tu zona", "fr": "ligne d'écoute locale", "de": "Krisendienst in Ihrer Nähe"}
POISON_SERVICE = {"es": "información toxicológica", "fr": "centre antipoison", "de": "Giftnotruf"}
SENTINELS = Contacts(emergency="<E-number>", crisis="<C-line>", poison="<P-centre>")


def _uses(text: str) -> set[str]:
    return {name for name, value in vars(SENTINELS).items() if value in text}


def test_every_language_has_every_category_and_the_three_contacts():
    assert len(ENGLISH) == 9  # 6 fixed replies, 2 care notes, 1 pharmacist note (medication_info)
    assert set(translations.TEXTS) == set(translations.CONTACTS) == set(LANGS)
    for lang in LANGS:
        assert set(translations.TEXTS[lang]) == set(ENGLISH), lang
        assert set(translations.CONTACTS[lang]) == {"emergency", "crisis", "poison"}, lang
        assert all(v.strip() for v in translations.CONTACTS[lang].values())


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("category", ENGLISH)
def test_texts_format_with_default_and_custom_contacts_where_english_uses_them(lang, category):
    template = translations.TEXTS[lang][category]
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    assert fields <= {"emergency", "crisis", "poison"}
    default = message(category, lang=lang)
    assert default and "{" not in default and "}" not in default
    custom = message(category, SENTINELS, lang=lang)
    assert custom and "{" not in custom
    # a contact appears in a translation exactly when the English text names it
    assert _uses(custom) == _uses(message(category, SENTINELS) or ""), (lang, category)


@pytest.mark.parametrize("lang", LANGS)
def test_emergency_and_crisis_texts_name_the_numbers_and_the_local_services(lang):
    emergency = message("emergency", lang=lang)
    assert "112" in emergency and "911" in emergency and "999" in emergency
    assert LOCAL_EMERGENCY[lang] in emergency
    crisis = message("self_harm", lang=lang)
    assert "988" in crisis and LOCAL_CRISIS[lang] in crisis
    assert "112" in crisis and LOCAL_EMERGENCY[lang] in crisis  # "if you might act on it": emergency number too
    lethal = message("lethal_dose", lang=lang)
    assert POISON_SERVICE[lang] in lethal and "112" in lethal and "988" in lethal
    assert "988" in message("harm_others", lang=lang)


def test_each_language_names_its_own_crisis_numbers():
    assert "024" in message("self_harm", lang="es")
    assert "3114" in message("self_harm", lang="fr")
    de = message("self_harm", lang="de")
    assert "0800 111 0 111" in de and "0800 111 0 222" in de
    assert "15" in message("emergency", lang="fr")


@pytest.mark.parametrize("lang", LANGS)
def test_texts_read_as_their_own_language(lang):
    from medtune.safety.features import language

    for category in ENGLISH:
        assert language(message(category, lang=lang)) == lang, category


@pytest.mark.parametrize("category", ENGLISH)
def test_unknown_language_falls_back_to_english(category):
    assert message(category, lang="xx") == message(category)
    assert message(category, lang="it") == message(category)
    assert message("benign", lang="es") is None and message("nonsense", lang="de") is None


def test_custom_contacts_replace_the_language_defaults():
    custom = Contacts(emergency="000 en Australia", crisis="llama al 13 11 14 (Lifeline)", poison="13 11 26")
    text = message("self_harm", custom, lang="es")
    assert "13 11 14" in text and "000 en Australia" in text
    assert "988" not in text and "024" not in text and "112" not in text
    lethal = message("lethal_dose", custom, lang="es")
    assert "13 11 26" in lethal and "91 562 04 20" not in lethal


class RaisingEngine:
    """An engine the guarded path must never reach."""

    name = "raising"
    context_length = 2048

    def count_tokens(self, messages: list[dict[str, str]]) -> int:
        raise AssertionError("the engine was asked to count tokens for a guarded turn")

    def stream(self, messages: list[dict[str, str]], params: GenParams, gen: Generation,
               cancel: threading.Event) -> Iterator[str]:
        raise AssertionError("the engine was asked to generate for a guarded turn")


@pytest.mark.parametrize("lang,text", [
    ("es", "Mi padre no respira, ¿qué hago?"),
    ("fr", "Mon père ne respire plus, qu'est-ce que je dois faire ?"),
    ("de", "Mein Vater atmet nicht mehr, was soll ich tun?"),
])
def test_assistant_escalates_in_the_users_language_without_the_model(lang, text):
    reply = Assistant(RaisingEngine(), system_prompt="x").reply([{"role": "user", "content": text}])
    assert (reply.action, reply.category, reply.language) == ("escalate", "emergency", lang)
    assert reply.text == message("emergency", lang=lang) and reply.finish_reason == "guard"
    assert LOCAL_EMERGENCY[lang] in reply.text


def test_assistant_uses_its_configured_contacts_in_spanish():
    contacts = Contacts(emergency="000 en Australia")
    reply = Assistant(RaisingEngine(), system_prompt="x", contacts=contacts).reply(
        [{"role": "user", "content": "Mi padre no respira, ¿qué hago?"}])
    assert reply.language == "es" and "000 en Australia" in reply.text and "911" not in reply.text
    assert LOCAL_EMERGENCY["es"] in reply.text
