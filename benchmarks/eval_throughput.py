"""Evaluation speed: held-out answer-token loss with medtune's scorer vs the plain transformers way.

Reference: `model(input_ids, attention_mask).logits` in fp32 with padding to the longest row of a batch and
cross-entropy over the full vocabulary (what a plain HF/TRL evaluation loop does). medtune: the same rows
through `AnswerLoss` (logits only on answer tokens, chunked fused cross-entropy) with bf16 autocast when
the CPU supports it, length-sorted batches. Both on the embedded SmolLM2-135M, same rows, one after the
other; prints rows/s, the ratio, and both losses (they must agree to ~1%).

Run as: python benchmarks/eval_throughput.py [--rows 64] [--data-dir ../shared/data]
"""

import argparse
import json
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from medtune.config import DEFAULT_SYSTEM_PROMPT, ModelConfig
from medtune.data.tokenize import IGNORE, collate, encode
from medtune.model.load import load_for_inference
from medtune.model.loss import AnswerLoss
from medtune.train.recipe import cpu_supports_bf16

ROOT = Path(__file__).resolve().parents[1]


def reference(model, examples, pad_id, batch_size):
    total = count = 0.0
    with torch.no_grad():
        for s in range(0, len(examples), batch_size):
            b = collate(examples[s: s + batch_size], pad_id)
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits.float()
            t = b["labels"][:, 1:]
            total += float(F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), t.reshape(-1),
                                           ignore_index=IGNORE, reduction="sum"))
            count += int((t != IGNORE).sum())
    return total / count


def medtune_scorer(model, examples, pad_id, batch_size, bf16):
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    lm = AnswerLoss(model).eval()
    total = count = 0.0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for s in range(0, len(order), batch_size):
            loss, n = lm(**collate([examples[i] for i in order[s: s + batch_size]], pad_id))
            total, count = total + float(loss), count + int(n)
    return total / count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    args = ap.parse_args()
    rows = [json.loads(x) for x in (args.data_dir / "medquad.part2.jsonl").open()]
    rows = [r for r in rows if r.get("answer")]
    random.Random(3).shuffle(rows)
    model, tok, _ = load_for_inference("default", ModelConfig())
    examples = [encode(tok, [{"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["answer"]}],
                       DEFAULT_SYSTEM_PROMPT, 512) for r in rows[: args.rows]]
    pad = tok.pad_token_id
    reference(model, examples[:2], pad, args.batch_size)  # warm-up
    t0 = time.perf_counter()
    ref_loss = reference(model, examples, pad, args.batch_size)
    ref_s = time.perf_counter() - t0
    bf16 = cpu_supports_bf16()
    medtune_scorer(model, examples[:2], pad, args.batch_size, bf16)
    t0 = time.perf_counter()
    mt_loss = medtune_scorer(model, examples, pad, args.batch_size, bf16)
    mt_s = time.perf_counter() - t0
    n = len(examples)
    print(f"{'':<28}{'seconds':>9}{'rows/s':>9}{'loss':>9}")
    print(f"{'full logits, fp32 (ref)':<28}{ref_s:>9.1f}{n / ref_s:>9.2f}{ref_loss:>9.4f}")
    print(f"{'medtune AnswerLoss' + (' bf16' if bf16 else ''):<28}{mt_s:>9.1f}{n / mt_s:>9.2f}{mt_loss:>9.4f}")
    print(f"speed-up {ref_s / mt_s:.2f}x; loss difference {abs(mt_loss - ref_loss) / ref_loss:.2%}")


if __name__ == "__main__":
    main()
