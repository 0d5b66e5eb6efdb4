"""`medtune eval`: score a model (and optionally its base, with identical prompts) on evaluation files.

The kind of each file is detected from its fields (the schemas of ../shared/data/README.md). Supported
now: multiple choice (`acc`, lm-eval MMLU protocol), yes/no/maybe (`acc`, `macro_f1`, with and without
the context) and open QA (`perplexity` of the reference answer on answer tokens; ROUGE-1/2/L and BLEU of
greedy answers). Every figure carries a 95% bootstrap CI; with a base model, `delta` holds the paired
bootstrap of tuned minus base.
report.json follows the contract in the evaluation issue:
{"model", "base", "datasets": {NAME: {"kind", "n", "metrics": {M: {"value", "ci95"}}, "base_metrics", "delta"}}}

Run as: medtune eval --model SPEC [--base SPEC] --data FILE [--data ...] [--limit N] --output DIR
"""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from medtune import atomic
from medtune.config import EvalConfig
from medtune.data import sources
from medtune.data.formats import FORMATS, Conversation, RowError, qa
from medtune.data.tokenize import IGNORE, encode, prompt_ids
from medtune.errors import MedtuneError
from medtune.eval import contamination as cont
from medtune.eval import mcq_variants as mv
from medtune.eval import style
from medtune.eval.heldout import item_losses
from medtune.eval.mcq import score_mcq
from medtune.eval.safety import BASE_WITH_SAFETY, safety_report
from medtune.eval.yesno import macro_f1, score_yesno
from medtune.model.generate import greedy_generate
from medtune.model.load import load_scored_model
from medtune.stats import bootstrap_ci, paired_bootstrap

log = logging.getLogger("medtune.eval")
EXPECTED = {
    "mcq": "question + options + answer (multiple choice)",
    "qa": "question + answer, or messages [{role, content}, …] as `medtune prepare` writes them (open QA)",
    "yesno": "question + context + answer yes/no/maybe",
    "safety": "prompt + category (+ safe_response)",
}
SUPPORTED = ("mcq", "qa", "yesno", "safety")
GEN_BUDGET = 32  # greedy answers per open-QA file (the eval budget of the demo: 32 answers)
GEN_TOKENS = EvalConfig().max_new_tokens  # as `medtune run`: a budget shorter than an answer reads as "never stops"
MCQ_PROTOCOLS = ("letters",)  # default; "text", "chat" and "generative" on request (--mcq-protocols)
REPETITION_PENALTY = 1.15  # the same for every model scored (see eval.repetition_penalty)
MAX_ITEM_CHARS = 20_000  # an item longer than this (~5k tokens, past a small model's context) is a named reject


def detect_kind(fields: set[str]) -> str | None:
    if "options" in fields and "answer" in fields:
        return "mcq"
    if "prompt" in fields and ("category" in fields or "safe_response" in fields):
        return "safety"
    if {"question", "context", "answer"} <= fields:
        return "yesno"
    if {"question", "answer"} <= fields:
        return "qa"
    return None


def chat_item(row: dict[str, Any]) -> dict[str, Any]:
    """A chat row (`messages`, as `medtune prepare` writes its splits, or sharegpt `conversations`) as an open-QA
    item: the last assistant turn is the answer, the user turn before it the question, and the turns before
    that its context (`earlier_turns`, shown to the model; only the last answer is scored)."""
    conv = FORMATS["messages" if "messages" in row else "sharegpt"](row, {})
    last = max(i for i, m in enumerate(conv) if m["role"] == "assistant" and m["content"])
    user = [i for i, m in enumerate(conv[:last]) if m["role"] == "user" and m["content"]]
    if not user:
        raise RowError("no user turn before the last assistant turn")
    item = {"question": conv[user[-1]]["content"], "answer": conv[last]["content"], "earlier_turns": conv[:user[-1]]}
    return {"id": str(row["id"])} | item if row.get("id") not in (None, "") else item


def qa_conversation(row: dict[str, Any]) -> Conversation:
    """The conversation an open-QA item is scored on: its earlier turns (chat rows), the question, the answer."""
    return [*(row.get("earlier_turns") or []), *qa(row, {})]


def _chars(value: Any) -> int:
    """Characters of text in a row (strings in nested lists and objects too)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_chars(v) for v in value.values())
    if isinstance(value, list):
        return sum(_chars(v) for v in value)
    return 0


def read_eval_file(path: Path, limit: int | None) -> tuple[str, list[dict[str, Any]], list[dict[str, str]]]:
    """(kind, rows, rejects); a row of another shape than the first is a counted reject, not a crash."""
    kind, rows, rejects = None, [], []
    for where, row, error in sources.iter_file_rows(path):
        if row is None:
            rejects.append({"id": where, "reason": str(error)})
            continue
        if "messages" in row or "conversations" in row:
            try:
                row = chat_item(row)
            except RowError as e:
                rejects.append({"id": str(row.get("id") or where), "where": where, "reason": str(e)})
                continue
        k = detect_kind(set(row))
        if kind is None:
            if k is None:
                raise MedtuneError(f"{where}: unknown evaluation file shape (fields {sorted(row)}); expected one of: "
                                   + "; ".join(f"{n}: {v}" for n, v in EXPECTED.items()))
            kind = k
        if k != kind:
            rejects.append({"id": str(row.get("id", where)), "where": where,
                            "reason": f"a {k or 'unknown'} row in a {kind} file"})
            continue
        if _chars(row) > MAX_ITEM_CHARS:  # prompts are not cut: one huge item would stall or exhaust the machine
            rejects.append({"id": str(row.get("id", where)), "where": where,
                            "reason": f"longer than {MAX_ITEM_CHARS} characters"})
            continue
        rows.append(row if "id" in row else {**row, "id": where})  # a scorer's reject names FILE:LINE
        if limit and len(rows) >= limit:
            break
    if kind is None:
        raise MedtuneError(f"{path}: no readable rows")
    if kind not in SUPPORTED:
        raise MedtuneError(f"{path}: {kind} files are not scored by this version of medtune eval "
                           f"(supported: {', '.join(SUPPORTED)})")
    return kind, rows, rejects


def _qa_losses(model: Any, tok: Any, rows: list[dict[str, Any]],
               system_prompt: str) -> tuple[list[float], list[int], list[dict[str, str]]]:
    """Per-item summed answer-token loss and token count (for perplexity), in row order."""
    examples, rejects = [], []
    for i, row in enumerate(rows):
        try:
            conv = qa_conversation(row)
            ex = encode(tok, conv, system_prompt, 1024)
            if len(conv) > 2:  # earlier turns are context: score the last answer only
                n = len(prompt_ids(tok, conv[:-1], system_prompt))
                ex.labels = [IGNORE] * min(n, len(ex.labels)) + ex.labels[n:]
            examples.append(ex)
        except RowError as e:
            rejects.append({"id": str(row.get("id", i + 1)), "reason": str(e)})
    sums, counts = item_losses(model, examples, tok.pad_token_id)
    return sums, counts, rejects


def _ppl_stat(pairs: np.ndarray) -> float:
    return math.exp(pairs[:, 0].sum() / max(pairs[:, 1].sum(), 1))


def _fig(values: list[float]) -> dict[str, Any]:
    v, lo, hi = bootstrap_ci(values)
    return {"value": v, "ci95": [lo, hi]}


def _score_mcq(model: Any, tok: Any, rows: list[dict[str, Any]],
               protocols: tuple[str, ...]) -> tuple[dict[str, Any], list[float], list[dict[str, str]]]:
    """acc (lm-eval MMLU letters) always; acc_norm / acc_chat / acc_gen (+ unparsed_rate) when asked."""
    correct, rejects = score_mcq(model, tok, rows)
    metrics = {"acc": _fig([float(c) for c in correct])}
    if "text" in protocols:
        metrics["acc_norm"] = _fig(mv.score_text(model, tok, rows))
    if "chat" in protocols:
        metrics["acc_chat"] = _fig(mv.score_chat(model, tok, rows))
    if "generative" in protocols:
        gen, unparsed = mv.score_generative(model, tok, rows)
        metrics["acc_gen"] = _fig(gen)
        metrics["unparsed_rate"] = {"value": unparsed, "ci95": [unparsed, unparsed]}
    return metrics, [float(c) for c in correct], rejects


def score(model: Any, tok: Any, kind: str, rows: list[dict[str, Any]], system_prompt: str,
          protocols: tuple[str, ...] = MCQ_PROTOCOLS) -> tuple[dict[str, Any], list[float], list[dict[str, str]]]:
    """({metric: {value, ci95}}, per-item values for pairing, rejects)."""
    if kind == "mcq":
        return _score_mcq(model, tok, rows, protocols)
    if kind == "yesno":
        return _score_yesno(model, tok, rows)
    sums, counts, rejects = _qa_losses(model, tok, rows, system_prompt)
    pairs = np.array(list(zip(sums, counts)), dtype=float)
    v, lo, hi = bootstrap_ci(np.arange(len(pairs)), lambda idx: _ppl_stat(pairs[idx.astype(int)]))
    per_item = [s / max(c, 1) for s, c in zip(sums, counts)]
    metrics = {"perplexity": {"value": v, "ci95": [lo, hi]}}
    metrics.update(_overlap_metrics(model, tok, rows, system_prompt))
    return metrics, per_item, rejects


def _overlap_metrics(model: Any, tok: Any, rows: list[dict[str, Any]], system_prompt: str) -> dict[str, Any]:
    """ROUGE-1/2/L (rouge-score, stemmed F1) and corpus BLEU (sacrebleu) of greedy answers vs the references,
    on at most GEN_BUDGET items of at most GEN_TOKENS new tokens (generation is the slow part on a CPU)."""
    items = []
    for row in rows[:GEN_BUDGET]:
        try:
            items.append(qa_conversation(row))
        except RowError:
            continue
    if not items:
        return {}
    answers, stopped = greedy_generate(model, tok, [c[:-1] for c in items], system_prompt, GEN_TOKENS, base=False,
                                       repetition_penalty=REPETITION_PENALTY, desc="greedy answers")
    return overlap_figures([c[-1]["content"] for c in items], answers, stopped)[0]


def overlap_figures(refs: list[str], answers: list[str],
                    stopped: list[bool]) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """({rouge1, rouge2, rougeL, bleu, format_adherence: {value, ci95}}, per-item values for pairing)."""
    from rouge_score import rouge_scorer, tokenizers
    from sacrebleu.metrics import BLEU

    # the tokenizer passed explicitly (= use_stemmer=True): without it rouge-score logs "Using default tokenizer."
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=tokenizers.DefaultTokenizer(True))
    per = [scorer.score(r, a) for r, a in zip(refs, answers)]
    out: dict[str, Any] = {}
    items: dict[str, list[float]] = {}
    for key in ("rouge1", "rouge2", "rougeL"):
        items[key] = [p[key].fmeasure for p in per]
        v, lo, hi = bootstrap_ci(items[key])
        out[key] = {"value": v, "ci95": [lo, hi]}
    bleu = BLEU()
    v, lo, hi = bootstrap_ci(np.arange(len(refs)), lambda idx: bleu.corpus_score(
        [answers[i] for i in idx.astype(int)], [[refs[i] for i in idx.astype(int)]]).score, n_boot=300)
    out["bleu"] = {"value": v, "ci95": [lo, hi]}
    items["format_adherence"], rates = style.adherence(answers, stopped)
    v, lo, hi = bootstrap_ci(items["format_adherence"])
    out["format_adherence"] = {"value": v, "ci95": [lo, hi], "checks": rates}
    return out, items


def answer_metrics(refs: list[str], answers: dict[str, tuple[list[str], list[bool]]],
                   losses: dict[str, list[float]], content_losses: dict[str, list[float]] | None = None
                   ) -> dict[str, Any]:
    """A report entry for base vs tuned on the same items: answer loss/perplexity, overlap and format
    figures with CIs, and paired bootstrap deltas (tuned - base) of answer loss, ROUGE-L and format.
    `content_losses`: per-item answer loss with the closing disclaimer removed (`answer_loss_no_disclaimer`)."""
    entry: dict[str, Any] = {"kind": "qa", "n": len(losses["tuned"]), "rejects": []}
    per: dict[str, dict[str, list[float]]] = {}
    for role, key in (("tuned", "metrics"), ("base", "base_metrics")):
        figs, per[role] = overlap_figures(refs, *answers[role])
        v, lo, hi = bootstrap_ci(losses[role])
        per[role]["answer_loss"] = losses[role]
        ppl = {"value": math.exp(v), "ci95": [math.exp(lo), math.exp(hi)]}
        entry[key] = {"answer_loss": {"value": v, "ci95": [lo, hi]}, "perplexity": ppl}
        if content_losses:
            v, lo, hi = bootstrap_ci(content_losses[role])
            per[role]["answer_loss_no_disclaimer"] = content_losses[role]
            entry[key]["answer_loss_no_disclaimer"] = {"value": v, "ci95": [lo, hi]}
        entry[key].update(figs)
    keys = ("answer_loss", "answer_loss_no_disclaimer", "rougeL", "format_adherence")
    entry["delta"] = {k: paired_bootstrap(per["tuned"][k], per["base"][k]) for k in keys if k in per["tuned"]}
    return entry


def _score_yesno(model: Any, tok: Any, rows: list[dict[str, Any]]) -> tuple[dict[str, Any], list[float], list]:
    metrics: dict[str, Any] = {}
    paired: list[float] = []
    rejects: list[dict[str, str]] = []
    for with_context, suffix in ((True, ""), (False, "_no_context")):
        preds, golds, rejects = score_yesno(model, tok, rows, with_context=with_context)
        correct = [float(p == g) for p, g in zip(preds, golds)]
        v, lo, hi = bootstrap_ci(correct)
        metrics["acc" + suffix] = {"value": v, "ci95": [lo, hi]}
        pg = np.array(list(zip(preds, golds)))
        v, lo, hi = bootstrap_ci(np.arange(len(pg)), lambda idx, pg=pg: macro_f1(*pg[idx.astype(int)].T.tolist()))
        metrics["macro_f1" + suffix] = {"value": v, "ci95": [lo, hi]}
        paired = paired or correct
    return metrics, paired, rejects


def evaluate(model_spec: str, base_spec: str | None, data: list[str], *, limit: int | None,
             output: Path, mcq_protocols: tuple[str, ...] = MCQ_PROTOCOLS, bf16: bool = False) -> dict[str, Any]:
    """Score every file with every model; bf16 runs the forwards under bf16 autocast (about 2.4x faster on
    CPUs with native bf16; lm-eval's own protocol is fp32, the default)."""
    import torch

    precision = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with precision:
        report = _evaluate(model_spec, base_spec, data, limit=limit, mcq_protocols=mcq_protocols)
    report["precision"] = "bf16" if bf16 else "fp32"
    write_report(report, output)
    return report


def evaluate_safety(model_spec: str | None, *, limit: int | None, output: Path, split: str = "gate") -> dict[str, Any]:
    """`medtune eval --suite safety [--split gate|sealed]`: a red-team split (eval/safety.py); writes report.json
    and report.md. model_spec None (`--guard-only`): the guard alone, no model loaded."""
    report = safety_report(model_spec, limit=limit, split=split)
    write_report(report, output)
    return report


def _evaluate(model_spec: str, base_spec: str | None, data: list[str], *, limit: int | None,
              mcq_protocols: tuple[str, ...]) -> dict[str, Any]:
    files = [(Path(d).stem, Path(d)) for d in data]
    loaded = [(name, *read_eval_file(p, limit)) for name, p in files]
    report: dict[str, Any] = {"model": model_spec, "base": base_spec, "datasets": {}}
    for (_name, path), (_, kind, _rows, _) in zip(files, loaded, strict=True):
        if kind == "safety" and base_spec:
            raise MedtuneError(f"{path}: {BASE_WITH_SAFETY}")
    for name, kind, rows, _ in loaded:
        if kind == "safety":  # guard + the model's whole assistant, judged by the rubric (eval/safety.py)
            part = safety_report(model_spec, limit=None, rows=rows, name=name)
            report["datasets"].update(part["datasets"])
    loaded = [item for item in loaded if item[1] != "safety"]
    excluded = _contamination(model_spec, loaded)
    loaded = [(name, kind, [r for i, r in enumerate(rows) if i not in excluded.get(name, {})], rej)
              for name, kind, rows, rej in loaded]
    per_item: dict[str, dict[str, list[float]]] = {}
    specs = ([("model", model_spec)] + ([("base", base_spec)] if base_spec else [])) if loaded else []
    for role, spec in specs:
        model, tok, system_prompt = load_scored_model(spec)
        for name, kind, rows, file_rejects in loaded:
            metrics, items, rejects = score(model, tok, kind, rows, system_prompt, mcq_protocols)
            entry = report["datasets"].setdefault(name, {"kind": kind, "n": len(items), "metrics": {},
                                                         "rejects": file_rejects + rejects,
                                                         "contaminated": sorted(excluded.get(name, {}).values())})
            entry["metrics" if role == "model" else "base_metrics"] = metrics
            per_item.setdefault(name, {})[role] = items
        del model
    if base_spec:
        for name, roles in per_item.items():  # safety sets carry their own comparison (eval/safety.py)
            entry, t, b = report["datasets"][name], roles.get("model", []), roles.get("base", [])
            if not t or len(t) != len(b):
                held = Path(model_spec) / "data" / "test.jsonl"
                if not held.is_file() or held.stat().st_size == 0:  # `medtune train` holds out val only
                    held = held.with_name("val.jsonl")
                entry["delta_note"] = (f"no paired delta: {len(entry['contaminated'])} of the items are in the "
                                       f"run's training data and were excluded; score the run's held-out split "
                                       f"({held}) instead")
                log.warning("%s: %s", name, entry["delta_note"])
                continue
            # QA pairs per-item answer loss (lower is better); the others pair per-item correctness
            key = "answer_loss" if entry["kind"] == "qa" else next(iter(entry["metrics"]))
            entry["delta"] = {key: paired_bootstrap(t, b)}
    return report


def _contamination(model_spec: str, loaded: list) -> dict[str, dict[int, str]]:
    """{dataset: {row index: row id}} of items overlapping the run's training data (runs only)."""
    if not (Path(model_spec) / "data").is_dir():
        return {}
    grams, joined = cont.training_ngrams(cont.run_training_texts(model_spec))
    out = {}
    for name, _, rows, _ in loaded:
        hits = cont.overlapping(rows, grams, joined)
        out[name] = {i: str(rows[i].get("id", i + 1)) for i in hits}
    return out


def write_report(report: dict[str, Any], output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    atomic.write_json(output / "report.json", report, indent=2)
    atomic.write_text(output / "report.md", markdown(report))


def markdown(report: dict[str, Any]) -> str:
    guard_only = f"the guard alone (--guard-only, split {report.get('split')})"
    who = guard_only if report.get("guard_only") else report["model"]
    lines = [f"# Evaluation of {who}" + (f" vs base {report['base']}" if report.get("base") else ""), "",
             "| dataset | kind | n | metric | model (95% CI) | base (95% CI) | delta (95% CI, p) |",
             "|---|---|---|---|---|---|---|"]
    for name, e in report["datasets"].items():
        for m, v in e["metrics"].items():
            b = e.get("base_metrics", {}).get(m)
            d = e.get("delta", {}).get(m)
            fmt = lambda x: f"{x['value']:.3f} ({x['ci95'][0]:.3f}–{x['ci95'][1]:.3f})"  # noqa: E731
            lines.append(f"| {name} | {e['kind']} | {e['n']} | {m} | {fmt(v)} | {fmt(b) if b else '-'} | "
                         + (f"{fmt(d)}, p={d['p_value']:.3f}" if d else "-") + " |")
        for m, d in e.get("delta", {}).items():
            if m not in e["metrics"]:
                lines.append(f"| {name} | {e['kind']} | {e['n']} | {m} (tuned - base) | | | {d['value']:.3f} "
                             f"({d['ci95'][0]:.3f}–{d['ci95'][1]:.3f}), p={d['p_value']:.3f} |")
        if e.get("rejects"):
            lines.append(f"\n{name}: {len(e['rejects'])} rows not scored (see report.json)")
        if e.get("contaminated"):
            lines.append(f"\n{name}: {len(e['contaminated'])} items overlap the training data and are excluded "
                         "from the figures above (ids in report.json)")
        if e.get("delta_note"):
            lines.append(f"\n{name}: {e['delta_note']}")
    lines += [f"\n{name}: skipped ({why})" for name, why in (report.get("skipped") or {}).items()]
    return "\n".join(lines) + "\n"
