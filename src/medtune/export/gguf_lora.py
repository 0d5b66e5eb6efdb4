"""A PEFT LoRA adapter as llama.cpp's LoRA GGUF, applied by llama.cpp / Ollama to an unchanged base GGUF.

The layout is the one llama.cpp's `convert_lora_to_gguf.py` writes: `general.type=adapter`,
`adapter.type=lora`, `adapter.lora.alpha`, and per adapted weight `<gguf name>.lora_a` (rank x in, PEFT's
lora_A as is) and `<gguf name>.lora_b` (out x rank). Q/K rows are permuted like the base weights, which for
a product B @ A means permuting the rows of B only. llama.cpp scales by alpha / rank, as PEFT does; a
rank-stabilised adapter (rsLoRA, alpha / sqrt(rank)) gets the alpha that gives the same scale.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from medtune.errors import MedtuneError
from medtune.export.gguf_model import add_tensor, check_architecture, hparams, permute_rows


def read_adapter(run_dir: Path) -> tuple[dict[str, Any], dict[str, tuple[Any, Any]]]:
    """(adapter_config, {HF weight name: (lora_A, lora_B)}) of a run's PEFT adapter."""
    from safetensors.torch import load_file

    cfg = json.loads((run_dir / "adapter_config.json").read_text(encoding="utf-8"))
    if cfg.get("peft_type", "LORA") != "LORA":
        raise MedtuneError(f"{run_dir}/adapter_config.json: a {cfg.get('peft_type')} adapter, not LoRA")
    if cfg.get("rank_pattern") or cfg.get("alpha_pattern") or cfg.get("use_dora"):
        raise MedtuneError(f"{run_dir}: per-module ranks/alphas and DoRA cannot be written as a GGUF LoRA; "
                           "export --format gguf (merged) instead")
    pairs: dict[str, list[Any]] = {}
    for key, tensor in load_file(str(run_dir / "adapter_model.safetensors")).items():
        if ".lora_A." not in key and ".lora_B." not in key:
            raise MedtuneError(f"{run_dir}/adapter_model.safetensors: {key} is not a LoRA A/B weight (trained "
                               "embeddings or modules_to_save); export --format gguf (merged) instead")
        base = key.replace("base_model.model.", "", 1).replace(".lora_A.weight", ".weight")
        base = base.replace(".lora_B.weight", ".weight")
        pairs.setdefault(base, [None, None])[0 if ".lora_A." in key else 1] = tensor
    return cfg, {k: (a, b) for k, (a, b) in pairs.items()}


def write_lora(path: Path, run_dir: Path, config: Any, quant: str, name: str) -> float:
    """Write the adapter GGUF; returns the alpha recorded (llama.cpp scale = alpha / rank)."""
    import gguf

    check_architecture(config)
    cfg, pairs = read_adapter(run_dir)
    rank = int(cfg["r"])
    alpha = float(cfg["lora_alpha"]) * (math.sqrt(rank) if cfg.get("use_rslora") else 1.0)
    h = hparams(config)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_name(name)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    for hf_name, (a, b) in sorted(pairs.items()):
        if a is None or b is None:
            raise MedtuneError(f"{run_dir}: the adapter has only one of lora_A/lora_B for {hf_name}")
        new = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise MedtuneError(f"GGUF LoRA export: no llama.cpp name for {hf_name} (lm_head or embeddings "
                               "adapters are not supported by llama.cpp's LoRA loader)")
        a_np, b_np = a.float().numpy(), b.float().numpy()
        if hf_name.endswith("q_proj.weight"):
            b_np = permute_rows(b_np, h["n_head"])
        elif hf_name.endswith("k_proj.weight"):
            b_np = permute_rows(b_np, h["n_kv"])
        for suffix, arr in ((".lora_a", a_np), (".lora_b", b_np)):
            qtype = gguf.GGMLQuantizationType.F16
            if quant == "q8_0" and arr.shape[-1] % 32 == 0:
                qtype = gguf.GGMLQuantizationType.Q8_0
            add_tensor(writer, new + suffix, arr, qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return alpha
