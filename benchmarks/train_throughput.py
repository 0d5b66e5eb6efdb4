"""Training speed: plain TRL SFTTrainer (the reference) vs `medtune train`, same rows, one after the other.

The reference is `../shared/acceptance/baseline_trl.py` run unchanged in this process (TRL defaults on
prompt/completion data: fp32, padding, completion-only loss; LoRA r16/a32 on all linear layers, batch 8,
max length 512, embedded SmolLM2-135M). medtune runs as a user would run it, through its CLI, with no
validation split. Both are timed wall-clock, start to finish. Afterwards both adapters are scored on the
same held-out MedQuAD rows (answer-token loss, fp32, each model with the prompt format it was trained on).

Run as: python benchmarks/train_throughput.py [--rows 64] [--heldout 32] [--data-dir ../shared/data]
Prints a table and the ratios; figures go into the README as ratios, since machines are noisy.
"""

import argparse
import json
import runpy
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def sample(src: Path, n: int, seed: int, out: Path, exclude: set[str] = frozenset()) -> list[dict]:
    rows = [json.loads(x) for x in src.open(encoding="utf-8")]
    rows = [r for r in rows if r.get("question") and r.get("answer") and r["id"] not in exclude]
    import random

    random.Random(seed).shuffle(rows)
    rows = rows[:n]
    out.write_text("".join(json.dumps({"id": r["id"], "question": r["question"], "answer": r["answer"]}) + "\n"
                           for r in rows))
    return rows


def heldout_loss(model, tok, rows: list[dict], system_prompt: str | None, max_length: int = 512) -> float:
    """Mean answer-token loss; system_prompt None = the tokenizer template's own default (as TRL trains)."""
    from medtune.data.tokenize import IGNORE, Example, collate, encode
    from medtune.model.loss import AnswerLoss

    examples = []
    for r in rows:
        conv = [{"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["answer"]}]
        if system_prompt is None:
            prompt = tok.apply_chat_template(conv[:1], tokenize=True, add_generation_prompt=True, return_dict=False)
            full = tok.apply_chat_template(conv, tokenize=True, return_dict=False)
            labels = [IGNORE] * len(prompt) + list(full)[len(prompt):]
            examples.append(Example(list(full)[:max_length], labels[:max_length]))
        else:
            examples.append(encode(tok, conv, system_prompt, max_length))
    lm = AnswerLoss(model).eval()
    total = count = 0.0
    with torch.no_grad():
        for s in range(0, len(examples), 8):
            loss, n = lm(**collate(examples[s: s + 8], tok.pad_token_id))
            total, count = total + float(loss), count + int(n)
    return total / count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--heldout", type=int, default=32)
    ap.add_argument("--data-dir", type=Path, default=SHARED / "data")
    args = ap.parse_args()
    src = args.data_dir / "medquad.part1.jsonl"
    if not src.exists():
        sys.exit(f"{src} not found (pass --data-dir)")
    tmp = Path(tempfile.mkdtemp(prefix="medtune-bench-"))
    train_rows = sample(src, args.rows, 7, tmp / "rows.jsonl")
    held = sample(src, args.heldout, 11, tmp / "heldout.jsonl", exclude={r["id"] for r in train_rows})

    # 1. the reference, unchanged, in this process (so its trained model can be scored afterwards)
    sys.argv = ["baseline_trl.py", str(tmp / "rows.jsonl"), "--rows", str(args.rows), "--epochs", "1"]
    t0 = time.perf_counter()
    ref = runpy.run_path(str(SHARED / "acceptance" / "baseline_trl.py"), run_name="__main__")
    ref_s = time.perf_counter() - t0
    ref_tps = ref["timed_tokens"] / ref["elapsed"]  # the reference's own figure: training loop only
    ref_model = ref["trainer"].model.float()
    ref_loss = heldout_loss(ref_model, ref["tok"], held, None)
    del ref

    # 2. medtune, through its CLI, as a user runs it
    cmd = [str(Path(sys.executable).parent / "medtune"), "train", "--data", str(tmp / "rows.jsonl"),
           "--val-fraction", "0", "--epochs", "1", "--batch-size", "8", "--max-length", "512",
           "--lora-r", "16", "--lora-alpha", "32", "--output", str(tmp / "run")]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    mt_s = time.perf_counter() - t0
    info = json.loads((tmp / "run" / "run.json").read_text())
    from medtune.model.load import load_for_inference

    mt_model, mt_tok, _ = load_for_inference(str(tmp / "run"))
    mt_loss = heldout_loss(mt_model.float(), mt_tok, held, info["system_prompt"])
    mt_tps = info["training"]["tokens_per_s"]  # medtune's own figure: training loop only

    print(f"\n{'':<22}{'wall s':>8}{'real tok/s':>12}{'held-out loss':>15}")
    print(f"{'TRL SFTTrainer (ref)':<22}{ref_s:>8.1f}{ref_tps:>12.1f}{ref_loss:>15.4f}")
    print(f"{'medtune train':<22}{mt_s:>8.1f}{mt_tps:>12.1f}{mt_loss:>15.4f}")
    print(f"\nwall-time speed-up {ref_s / mt_s:.2f}x (target >= 4x); held-out loss ratio medtune/ref "
          f"{mt_loss / ref_loss:.3f} (target <= 1.02); {args.rows} train rows, {len(held)} held-out rows")


if __name__ == "__main__":
    main()
