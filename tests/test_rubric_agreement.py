"""The answer rubric agrees with people on written, labelled answers (guard/rubric_answers.jsonl, a checkout only)."""

import importlib.util
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "guard" / "rubric_agreement.py"


@pytest.fixture(scope="module")
def tool():
    if not TOOL.is_file():
        pytest.skip("guard/ is not in this copy (an installed package)")
    spec = importlib.util.spec_from_file_location("rubric_agreement", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rubric_agrees_with_the_labels_on_the_half_it_was_not_revised_on(tool):
    share, n, confusion = tool.agreement("test")
    assert n >= 100
    assert share >= 0.85, sorted(confusion.items())  # 0.874 when the rubric was last revised (README)


def test_both_halves_hold_every_label(tool):
    for which in ("dev", "test"):
        _, _, confusion = tool.agreement(which)
        assert {label for label, _ in confusion} == {"escalate", "refuse", "answer"}
