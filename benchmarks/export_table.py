"""Per export format: file size, tensor types, llama.cpp tokens/s, answer perplexity vs the run, parity, time.

Exports one run in every format (each with its parity check against the run) and prints the README table.
Perplexity is of the reference answers of the parity prompts (answer tokens only), so the difference from
the run's own figure is the quality cost of each format.

Run as: python benchmarks/export_table.py [--run runs/NAME] [--prompts N] [--tokens N]
(without --run it first trains a short run on the embedded model and the built-in data)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from medtune.export import export_run

FORMATS = [("merged", "f32"), ("gguf", "f16"), ("gguf", "q8_0"), ("gguf", "q4_k_m"), ("gguf-lora", "f16")]


def short_run(folder: Path) -> Path:
    run = folder / "run"
    subprocess.run([sys.executable, "-m", "medtune.cli", "train", "--max-steps", "8", "--batch-size", "4",
                    "--max-length", "256", "--output", str(run)], check=True)
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", help="a run folder (default: train a short one on the embedded model)")
    ap.add_argument("--prompts", type=int, help="parity prompts (default: all 16 + the run's test questions)")
    ap.add_argument("--tokens", type=int, default=256, help="longest answer (default 256)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else short_run(Path(tmp))
        rows = []
        for fmt, quant in FORMATS:
            res = export_run(run, fmt, quant, Path(tmp) / f"{fmt}-{quant}", parity_limit=args.prompts,
                             max_new_tokens=args.tokens, force=True)
            r = res.info["parity"]["results"][0]
            size = sum((res.folder / n).stat().st_size for n in res.info["files"] if not n.endswith(".md"))
            types = {}
            for counts in res.info["tensor_types"].values():
                for k, v in counts.items():
                    types[k] = types.get(k, 0) + v
            rows.append((f"{fmt} {quant}", size / 1e6, ", ".join(f"{k} {v}" for k, v in sorted(types.items())) or
                         "safetensors fp32", r.get("tokens_per_s"), r["perplexity"], r["run_perplexity"],
                         r["match_first_32"], f"{r['stopped']}/{r['prompts']} (run {r['run_stopped']})",
                         res.info["write_seconds"], "ok" if res.passed else "FAILED"))
        print(f"\nrun: {run}; base: {res.info['starts_from']}\n")
        print("| format | size MB | tensor types | llama.cpp tok/s | answer ppl (run) | first-32 match | stopped "
              "| write s | parity |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name, mb, types, tps, ppl, run_ppl, share, stopped, secs, ok in rows:
            print(f"| {name} | {mb:.1f} | {types} | {tps if tps else '-'} | {ppl} ({run_ppl}) | {share:.0%} | "
                  f"{stopped} | {secs} | {ok} |")


if __name__ == "__main__":
    main()
