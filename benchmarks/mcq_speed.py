"""Multiple-choice scoring speed: 1,000 MMLU-style four-option questions with the embedded model.

medtune scores every option of a question from one forward pass (single-token letter continuations),
in length-sorted batches. The reference scores each option with its own forward pass, one question at a
time (as ../shared/acceptance/mcq_ref.py and a plain lm-eval loop do); it runs on the first --ref-limit
questions only and the ratio is per question. Both agree on every prediction they share.

On CPUs with native bf16 it also times the same scoring under bf16 autocast (`medtune eval --bf16`) and
reports how many predictions change against fp32.

Run as: python benchmarks/mcq_speed.py [--n 1000] [--ref-limit 100] [--data-dir ../shared/data]
"""

import argparse
import itertools
import json
import time
from pathlib import Path

import torch

from medtune.config import ModelConfig
from medtune.eval.mcq import mcq_items, rank_choices
from medtune.hardware import cpu_supports_bf16
from medtune.model.load import load_for_inference

ROOT = Path(__file__).resolve().parents[1]


def reference(model, tok, prompts, choices):
    preds = []
    with torch.no_grad():
        for ctx, conts in zip(prompts, choices):
            ctx_ids = tok(ctx, add_special_tokens=False)["input_ids"]
            scores = []
            for c in conts:
                ids = tok(ctx + c, add_special_tokens=False)["input_ids"]
                n = len(ids) - len(ctx_ids)
                logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1].float(), -1)
                tgt = torch.tensor(ids[1:])
                scores.append(float(logp[torch.arange(len(tgt)), tgt][-n:].sum()))
            preds.append(max(range(len(scores)), key=scores.__getitem__))
    return preds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--ref-limit", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    args = ap.parse_args()
    base = [json.loads(x) for x in (args.data_dir / "mmlu_medical_devval.jsonl").open()]
    rows = list(itertools.islice(itertools.cycle(base), args.n))
    model, tok, _ = load_for_inference("default", ModelConfig())
    items, _ = mcq_items(rows)
    prompts, choices = [it[1] for it in items], [it[2] for it in items]
    n_tok = sum(len(tok(p)["input_ids"]) for p in prompts) / len(prompts)
    t0 = time.perf_counter()
    ours = rank_choices(model, tok, prompts, choices, batch_size=args.batch_size)
    ours_s = time.perf_counter() - t0
    k = min(args.ref_limit, len(prompts))
    t0 = time.perf_counter()
    ref = reference(model, tok, prompts[:k], choices[:k])
    ref_s = time.perf_counter() - t0
    agree = sum(a == b for a, b in zip(ours[:k], ref)) / k
    print(f"{len(prompts)} questions, {n_tok:.0f} prompt tokens on average")
    print(f"medtune  : {ours_s:7.1f} s for {len(prompts)} ({1000 * ours_s / len(prompts):.0f} ms/question; target: "
          f"1,000 in <= 180 s)")
    print(f"reference: {ref_s:7.1f} s for {k} ({1000 * ref_s / k:.0f} ms/question)")
    print(f"speed-up per question {ref_s / k / (ours_s / len(prompts)):.1f}x; predictions agree on {agree:.1%}")
    if cpu_supports_bf16():  # `medtune eval --bf16`: the same scoring under bf16 autocast
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = rank_choices(model, tok, prompts, choices, batch_size=args.batch_size)
        fast_s = time.perf_counter() - t0
        same = sum(a == b for a, b in zip(ours, fast)) / len(ours)
        print(f"bf16     : {fast_s:7.1f} s for {len(prompts)} ({1000 * fast_s / len(prompts):.0f} ms/question), "
              f"{ours_s / fast_s:.1f}x the fp32 run; predictions agree with fp32 on {same:.1%}")


if __name__ == "__main__":
    main()
