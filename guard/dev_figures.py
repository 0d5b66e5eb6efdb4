"""The dev-split figures that fitted guard weights must reproduce: proof that they match today's feature code.

The weights are fitted on features that runtime code computes (normalisation, windows, language id, the
gloss, the encoder's layers and pooling, the hashed n-grams). Change any of these without refitting and the
weights read other numbers than they were fitted on: nothing fails, the guard just gets quietly worse. So
build.py records, with the final weights, what the classifier alone decides (rules bypassed: they change on
their own, without a refit) on the red-team suite's dev split: per row its id, a short hash of its prompt,
its label, the predicted category and the verdict's score (the probability mass of the chosen action), and
the figures. The dev rows were fitted on, so the action figures are near perfect by construction: the
per-row categories and scores are the fingerprint. tests/test_guard_package.py scores the same rows again
with the shipped weights and requires the same categories and scores, within a row or two and a rounding
error: the encoder runs in bf16 on CPUs that have it and in fp32 elsewhere, which can move a borderline row.

Only ids, hashes and labels are stored, never prompt text; rows whose prompt changed since are left out of
the comparison (and too many of those fail it: the suite itself has moved, so refit).
"""

from __future__ import annotations

import hashlib
from typing import Any

from medtune.hardware import cpu_supports_bf16
from medtune.safety import redteam
from medtune.safety.guard import Guard, Verdict
from medtune.safety.measure import action_figures
from medtune.safety.policy import CATEGORY_ACTION

WHAT = "red-team suite dev split, classifier alone (rules bypassed), final weights"


def prompt_hash(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:12]


def classifier_verdicts(guard: Guard, prompts: list[str]) -> list[Verdict]:
    """What the fitted classifier decides for each prompt, rules bypassed (empty text stays out_of_scope)."""
    return [v if isinstance(v, Verdict) else guard.decide(v) for v in guard.score_many(prompts, use_rules=False)]


def _figures(labels: list[str], verdicts: list[Verdict]) -> dict[str, Any]:
    head = action_figures([{"category": c} for c in labels], [v.action for v in verdicts])["headline"]
    n = max(len(labels), 1)
    accuracy = sum(v.category == c for c, v in zip(labels, verdicts)) / n
    return {"category_accuracy": round(accuracy, 4), "mean_score": round(sum(v.score for v in verdicts) / n, 4),
            **{k: f["value"] for k, f in head.items()}}


def record(guard: Guard) -> dict[str, Any]:
    """The `dev_check` entry of guard_model.json for the weights in `guard`."""
    rows = sorted(redteam.load_split("dev"), key=lambda r: r["id"])
    verdicts = classifier_verdicts(guard, [r["prompt"] for r in rows])
    return {"what": WHAT, "encoder_dtype": "bfloat16" if cpu_supports_bf16() else "float32", "n": len(rows),
            "figures": _figures([r["category"] for r in rows], verdicts),
            "rows": [f"{r['id']} {prompt_hash(r['prompt'])} {r['category']} {v.category} {v.score:.4f}"
                     for r, v in zip(rows, verdicts)]}


def reproduce(guard: Guard, check: dict[str, Any]) -> dict[str, Any]:
    """Score the recorded rows again (those whose prompt is unchanged) and compare with the record.

    Returns n (rows compared), changed (recorded rows missing or edited since), same_category (share of
    compared rows given the recorded category), score_diffs (|score now - recorded| per row), figures
    (recomputed on the compared rows with the recorded labels) and recorded (the record's figures on them)."""
    prompts = {r["id"]: r["prompt"] for r in redteam.load_rows()}
    kept: list[tuple[str, str, Verdict]] = []  # (prompt, label, recorded verdict)
    changed = 0
    for line in check["rows"]:
        rid, digest, label, predicted, score = line.split(" ")
        if rid in prompts and prompt_hash(prompts[rid]) == digest:
            kept.append((prompts[rid], label, Verdict(CATEGORY_ACTION[predicted], predicted, float(score), "record")))
        else:
            changed += 1
    verdicts = classifier_verdicts(guard, [p for p, _, _ in kept])
    labels = [label for _, label, _ in kept]
    recorded = [v for _, _, v in kept]
    same = sum(v.category == r.category for r, v in zip(recorded, verdicts))
    return {"n": len(kept), "changed": changed, "same_category": same / max(len(kept), 1),
            "score_diffs": [abs(v.score - r.score) for r, v in zip(recorded, verdicts)],
            "figures": _figures(labels, verdicts), "recorded": _figures(labels, recorded)}
