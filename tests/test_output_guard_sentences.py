"""The output guard's sentences: a dropped or cut sentence takes its whitespace with it (no double space, no space
before a line break, whole answer and stream alike), and the splitter does not end a sentence inside an
abbreviation ("EE. UU.", "e.g.", "Dr.", "z. B."), so the crisis-line check reads the whole sentence."""

from __future__ import annotations

import random
import re

import pytest

from medtune.safety.crisis_line import emergency_note
from medtune.safety.output_guard import SentenceRelease, check_answer, split_sentences
from medtune.safety.policy import DISCLAIMER

EAR = ("Ear infections often clear up with antibiotics. Call 988 for an emergency situation. "
       "Rest and fluids help.")
STRAY = re.compile(r"  | \n|\n |^\s|\s$")  # none of the texts below has an indent
DROPPED = "You can call 988 if you have questions."  # no distress, no emergency: dropped


def streamed(answer: str, sizes: list[int], **kw) -> list[str]:
    release = SentenceRelease(**kw)
    pieces, at = [], 0
    for n in sizes:
        pieces += release.feed(answer[at:at + n])
        at += n
    return pieces + release.feed(answer[at:]) + release.finish()


def test_the_ear_infection_answer_reads_naturally_after_the_988_sentence_is_replaced():
    r = check_answer(EAR)
    assert r.text == ("Ear infections often clear up with antibiotics. " + emergency_note()
                      + " Rest and fluids help.\n\n" + DISCLAIMER)
    assert not STRAY.search(r.text) and r.changes == ["crisis_line", "disclaimer"]


@pytest.mark.parametrize("answer, shown", [
    (f"Ear pain is common. {DROPPED} Rest and fluids help.", "Ear pain is common. Rest and fluids help."),
    (f"Ear pain is common. Rest and fluids help. {DROPPED}", "Ear pain is common. Rest and fluids help."),
    (f"Ear pain is common. Rest and fluids help. {DROPPED}\n", "Ear pain is common. Rest and fluids help."),
    (f"{DROPPED} Ear pain is common. Rest and fluids help.", "Ear pain is common. Rest and fluids help."),
    # across a dropped sentence the paragraph break is kept, whichever side of it it was on
    (f"Ear pain is common. {DROPPED}\n\nRest and fluids help.", "Ear pain is common.\n\nRest and fluids help."),
    (f"Ear pain is common.\n\n{DROPPED} Rest and fluids help.", "Ear pain is common.\n\nRest and fluids help."),
    (f"Ear pain is common. {DROPPED} {DROPPED} Rest helps.", "Ear pain is common. Rest helps."),
])
def test_a_dropped_sentence_takes_its_whitespace_with_it(answer, shown):
    r = check_answer(answer)
    assert r.text == shown + "\n\n" + DISCLAIMER and "crisis_line" in r.changes
    assert not STRAY.search(r.text.replace("\n\n", ""))


def test_a_cut_last_sentence_leaves_one_space_before_the_prescription_note():
    r = check_answer("Ibuprofen eases ear pain. You should take 400 mg now. ")
    assert r.text.startswith("Ibuprofen eases ear pain. I can't prescribe") and "dosing" in r.changes


@pytest.mark.parametrize("answer", [EAR, f"Ear pain is common. Rest and fluids help. {DROPPED}",
                                    f"Ear pain is common.\n\n{DROPPED}  \n\nRest helps. Take 400 mg now.\n"])
def test_the_stream_cut_anywhere_is_the_whole_answer_and_never_sends_the_dropped_sentence(answer):
    whole = check_answer(answer).text
    cuts = [[n] * len(answer) for n in range(1, 10)] + [[random.Random(s).randint(1, 6) for _ in answer]
                                                         for s in range(20)]
    for sizes in cuts:
        pieces = streamed(answer, sizes)
        assert "".join(pieces) == whole, sizes[:3]
        assert not any("988" in p or "400 mg" in p for p in pieces)


@pytest.mark.parametrize("text", [
    "Llame al 911 en EE. UU. o al 112 en la UE.",
    "Dr. Smith said so.",
    "Some pain relievers, e.g. ibuprofen, upset the stomach.",
    "Take it with food, i.e. with a meal.",
    "In the U.S. and Canada the number is 911.",
    "It lasts approx. 5 days.",
    "Tome un analgésico, p. ej. paracetamol, si le duele.",
    "Prenez un antalgique, p. ex. du paracétamol.",
    "Nehmen Sie z. B. Paracetamol.",
    "Nehmen Sie z.B. Paracetamol.",
    "Ruhen Sie sich aus, d. h. bleiben Sie zu Hause.",
    "Es hilft u. a. Ruhe.",
])
def test_no_sentence_ends_inside_an_abbreviation(text):
    assert split_sentences(text) == [text]
    assert split_sentences(f"{text} Rest helps.") == [text, " ", "Rest helps."]


@pytest.mark.parametrize("text, first", [
    ("Take it with food. Then rest.", "Take it with food."),
    ("Take vitamin D. Then rest.", "Take vitamin D."),  # "d." of "d. h." is lower case
    ("There is a vaccine for hepatitis B. Ask your doctor.", "There is a vaccine for hepatitis B."),
    ("Flu shots are free in the U.S. Ask a pharmacy.", "Flu shots are free in the U.S."),  # before a capital
    ("Vive en EE. UU. Llame a su médico.", "Vive en EE. UU."),
    ("Use a brand, e.g.\nAdvil.", "Use a brand, e.g."),  # a line break always ends the sentence
])
def test_a_real_sentence_end_still_splits(text, first):
    assert split_sentences(text)[0] == first and len(split_sentences(text)) == 3


@pytest.mark.parametrize("answer, lang, kept", [
    ("La otitis suele mejorar sola. Si es una urgencia en EE. UU. llame al 988. Descanse.", "es", "Descanse."),
    ("Ear pain is common. In an emergency, e.g. a stiff neck or a very high fever, call 988. Rest helps.", "en",
     "Rest helps."),
])
def test_an_emergency_sentence_split_at_an_abbreviation_would_lose_its_emergency(answer, lang, kept):
    r = check_answer(answer, lang=lang)
    assert emergency_note(lang=lang) in r.text and "988" not in r.text and kept in r.text
    assert "urgencia en EE." not in r.text and "e.g." not in r.text  # no half sentence left standing
    assert "".join(streamed(answer, [1] * len(answer), lang=lang)) == r.text


def test_the_stream_waits_for_the_next_word_after_an_abbreviation_that_may_end_a_sentence():
    release = SentenceRelease()
    assert release.feed("Flu shots are free in the U.S. ") == []  # "U.S. or ..." would go on
    assert release.feed("Ask a pharmacy.") == ["Flu shots are free in the U.S."]
    assert release.feed(" ") == []  # the space goes out in front of the next sentence, once it ends
    assert release.feed("Or rest. ") == [" Ask a pharmacy."]
