"""Tests for the PHI scrubber: recall per kind, precision on PHI-free medical text."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from medtune.data.phi import PLACEHOLDERS, scrub

FIXTURE = Path(__file__).parent / "assets" / "phi_fixture.jsonl"


def _load() -> list[dict]:
    with FIXTURE.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _recall(rows: list[dict]) -> tuple[Counter, Counter]:
    """Per kind: annotated items, and items gone from the text with the kind's placeholder present."""
    total: Counter = Counter()
    hit: Counter = Counter()
    for row in rows:
        out, _ = scrub(row["text"])
        for kind, value in row["phi"]:
            total[kind] += 1
            if value not in out and PLACEHOLDERS[kind] in out:
                hit[kind] += 1
    return total, hit


def print_recall_table(rows: list[dict]) -> None:
    """Print per-kind recall (run ``pytest -s`` to see it)."""
    total, hit = _recall(rows)
    print(f"\n{'kind':<10}{'found':>7}{'total':>7}{'recall':>8}")
    for kind in sorted(total):
        print(f"{kind:<10}{hit[kind]:>7}{total[kind]:>7}{hit[kind] / total[kind]:>8.2f}")
    n_hit, n_total = sum(hit.values()), sum(total.values())
    print(f"{'ALL':<10}{n_hit:>7}{n_total:>7}{n_hit / n_total:>8.2f}")


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return _load()


def test_fixture_shape(rows: list[dict]) -> None:
    assert len(rows) >= 80
    assert sum(1 for r in rows if not r["phi"]) >= 25
    kinds = {kind for r in rows for kind, _ in r["phi"]}
    assert set(PLACEHOLDERS) <= kinds, set(PLACEHOLDERS) - kinds
    for r in rows:
        for _, value in r["phi"]:
            assert value in r["text"]


def test_recall_per_kind(rows: list[dict]) -> None:
    print_recall_table(rows)
    total, hit = _recall(rows)
    assert sum(hit.values()) / sum(total.values()) >= 0.95
    for kind in total:
        assert hit[kind] / total[kind] >= 0.9, kind


def test_no_phi_lines_unchanged(rows: list[dict]) -> None:
    for r in rows:
        if not r["phi"]:
            out, counts = scrub(r["text"])
            assert out == r["text"], counts
            assert counts == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hi Dr. Smith, thanks.", "Hi Dr. [NAME], thanks."),
        ("I am 25 and I am Worried.", "I am 25 and I am Worried."),
        ("MRN: 12345678", "MRN: [ID]"),
        ("call (555) 123-4567 now", "call [PHONE] now"),
        ("seen 03/14/2021, BP 120/80", "seen [DATE], BP 120/80"),
        ("5/325 mg tablets, 1-2 tablets, 24/7", "5/325 mg tablets, 1-2 tablets, 24/7"),
        ("She is 93 years old", "She is 90+ years old"),
        ("123 Main Street, Austin, TX 78701", "[ADDRESS], Austin, TX [ZIP]"),
        ("SSN 123-45-6789", "SSN [SSN]"),
        ("mail me: a.b@example.com or see https://x.example.org/a.", "mail me: [EMAIL] or see [URL]."),
        ("from 10.0.0.1", "from [IP]"),
        ("Regards, John", "Regards, [NAME]"),
    ],
)
def test_cases(text: str, expected: str) -> None:
    assert scrub(text)[0] == expected


def test_counts() -> None:
    out, counts = scrub("I'm Sarah Jones, call 555-123-4567 or 555-987-6543.")
    assert out == "I'm [NAME], call [PHONE] or [PHONE]."
    assert counts == {"name": 1, "phone": 2}
    assert scrub("") == ("", {})


def test_service_numbers_are_not_phi_but_personal_numbers_are():
    """Poison Help and toll-free lifelines are what a person in trouble needs: never scrubbed."""
    kept, counts = scrub("Call Poison Help at 1-800-222-1222 or 1 (800) 273-8255, or me at 617-555-0199.")
    assert "1-800-222-1222" in kept and "1 (800) 273-8255" in kept
    assert "617-555-0199" not in kept and counts == {"phone": 1}


@pytest.mark.parametrize(
    "text",
    [
        "Im Notfall rufen Sie 112 an.",
        "999 im Vereinigten Königreich",
        "Im Allgemeinen ist das harmlos.",
        "Bitte warten Sie nicht auf eine Antwort im Internet.",
        "Symptoms:\n- Fever\n- Cough\n",  # a bullet list of capitalised words is not a "- Anna" signature
        "Typische Zeichen\n- Fieber\n- Husten\n- Kopfschmerzen",
        "- Ibuprofen",  # one line, as the output guard scrubs it
    ],
)
def test_german_im_and_lists_are_not_names(text: str) -> None:
    assert scrub(text) == (text, {})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Im Sarah and I have a rash", "Im [NAME] and I have a rash"),
        ("hi im Sarah", "hi im [NAME]"),
        ("Im Sarah.", "Im [NAME]."),  # no evidence either way: still a name
        ("Hi, Im Jürgen and I have a rash on my arm", "Hi, Im [NAME] and I have a rash on my arm"),
        ("Laut Dr. Weber im Zweifel zum Arzt.", "Laut Dr. [NAME] im Zweifel zum Arzt."),
        ("Thanks for your help!\n- Anna", "Thanks for your help!\n- [NAME]"),
        ("Hope that helps.\n\n-- John Smith\n", "Hope that helps.\n\n-- [NAME]\n"),
    ],
)
def test_english_im_and_signatures_still_scrubbed(text: str, expected: str) -> None:
    assert scrub(text)[0] == expected


def test_lang_hint_drops_im_cue_for_short_german() -> None:
    """Too short to judge from its words, "Im Notfall: 112" reads as a name unless the caller says German."""
    assert scrub("Im Notfall: 112", lang="de") == ("Im Notfall: 112", {})
    assert scrub("Im Notfall: 112")[0] == "Im [NAME]: 112"


def test_fixed_texts_pass_unchanged() -> None:
    """The escalation and refusal texts in every language, whole and sentence by sentence (the output guard)."""
    from medtune.safety.output_guard import filter_sentence, split_sentences
    from medtune.safety.policy import CATEGORIES, message
    from medtune.safety.translations import TEXTS

    checked = 0
    for lang in ["en", *TEXTS]:
        for category in CATEGORIES:
            text = message(category, lang=lang)
            if not text:
                continue
            checked += 1
            assert scrub(text) == (text, {}), (lang, category)
            for sentence in split_sentences(text)[::2]:
                assert filter_sentence(sentence.strip(), lang) == (sentence.strip(), []), (lang, sentence)
    assert checked >= 4 * 8
