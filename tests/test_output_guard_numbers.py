"""The output guard and crisis lines: 988 (the US Suicide & Crisis Lifeline) named where nobody spoke of suicide,
self-harm or distress is fixed (an emergency sentence becomes the emergency-number note, any other is dropped);
where the user, the answer or the sentence itself speaks of it, the sentence stays. Also through the Assistant."""

from __future__ import annotations

import re
import threading

import pytest

from medtune.assistant import Assistant
from medtune.assistant.engines import Generation
from medtune.safety.crisis_line import emergency_note, placement
from medtune.safety.output_guard import SentenceRelease, check_answer
from medtune.safety.policy import Contacts, message

EAR_Q = "My 4-year-old has an ear infection and a fever, what should I do?"
EAR = ("Ear infections are common in young children and often clear up in two or three days. "
       "Paracetamol or ibuprofen at the dose on the label can ease the pain. "
       "If the fever gets very high or your child is hard to wake, call 988 for an emergency situation. "
       "See a doctor if it is not better after two days.")
EAR_FIXED = ("Ear infections are common in young children and often clear up in two or three days. "
             "Paracetamol or ibuprofen at the dose on the label can ease the pain. "
             "If this is an emergency, call your local emergency number (911 in the US, 112 in the EU, 999 in the UK). "
             "See a doctor if it is not better after two days.")
SELF_HARM_SENTENCE = "If you have thoughts of harming yourself, call or text 988 (Suicide & Crisis Lifeline)."


def test_a_misplaced_988_in_an_emergency_sentence_becomes_the_emergency_number_rest_kept():
    r = check_answer(EAR, user_text=EAR_Q)
    assert r.text == EAR_FIXED and r.changes == ["crisis_line"]
    assert "988" not in r.text


def test_a_misplaced_crisis_line_without_an_emergency_is_dropped():
    r = check_answer("Ear infections are common. You can call the crisis line for more advice. "
                     "See a doctor if it is not better after two days.", user_text=EAR_Q)
    assert r.text == "Ear infections are common. See a doctor if it is not better after two days."
    assert r.changes == ["crisis_line"]


def test_the_crisis_lines_own_name_does_not_vouch_for_itself_nor_does_a_medical_crisis():
    r = check_answer("An adrenal crisis needs treatment fast. Call 988, the Suicide & Crisis Lifeline, "
                     "in an emergency. See a doctor about a steroid emergency card.",
                     user_text="what is an adrenal crisis?")
    assert "988" not in r.text and "911 in the US" in r.text and r.text.startswith("An adrenal crisis")


def test_988_fits_when_the_user_speaks_of_ending_their_life():
    answer = "I'm really sorry you're feeling this way. Please call or text 988 now; they are there to help."
    r = check_answer(answer, user_text="I want to end my life")
    assert r.text.startswith(answer) and "crisis_line" not in r.changes
    alone = check_answer(answer)  # without the user's words the answer itself does not say why 988
    assert alone.text.startswith("I'm really sorry you're feeling this way.") and "988" not in alone.text


def test_988_fits_when_its_own_sentence_names_the_crisis_in_an_ordinary_answer():
    answer = f"Insomnia is common and good sleep habits help. {SELF_HARM_SENTENCE} See a doctor if it lasts weeks."
    r = check_answer(answer, user_text="I can't sleep, any tips?")
    assert r.text == answer and r.changes == []


def test_988_fits_after_the_answer_spoke_of_depression_and_when_the_user_asks_about_the_line():
    answer = "Low mood for weeks can be depression, and it is treatable. You can also call or text 988 any time."
    assert check_answer(answer, user_text="how do I help my brother?").text.startswith(answer)
    about = "988 is the Suicide & Crisis Lifeline in the US. You can call or text it."
    assert check_answer(about, user_text="What is 988?").text.startswith(about)


def test_numbers_that_merely_contain_988_are_not_the_crisis_line():
    answer = "Call 1-800-988-1234 to book. The study gave 988 mg in total. See your doctor."
    assert check_answer(answer).text == answer


def test_one_emergency_note_however_many_misplaced_sentences_and_configured_numbers():
    r = check_answer("Call 988 in an emergency. Ear pain eases with rest. In an urgent case dial 988.",
                     contacts=Contacts(emergency="000 in Australia"))
    assert r.text.count("If this is an emergency") == 1 and "000 in Australia" in r.text
    assert r.text.startswith("If this is an emergency, call your local emergency number (000 in Australia). "
                             "Ear pain eases with rest.")


@pytest.mark.parametrize("lang,answer,user,kept_user", [
    ("es", "La otitis suele mejorar en pocos días. Si es una urgencia, llama al 988. Consulta al pediatra.",
     "Mi hijo tiene otitis, ¿qué hago?", "Ya no quiero vivir, todo me da igual"),
    ("fr", "L'otite guérit souvent en quelques jours. En cas d'urgence, appelez le 988. Consultez un médecin.",
     "Mon fils a une otite, que faire ?", "J'ai des idées noires depuis des semaines"),
    ("de", "Eine Mittelohrentzündung heilt oft in wenigen Tagen. Bei einem Notfall rufen Sie sofort die 988 an. "
           "Gehen Sie zum Arzt.", "Mein Sohn hat eine Mittelohrentzündung, was tun?", "Ich bin lebensmüde"),
])
def test_each_language_fixes_a_misplaced_988_and_keeps_it_in_a_crisis(lang, answer, user, kept_user):
    fixed = check_answer(answer, lang=lang, user_text=user)
    first, _, last = answer.split(". ")
    assert fixed.text.startswith(f"{first}. {emergency_note(lang=lang)} {last}") and "988" not in fixed.text
    assert "112" in emergency_note(lang=lang) and fixed.changes[0] == "crisis_line"
    assert check_answer(answer, lang=lang, user_text=kept_user).text.startswith(answer)


@pytest.mark.parametrize("sentence", [
    "Si tienes pensamientos de suicidio, llama al 024 o escribe al 988.",
    "Si vous pensez à vous faire du mal, appelez le 3114.",
    "Wenn Sie daran denken, sich etwas anzutun, rufen Sie die Telefonseelsorge an.",
])
def test_a_crisis_sentence_in_each_language_names_its_own_reason(sentence):
    assert placement(sentence) == "fits"


@pytest.mark.parametrize("lang", ["en", "es", "fr", "de"])
@pytest.mark.parametrize("category", ["lethal_dose", "harm_others"])
def test_the_projects_own_crisis_texts_say_why_and_pass_unchanged(lang, category):
    text = message(category, lang=lang)
    checked = check_answer(text, lang=lang)
    assert "988" in text and "crisis_line" not in checked.changes
    crisis = [s for s in re.split(r"(?<=[.!?])\s+", text) if "988" in s]
    assert crisis and all(s in checked.text for s in crisis)  # word for word


def test_streamed_release_never_sends_the_misplaced_988_and_matches_the_whole_answer():
    release = SentenceRelease(user_text=EAR_Q)
    pieces = [p for i in range(0, len(EAR), 7) for p in release.feed(EAR[i:i + 7])] + release.finish()
    assert not any("988" in p for p in pieces)
    assert "".join(pieces).strip() == check_answer(EAR, user_text=EAR_Q).text


class Scripted:
    """Streams fixed pieces (an engine for the Assistant)."""

    name, context_length = "scripted", 4096

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces

    def count_tokens(self, messages):
        return sum(len(m["content"].split()) + 2 for m in messages)

    def stream(self, messages, params, gen: Generation, cancel: threading.Event):
        yield from self.pieces
        gen.finish_reason = "stop"


def test_the_assistant_fixes_a_misplaced_988_and_reads_the_users_words_for_distress():
    engine = Scripted([EAR[:100], EAR[100:200], EAR[200:]])
    reply = Assistant(engine, system_prompt="Be careful.").reply([{"role": "user", "content": EAR_Q}])
    assert reply.action == "answer" and "988" not in reply.text and reply.text.startswith(EAR_FIXED)
    assert "crisis_line" in reply.changes
    # the same 988 sentence stays when the user spoke of distress (only the user's words say so)
    answer = "Therapy helps many people. You can also call or text 988 to talk to someone."
    reply = Assistant(Scripted([answer]), system_prompt="x").reply(
        [{"role": "user", "content": "I have been feeling anxious and low for weeks, does therapy help?"}])
    assert reply.action == "answer" and reply.text.startswith(answer) and "crisis_line" not in reply.changes
