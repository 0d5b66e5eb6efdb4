"""The jobs behind `medtune train` and `medtune run`: each a straight line of library calls.

train: prepare data into the run folder -> load model + LoRA -> write provenance -> train -> save adapter
run:   train (holding out a test split) -> base vs tuned on the test split -> sample answers -> summary
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medtune.config import Config
from medtune.data.prepare import load_split, prepare
from medtune.errors import MedtuneError
from medtune.model.load import load_for_training, resolve
from medtune.train import provenance, recipe

log = logging.getLogger("medtune")


@dataclass
class TrainedRun:
    run_dir: Path
    model: Any
    tok: Any
    manifest: dict[str, Any]
    summary: dict[str, Any]
    model_name: str
    model_license: str


def run_dir_for(cfg: Config) -> Path:
    if cfg.output:
        return Path(cfg.output)
    model = re.sub(r"[^A-Za-z0-9.-]+", "-", Path(cfg.model.name).stem.split("/")[-1]).strip("-") or "model"
    name = cfg.name or f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Path("runs") / name


def train_run(cfg: Config, *, hold_out_test: bool) -> TrainedRun:
    run_dir = run_dir_for(cfg)
    data_dir = run_dir / "data"
    resolve(cfg.model.name, cfg.model.gguf_file)  # a missing model fails before any data work
    if cfg.train.resume:
        if not (data_dir / "manifest.json").exists():
            raise MedtuneError(f"--resume: {run_dir} has no prepared data; start the run without --resume")
    elif (run_dir / "checkpoints").exists() or (run_dir / "adapter_model.safetensors").exists():
        raise MedtuneError(f"{run_dir} already holds a run; pass --resume to continue it or a new --output")
    if cfg.data.prepared:
        data_dir = Path(cfg.data.prepared)
        manifest = json.loads((data_dir / "manifest.json").read_text()) if (data_dir / "manifest.json").exists() else {}
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    elif cfg.train.resume:
        manifest = json.loads((data_dir / "manifest.json").read_text())
    else:
        manifest = prepare(cfg.data.sources, data_dir, cfg.data, cfg.seed, hold_out_test=hold_out_test)
        _print_prepared(manifest, data_dir)
    model_cfg = cfg.model
    if recipe.resolve_precision(cfg.train.precision, recipe.device_type()) == "bf16" and model_cfg.quantize == "none":
        # frozen weights are kept in bf16 anyway (see recipe.frozen_weights_to): load them so, and skip the fp32
        # copy; PEFT still creates the LoRA weights in fp32
        model_cfg = dataclasses.replace(model_cfg, dtype="bfloat16")
    model, tok, src = load_for_training(model_cfg, cfg.lora, gradient_checkpointing=cfg.train.gradient_checkpointing,
                                       seed=cfg.seed)
    provenance.write_setup(run_dir, cfg, tok)
    summary = recipe.train(cfg, data_dir, run_dir, model, tok)
    model.peft_config["default"].base_model_name_or_path = src.name
    model.save_pretrained(run_dir)
    provenance.update_run_info(run_dir, base_model=src.name, base_model_spec=cfg.model.name,
                               base_model_license=src.license, training=summary)
    provenance.write_model_card(run_dir, cfg, src.name, src.license, manifest, summary)
    return TrainedRun(run_dir, model, tok, manifest, summary, src.name, src.license)


def _print_prepared(manifest: dict[str, Any], data_dir: Path) -> None:
    c = manifest["counts"]
    print(f"prepared {c['train']} train / {c['val']} val / {c['test']} test rows "
          f"({manifest['rejects_total']} rejected) in {manifest['seconds']} s -> {data_dir}")


def evaluate_run(cfg: Config, tr: TrainedRun) -> dict[str, Any]:
    """Base vs tuned on the held-out test split (loss, perplexity) and a few greedy answers."""
    from medtune.eval.heldout import greedy_answers, heldout_loss

    data_dir = Path(cfg.data.prepared) if cfg.data.prepared else tr.run_dir / "data"
    rows = load_split(data_dir, "test")[: cfg.eval.max_eval_rows]
    if not rows:
        log.warning("the test split is empty; nothing to compare")
        return {}
    examples = recipe.tokenize_rows(rows, tr.tok, cfg.data.system_prompt, cfg.train.max_length)
    pad = tr.tok.pad_token_id
    base = heldout_loss(tr.model, examples, pad, cfg.eval.batch_size, base=True)
    tuned = heldout_loss(tr.model, examples, pad, cfg.eval.batch_size, base=False)
    n_show = min(cfg.eval.show_samples, cfg.eval.max_generations, len(rows))
    convs = [[m for m in r["messages"] if m["role"] != "assistant"][:2] for r in rows[:n_show]]
    kw = {"max_new_tokens": cfg.eval.max_new_tokens, "batch_size": cfg.eval.batch_size,
          "repetition_penalty": cfg.eval.repetition_penalty}
    base_ans = greedy_answers(tr.model, tr.tok, convs, cfg.data.system_prompt, base=True, desc="base answers", **kw)
    tuned_ans = greedy_answers(tr.model, tr.tok, convs, cfg.data.system_prompt, base=False, desc="tuned answers", **kw)
    samples = [{"question": c[-1]["content"], "reference": _ref(r), "base": b, "tuned": t}
               for c, r, b, t in zip(convs, rows, base_ans, tuned_ans)]
    result = {"test_rows": len(examples), "base": base, "tuned": tuned,
              "loss_delta": round(tuned["loss"] - base["loss"], 4), "samples": samples}
    (tr.run_dir / "eval_heldout.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return result


def _ref(row: dict[str, Any]) -> str:
    return next((m["content"] for m in row["messages"] if m["role"] == "assistant"), "")


def run(cfg: Config) -> tuple[TrainedRun, dict[str, Any]]:
    tr = train_run(cfg, hold_out_test=True)
    result = evaluate_run(cfg, tr)
    if result:
        evaluation = {"test loss (base)": result["base"]["loss"], "test loss (tuned)": result["tuned"]["loss"],
                      "perplexity (base)": result["base"]["perplexity"],
                      "perplexity (tuned)": result["tuned"]["perplexity"], "test rows": result["test_rows"]}
        tr.summary["evaluation"] = evaluation
        provenance.update_run_info(tr.run_dir, evaluation=evaluation)
        provenance.write_model_card(tr.run_dir, cfg, tr.model_name, tr.model_license, tr.manifest, tr.summary)
    return tr, result
