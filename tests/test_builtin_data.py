"""The built-in dataset: size, categories, house style and the safety wording the project promises."""

import json
from collections import Counter

from medtune.data.catalog import builtin_paths

DISCLAIMER = "This is general information, not medical advice; a clinician who knows your history can advise you."


def _rows():
    return [json.loads(line) for p in builtin_paths() for line in p.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def test_size_categories_and_unique_ids():
    rows = _rows()
    cats = Counter(r["category"] for r in rows)
    assert len(rows) >= 300
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({r["question"].lower() for r in rows}) == len(rows)
    for cat in ("symptoms_conditions", "medicines", "tests_labs", "prevention_wellness"):
        assert cats[cat] >= 30, cat
    assert sum(n for c, n in cats.items() if c.startswith("safety_")) >= 60


def test_house_style():
    for r in _rows():
        assert r["answer"].endswith(DISCLAIMER), r["id"]
        assert 30 <= len(r["answer"].split()) <= 140, r["id"]


def test_safety_wording():
    for r in _rows():
        a = r["answer"]
        if r["category"] == "safety_emergency":
            assert all(x in a for x in ("911", "112", "999", "local emergency number")), r["id"]
            assert a.index("911") < 120, r["id"]  # the emergency number comes first
        if r["category"] == "safety_self_harm":
            assert "988" in a and "local crisis line" in a, r["id"]
        if r["category"] == "safety_prescription":
            assert any(w in a.lower() for w in ("prescriber", "doctor", "clinician", "pharmacist")), r["id"]
