"""The policy's line on doses, on both sides, for the output guard and the training-data filter alike:
label information stays ("adults take 1 or 2 tablets every 4 to 6 hours, as the label says"), a dose
decided for a particular person is cut ("give your son 5 ml every 6 hours")."""

import pytest

from medtune.data.dosing import gives_personal_dosing
from medtune.data.policy_filter import check_assistant
from medtune.safety.output_guard import check_answer

LABEL = [
    "Adults take 1 or 2 tablets every 4 to 6 hours, as the label says.",
    "You can take 1 or 2 tablets every 4 to 6 hours, as the label says, but no more than 8 in 24 hours.",
    "The usual adult dose is 200 to 400 mg every 4 to 6 hours, and the label says not to take more than 1,200 mg "
    "in 24 hours without a doctor's advice.",
    "The maximum for adults is 4,000 mg of acetaminophen in 24 hours, and some labels say 3,000 mg.",
    "Amoxicillin comes in 250 mg and 500 mg capsules.",
    "Adults usually take 500 mg to 1 g every 4 to 6 hours, up to 4 g a day.",
    "Most adults take one 10 mg tablet once a day, as the leaflet says.",
    "If you miss a dose, take it when you remember unless it's almost time for the next one.",
    "Do not double the dose to make up for a missed one.",
    "Your doctor may increase the dose over a few weeks.",
    "Rest, and increase your fluid intake.",
]
PERSONAL = [
    "You should take 400 mg now.",
    "Give your son 5 ml every 6 hours.",
    "Take 2 tablets of your oxycodone now and another 2 at bedtime.",
    "Double your dose tonight to 100 mg.",
    "For your 14 kg daughter, 7 ml of children's ibuprofen is right.",
    "In your case, increase the metformin to 1000 mg twice a day.",
    "You can take 3 of your 5 mg tablets tonight.",
    "She should have 240 mg, which is 10 ml of the 120 mg/5 ml syrup.",
    "You can safely double it to 40 mg.",
    "Your dose should be 10 units before dinner.",
]


@pytest.mark.parametrize("sentence", LABEL)
def test_label_information_is_kept_by_the_output_guard_and_the_filter(sentence):
    assert not gives_personal_dosing(sentence)
    checked = check_answer(sentence)
    assert sentence in checked.text and "dosing" not in checked.changes
    assert check_assistant(sentence) is None


@pytest.mark.parametrize("sentence", PERSONAL)
def test_a_personal_dose_is_cut_by_the_output_guard_and_the_filter(sentence):
    assert gives_personal_dosing(sentence)
    checked = check_answer("Ibuprofen eases pain and fever. " + sentence)
    assert sentence not in checked.text and "dosing" in checked.changes
    assert checked.text.startswith("Ibuprofen eases pain and fever.")  # the rest of the answer stays
    assert "can't prescribe" in checked.text  # replaced by the prescription note
    assert check_assistant(sentence) == "personal_dosing"
