"""Cross-check medtune's multiple-choice scorer against lm-evaluation-harness on the same items and weights.

The same MMLU-style four-option questions are scored twice with the same model:

1. lm-evaluation-harness 0.4.x (`lm_eval.simple_evaluate`, backend `hf`, float32, CPU, batch size 8) on a local
   task written to a temp folder at run time: `dataset_path: json` over a flattened copy of the data, the
   MMLU prompt ("The following are multiple choice questions (with answers) about {subject}.\\n\\n{question}
   \\nA. …\\nB. …\\nC. …\\nD. …\\nAnswer:"), choices A-D with lm-eval's target delimiter " ", zero-shot, no
   chat template.
2. medtune's `score_mcq` with the model from `load_for_inference`.

For the embedded `default` model lm-eval is pointed at the very folder medtune loads (the GGUF converted once
into plain fp32 safetensors under ~/.cache/medtune/gguf/). Prints items, both accuracies, their difference in
points, per-item agreement (lm-eval per-sample log-likelihoods vs medtune's predictions) and wall times; exits 1
when the accuracies differ by more than --tolerance points. Needs `pip install 'medtune[lm-eval]'`. No network:
HF_HUB_OFFLINE=1 and HF_DATASETS_OFFLINE=1 are set before anything is imported.

Run as: python benchmarks/crosscheck_lm_eval.py [--data ../shared/data/mmlu_medical_devval.jsonl] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

# Before transformers / datasets / lm_eval are imported (all imports of those below are inside functions).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mmlu_medical_devval.jsonl"
LETTERS = ["A", "B", "C", "D"]
TASK = "medtune_crosscheck_mcq"
# lm-eval's MMLU prompt: the per-subject description followed by its default doc_to_text.
DOC_TO_TEXT = ("The following are multiple choice questions (with answers) about {{subject.replace('_', ' ')}}."
               "\n\n{{question.strip()}}\nA. {{A}}\nB. {{B}}\nC. {{C}}\nD. {{D}}\nAnswer:")


def load_rows(path: Path, limit: int | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The first `limit` rows that medtune accepts and that have exactly the options A-D; rejects for the rest."""
    from medtune.eval.mcq import mcq_items

    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = rows[:limit] if limit else rows
    _, rejects = mcq_items(rows)
    bad = {r["id"] for r in rejects}
    kept = []
    for i, row in enumerate(rows):
        if row.get("id", f"row {i + 1}") in bad:
            continue
        if sorted(str(k).strip().upper() for k in (row.get("options") or {})) != LETTERS:
            rejects.append({"id": row.get("id", f"row {i + 1}"), "reason": "options are not exactly A-D"})
            continue
        kept.append(row)
    return kept, rejects


def flatten(rows: list[dict[str, Any]], path: Path) -> None:
    """One flat record per row (question, A-D, answer index, subject): nothing nested for the json loader."""
    with path.open("w") as f:
        for n, row in enumerate(rows):
            opts = {str(k).strip().upper(): str(v) for k, v in row["options"].items()}
            f.write(json.dumps({
                "n": n, "id": str(row.get("id", n)), "subject": str(row.get("subject") or "medicine"),
                "question": str(row["question"]), **{k: opts[k] for k in LETTERS},
                "answer": LETTERS.index(str(row["answer"]).strip().upper()),
            }) + "\n")


def write_task(folder: Path, data_file: Path) -> None:
    cfg = {
        "task": TASK,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": DOC_TO_TEXT,
        "doc_to_choice": LETTERS,
        "doc_to_target": "answer",
        "target_delimiter": " ",
        "num_fewshot": 0,
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }
    (folder / f"{TASK}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))


def model_folder(spec: str) -> str:
    """The folder medtune's from_pretrained reads: the converted GGUF for `default`/.gguf, else the folder itself."""
    from medtune.model.load import dequantized_folder, resolve

    src = resolve(spec)
    if src.kind in ("run", "hub"):
        raise SystemExit(f"{spec}: give `default`, a .gguf file or a plain local model folder")
    return str(dequantized_folder(src)) if src.gguf_file else src.path


def run_lm_eval(folder: str, rows: list[dict[str, Any]],
                batch_size: int) -> tuple[float, list[list[float]], float, float]:
    """(accuracy, log-likelihood of each option per row, load seconds, scoring seconds) from lm-evaluation-harness."""
    from lm_eval import simple_evaluate
    from lm_eval.api.registry import get_model
    from lm_eval.tasks import TaskManager

    with tempfile.TemporaryDirectory(prefix="medtune-lmeval-") as tmp:
        data_file = Path(tmp) / "items.jsonl"
        flatten(rows, data_file)
        write_task(Path(tmp), data_file)
        t0 = time.perf_counter()
        lm = get_model("hf").create_from_arg_string(
            f"pretrained={folder},dtype=float32", {"batch_size": batch_size, "device": "cpu"})
        t1 = time.perf_counter()
        out = simple_evaluate(model=lm, tasks=[TASK], num_fewshot=0, batch_size=batch_size, device="cpu",
                              log_samples=True, apply_chat_template=False, bootstrap_iters=0,
                              task_manager=TaskManager(include_path=tmp, include_defaults=False))
        t2 = time.perf_counter()
    assert out is not None
    acc = float(out["results"][TASK]["acc,none"])
    lls: list[list[float]] = [[] for _ in rows]
    for s in out["samples"][TASK]:
        lls[int(s["doc"]["n"])] = [float(r[0]) for r in s["filtered_resps"]]
    assert all(len(x) == len(LETTERS) for x in lls), "lm-eval did not log every sample"
    return acc, lls, t1 - t0, t2 - t1


def run_medtune(spec: str, rows: list[dict[str, Any]],
                batch_size: int) -> tuple[float, list[int], list[int], list[list[float]], float, float]:
    """(accuracy, 1/0 correct per row, predicted index per row, option log-likelihoods per row, load seconds,
    scoring seconds) from medtune."""
    from medtune.eval.mcq import mcq_items, rank_choices, score_mcq
    from medtune.model.load import load_for_inference

    t0 = time.perf_counter()
    model, tok, _ = load_for_inference(spec)
    t1 = time.perf_counter()
    correct, rejects = score_mcq(model, tok, rows, batch_size=batch_size)
    t2 = time.perf_counter()
    assert not rejects and len(correct) == len(rows), rejects
    # score_mcq returns correctness only; the predicted letters (for per-item agreement) come from the
    # function it calls, outside the timed section.
    items, _ = mcq_items(rows)
    pred = rank_choices(model, tok, [it[1] for it in items], [it[2] for it in items], batch_size=batch_size)
    assert [int(p == it[3]) for p, it in zip(pred, items)] == correct
    lls = option_logliks(model, tok, [it[1] for it in items], [it[2] for it in items])
    return sum(correct) / len(correct), correct, pred, lls, t1 - t0, t2 - t1


def option_logliks(model: Any, tok: Any, prompts: list[str], choices: list[list[str]]) -> list[list[float]]:
    """Summed log-prob of each continuation with medtune's model, prompts and context/continuation split.

    rank_choices keeps only the argmax; the values let the cross-check compare numbers, not just letters.
    """
    import torch

    from medtune.eval.mcq import _continuation

    out = []
    with torch.no_grad():
        for ctx, conts in zip(prompts, choices):
            ctx_ids = tok(ctx, add_special_tokens=False)["input_ids"]
            cont_ids = [_continuation(tok, ctx_ids, ctx, c) for c in conts]
            if all(len(c) == 1 for c in cont_ids):  # one pass over the context scores every single-token option
                logp = torch.log_softmax(model(input_ids=torch.tensor([ctx_ids])).logits[0, -1].float(), -1)
                out.append([float(logp[c[0]]) for c in cont_ids])
                continue
            row = []
            for cont in cont_ids:
                ids = torch.tensor([ctx_ids + cont])
                logp = torch.log_softmax(model(input_ids=ids).logits[0, -len(cont) - 1:-1].float(), -1)
                row.append(float(logp[torch.arange(len(cont)), torch.tensor(cont)].sum()))
            out.append(row)
    return out


def spread(indices: list[int]) -> str:
    """How often each letter occurs, e.g. 21/38/33/42 (a model stuck on one letter agrees with anything)."""
    return "/".join(str(indices.count(i)) for i in range(len(LETTERS)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="JSONL {question, options{A..D}, answer, subject}")
    ap.add_argument("--limit", type=int, default=None, help="score only the first N rows")
    ap.add_argument("--model", default="default", help="medtune model spec (default: the embedded SmolLM2-135M)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--tolerance", type=float, default=1.0, help="max |difference| in accuracy points")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for name in ("lm_eval", "lm-eval"):
        logging.getLogger(name).setLevel(logging.WARNING)

    rows, rejects = load_rows(args.data, args.limit)
    for r in rejects:
        print(f"skipped {r['id']}: {r['reason']}", file=sys.stderr)
    if not rows:
        raise SystemExit(f"{args.data}: no usable rows")
    folder = model_folder(args.model)
    m_acc, m_correct, m_pred, m_lls, m_load, m_score = run_medtune(args.model, rows, args.batch_size)
    l_acc, l_lls, l_load, l_score = run_lm_eval(folder, rows, args.batch_size)

    golds = [LETTERS.index(str(r["answer"]).strip().upper()) for r in rows]
    l_pred = [max(range(len(x)), key=x.__getitem__) for x in l_lls]
    max_dll = max(abs(a - b) for la, ma in zip(l_lls, m_lls) for a, b in zip(la, ma))
    same_rank = sum(sorted(range(4), key=la.__getitem__) == sorted(range(4), key=ma.__getitem__)
                    for la, ma in zip(l_lls, m_lls))
    l_correct = [int(p == g) for p, g in zip(l_pred, golds)]
    same_pred = sum(a == b for a, b in zip(l_pred, m_pred))
    same_correct = sum(a == b for a, b in zip(l_correct, m_correct))
    diff = 100 * (m_acc - l_acc)
    n = len(rows)
    print(f"\nmodel: {args.model} ({folder})\ndata:  {args.data}\n")
    print(f"{'':26}{'lm-eval':>12}{'medtune':>12}")
    print(f"{'items':26}{n:>12}{n:>12}")
    print(f"{'accuracy':26}{l_acc:>12.4f}{m_acc:>12.4f}")
    print(f"{'load (s)':26}{l_load:>12.1f}{m_load:>12.1f}")
    print(f"{'scoring (s)':26}{l_score:>12.1f}{m_score:>12.1f}")
    print(f"{'wall (s)':26}{l_load + l_score:>12.1f}{m_load + m_score:>12.1f}")
    print(f"{'predicted A/B/C/D':26}{spread(l_pred):>12}{spread(m_pred):>12}")
    print(f"{'gold A/B/C/D':26}{spread(golds):>12}{spread(golds):>12}")
    print(f"\ndifference (medtune - lm-eval): {diff:+.2f} points")
    print(f"same predicted letter:          {same_pred}/{n}")
    print(f"same correctness:               {same_correct}/{n}")
    print(f"same ranking of all 4 options:  {same_rank}/{n}")
    print(f"max |log-likelihood difference|: {max_dll:.2e} nats (per option)")
    if abs(diff) > args.tolerance:
        print(f"FAIL: |difference| > {args.tolerance} points", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
