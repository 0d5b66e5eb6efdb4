"""`medtune export`: a run folder -> merged weights, GGUF, GGUF LoRA or an Ollama folder, checked for parity.

Run as: medtune export --run runs/NAME --format gguf --quant q8_0

Top to bottom: read the run's provenance -> check format, architecture, template and output folder before
any heavy work -> load the run (base + adapter) and take its greedy answers -> write the export into a
hidden temporary folder -> answer the same prompts with the export and compare -> write export.json
(files and SHA-256, parity, tensor types, provenance) -> rename to the final folder. Nothing appears under
the final name unless it is complete and passed its parity check (or `--no-parity` skipped it; a failed one is kept as
`<out>.parity-failed/` for inspection, so serving never picks it up as its cache).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medtune import atomic
from medtune.errors import MedtuneError
from medtune.export import gguf_lora, gguf_model, ollama, parity
from medtune.export.merged import save_merged
from medtune.model.generate import stop_token_ids
from medtune.model.load import (
    DEFAULT_GGUF,
    ModelSource,
    RunProvenance,
    dequantized_folder,
    load_base,
    load_run_tokenizer,
    read_run,
    resolve,
)

log = logging.getLogger("medtune.export")
FORMATS = ("merged", "gguf", "gguf-lora", "ollama")
QUANTS = {"merged": ("f32", "f16"), "gguf": gguf_model.QUANTS, "gguf-lora": ("f16", "q8_0"),
          "ollama": gguf_model.QUANTS}
DEFAULT_QUANT = {"merged": "f32", "gguf": "q8_0", "gguf-lora": "f16", "ollama": "q8_0"}


@dataclass
class ExportResult:
    folder: Path
    info: dict[str, Any]
    passed: bool


@dataclass
class _Job:
    prov: RunProvenance
    src: ModelSource
    config: Any
    fmt: str
    quant: str
    tmp: Path
    final: Path
    base_gguf: Path | None  # the run's base as a GGUF file (the embedded model), else None


def default_out(run_dir: Path, fmt: str, quant: str) -> Path:
    return run_dir / "export" / f"{fmt}-{quant}"


def export_run(run_dir: str | Path, fmt: str, quant: str | None = None, out: str | Path | None = None, *,
               check_parity: bool = True, force: bool = False, lora: bool = False, parity_limit: int | None = None,
               max_new_tokens: int = parity.MAX_NEW_TOKENS) -> ExportResult:
    """Export a run (see the module docstring); `lora` makes an Ollama folder of base + ADAPTER."""
    started = time.perf_counter()
    job = _prepare(Path(run_dir), fmt, quant, out, force, lora)
    family, go_template = ("", "")
    tok = load_run_tokenizer(job.prov)
    if fmt == "ollama":
        family, go_template = ollama.convert_template(job.prov.chat_template or tok.chat_template,
                                                      job.prov.system_prompt, tok.bos_token or "", tok.eos_token or "")
    shutil.rmtree(job.tmp, ignore_errors=True)
    job.tmp.mkdir(parents=True)
    try:
        info = _write_and_check(job, tok, go_template, family, check_parity, lora, parity_limit, max_new_tokens)
        info["seconds"] = round(time.perf_counter() - started, 1)
        info["files"] = {p.name: _sha256(p) for p in sorted(job.tmp.iterdir()) if p.is_file()}
        (job.tmp / "export.json").write_text(json.dumps(info, indent=2, ensure_ascii=False), encoding="utf-8")
        passed = all(r["passed"] for r in info["parity"].get("results", []))
        final = job.final if passed else job.final.with_name(job.final.name + ".parity-failed")
        atomic.publish(job.tmp, final)  # a folder already there is swapped out in one step, then removed
    except OSError as e:
        shutil.rmtree(job.tmp, ignore_errors=True)
        raise MedtuneError(f"could not write the export to {job.final}: {e.strerror or e} "
                           "(nothing was written under that name)") from None
    except BaseException:
        shutil.rmtree(job.tmp, ignore_errors=True)
        raise
    if passed:  # an earlier failed attempt is obsolete now
        shutil.rmtree(job.final.with_name(job.final.name + ".parity-failed"), ignore_errors=True)
    return ExportResult(final, info, passed)


def _prepare(run_dir: Path, fmt: str, quant: str | None, out: str | Path | None, force: bool,
             lora: bool = False) -> _Job:
    """Every check that needs no model weights: run folder, adapter, format, quant, architecture, output."""
    if fmt not in FORMATS:
        raise MedtuneError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    if lora and fmt != "ollama":
        raise MedtuneError(f"--lora applies to --format ollama only (for the adapter alone use --format gguf-lora, "
                           f"not --format {fmt} --lora)")
    if lora and quant not in (None, "f16"):
        raise MedtuneError(f"--format ollama --lora writes an f16 adapter next to the unchanged base; "
                           f"--quant {quant} does not apply")
    quant = "f16" if lora else quant or DEFAULT_QUANT[fmt]
    if quant not in QUANTS[fmt]:
        raise MedtuneError(f"--quant {quant} does not apply to --format {fmt} (choose {', '.join(QUANTS[fmt])})")
    if not run_dir.is_dir():
        raise MedtuneError(f"--run {run_dir}: no such folder")
    if not (run_dir / "config.yaml").exists():
        raise MedtuneError(f"--run {run_dir}: not a medtune run folder (no config.yaml)")
    if not (run_dir / "adapter_config.json").exists() or not (run_dir / "adapter_model.safetensors").exists():
        raise MedtuneError(f"--run {run_dir}: no LoRA adapter (adapter_config.json + adapter_model.safetensors); "
                           "has its training finished? (`medtune train --output DIR --resume` completes it)")
    prov = read_run(run_dir)
    src = resolve(prov.base.name, prov.base.gguf_file)
    if src.kind == "hub":
        raise MedtuneError(f"--run {run_dir}: its base model {src.spec} is a hub id; export needs it as a local "
                           "folder or in the Hugging Face cache")
    base_gguf = Path(src.path) / src.gguf_file if src.gguf_file else None
    plain = dequantized_folder(src) if base_gguf else Path(src.path)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(plain)
    if fmt != "merged":
        gguf_model.check_architecture(config)
    final = Path(out) if out else default_out(run_dir, "ollama-lora" if lora else fmt, quant)
    if final.exists() and (not final.is_dir() or any(final.iterdir())) and not force:
        raise MedtuneError(f"--out {final} already exists and is not empty; pass --force to replace it")
    if final.exists() and not final.is_dir():
        raise MedtuneError(f"--out {final} is a file, not a folder")
    tmp = final.with_name(f".{final.name}.partial-{os.getpid()}")
    return _Job(prov, src, config, fmt, quant, tmp, final, base_gguf)


def _load_run(job: _Job) -> Any:
    """The run as trained: base (fp32) + PEFT adapter, eval mode."""
    from peft import PeftModel

    base = load_base(job.src, dataclasses.replace(job.prov.base, dtype="float32"))
    return PeftModel.from_pretrained(base, str(job.prov.run_dir)).eval()


def _write_and_check(job: _Job, tok: Any, go_template: str, family: str, check_parity: bool, lora: bool,
                     limit: int | None, max_new: int) -> dict[str, Any]:
    prov, tmp, quant = job.prov, job.tmp, job.quant
    items = parity.parity_items(prov.run_dir, limit) if check_parity else []
    model = _load_run(job)
    run_ans = None
    if items:
        log.info("parity: the run answers %d prompts (greedy, <= %d tokens)", len(items), max_new)
        key = [[(i.conversation, i.reference) for i in items], prov.system_prompt, prov.stop_tokens, max_new,
               prov.chat_template]
        run_ans = parity.cached_run_answers(prov.run_dir, key, lambda: parity.transformers_answers(
            model, tok, items, prov.system_prompt, prov.stop_tokens, max_new))
    info: dict[str, Any] = {"format": job.fmt, "quant": quant, "source_run": str(prov.run_dir.resolve()),
                            "starts_from": _starts_from(job), "tensor_types": {}}
    checks: list[tuple[str, Path | None, Path | None, bool]] = []  # (name, gguf, lora, gate the match share)
    template = prov.chat_template or tok.chat_template
    started = time.perf_counter()
    if job.fmt == "merged":
        save_merged(model.merge_and_unload(), tok, prov, tmp, quant, job.src.name)
    elif job.fmt == "gguf" or (job.fmt == "ollama" and not lora):
        path = _write_full_gguf(job, model.merge_and_unload(), tok, template)
        info["tensor_types"][path.name] = gguf_model.tensor_types(path)
        checks.append((f"{job.fmt}-{quant}", path, None, quant == "f16"))
    else:
        adapter = tmp / f"adapter-lora-{'f16' if job.fmt == 'ollama' else quant}.gguf"
        gguf_lora.write_lora(adapter, prov.run_dir, job.config, "f16" if job.fmt == "ollama" else quant,
                             f"{prov.run_dir.name} LoRA")
        base = _base_gguf(job, model, tok, template, copy=job.fmt == "ollama")
        info["base_gguf"] = str(base if job.base_gguf and job.fmt != "ollama" else job.final / base.name)
        info["tensor_types"][adapter.name] = gguf_model.tensor_types(adapter)
        info["tensor_types"][base.name] = gguf_model.tensor_types(base)
        checks.append((f"{job.fmt}-{quant}" if job.fmt == "gguf-lora" else "ollama-lora", base, adapter, False))
    if job.fmt == "ollama":
        gguf_name, adapter_name = (checks[0][1].name, checks[0][2].name if checks[0][2] else None)
        stops = prov.stop_tokens or [tok.eos_token]
        (tmp / "Modelfile").write_text(ollama.modelfile(gguf_name, adapter_name, go_template, prov.system_prompt,
                                                        stops, prov.run_dir.name), encoding="utf-8")
        info["ollama_template"] = family
    if job.fmt != "merged":
        (tmp / "README.md").write_text(ollama.readme(prov.run_dir.name, job.fmt, family, job.final),
                                       encoding="utf-8")
    info["write_seconds"] = round(time.perf_counter() - started, 1)
    info["provenance"] = {"system_prompt": prov.system_prompt, "stop_tokens": prov.stop_tokens,
                          "chat_template": template, "base_model": job.src.name}
    info["parity"] = _parity(job, run_ans, items, tok, template, checks, max_new) if items else {"skipped": True}
    return info


def _parity(job: _Job, run_ans: Any, items: list[parity.Item], tok: Any, template: str,
            checks: list[tuple[str, Path | None, Path | None, bool]], max_new: int) -> dict[str, Any]:
    prov = job.prov
    results = []
    if job.fmt == "merged":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        merged = AutoModelForCausalLM.from_pretrained(job.tmp, dtype=parity_dtype(job.quant))
        mtok = AutoTokenizer.from_pretrained(job.tmp)
        ans = parity.transformers_answers(merged, mtok, items, prov.system_prompt, prov.stop_tokens, max_new)
        results.append(parity.compare(f"merged-{job.quant}", run_ans, ans, tok, items, gate_match=True))
    for name, path, lora, gate in checks:
        log.info("parity: %s answers through llama.cpp", name)
        ans = parity.llamacpp_answers(path, lora, tok, items, prov.system_prompt, template, prov.stop_tokens, max_new)
        results.append(parity.compare(name, run_ans, ans, tok, items, gate_match=gate))
    return {"prompts": len(items), "max_new_tokens": max_new, "compared_tokens": parity.COMPARED_TOKENS,
            "run_perplexity": run_ans.perplexity, "run_stopped": sum(run_ans.stopped), "results": results}


def parity_dtype(quant: str) -> Any:
    import torch

    return torch.float16 if quant == "f16" else torch.float32


def _gguf_meta(job: _Job, tok: Any, template: str) -> Any:
    """tokenizer.* for a GGUF: the base GGUF's own vocabulary when there is one, else the run's tokenizer."""
    if job.base_gguf:
        base = gguf_model.copy_tokenizer(job.base_gguf)
    else:
        tok_dir = job.prov.tokenizer_dir or Path(job.src.path)
        base = gguf_model.build_tokenizer(tok, tok_dir, job.config.vocab_size)
    ids = stop_token_ids(tok, job.prov.stop_tokens)
    eot = next((i for i in ids if i != tok.eos_token_id), tok.eos_token_id)
    return gguf_model.turn_metadata(base, template, eot)


def _extra(job: _Job) -> dict[str, Any]:
    return {"medtune.source_run": job.prov.run_dir.name, "medtune.system_prompt": job.prov.system_prompt,
            "medtune.stop_tokens": list(job.prov.stop_tokens)}


def _write_full_gguf(job: _Job, model: Any, tok: Any, template: str) -> Path:
    """model-<quant>.gguf of `model`'s weights (q4_k_m: llama.cpp's quantizer on an f16 file)."""
    path = job.tmp / f"model-{job.quant}.gguf"
    name = f"{job.prov.run_dir.name} ({job.fmt}, {job.quant})"
    meta = _gguf_meta(job, tok, template)
    if job.quant in ("f16", "q8_0"):
        gguf_model.write_model(path, model.state_dict(), job.config, meta, job.quant, name, _extra(job))
        return path
    f16 = job.tmp / ".model-f16.tmp"
    gguf_model.write_model(f16, model.state_dict(), job.config, meta, "f16", name, _extra(job))
    gguf_model.quantize_k(f16, path, job.quant)
    f16.unlink()
    return path


def _base_gguf(job: _Job, model: Any, tok: Any, template: str, *, copy: bool) -> Path:
    """The unchanged base as a GGUF: the packaged one (copied into an Ollama folder), else written at f16."""
    if job.base_gguf:
        if not copy:
            return job.base_gguf
        dst = job.tmp / job.base_gguf.name.replace("lora", "base")
        shutil.copyfile(job.base_gguf, dst)
        return dst
    path = job.tmp / "base-f16.gguf"
    gguf_model.write_model(path, model.unload().state_dict(), job.config, _gguf_meta(job, tok, template), "f16",
                           f"{job.src.name} (base, f16)", _extra(job))
    return path


def _starts_from(job: _Job) -> str:
    if job.base_gguf is None:
        return f"{job.src.name} weights as transformers loads them, with the adapter merged in float32"
    types = gguf_model.tensor_types(job.base_gguf)
    main = max(types, key=types.get)
    label = "the embedded model's " if job.base_gguf.name == DEFAULT_GGUF else ""
    return (f"de-quantized {main} weights of {label}{job.base_gguf.name} (tensor types {types}): the run trained "
            f"on these same de-quantized weights, so the export cannot be more precise than {main}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
