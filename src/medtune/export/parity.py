"""Does the export answer like the run? Greedy answers of the run vs each export on the same prompts.

The run (base + PEFT adapter, transformers) is the reference. Each export answers the same prompts,
greedy, rendered with the run's own chat template and system prompt: the merged model through
transformers (loaded as a plain folder, the way vLLM would), every GGUF through llama.cpp. Per export:
the share of prompts whose first 32 answer tokens equal the run's, where each first diverges, whether it
ended its turn by itself wherever the run did, and the perplexity of reference answers (the quality cost
of quantization). merged and f16 must match on >= 90% of prompts and stop wherever the run stops; a quantized
export must stop wherever it gives the run's answer (see `compare`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from medtune import atomic
from medtune.data.tokenize import Example, encode, with_system
from medtune.eval.heldout import item_losses
from medtune.model import llamacpp
from medtune.model.generate import greedy_generate, stop_token_ids

COMPARED_TOKENS = 32
REQUIRED_MATCH = 0.9
MAX_NEW_TOKENS = 256
TEST_QUESTIONS = 8
PPL_MAX_LENGTH = 512


@dataclass
class Item:
    conversation: list[dict[str, str]]
    reference: str
    source: str


@dataclass
class Answers:
    texts: list[str]
    stopped: list[bool]
    perplexity: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def shipped_prompts() -> list[Item]:
    text = resources.files("medtune.export").joinpath("parity_prompts.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [Item([{"role": "user", "content": r["question"]}], r["answer"], r["id"]) for r in rows]


def parity_items(run_dir: Path, limit: int | None = None) -> list[Item]:
    """The 16 shipped prompts, then the run's first test-split questions (when it held some out)."""
    items = shipped_prompts()
    test = run_dir / "data" / "test.jsonl"
    if test.exists():
        with test.open(encoding="utf-8") as f:
            for n, line in enumerate(f):
                if n >= TEST_QUESTIONS or not line.strip():
                    break
                msgs = json.loads(line).get("messages") or []
                user = [m for m in msgs if m["role"] == "user"][:1]
                ref = next((m["content"] for m in msgs if m["role"] == "assistant"), "")
                if user and ref:
                    items.append(Item(user, ref, f"test:{n + 1}"))
    return items[:limit] if limit else items


def _examples(tok: Any, items: list[Item], system_prompt: str) -> list[Example]:
    return [encode(tok, [*i.conversation, {"role": "assistant", "content": i.reference}], system_prompt,
                   PPL_MAX_LENGTH) for i in items]


def oversubscribed() -> bool:
    return os.getloadavg()[0] > (os.cpu_count() or 1)


@contextlib.contextmanager
def fair_threads() -> Iterator[None]:
    """One torch thread while the machine is oversubscribed (load average above the core count).

    Measured on a shared 2-core machine at load 4-5: greedy generation with SmolLM2-135M took 80 s with
    2 threads and 4.7 s with 1 (each op waits for a descheduled worker thread). On an idle machine the
    default thread count is kept.
    """
    import torch

    before = torch.get_num_threads()
    if oversubscribed():
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def transformers_answers(model: Any, tok: Any, items: list[Item], system_prompt: str, stop_tokens: list[str],
                         max_new_tokens: int) -> Answers:
    """Greedy answers and reference-answer perplexity of a transformers model (a PeftModel or a plain one)."""
    with fair_threads():
        texts, stopped = greedy_generate(model, tok, [i.conversation for i in items], system_prompt, max_new_tokens,
                                         base=False, stop_tokens=stop_tokens, desc="parity")
        sums, counts = item_losses(model, _examples(tok, items, system_prompt), tok.pad_token_id)
    return Answers(texts, stopped, _ppl(sum(sums), sum(counts)))


def cached_run_answers(run_dir: Path, key_parts: list[Any], compute: Any) -> Answers:
    """The run's own answers, computed once per run, prompt set and limit (every export compares with them)."""
    adapter = run_dir / "adapter_model.safetensors"
    key = hashlib.sha256(json.dumps([adapter.stat().st_size, adapter.stat().st_mtime_ns, *key_parts],
                                    default=str).encode()).hexdigest()[:16]
    path = run_dir / "export" / f".parity-run-{key}.json"
    if path.exists():
        d = json.loads(path.read_text(encoding="utf-8"))
        return Answers(d["texts"], d["stopped"], d["perplexity"])
    ans = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(path, {"texts": ans.texts, "stopped": ans.stopped, "perplexity": ans.perplexity}, indent=None)
    return ans


def llamacpp_answers(gguf: Path, lora: Path | None, tok: Any, items: list[Item], system_prompt: str,
                     chat_template: str, stop_tokens: list[str], max_new_tokens: int) -> Answers:
    """The same prompts through llama.cpp: rendered with the run's template, greedy, stopped on its stop ids."""
    threads = 1 if oversubscribed() else None  # as for torch (see fair_threads)
    llm = llamacpp.load_llama(gguf, lora=lora, n_ctx=2048, seed=0, n_threads=threads)
    stops = set(stop_token_ids(tok, stop_tokens)) | {llm.token_eos()}
    texts, stopped, n_tokens, seconds = [], [], 0, 0.0
    for item in items:
        prompt = llamacpp.render_chat(chat_template, with_system(item.conversation, system_prompt),
                                      bos_token=tok.bos_token or "", eos_token=tok.eos_token or "")
        ids = llamacpp.tokenize_prompt(llm, prompt)
        out: list[int] = []
        hit = False
        start = time.perf_counter()
        for t in llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
            if t in stops:
                hit = True
                break
            out.append(t)
            if len(out) >= max_new_tokens:
                break
        seconds += time.perf_counter() - start
        n_tokens += len(out)
        texts.append(tok.decode(out, skip_special_tokens=True).strip())  # decoded as greedy_generate decodes
        stopped.append(hit)
    del llm
    ppl = _llamacpp_perplexity(gguf, lora, _examples(tok, items, system_prompt), threads)
    return Answers(texts, stopped, ppl, {"tokens_per_s": round(n_tokens / seconds, 1) if seconds else None})


def _llamacpp_perplexity(gguf: Path, lora: Path | None, examples: list[Example], threads: int | None) -> float | None:
    """Reference-answer perplexity from llama.cpp's logits (answer tokens only, as in training)."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), lora_path=str(lora) if lora else None, n_ctx=PPL_MAX_LENGTH + 8,
                logits_all=True, verbose=False, seed=0, n_threads=threads or os.cpu_count(),
                n_threads_batch=threads or os.cpu_count())
    total, count = 0.0, 0
    for e in examples:
        llm.reset()
        llm.eval(e.input_ids)
        logits = np.asarray(llm.scores[: len(e.input_ids)], dtype=np.float64)
        for t in range(1, len(e.input_ids)):
            if e.labels[t] == -100:
                continue
            row = logits[t - 1]
            top = row.max()
            total += float(top + math.log(np.exp(row - top).sum()) - row[e.input_ids[t]])
            count += 1
    del llm
    return _ppl(total, count)


def _ppl(total: float, count: int) -> float | None:
    return round(math.exp(min(total / count, 50)), 4) if count else None


def compare(name: str, run: Answers, other: Answers, tok: Any, items: list[Item], *, gate_match: bool) -> dict:
    """Per-export figures and whether it passes.

    Gated exports (merged, f16) follow the run's path: they must match on >= 90% of prompts and stop wherever
    the run stops. A quantized export may take another path from some token on (a near-tie in greedy
    decoding), and a different answer may be longer. It fails on a lost end-of-turn token: it wrote the
    run's whole answer and went on instead of stopping. It also fails when it stops on fewer than half of the
    prompts the run stops on. Every missed stop is listed either way.
    """
    matches, diverged, missed, same_path = 0, [], [], set()
    for k, (a, b) in enumerate(zip(run.texts, other.texts)):
        ta = tok(a, add_special_tokens=False)["input_ids"][:COMPARED_TOKENS]
        tb = tok(b, add_special_tokens=False)["input_ids"][:COMPARED_TOKENS]
        if ta == tb:
            matches += 1
            same_path.add(items[k].source)
        else:
            at = next((i for i, (x, y) in enumerate(zip(ta, tb)) if x != y), min(len(ta), len(tb)))
            diverged.append({"prompt": items[k].source, "token": at, "run": tok.decode(ta[at: at + 8]),
                             "export": tok.decode(tb[at: at + 8])})
        if run.stopped[k] and not other.stopped[k]:
            missed.append(items[k].source)
    share = matches / max(len(items), 1)
    lost = [items[k].source for k, (a, b) in enumerate(zip(run.texts, other.texts))
            if run.stopped[k] and not other.stopped[k] and b.strip().startswith(a.strip())]
    both = sum(1 for o, r in zip(other.stopped, run.stopped) if o and r)
    rarely = 2 * both < sum(run.stopped)
    passed = (not missed if gate_match else not lost and not rarely) and (share >= REQUIRED_MATCH or not gate_match)
    return {"export": name, "prompts": len(items), "match_first_32": round(share, 4),
            "required": REQUIRED_MATCH if gate_match else None, "diverged": diverged,
            "stopped": sum(other.stopped), "run_stopped": sum(run.stopped), "missed_stops": missed,
            "missed_stops_after_divergence": [m for m in missed if m not in same_path], "lost_stops": lost,
            "perplexity": other.perplexity, "run_perplexity": run.perplexity, **other.extra, "passed": passed}
