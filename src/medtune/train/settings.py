"""What a run will actually do on this machine, resolved once from the config before any work starts.

The same config trains on a laptop CPU and on a GPU: `precision: auto` becomes bf16 autocast where the
device has it, and `model.quantize: 4bit` becomes QLoRA on CUDA (4-bit NF4 base weights with double
quantisation through bitsandbytes, bf16 compute, paged 8-bit AdamW, gradient checkpointing). QLoRA asked
for without CUDA, or without the `medtune[qlora]` extra, is refused here, before data or model work.
bitsandbytes itself is imported only when its optimizer is built.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from typing import Any

import torch

from medtune.config import Config
from medtune.errors import MedtuneError
from medtune.hardware import cpu_supports_bf16


@dataclass(frozen=True)
class Settings:
    device: str  # cpu | cuda
    precision: str  # bf16 | fp16 | fp32 (autocast)
    load_dtype: str  # dtype of the frozen base weights at load: float32 | bfloat16 | float16
    quantize: str  # none | 4bit | 8bit
    quantization: dict[str, Any] | None  # bitsandbytes settings of the base weights (QLoRA)
    optimizer: str  # adamw | paged_adamw_8bit
    gradient_checkpointing: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def device_type() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_precision(precision: str, device: str) -> str:
    if precision != "auto":
        return precision
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_supports_bf16() else "fp32"


def resolve_settings(cfg: Config) -> Settings:
    device = device_type()
    precision = resolve_precision(cfg.train.precision, device)
    quantize = cfg.model.quantize
    if quantize == "none":
        # frozen weights are kept in bf16 under bf16 autocast anyway (recipe.frozen_weights_to): load them so
        load_dtype = "bfloat16" if precision == "bf16" else cfg.model.dtype
        return Settings(device, precision, load_dtype, quantize, None, "adamw", cfg.train.gradient_checkpointing)
    if device != "cuda":
        raise MedtuneError(f"model.quantize={quantize} (QLoRA) needs a CUDA GPU; use model.quantize=none on CPU")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise MedtuneError("QLoRA needs bitsandbytes: pip install 'medtune[qlora]'")
    if precision == "fp32":
        precision = resolve_precision("auto", device)  # 4-bit weights compute in half precision
    compute = "bfloat16" if precision == "bf16" else "float16"
    quantization = ({"load_in_8bit": True} if quantize == "8bit" else
                    {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
                     "bnb_4bit_compute_dtype": compute})
    return Settings(device, precision, compute, quantize, quantization, "paged_adamw_8bit", True)


def make_optimizer(settings: Settings, params: list[torch.nn.Parameter], lr: float, weight_decay: float) -> Any:
    """torch AdamW, or bitsandbytes' paged 8-bit AdamW for QLoRA (its states page to CPU under pressure)."""
    if settings.optimizer == "paged_adamw_8bit":
        import bitsandbytes as bnb

        return bnb.optim.PagedAdamW8bit(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
