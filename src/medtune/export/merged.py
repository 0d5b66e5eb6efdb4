"""Merged weights: the LoRA adapter folded into the base, saved as a plain transformers folder.

The folder loads with `AutoModelForCausalLM.from_pretrained(folder)` (and so with vLLM or TGI) and carries
what serving needs to answer like the run: the run's tokenizer and chat template, a generation config
whose eos_token_id lists every end-of-turn id (SmolLM2's `<|im_end|>`, Llama 3's `<|eot_id|>`), and a
model card that says where it came from and that the safety guard is not inside the weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from medtune.model.generate import stop_token_ids
from medtune.model.load import RunProvenance

DTYPES = {"f32": torch.float32, "f16": torch.float16}


def save_merged(merged: Any, tok: Any, prov: RunProvenance, folder: Path, quant: str, base_name: str) -> None:
    """save_pretrained of the merged model (safetensors) + tokenizer, template, generation config, card."""
    from transformers import GenerationConfig

    merged = merged.to(DTYPES[quant])
    merged.config.eos_token_id = stop_token_ids(tok, prov.stop_tokens)
    merged.generation_config = GenerationConfig(eos_token_id=stop_token_ids(tok, prov.stop_tokens),
                                                pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                                                do_sample=False)
    merged.save_pretrained(folder, safe_serialization=True)
    if prov.chat_template:
        tok.chat_template = prov.chat_template
    tok.save_pretrained(folder)
    if prov.chat_template:
        (folder / "chat_template.jinja").write_text(prov.chat_template, encoding="utf-8")
    (folder / "README.md").write_text(model_card(prov, base_name, quant), encoding="utf-8")


def model_card(prov: RunProvenance, base_name: str, quant: str) -> str:
    stops = ", ".join(f"`{s}`" for s in prov.stop_tokens) or "the tokenizer's EOS"
    return f"""---
base_model: {base_name}
library_name: transformers
tags: [medtune, medical, lora-merged]
---

# {prov.run_dir.name} (merged, {quant})

The LoRA fine-tune `{prov.run_dir.name}` merged into its base model `{base_name}` by `medtune export`.
Load it with `AutoModelForCausalLM.from_pretrained(this_folder)`. Prompts use the run's chat template
(`chat_template.jinja`, also in `tokenizer_config.json`) and this system prompt:

> {prov.system_prompt}

Turns end on {stops} (listed in `generation_config.json`).

**The safety guard is not inside the weights.** Serve it behind medtune's input and output guard with
`medtune serve --model <this folder>`. For education and research; not a medical device: do not use it
to diagnose, treat, or choose doses for anyone.
"""
