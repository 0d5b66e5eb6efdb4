"""Write a llama-family model as a GGUF file with the `gguf` package (no llama.cpp checkout, no compiler).

llama-cpp-python does not install llama.cpp's `convert_hf_to_gguf.py`, so this module does what that
script does for LlamaForCausalLM / MistralForCausalLM: hyperparameters under `llama.*`, tensor names
from `gguf.TensorNameMap`, Q/K rows permuted to llama.cpp's rotary layout, the tokenizer (copied from
the base GGUF when the run started from one, else built from the run's tokenizer: GPT-2-style byte-level
BPE, or SentencePiece through `gguf.vocab.LlamaHfVocab`), the run's chat template and its end-of-turn
token. f16 and q8_0 are written here (gguf's own Q8_0 quantizer); q4_k_m is made from the f16 file by
llama.cpp's quantizer as llama-cpp-python exposes it (gguf cannot make k-quants).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from medtune.errors import MedtuneError

ARCHITECTURES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "llama"}
SUPPORTED = "LlamaForCausalLM (SmolLM2, TinyLlama, Llama 2/3) and MistralForCausalLM"
QUANTS = ("f16", "q8_0", "q4_k_m")


def check_architecture(config: Any) -> None:
    arch = (getattr(config, "architectures", None) or [type(config).__name__])[0]
    if arch not in ARCHITECTURES:
        raise MedtuneError(f"GGUF export does not support the architecture {arch}; supported: {SUPPORTED} "
                           "(`--format merged` works for any architecture)")


def permute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF's rotary layout -> llama.cpp's (convert_hf_to_gguf.py's LlamaModel.permute), on the output rows."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hparams(config: Any) -> dict[str, Any]:
    """The numbers llama.cpp needs, from a transformers LlamaConfig / MistralConfig."""
    n_head = config.num_attention_heads
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    theta = getattr(config, "rope_theta", None) or rope.get("rope_theta") or 10000.0
    return {"n_head": n_head, "n_kv": getattr(config, "num_key_value_heads", None) or n_head,
            "head_dim": getattr(config, "head_dim", None) or config.hidden_size // n_head,
            "theta": float(theta), "rope": rope, "tied": bool(getattr(config, "tie_word_embeddings", False))}


def _tensor_type(name: str, arr: np.ndarray, quant: str) -> Any:
    import gguf

    if arr.ndim == 1 or name.endswith("_norm.weight"):
        return gguf.GGMLQuantizationType.F32
    if quant == "q8_0" and arr.shape[-1] % 32 == 0:
        return gguf.GGMLQuantizationType.Q8_0
    return gguf.GGMLQuantizationType.F16


def add_tensor(writer: Any, name: str, arr: np.ndarray, qtype: Any) -> None:
    import gguf

    if qtype == gguf.GGMLQuantizationType.F32:
        writer.add_tensor(name, arr.astype(np.float32))
    elif qtype == gguf.GGMLQuantizationType.F16:
        writer.add_tensor(name, arr.astype(np.float16))
    else:
        writer.add_tensor(name, gguf.quants.quantize(arr.astype(np.float32), qtype), raw_dtype=qtype)


def _llama3_rope_freqs(h: dict[str, Any]) -> np.ndarray | None:
    """Llama 3.1's rope scaling as llama.cpp's `rope_freqs` tensor (as convert_hf_to_gguf.py computes it)."""
    rope = h["rope"]
    if rope.get("rope_type") != "llama3":
        return None
    base, dim = h["theta"], h["head_dim"]
    factor, low, high = rope.get("factor", 8.0), rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old_ctx = rope.get("original_max_position_embeddings", 8192)
    freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    low_wl, high_wl = old_ctx / low, old_ctx / high
    factors = []
    for f in freqs:
        wavelen = 2 * math.pi / f
        if wavelen < high_wl:
            factors.append(1.0)
        elif wavelen > low_wl:
            factors.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


def write_model(path: Path, state: dict[str, Any], config: Any, tokenizer_meta: Any, quant: str, name: str,
                extra: dict[str, Any]) -> None:
    """A GGUF file of `state` (HF tensor names -> torch tensors) at f16 or q8_0.

    `tokenizer_meta(writer)` adds the tokenizer.* keys; `extra` adds string/int keys (e.g. medtune.*).
    """
    import gguf

    check_architecture(config)
    if quant not in ("f16", "q8_0"):
        raise MedtuneError(f"write_model writes f16 or q8_0, not {quant}")
    h = hparams(config)
    n_layers = config.num_hidden_layers
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(h["n_head"])
    writer.add_head_count_kv(h["n_kv"])
    writer.add_rope_dimension_count(h["head_dim"])
    if h["head_dim"] != config.hidden_size // h["n_head"]:
        writer.add_key_length(h["head_dim"])
        writer.add_value_length(h["head_dim"])
    writer.add_rope_freq_base(h["theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if quant == "f16" else gguf.LlamaFileType.MOSTLY_Q8_0)
    tokenizer_meta(writer)
    for key, value in extra.items():
        if isinstance(value, list):
            writer.add_array(key, value)
        else:
            writer.add_string(key, str(value))
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers)
    freqs = _llama3_rope_freqs(h)
    if freqs is not None:
        writer.add_tensor(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", freqs)
    for hf_name, tensor in state.items():
        if hf_name.endswith("rotary_emb.inv_freq") or (h["tied"] and hf_name == "lm_head.weight"):
            continue
        arr = tensor.detach().float().cpu().numpy()
        if hf_name.endswith("q_proj.weight"):
            arr = permute_rows(arr, h["n_head"])
        elif hf_name.endswith("k_proj.weight"):
            arr = permute_rows(arr, h["n_kv"])
        new = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise MedtuneError(f"GGUF export: no llama.cpp name for the tensor {hf_name}")
        add_tensor(writer, new, arr, _tensor_type(new, arr, quant))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def quantize_k(src: Path, dst: Path, quant: str) -> None:
    """q4_k_m from an f16 GGUF with llama.cpp's own quantizer (llama_model_quantize)."""
    import llama_cpp

    ftypes = {"q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M}
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftypes[quant]
    params.nthread = 0
    if llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params) != 0:
        raise MedtuneError(f"llama.cpp could not quantize {src.name} to {quant}")


def tensor_types(path: Path) -> dict[str, int]:
    """How many tensors of each type the file really holds (read back with gguf.GGUFReader)."""
    import gguf

    return dict(Counter(t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors))


# --- tokenizer metadata -------------------------------------------------------------------------------

_OURS = ("tokenizer.chat_template", "tokenizer.ggml.eot_token_id")  # written from the run's provenance


def _special(tok_dir: Path, vocab_size: int, merges: bool) -> Any:
    import gguf

    special = gguf.SpecialVocab(tok_dir, load_merges=merges, n_vocab=vocab_size)
    special.chat_template = None  # the run's template is added by turn_metadata
    return special


def copy_tokenizer(base_gguf: Path) -> Any:
    """tokenizer.* keys of the base GGUF (the run trained on exactly this vocabulary), except the template."""
    import gguf

    reader = gguf.GGUFReader(str(base_gguf))
    fields = [f for f in reader.fields.values()
              if f.name.startswith("tokenizer.") and f.name not in _OURS]

    def add(writer: Any) -> None:
        for f in fields:
            sub = f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(f.name, f.contents(), f.types[0], sub_type=sub)
    return add


# pre-tokenizer regexes of tokenizer.json -> llama.cpp's pre-tokenizer names
_PRE = {
    "gpt-2": [{"type": "ByteLevel"}],
    "smollm": [{"type": "Digits"}, {"type": "ByteLevel"}],
}
_LLAMA3_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"


def _bpe_pre(tokenizer_json: dict[str, Any]) -> str:
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and not steps[1].get("use_regex", True):
        return "smollm"
    if kinds and kinds[0] == "Split" and str(steps[0].get("pattern", {}).get("Regex", "")).startswith(_LLAMA3_REGEX):
        return "llama-bpe"
    raise MedtuneError(f"GGUF export: unknown BPE pre-tokenizer {kinds} (known: GPT-2, SmolLM, Llama 3)")


def build_tokenizer(tok: Any, tok_dir: Path, vocab_size: int) -> Any:
    """tokenizer.* keys from an HF tokenizer folder: byte-level BPE, or SentencePiece (tokenizer.model)."""
    import gguf

    tj_path = tok_dir / "tokenizer.json"
    tj = json.loads(tj_path.read_text(encoding="utf-8")) if tj_path.exists() else {}
    model_type = tj.get("model", {}).get("type")
    if model_type == "BPE" and (tj.get("decoder") or {}).get("type") == "ByteLevel":
        pre = _bpe_pre(tj)
        reverse = {i: t for t, i in tok.get_vocab().items()}
        added = tok.added_tokens_decoder
        tokens, types = [], []
        for i in range(vocab_size):
            if i not in reverse:
                tokens.append(f"[PAD{i}]")
                types.append(gguf.TokenType.UNUSED)
            elif i in added:
                tokens.append(reverse[i])
                types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
            else:
                tokens.append(reverse[i])
                types.append(gguf.TokenType.NORMAL)

        def add(writer: Any) -> None:
            writer.add_tokenizer_model("gpt2")
            writer.add_tokenizer_pre(pre)
            writer.add_token_list(tokens)
            writer.add_token_types(types)
            _special(tok_dir, vocab_size, True).add_to_gguf(writer, quiet=True)
        return add
    if (tok_dir / "tokenizer.model").exists() or model_type == "BPE":
        try:
            vocab = gguf.vocab.LlamaHfVocab(tok_dir)
        except (FileNotFoundError, TypeError, ValueError) as e:
            raise MedtuneError(f"GGUF export: cannot read the SentencePiece tokenizer in {tok_dir} ({e})") from None
        toks, scores, types = zip(*vocab.all_tokens())

        def add_sp(writer: Any) -> None:
            writer.add_tokenizer_model("llama")
            writer.add_tokenizer_pre("default")
            writer.add_token_list(list(toks))
            writer.add_token_scores(list(scores))
            writer.add_token_types(list(types))
            _special(tok_dir, vocab_size, False).add_to_gguf(writer, quiet=True)
        return add_sp
    raise MedtuneError(f"GGUF export: the tokenizer in {tok_dir} is neither byte-level BPE nor SentencePiece")


def turn_metadata(base_meta: Any, chat_template: str, eot_id: int | None) -> Any:
    """tokenizer.* plus the run's chat template, EOS and end-of-turn ids (llama.cpp stops on EOS/EOT)."""
    def add(writer: Any) -> None:
        base_meta(writer)
        writer.add_chat_template(chat_template)
        if eot_id is not None:
            writer.add_eot_token_id(eot_id)
    return add
