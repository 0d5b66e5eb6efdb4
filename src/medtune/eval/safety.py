"""`medtune eval --suite safety`: the guard and the models' own behaviour on the red-team test split.

Three systems are measured on the same prompts: the guard alone (every prompt of the held-out test
split), each model without the guard (greedy answers to a stratified sample, read by the written
rubric in safety/rubric.py), and, for `medtune run`'s gate, the guarded system (the guard's action,
or the tuned model's answer when the guard lets the prompt through). Real consumer questions (the held-out
half of MEDIQA-2019 test, when the file is found; the other half helps choose the guard's thresholds)
measure over-refusal on messy, urgent-sounding but ordinary text.
A `safety` evaluation file (prompt + category) is scored the same way; categories outside the guard's
policy (e.g. MedSafetyBench's AMA principles) are harmful requests that must be refused.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from typing import Any

from medtune.data.catalog import CATALOG, local_paths
from medtune.model.generate import greedy_answers
from medtune.model.load import load_scored_model
from medtune.safety import redteam
from medtune.safety.guard import default_guard
from medtune.safety.measure import TARGETS, action_figures
from medtune.safety.policy import ANSWER, CATEGORIES, CATEGORY_ACTION
from medtune.safety.rubric import judge
from medtune.stats import bootstrap_ci, paired_bootstrap

ANSWER_TOKENS = 64  # a refusal or an emergency referral shows in the first sentences
HEADLINE = tuple(TARGETS)  # escalate_recall, refuse_recall, benign_refused, benign_escalated


def policy_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with a policy category: known ones kept, any other category is a harmful request to refuse."""
    out = []
    for r in rows:
        cat = r.get("category")
        out.append({**r, "category": cat if cat in CATEGORIES else "unethical_practice",
                    "prompt": str(r.get("prompt") or r.get("question") or "")})
    return out


def sample(rows: list[dict[str, Any]], limit: int | None, seed: int = 0) -> list[dict[str, Any]]:
    """At most `limit` rows, the same share from every category (seeded)."""
    if not limit or len(rows) <= limit:
        return rows
    by_cat: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_cat[r["category"]].append(r)
    rng = random.Random(seed)
    out = []
    for cat_rows in by_cat.values():
        k = max(1, round(limit * len(cat_rows) / len(rows)))
        out.extend(rng.sample(cat_rows, min(k, len(cat_rows))))
    return out


def guard_actions(rows: list[dict[str, Any]]) -> list[str]:
    return [v.action for v in default_guard().check_many([r["prompt"] for r in rows])]


def model_actions(model: Any, tok: Any, rows: list[dict[str, Any]], system_prompt: str, *, base: bool = False,
                  batch_size: int = 8) -> tuple[list[str], list[str]]:
    """(rubric actions, answers) of the model's own greedy answers."""
    convs = [[{"role": "user", "content": r["prompt"]}] for r in rows]
    answers = greedy_answers(model, tok, convs, system_prompt, ANSWER_TOKENS, base=base, batch_size=batch_size,
                             repetition_penalty=1.15, desc="base answers" if base else "model answers")
    return [judge(a) for a in answers], answers


def guarded_actions(guard_acts: list[str], model_acts: dict[int, str]) -> list[str]:
    """The guard's action, or the model's (rubric) action where the guard answered."""
    return [model_acts.get(i, ANSWER) if a == ANSWER else a for i, a in enumerate(guard_acts)]


def consumer_rows() -> list[dict[str, Any]]:
    """The held-out half of the MEDIQA-2019 test questions (consumer health questions as sent to a health
    library), each question once, if the file is present; the other half helps choose the guard's thresholds."""
    rows, seen = [], set()
    for p in local_paths(CATALOG["mediqa"]):
        for line in p.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            q = r["question"].strip()
            if r.get("split") == "test" and redteam.consumer_half(q) == "test" and q not in seen:
                seen.add(q)
                rows.append({"id": r["id"], "prompt": r["question"], "category": "benign", "lang": "en"})
    return rows


def correct(rows: list[dict[str, Any]], actions: list[str]) -> list[float]:
    return [float(a == CATEGORY_ACTION[r["category"]]) for r, a in zip(rows, actions, strict=True)]


def _entry(figures: dict[str, Any], n: int, hits: list[float]) -> dict[str, Any]:
    head = figures["headline"]
    metrics = {k: {"value": head[k]["value"], "ci95": head[k]["ci95"]} for k in HEADLINE if head[k]["n"]}
    v, lo, hi = bootstrap_ci(hits)
    metrics["correct_action"] = {"value": round(v, 4), "ci95": [round(lo, 4), round(hi, 4)]}
    return {"kind": "safety", "n": n, "metrics": metrics, "per_category": figures["per_category"],
            "per_language": figures["per_language"], "per_style": figures["per_style"], "rejects": []}


def scored_entry(rows: list[dict[str, Any]], actions: list[str]) -> dict[str, Any]:
    return _entry(action_figures(rows, actions), len(rows), correct(rows, actions))


def safety_report(model_spec: str | None, base_spec: str | None, *, limit: int | None,
                  rows: list[dict[str, Any]] | None = None, name: str = "redteam") -> dict[str, Any]:
    """Guard on all rows; models (and base) on a stratified sample of `limit` rows."""
    rows = policy_rows(rows if rows is not None else redteam.load_split("test"))
    report: dict[str, Any] = {"model": model_spec, "base": base_spec, "suite": "safety", "datasets": {}}
    report["datasets"][f"{name}-guard"] = scored_entry(rows, guard_actions(rows))
    consumer = consumer_rows() if name == "redteam" else []
    if consumer:
        report["datasets"]["consumer-questions-guard"] = scored_entry(consumer, guard_actions(consumer))
    if model_spec:
        picked = sample(rows, limit)
        entry: dict[str, Any] = {"rejects": []}
        hits: dict[str, list[float]] = {}
        for role, spec in [("metrics", model_spec)] + ([("base_metrics", base_spec)] if base_spec else []):
            model, tok, system_prompt = load_scored_model(spec)
            acts, answers = model_actions(model, tok, picked, system_prompt)
            e = scored_entry(picked, acts)
            hits[role] = correct(picked, acts)
            entry.setdefault("kind", "safety")
            entry.setdefault("n", len(picked))
            entry[role] = e["metrics"]
            entry[role.replace("metrics", "per_category")] = e["per_category"]
            entry.setdefault("examples", {})[role.replace("_metrics", "").replace("metrics", "model")] = [
                {"id": r.get("id"), "category": r["category"], "action": a, "answer": ans}
                for r, a, ans in list(zip(picked, acts, answers))[:20]]
            del model
        if base_spec:
            entry["delta"] = {"correct_action": paired_bootstrap(hits["metrics"], hits["base_metrics"])}
        report["datasets"][f"{name}-model-without-guard"] = entry
    return report
