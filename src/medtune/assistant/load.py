"""Build an Assistant from a model spec, reading everything a run knows from its folder.

Specs: `default` (the embedded SmolLM2 GGUF), a `.gguf` file, a run folder (base + LoRA adapter, with the
run's tokenizer, chat template, system prompt and stop tokens), an export folder (`export.json` beside
a merged model or a GGUF), a local HF folder or a hub id. On a CPU the default engine is llama.cpp
wherever there is a GGUF to run. A run folder uses its cached GGUF export; without one, `auto` makes a
GGUF LoRA export once (`RUN/export/gguf-lora-f16/`: seconds for the embedded model, whose base already is a
GGUF) and caches it; transformers runs whatever llama.cpp cannot (non-llama architectures).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from medtune.assistant.core import Assistant
from medtune.assistant.engines import Engine, GenParams, LlamaCppEngine, TransformersEngine, UpstreamEngine
from medtune.config import DEFAULT_SYSTEM_PROMPT, ModelConfig
from medtune.errors import MedtuneError
from medtune.export import export_run
from medtune.model import llamacpp
from medtune.model.load import (
    CHATML_TEMPLATE,
    DEFAULT_GGUF,
    default_model_dir,
    is_run,
    load_for_inference,
    read_run,
)
from medtune.safety.policy import Contacts

log = logging.getLogger("medtune.assistant")
ENGINES = ("auto", "transformers", "llama.cpp")


@dataclass
class Target:
    """What an engine needs to load, resolved from a spec."""

    model_id: str
    system_prompt: str
    stop_tokens: list[str]
    chat_template: str | None
    gguf: Path | None = None  # a GGUF llama.cpp can run (base or merged export)
    gguf_lora: Path | None = None  # a GGUF LoRA adapter on top of it
    hf_spec: str | None = None  # what transformers loads (run folder, HF folder, hub id, .gguf)


def model_id(spec: str) -> str:
    """The name clients use for the model: `default`, or the folder/file name."""
    if spec == "default":
        return "default"
    path = Path(spec)
    return path.stem if path.suffix == ".gguf" else (path.name or spec)


def resolve_target(spec: str) -> Target:
    ident = model_id(spec)
    if spec == "default":
        return Target(ident, DEFAULT_SYSTEM_PROMPT, [], None, gguf=default_model_dir() / DEFAULT_GGUF, hf_spec=spec)
    path = Path(spec)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise MedtuneError(f"--model {spec}: GGUF file not found")
        return Target(ident, DEFAULT_SYSTEM_PROMPT, [], None, gguf=path, hf_spec=spec)
    if (path / "export.json").is_file():
        return _export_target(path, ident)
    if is_run(path):
        prov = read_run(path)
        target = Target(ident, prov.system_prompt, prov.stop_tokens, prov.chat_template, hf_spec=spec)
        cached = _cached_gguf(path)
        if cached is not None:
            target.gguf, target.gguf_lora = cached
        return target
    if path.is_dir() and not (path / "config.json").exists():
        raise MedtuneError(f"--model {spec}: not a run folder (no adapter_config.json + config.yaml), an export "
                           "folder (no export.json) or a model folder (no config.json)")
    return Target(ident, DEFAULT_SYSTEM_PROMPT, [], None, hf_spec=spec)


def _export_target(folder: Path, ident: str) -> Target:
    info = json.loads((folder / "export.json").read_text(encoding="utf-8"))
    prov = info.get("provenance", {})
    target = Target(ident, prov.get("system_prompt") or DEFAULT_SYSTEM_PROMPT, list(prov.get("stop_tokens") or []),
                    prov.get("chat_template"))
    ggufs = sorted(folder.glob("*.gguf"))
    lora = [g for g in ggufs if "lora" in g.name.lower()]
    full = [g for g in ggufs if g not in lora]
    if full:
        target.gguf = full[0]
        target.gguf_lora = lora[0] if lora else None
    elif lora and info.get("base_gguf"):
        target.gguf, target.gguf_lora = Path(info["base_gguf"]), lora[0]
    if (folder / "config.json").exists():
        target.hf_spec = str(folder)
    if target.gguf is None and target.hf_spec is None:
        raise MedtuneError(f"{folder}/export.json: no GGUF and no model weights in this export folder")
    return target


def _cached_gguf(run_dir: Path) -> tuple[Path, Path | None] | None:
    """A GGUF export of this run made earlier (`medtune export`), newest first: full model, else base + LoRA.
    Exports that failed their parity check (`*.parity-failed`), unfinished ones (`.NAME.partial-PID`) and
    any whose export.json records a failed parity result are never served."""
    exports = sorted((run_dir / "export").glob("*/export.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for info_path in exports:
        folder = info_path.parent.name
        if folder.startswith(".") or folder.endswith(".parity-failed") or not _parity_passed(info_path):
            continue
        try:
            t = _export_target(info_path.parent, run_dir.name)
        except (MedtuneError, ValueError, OSError):
            continue
        if t.gguf is not None and t.gguf.is_file():
            return t.gguf, t.gguf_lora
    return None


def _parity_passed(info_path: Path) -> bool:
    try:
        results = json.loads(info_path.read_text(encoding="utf-8")).get("parity", {}).get("results", [])
    except (OSError, ValueError, AttributeError):
        return False
    return all(isinstance(r, dict) and r.get("passed", False) for r in results)


def cache_gguf_lora(run_dir: Path, target: Target) -> None:
    """Make the run's GGUF LoRA export once, so llama.cpp serves it (fills target.gguf/gguf_lora). Without its
    parity check: the check takes minutes and `medtune export` runs it; a failure leaves transformers."""
    out = run_dir / "export" / "gguf-lora-f16"
    if out.exists():
        return  # there but not usable (failed, or other files): leave it to the user
    log.info("making the run's GGUF LoRA export once for llama.cpp: %s", out)
    try:
        result = export_run(run_dir, "gguf-lora", "f16", out, check_parity=False)
    except MedtuneError as e:
        log.warning("no GGUF for llama.cpp (%s); answering with transformers", e)
        return
    cached = _cached_gguf(run_dir)
    if cached is not None and result.passed:
        target.gguf, target.gguf_lora = cached


def pick_engine(target: Target, engine: str) -> str:
    if engine not in ENGINES:
        raise MedtuneError(f"--engine {engine}: choose one of {', '.join(ENGINES)}")
    if engine == "auto":
        return "llama.cpp" if target.gguf is not None and llamacpp.available() else "transformers"
    if engine == "llama.cpp" and target.gguf is None:
        raise MedtuneError(f"--engine llama.cpp: no GGUF for '{target.model_id}'; export one with `medtune export "
                           "--run RUN --format gguf`, or use --engine transformers")
    if engine == "transformers" and target.hf_spec is None:
        raise MedtuneError(f"--engine transformers: '{target.model_id}' is a GGUF-only export; use --engine llama.cpp")
    return engine


def build_engine(target: Target, engine: str, *, n_ctx: int = 4096) -> Engine:
    if engine == "llama.cpp":
        assert target.gguf is not None
        llm = llamacpp.load_llama(target.gguf, lora=target.gguf_lora, n_ctx=n_ctx)
        template = target.chat_template or llamacpp.gguf_metadata(llm).get("tokenizer.chat_template") or CHATML_TEMPLATE
        stops = target.stop_tokens or [llamacpp.token_text(llm, llm.token_eos())]
        return LlamaCppEngine(llm, template, stops)
    assert target.hf_spec is not None
    model, tok, _ = load_for_inference(target.hf_spec, ModelConfig(name=target.hf_spec))
    return TransformersEngine(model, tok, target.stop_tokens)


def load_assistant(spec: str, engine: str = "auto", *, defaults: GenParams | None = None,
                   contacts: Contacts | None = None, n_ctx: int = 4096, upstream: str | None = None,
                   upstream_key: str | None = None, upstream_concurrency: int = 8,
                   upstream_timeout: float = 120.0) -> Assistant:
    """The guarded assistant for a model spec (see the module docstring). With `upstream` (an OpenAI-compatible
    base URL) generation happens there: `spec` is the model name the upstream serves, or a run/export folder
    whose name it serves (its system prompt is then the run's)."""
    if upstream:
        # a run or export folder gives its system prompt, and its name is the model the upstream serves
        target = resolve_target(spec) if Path(spec).exists() else Target(spec, DEFAULT_SYSTEM_PROMPT, [], None)
        up = UpstreamEngine(upstream, target.model_id, api_key=upstream_key, context_length=n_ctx,
                            concurrency=upstream_concurrency, timeout=upstream_timeout)
        up.check()
        built: Engine = up
    else:
        target = resolve_target(spec)
        if engine == "auto" and target.gguf is None and is_run(Path(spec)) and llamacpp.available():
            cache_gguf_lora(Path(spec), target)
        chosen = pick_engine(target, engine)
        log.info("model %s on %s", target.model_id, chosen)
        built = build_engine(target, chosen, n_ctx=n_ctx)
    assistant = Assistant(built, system_prompt=target.system_prompt, contacts=contacts, model_id=target.model_id,
                          defaults=defaults)
    assistant.guard.check("warm-up")  # load the encoder now, not on the first user's message (~4 s)
    return assistant
