"""`medtune eval --suite safety`: the guard and the models' own behaviour on a red-team split.

The split is `gate` (every `medtune run` checks it; it was called `test`) or `sealed` (written apart from
everything the guard was built with, scored once per release). Three systems are measured on the same
prompts: the guard alone (every prompt), the whole assistant (guard -> model -> output guard, read by the
written rubric in safety/rubric.py; every prompt with `--model`, a stratified sample in `medtune run`'s
gate), and each model without the guard (greedy answers to a stratified sample); `--guard-only` scores the
guard alone and loads no model (a guard release check). Real consumer questions (the held-out
half of MEDIQA-2019 test, when the file is found; the other half helps choose the guard's thresholds)
measure over-refusal on messy, urgent-sounding but ordinary text.
A `safety` evaluation file (prompt + category) is scored the same way; categories outside the guard's
policy (e.g. MedSafetyBench's AMA principles) are harmful requests that must be refused.
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from typing import Any

from medtune.data.catalog import CATALOG, local_paths
from medtune.model.answerer import Answerer, TransformersAnswerer
from medtune.model.load import load_scored_model
from medtune.safety import redteam
from medtune.safety.guard import default_guard
from medtune.safety.measure import TARGETS, action_figures
from medtune.safety.output_guard import check_answer
from medtune.safety.policy import ANSWER, CATEGORIES, CATEGORY_ACTION
from medtune.safety.rubric import judge
from medtune.stats import bootstrap_ci

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
    for cat_rows in by_cat.values():  # rounded up: at least `limit` in all, every category at least once
        k = max(1, math.ceil(limit * len(cat_rows) / len(rows)))
        out.extend(rng.sample(cat_rows, min(k, len(cat_rows))))
    return out


def guard_actions(rows: list[dict[str, Any]]) -> list[str]:
    return [v.action for v in default_guard().check_many([r["prompt"] for r in rows])]


def model_actions(answerer: Answerer, rows: list[dict[str, Any]], *, base: bool = False) -> tuple[list[str], list[str]]:
    """(rubric actions, answers) of the model's own greedy answers."""
    convs = [[{"role": "user", "content": r["prompt"]}] for r in rows]
    answers, _ = answerer.answers(convs, ANSWER_TOKENS, base=base, desc="base answers" if base else "model answers")
    return [judge(a) for a in answers], answers


def system_actions(answerer: Answerer, rows: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(actions, shown texts) of the whole assistant: input guard -> model -> output guard, then the rubric.

    What a user would get: the guard's fixed text where it escalates or refuses; elsewhere the model's greedy
    answer after the output guard (personal doses cut, care and pharmacist notes added), read by the rubric.
    A benign prompt the model itself refuses or escalates is over-refusal; a harmful prompt the guard lets
    through is judged on what the model said."""
    verdicts = default_guard().check_many([r["prompt"] for r in rows])
    passed = [i for i, v in enumerate(verdicts) if v.action == ANSWER]
    convs = [[{"role": "user", "content": rows[i]["prompt"]}] for i in passed]
    answers, _ = answerer.answers(convs, ANSWER_TOKENS, base=False, desc="guarded answers")
    actions, texts = [v.action for v in verdicts], [""] * len(rows)
    for i, answer in zip(passed, answers, strict=True):
        texts[i] = check_answer(answer, verdicts[i].category, lang=rows[i].get("lang") or "en",
                                user_text=rows[i]["prompt"]).text
        actions[i] = judge(texts[i])
    return actions, texts


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


BASE_WITH_SAFETY = ("--base compares two models' answers on QA and multiple-choice files; safety prompts are scored "
                    "on one model's whole assistant (guard -> model -> output guard): drop --base, and run eval "
                    "once per model to compare them")
GUARD_ONLY_SKIPPED = {"guarded-system": "--guard-only: the whole assistant (guard -> model -> output guard) "
                                        "was not scored; no model was loaded",
                      "model-without-guard": "--guard-only: no model was loaded or asked"}


def safety_report(model_spec: str | None, *, limit: int | None, rows: list[dict[str, Any]] | None = None,
                  name: str = "redteam", split: str = "gate") -> dict[str, Any]:
    """Guard on all rows; with a model, the whole assistant on all rows and the model without the guard on a
    stratified sample of `limit` rows (its own behaviour, before any guard). Without one (`--guard-only`, a
    guard release check) no model is loaded, and `guard_only` + `skipped` name the entries left out."""
    rows = policy_rows(rows if rows is not None else redteam.load_split(split))
    report: dict[str, Any] = {"model": model_spec, "suite": "safety", "split": split, "datasets": {}}
    if not model_spec:
        report["guard_only"] = True
        report["skipped"] = {f"{name}-{part}": why for part, why in GUARD_ONLY_SKIPPED.items()}
    report["datasets"][f"{name}-guard"] = scored_entry(rows, guard_actions(rows))
    consumer = consumer_rows() if name == "redteam" else []
    if consumer:
        report["datasets"]["consumer-questions-guard"] = scored_entry(consumer, guard_actions(consumer))
    if model_spec:
        model, tok, system_prompt = load_scored_model(model_spec)
        answerer = TransformersAnswerer(model, tok, system_prompt, repetition_penalty=1.15)
        s_acts, texts = system_actions(answerer, rows)  # what a user of this model would get
        system = scored_entry(rows, s_acts)
        system["examples"] = [{"id": r.get("id"), "category": r["category"], "action": a, "answer": t}
                              for r, a, t in zip(rows, s_acts, texts, strict=True)
                              if a != CATEGORY_ACTION[r["category"]]][:50]
        report["datasets"][f"{name}-guarded-system"] = system
        picked = sample(rows, limit)
        acts, answers = model_actions(answerer, picked)
        entry = scored_entry(picked, acts)
        entry["examples"] = [{"id": r.get("id"), "category": r["category"], "action": a, "answer": ans}
                             for r, a, ans in list(zip(picked, acts, answers))[:20]]
        report["datasets"][f"{name}-model-without-guard"] = entry
    return report
