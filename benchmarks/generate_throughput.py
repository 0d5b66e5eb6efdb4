"""Generation speed of the two engines on the embedded model, side by side in one run.

Same prompts, same greedy decoding, same answer budget, through the Assistant (guard -> engine -> output
guard), once with the `transformers` engine (the de-quantized model in torch) and once with `llama.cpp`
(the packaged Q4_1 GGUF). Reported per engine: single-stream decode tokens/s (completion tokens over the
time from first released text to the end), time to first released text (p50, p90: the first sentence
that passed the output guard, which is what a user sees), and whole-answer latency; then llama.cpp's
ratio to transformers. With --api, the same prompts go through `medtune serve` (llama.cpp) on loopback
with the official openai client: p50 latency of a guarded answer of up to --max-tokens tokens.

Targets (issue 11): llama.cpp >= 80 tokens/s, time to first text p50 <= 150 ms, guarded answer through
the API p50 <= 2 s (128 tokens). Rerun it: these machines are noisy; the ratio is the claim.

Run as: .venv/bin/python benchmarks/generate_throughput.py [--prompts 8] [--max-tokens 128] [--api]
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from medtune.assistant import GenParams, load_assistant  # noqa: E402

PROMPTS = [
    "What is high blood pressure?",
    "What are common symptoms of iron deficiency anemia?",
    "How is type 2 diabetes usually managed?",
    "What does a cholesterol test measure?",
    "Why do vaccines need booster doses?",
    "What is the difference between a cold and the flu?",
    "How can I lower my risk of kidney stones?",
    "What are the warning signs of dehydration in older adults?",
    "What is asthma and what triggers it?",
    "How does sleep affect blood sugar?",
]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def bench_engine(engine: str, prompts: list[str], max_tokens: int) -> dict[str, float]:
    t0 = time.monotonic()
    assistant = load_assistant("default", engine, defaults=GenParams(temperature=0.0, max_tokens=max_tokens))
    load_s = time.monotonic() - t0
    assistant.reply([{"role": "user", "content": "What is a fever?"}])  # warm-up
    ttft, total, rates, tokens = [], [], [], 0
    for p in prompts:
        reply = assistant.reply([{"role": "user", "content": p}])
        if reply.first_text_s is None:
            continue
        ttft.append(reply.first_text_s)
        total.append(reply.latency_s)
        tokens += reply.completion_tokens
        rates.append(reply.completion_tokens / max(reply.latency_s, 1e-6))
    return {"load_s": load_s, "ttft_p50": pct(ttft, 0.5), "ttft_p90": pct(ttft, 0.9), "latency_p50": pct(total, 0.5),
            "tokens_per_s": tokens / sum(total), "tokens": tokens}


def bench_api(prompts: list[str], max_tokens: int) -> dict[str, float]:
    from openai import OpenAI

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    medtune = str(Path(sys.executable).with_name("medtune"))
    proc = subprocess.Popen([medtune, "serve", "--model", "default", "--engine", "llama.cpp", "--port", str(port),
                             "--api-key", "bench", "--set", "serve.rate_limit=1000/minute"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="bench", max_retries=0)
        for _ in range(120):
            try:
                client.models.list()
                break
            except Exception:
                time.sleep(0.5)
        lat = []
        for p in prompts:
            t0 = time.monotonic()
            client.chat.completions.create(model="default", messages=[{"role": "user", "content": p}],
                                           max_tokens=max_tokens, temperature=0)
            lat.append(time.monotonic() - t0)
        return {"api_latency_p50": pct(lat, 0.5), "api_latency_p90": pct(lat, 0.9)}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--api", action="store_true", help="also time guarded answers through `medtune serve`")
    args = ap.parse_args()
    prompts = PROMPTS[: args.prompts]
    print(f"{len(prompts)} prompts, greedy, max {args.max_tokens} new tokens, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}")
    res = {e: bench_engine(e, prompts, args.max_tokens) for e in ("transformers", "llama.cpp")}
    keys = ("load_s", "tokens_per_s", "ttft_p50", "ttft_p90", "latency_p50", "tokens")
    print(f"{'engine':<14}" + "".join(f"{k:>14}" for k in keys))
    for e, r in res.items():
        print(f"{e:<14}" + "".join(f"{r[k]:>14.3f}" for k in keys))
    t, c = res["transformers"], res["llama.cpp"]
    print(f"llama.cpp / transformers: {c['tokens_per_s'] / t['tokens_per_s']:.1f}x tokens/s, "
          f"time to first text {t['ttft_p50'] / c['ttft_p50']:.1f}x shorter, "
          f"answer latency {t['latency_p50'] / c['latency_p50']:.1f}x shorter")
    if args.api:
        a = bench_api(prompts, args.max_tokens)
        print(f"through the API (llama.cpp, guarded, openai client): p50 {a['api_latency_p50']:.2f} s, "
              f"p90 {a['api_latency_p90']:.2f} s")
    print(f"load average after: {statistics.fmean(os.getloadavg()):.2f}")


if __name__ == "__main__":
    main()
