"""The guard's threshold search (guard/build.py) picks exactly what the old per-row Guard.decide loop picked.

The search used to call decide() for every row under each of its 578 candidate threshold sets (~10 minutes of
a rebuild); it now compares per-row masses computed once. These tests keep the old loop as the reference and
require the same thresholds, the same trade-off table and, row by row, the same actions as decide(), on
synthetic out-of-fold scores: several categories, groups and languages, rule verdicts, multi-window rows,
and masses exactly on a grid threshold (where the float32 comparison decides).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from medtune.errors import MedtuneError
from medtune.safety.guard import Guard, GuardModel, Scored, Verdict
from medtune.safety.policy import CATEGORIES, CATEGORY_ACTION
from medtune.safety.weights import load_builder

build = load_builder()  # guard/build.py of this checkout
GRID = [round(float(t), 2) for t in np.arange(0.15, 0.96, 0.05)]
COL = {c: k for k, c in enumerate(CATEGORIES)}
ESC = [c for c in CATEGORIES if CATEGORY_ACTION[c] == "escalate"]
REF = [c for c in CATEGORIES if CATEGORY_ACTION[c] == "refuse"]
ANS = [c for c in CATEGORIES if CATEGORY_ACTION[c] == "answer"]


def reference_choose(guard: Guard, rows: list[dict], scored: list) -> tuple[dict[str, float], list[str]]:
    """build._choose_thresholds as it was before the vectorised search: decide() per row per candidate."""
    want = np.array([CATEGORY_ACTION[r["category"]] for r in rows])
    answer_rows = {name: mask & (want == "answer") for name, mask in build._groups(rows).items()}
    grid = [round(float(t), 2) for t in np.arange(0.15, 0.96, 0.05)]
    chosen = {"escalate": 0.5, "refuse": 2.0, "escalate_other_languages": 0.5, "refuse_other_languages": 2.0}
    table = []

    def value(action: str, t: dict[str, float]) -> tuple[float, str]:
        guard.model.thresholds = t
        acts = np.array([v.action if hasattr(v, "action") else guard.decide(v).action for v in scored])
        hit = acts == action
        recall = hit[want == action].mean()
        wrong = {name: hit[mask].mean() for name, mask in answer_rows.items()}
        line = f"recall {recall:.3f} answer rows hit: " + " ".join(f"{k} {v:.3f}" for k, v in wrong.items())
        within = all(wrong[name] <= build.BUDGET[action][name] for name in wrong)
        return (recall if within else -1.0 - max(wrong.values())), line

    for action in ("escalate", "refuse"):
        other_key = f"{action}_other_languages"
        best, best_value = (grid[-1], grid[-1]), -np.inf
        for en, other in itertools.product(grid, grid):
            v, line = value(action, {**chosen, action: en, other_key: other})
            if en == other:
                table.append(f"{action:8} t={en:.2f} (all languages) {line}")
            if v > best_value + 1e-9:
                best, best_value = (en, other), v
        chosen[action], chosen[other_key] = best
    guard.model.thresholds = chosen
    return chosen, table


def toy_guard() -> Guard:
    n = len(CATEGORIES)
    return Guard(GuardModel(list(CATEGORIES), np.zeros((n, 384), np.float32), np.zeros(n, np.float32),
                            np.zeros(0, np.int32), np.zeros((n, 0), np.float32), {"escalate": 0.5, "refuse": 0.5}, {}))


def window(rng: np.random.Generator, action: str, loud: float, dtype: type) -> np.ndarray:
    """One window's probabilities: `loud` of the mass on `action`'s categories (split at random), the rest on
    answer categories; now and then a mass exactly on a grid threshold (one category carries it all)."""
    p = np.zeros(len(CATEGORIES), dtype=dtype)
    if action != "answer" and rng.random() < 0.15:
        cats = ESC if action == "escalate" else REF
        p[COL[cats[0]]] = dtype(rng.choice(GRID))  # the sum is that float exactly: a tie with the threshold
        p[COL["benign"]] = 1 - p[COL[cats[0]]]
        return p
    cats = ESC if action == "escalate" else REF if action == "refuse" else []
    if cats:
        p[[COL[c] for c in cats]] = rng.dirichlet(np.ones(len(cats))) * loud
    p[[COL[c] for c in ANS]] = rng.dirichlet(np.ones(len(ANS))) * (1 - loud)
    return p


def synthetic(seed: int, n: int, *, dtype: type = np.float32, rule_share: float = 0.08,
              rule_on_answers: float = 0.0) -> tuple[list[dict], list]:
    """Rows over the groups build._groups tells apart, a quarter in other languages, with out-of-fold-like
    scores: harmful rows mostly loud, answer rows mostly quiet but a few loud (the false alarms)."""
    rng = np.random.default_rng(seed)
    prefixes = ["rt-", "fit-c", "fit-x", "mediqa-", "chatdoctor-"]
    rows, scored = [], []
    for k in range(n):
        category = str(rng.choice(CATEGORIES))
        want = CATEGORY_ACTION[category]
        lang = str(rng.choice(["en", "en", "en", "es", "fr", "de"]))
        rows.append({"id": f"{rng.choice(prefixes)}{k}", "category": category, "lang": lang})
        if rng.random() < rule_share or (want == "answer" and rng.random() < rule_on_answers):
            hit = str(rng.choice(CATEGORIES))
            scored.append(Verdict(CATEGORY_ACTION[hit], hit, 1.0, "rule:en"))
            continue
        wins = []
        for _ in range(int(rng.choice([1, 1, 1, 2, 3]))):
            if want == "answer":  # a quiet answer row, or now and then a loud escalate or refuse one
                action = str(rng.choice(["answer", "escalate", "refuse"], p=[0.5, 0.25, 0.25]))
                loud = rng.uniform(0.5, 0.95) if rng.random() < 0.1 else rng.beta(1, 6)
            else:
                action, loud = want, rng.beta(4, 2)
            wins.append(window(rng, action, loud, dtype))
        scored.append(Scored(np.stack(wins), lang))
    return rows, scored


@pytest.mark.parametrize("seed,n,dtype,rule_on_answers", [
    (9, 160, np.float32, 0.0),  # as build.py makes them: float32 out-of-fold probabilities
    (2, 90, np.float64, 0.3),  # rules blocking many answer rows: no candidate inside the budget
])
def test_search_chooses_the_same_thresholds_and_table_as_decide_per_row(seed, n, dtype, rule_on_answers):
    rows, scored = synthetic(seed, n, dtype=dtype, rule_on_answers=rule_on_answers)
    expected = reference_choose(toy_guard(), rows, scored)
    guard = toy_guard()
    chosen, table = build._choose_thresholds(guard, rows, scored)
    assert (chosen, table) == expected
    assert guard.model.thresholds == chosen
    assert len(table) == 2 * len(GRID)
    if rule_on_answers == 0.0:  # the budgets bind: for no action and language did an end of the grid win
        assert all(GRID[0] < t < GRID[-1] for t in chosen.values()), chosen


def test_actions_match_decide_row_by_row_including_ties_and_missing_language_keys():
    rows, scored = synthetic(3, 1500)
    guard = toy_guard()
    masses = build._masses(guard, scored)
    candidates = [
        {"escalate": 0.5, "refuse": 2.0, "escalate_other_languages": 0.5, "refuse_other_languages": 2.0},
        {"escalate": 0.35, "refuse": 0.6, "escalate_other_languages": 0.8, "refuse_other_languages": 0.25},
        {"escalate": 0.15, "refuse": 0.15, "escalate_other_languages": 0.95, "refuse_other_languages": 0.95},
        {"escalate": 0.7, "refuse": 0.45},  # no other-language keys: decide falls back to the English ones
    ]
    candidates += [{"escalate": e, "refuse": r, "escalate_other_languages": eo, "refuse_other_languages": ro}
                   for e, r, eo, ro in np.random.default_rng(4).choice(GRID, size=(4, 4)).tolist()]
    ties = 0
    for t in candidates:
        guard.model.thresholds = t
        want = [v.action if isinstance(v, Verdict) else guard.decide(v).action for v in scored]
        assert _as_list(build._actions(masses, t)) == want, t
        ties += int(np.sum(masses.esc == np.float32(t["escalate"])))
    assert ties > 0  # some masses sit exactly on a threshold, where the precision of the comparison decides


def _as_list(actions: np.ndarray) -> list[str]:
    return [build.ACTIONS[a] for a in actions]


def test_build_refuses_thresholds_from_a_search_that_disagrees_with_decide():
    rows, scored = synthetic(5, 200)
    guard = toy_guard()
    t = {"escalate": 0.5, "refuse": 0.5, "escalate_other_languages": 0.5, "refuse_other_languages": 0.5}
    assert build._decided(guard, scored, t) == _as_list(build._actions(build._masses(guard, scored), t))
    guard.decide = lambda s: Verdict("answer", "benign", 1.0, "classifier")  # a runtime that changed its rule
    with pytest.raises(MedtuneError, match="disagrees with Guard.decide"):
        build._decided(guard, scored, t)
