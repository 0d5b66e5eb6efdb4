import json
from collections import Counter

import pytest

from conftest import shared_file, write_jsonl
from medtune.config import DataConfig
from medtune.data import catalog, policy_filter
from medtune.data.policy_filter import DIAGNOSES_ASKER, PERSONAL_DOSING, apply, check_assistant
from medtune.data.prepare import load_split, prepare, resolve_source

DOSING = [
    "Take tab. amoxicillin 500 mg three times a day for 5 days.",
    "Hi, thanks for query. I will prescribe you an antibiotic course for this.",
    "Start on 20 mg of fluoxetine daily and review in 4 weeks.",
    "I would start you on 20 mg of fluoxetine daily.",
    "You can use Cap Omez 20 mg before breakfast.",
    "Paracetamol 650 mg SOS for fever.",
    "You should take 400 mg of ibuprofen every 6 hours.",
    "You will need to take Warfarin, Digoxin and Ramipril to treat your endocarditis.",
    "I suggest you take an NSAID like Etodolac for the pain.",
    "We'll need to clean the wound and prescribe antibiotics to prevent further infection.",
    "The required medication for your condition is Meclizine.",
    "I am going to prescribe you a combination of medications.",
]
DIAGNOSES = [
    "You are suffering from viral fever.",
    "It sounds like you may have panic disorder.",
    "You have a UTI.",
    "Based on your symptoms, it seems like you might be suffering from toxic multinodular goiter.",
    "You seem to be experiencing symptoms of menopause.",
    "I suspect you have gastritis.",
    "It is possible that you have developed a bunion.",
    "Well, based on what you're telling me, it sounds like you may be suffering from panic disorder.",
]
GENERAL = [
    "The usual adult dose on the label is 500 mg every 8 hours; do not take more than 4 g a day.",
    "Diabetes is diagnosed with an HbA1c test.",
    "If you have chest pain, call 911.",
    "Some people with migraine take triptans; ask your doctor.",
    "Do you have a fever?",
    "Tests can show whether you have diabetes.",
    "You may need antibiotics if a test shows strep; ask your doctor.",
    "I can't prescribe medicines or work out a personal dose.",
    "You may have heard that vitamin C prevents colds.",
    "See a doctor if it lasts more than a few days, or you have a weakened immune system.",
    "It sounds like you may be going through a lot of pain, and I'm glad you wrote.",
    "You don't have to handle this alone.",
    "Doctors often prescribe antibiotics for bacterial pneumonia.",
    "Your doctor may prescribe a cream, and your doctor will decide how long you should take it.",
    "Amoxicillin tablets are available in 250 mg and 500 mg strengths.",
    "You have several options, including physical therapy.",
    "Since you have diabetes, check your feet every day.",
    "Lab tests can confirm that you have Addison disease.",
    "You may have flu-like symptoms for a day or two after the vaccine.",
    "Possible causes include a tension headache; only a clinician who examines you can tell.",
]


def _conv(answer, question="Doctor, what is wrong with me?"):
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


@pytest.mark.parametrize("text", DOSING)
def test_personal_dosing_and_prescribing_are_caught(text):
    assert check_assistant(text) == PERSONAL_DOSING
    assert apply(_conv(text)) == (None, PERSONAL_DOSING)


@pytest.mark.parametrize("text", DIAGNOSES)
def test_diagnosing_the_asker_is_caught(text):
    assert check_assistant(text) == DIAGNOSES_ASKER


@pytest.mark.parametrize("text", GENERAL)
def test_general_information_passes(text):
    assert check_assistant(text) is None
    conv = _conv(text)
    assert apply(conv) == (conv, None)


def test_diagnosis_is_hedged_and_the_rest_kept():
    answer = ("Based on your symptoms, it sounds like you may have epididymitis, which is inflammation of the "
              "epididymis. We can do some tests to confirm it.\nSee a doctor soon.")
    conv, reason = apply(_conv(answer, "Doctor, my testicle hurts."))
    assert reason == DIAGNOSES_ASKER
    assert conv[0]["content"] == "Doctor, my testicle hurts."
    assert conv[1]["content"] == (
        "Possible causes include epididymitis, which is inflammation of the epididymis; only a clinician who "
        "examines you can tell. We can do some tests to confirm it.\nSee a doctor soon.")
    assert check_assistant(conv[1]["content"]) is None


@pytest.mark.parametrize("answer, hedge", [
    ("You are suffering from viral fever.", "Possible causes include viral fever"),
    ("It seems like you have Chronic obstructive pulmonary disease (COPD).",
     "Possible causes include Chronic obstructive pulmonary disease (COPD)"),
    ("You seem to be experiencing symptoms of menopause.", "Possible causes include menopause"),
    ("It seems like you have hypercalcemia, which means you have too much calcium in your blood.",
     "Possible causes include hypercalcemia;"),
])
def test_hedges_read_cleanly(answer, hedge):
    conv, reason = apply(_conv(answer))
    assert reason == DIAGNOSES_ASKER and conv[1]["content"].startswith(hedge)
    assert conv[1]["content"].endswith("; only a clinician who examines you can tell.")


@pytest.mark.parametrize("answer", [
    "Some soreness is normal, but you are suffering from a wound infection.",  # not just a lead-in
    "Based on your symptoms, it seems like you may have dislocated your elbow.",  # not a cause to list
    "It seems like you are experiencing melena. I suspect that you might have ulcerative colitis.",  # two
])
def test_unclean_rewrites_are_dropped(answer):
    assert apply(_conv(answer)) == (None, DIAGNOSES_ASKER)


def test_dosing_in_any_assistant_turn_drops_the_conversation():
    conv = _conv("A sore throat is usually viral.") + [
        {"role": "user", "content": "What should I take?"},
        {"role": "assistant", "content": "Take tab. azithromycin 500 mg once daily for 3 days."}]
    assert apply(conv) == (None, PERSONAL_DOSING)


def test_typographic_apostrophes():
    assert check_assistant("It\u2019s possible that you\u2019re suffering from sinusitis.") == DIAGNOSES_ASKER
    conv, _ = apply(_conv("It\u2019s possible that you\u2019re suffering from sinusitis."))
    assert conv[1]["content"].startswith("Possible causes include sinusitis;")


def test_every_builtin_row_passes_and_builtin_is_exempt():
    failing = []
    for path in catalog.builtin_paths():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                reason = check_assistant(json.loads(line)["answer"])
                if reason:
                    failing.append(f"{path.name}:{n}: {reason}")
    assert not failing
    assert resolve_source("builtin", DataConfig()).policy_filter is False  # untouched by construction
    assert resolve_source("builtin", DataConfig(policy_filter=True)).policy_filter is False


def test_prepare_drops_and_rewrites_with_manifest(tmp_path):
    clean = [
        {"question": "What is anemia?", "answer": "Anemia means fewer healthy red blood cells than normal; iron, "
                                                  "vitamin B12 and folate matter. See a doctor if you feel tired."},
        {"question": "How is diabetes diagnosed?", "answer": "Diabetes is diagnosed with an HbA1c test or a fasting "
                                                            "glucose test, repeated to confirm."},
        {"question": "What is the dose of paracetamol?", "answer": "The usual adult dose on the label is 500 mg to "
                                                                  "1 g every 4 to 6 hours, at most 4 g a day."},
        {"question": "I have chest pain.", "answer": "If you have chest pain that spreads to your arm or jaw, call "
                                                    "911 or your local emergency number now."},
    ]
    offending = [
        {"question": "Sore throat and fever for 3 days.",  # line 5: personal dosing
         "answer": "Hi. You have tonsillitis. Take tab. amoxicillin 500 mg three times a day for five days."},
        {"question": "I have panic attacks, what is it?",  # line 6: rewritten
         "answer": "It sounds like you may have panic disorder. Talking therapies such as CBT help many people."},
        {"question": "My knee hurts after a fall.",  # line 7: diagnosis that cannot be hedged cleanly
         "answer": "The swelling is expected, but you are suffering from a torn ligament and need a brace."},
    ]
    src = write_jsonl(tmp_path / "chat.jsonl", clean + offending)
    cfg = DataConfig(val_fraction=0, test_fraction=0)
    m = prepare([str(src)], tmp_path / "out", cfg, seed=0)
    source = m["sources"][0]
    assert source["rejects"] == {"policy:personal_dosing": 1, "policy:diagnoses_asker": 1}
    assert source["policy_rewrites"] == 1
    assert m["policy_filter"] == {"dropped": {"personal_dosing": 1, "diagnoses_asker": 1}, "rewritten": 1}
    assert sorted((r["where"], r["reason"]) for r in m["rejects"]) == [
        (f"{src}:5", "policy:personal_dosing"), (f"{src}:7", "policy:diagnoses_asker")]
    manifest_text = (tmp_path / "out" / "manifest.json").read_text()
    assert "amoxicillin" not in manifest_text and "torn ligament" not in manifest_text
    rows = load_split(tmp_path / "out", "train")
    assert m["counts"]["train"] == len(rows) == 5
    answers = {r["messages"][0]["content"]: r["messages"][-1]["content"] for r in rows}
    assert answers["I have panic attacks, what is it?"] == (
        "Possible causes include panic disorder; only a clinician who examines you can tell. "
        "Talking therapies such as CBT help many people.")
    assert all(check_assistant(a) is None for a in answers.values())

    off = prepare([str(src)], tmp_path / "off", DataConfig(val_fraction=0, test_fraction=0, policy_filter=False),
                  seed=0)
    assert off["counts"]["train"] == 7 and off["policy_filter"] == {"dropped": {}, "rewritten": 0}
    assert off["sources"][0]["policy_rewrites"] == 0 and off["settings"]["policy_filter"] is False


def test_genmedgpt_share_dropped_or_rewritten():
    path = shared_file("chatdoctor_genmedgpt5k.jsonl")
    counts: Counter = Counter()
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for row in rows:
        conv, reason = policy_filter.apply(_conv(row["answer"], row["question"]))
        counts["passed" if reason is None else "rewritten" if conv else f"dropped:{reason}"] += 1
    dropped = counts[f"dropped:{PERSONAL_DOSING}"] + counts[f"dropped:{DIAGNOSES_ASKER}"]
    share = (dropped + counts["rewritten"]) / len(rows)
    print(f"\nGenMedGPT-5k policy filter on {len(rows)} rows: dropped {dropped} "
          f"(personal_dosing {counts[f'dropped:{PERSONAL_DOSING}']}, diagnoses_asker "
          f"{counts[f'dropped:{DIAGNOSES_ASKER}']}), rewritten {counts['rewritten']}, passed {counts['passed']}; "
          f"{share:.1%} dropped or rewritten")
    assert share > 0
