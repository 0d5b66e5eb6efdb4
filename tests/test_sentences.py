"""One sentence splitter (data.sentences) for the output guard, the dosing rule and the training-data policy filter.

The filter and the dosing rule used to cut at every ". ", so "e.g." or "EE. UU." handed them half a sentence: the
label words were cut off from the dose ("Follow the label, e.g." / "take 2 tablets ...": dropped as personal
dosing), and a conditional from its "you have X" ("When a virus is the cause, e.g." / "you have the flu ...":
rewritten into a garbled hedge)."""

import pytest

from medtune.data import sentences as shared
from medtune.data.dosing import gives_personal_dosing
from medtune.data.policy_filter import DIAGNOSES_ASKER, PERSONAL_DOSING, apply, check_assistant, rewrite_assistant
from medtune.data.sentences import sentences
from medtune.safety import output_guard
from medtune.safety.output_guard import check_answer


def _conv(answer: str) -> list[dict]:
    return [{"role": "user", "content": "What should I know?"}, {"role": "assistant", "content": answer}]


@pytest.mark.parametrize("text", [
    "La mayoría de los adultos en EE. UU. toman 1 o 2 comprimidos.",
    "Use a pain reliever, e.g. acetaminophen, as the label says.",
    "Take it with food, i.e. with a meal.",
    "Dr. Lee says most colds clear up in 7 to 10 days.",
    "Nehmen Sie z. B. Paracetamol.",
])
def test_no_sentence_ends_at_an_abbreviation(text):
    assert shared.sentences(f"{text} Rest helps.") == [text, "Rest helps."]


def test_output_guard_cuts_with_the_shared_splitter():
    assert output_guard.split_sentences is shared.split_sentences


def test_label_dose_after_eg_is_not_personal_dosing():
    """Once cut at "e.g.", "take 2 tablets every 4 to 6 hours." lost "Follow the label" and read as a personal dose."""
    answer = "Follow the label, e.g. take 2 tablets every 4 to 6 hours. Rest helps."
    assert not gives_personal_dosing(answer)
    assert check_assistant(answer) is None
    assert apply(_conv(answer)) == (_conv(answer), None)
    checked = check_answer(answer)  # the output guard draws the same line
    assert "dosing" not in checked.changes and checked.text.startswith("Follow the label, e.g. take 2 tablets")


def test_conditional_before_eg_is_not_a_diagnosis():
    """Once cut at "e.g.", "you have the flu, antibiotics do not help." lost its "When" and was rewritten as
    "When a virus is the cause, e.g. Possible causes include the flu, antibiotics do not help; ..."."""
    answer = "When a virus is the cause, e.g. you have the flu, antibiotics do not help."
    assert check_assistant(answer) is None
    assert apply(_conv(answer)) == (_conv(answer), None)


def test_a_real_sentence_end_still_splits_for_the_filter():
    """Joining after an abbreviation must not hide a personal dose or a diagnosis in the next sentence."""
    assert check_assistant("Follow the label, e.g. take 2 tablets. You should take 400 mg now.") == PERSONAL_DOSING
    assert check_assistant("Flu is common in the U.S. You are suffering from the flu.") == DIAGNOSES_ASKER
    rewritten = rewrite_assistant("It sounds like you have a UTI. Drink water, e.g. 6 to 8 glasses a day.")
    assert rewritten == ("Possible causes include a UTI; only a clinician who examines you can tell. "
                         "Drink water, e.g. 6 to 8 glasses a day.")


@pytest.mark.parametrize("text", ["Take approx. 2 tablets now.", "You should take approx. 400 mg now.",
                                  "Give your child e.g. 5 ml now."])
def test_a_personal_dose_is_caught_across_an_abbreviations_period(text: str):
    """The dosing patterns stop at a period; the abbreviation's own period must not hide the dose after it."""
    assert gives_personal_dosing(text)


def test_a_title_before_an_instruction_ends_the_sentence():
    """"ask your Dr. Give her 5 ml now." is two sentences: joined, the first one's "if" and "label" would excuse
    the dose in the second."""
    text = "If it's not on the label, ask your Dr. Give her 5 ml now."
    assert sentences(text) == ["If it's not on the label, ask your Dr.", "Give her 5 ml now."]
    assert gives_personal_dosing(text)
    assert sentences("Dr. Smith said so. St. John's wort interacts. Prof. Müller agrees.") == [
        "Dr. Smith said so.", "St. John's wort interacts.", "Prof. Müller agrees."]
