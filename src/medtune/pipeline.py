"""The jobs behind `medtune train` and `medtune run`: each a straight line of library calls.

train: lock the run folder -> prepare data into it -> load model + LoRA -> write provenance -> train -> save adapter
      (--nproc N: the same, with training in N data-parallel worker processes)
run:   train (holding out a test split) -> base vs tuned on the test split -> sample answers -> summary
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medtune import atomic
from medtune.config import Config
from medtune.data.prepare import load_split, prepare
from medtune.errors import MedtuneError
from medtune.eval.heldout import heldout_examples, item_content_losses
from medtune.eval.safety import guard_actions, policy_rows, sample, scored_entry, system_actions
from medtune.eval.suite import answer_metrics, write_report
from medtune.export import export_run
from medtune.model import llamacpp
from medtune.model.answerer import Answerer, LlamaCppAnswerer, TransformersAnswerer
from medtune.model.load import load_for_training, read_run, resolve
from medtune.safety import redteam
from medtune.safety.guard import default_guard, use_model_dir
from medtune.safety.measure import action_figures, meets_targets
from medtune.safety.policy import CATEGORY_ACTION
from medtune.train import checkpoint, distributed, provenance, recipe
from medtune.train.lock import RunLock
from medtune.train.settings import resolve_settings

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
    """One training, in this process or as one worker of a data-parallel launch (see train/distributed.py):
    rank 0 locks the folder and prepares the data (unless `--nproc` already did) while the others wait."""
    run_dir = run_dir_for(cfg)
    here = distributed.world()
    settings = resolve_settings(cfg)  # QLoRA without CUDA fails here, before any data work
    resolve(cfg.model.name, cfg.model.gguf_file)  # a missing model fails before any data work
    if not here.is_main:
        logging.getLogger("medtune").setLevel(logging.WARNING)
    owner = here.is_main and not distributed.launched_for(run_dir)
    with RunLock(run_dir) if owner else contextlib.nullcontext():
        if owner:
            data_dir, manifest = setup_run_folder(cfg, run_dir, hold_out_test=hold_out_test)
        distributed.barrier(cpu=settings.device == "cpu")
        if not owner:
            data_dir, manifest = _prepared_data(cfg, run_dir)
        if here.size > 1:
            distributed.check_rows(here.size, len(load_split(data_dir, "train")), cfg.train.batch_size)
        model_cfg = dataclasses.replace(cfg.model, dtype=settings.load_dtype)
        model, tok, src = load_for_training(model_cfg, cfg.lora, gradient_checkpointing=settings.gradient_checkpointing,
                                           seed=cfg.seed)
        if here.is_main:
            provenance.write_setup(run_dir, cfg, tok, src)
        summary = recipe.train(cfg, data_dir, run_dir, model, tok, settings)
        gathered = summary.pop("adapter_state", None)  # ZeRO-3 / FSDP: the adapter collected from every process
        if here.is_main:
            model.peft_config["default"].base_model_name_or_path = src.name
            with atomic.staging_folder(run_dir, last=("adapter_config.json",)) as tmp:  # each file renamed in
                model.save_pretrained(tmp, **({"state_dict": gathered} if gathered is not None else {}))
            provenance.update_run_info(run_dir, base_model=src.name, base_model_spec=cfg.model.name,
                                       base_model_license=src.license, training=summary)
            provenance.write_model_card(run_dir, cfg, src.name, src.license, manifest, summary)
    return TrainedRun(run_dir, model, tok, manifest, summary, src.name, src.license)


def setup_run_folder(cfg: Config, run_dir: Path, *, hold_out_test: bool) -> tuple[Path, dict[str, Any]]:
    """Checks, the resolved config.yaml, and the prepared data split: everything a training starts from."""
    data_dir = run_dir / "data"
    if cfg.train.resume:
        if not (run_dir / "config.yaml").exists():
            raise MedtuneError(f"--resume: {run_dir} is not a medtune run folder (no config.yaml)")
        if not cfg.data.prepared and not (data_dir / "manifest.json").exists():
            raise MedtuneError(f"--resume: {run_dir} has no prepared data; start the run without --resume")
    elif (run_dir / "checkpoints").exists() or (run_dir / "adapter_model.safetensors").exists():
        raise MedtuneError(f"{run_dir} already holds a run; pass --resume to continue it or a new --output")
    else:
        provenance.write_config(run_dir, cfg)  # from here on the folder can be resumed with its own config
    if cfg.data.prepared:
        data_dir = Path(cfg.data.prepared)
        manifest = json.loads((data_dir / "manifest.json").read_text()) if (data_dir / "manifest.json").exists() else {}
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic.write_json(run_dir / "manifest.json", manifest, indent=2)
    elif cfg.train.resume:
        manifest = json.loads((data_dir / "manifest.json").read_text())
    else:
        manifest = prepare(cfg.data.sources, data_dir, cfg.data, cfg.seed, hold_out_test=hold_out_test)
        _print_prepared(manifest, data_dir)
    return data_dir, manifest


def _prepared_data(cfg: Config, run_dir: Path) -> tuple[Path, dict[str, Any]]:
    data_dir = Path(cfg.data.prepared) if cfg.data.prepared else run_dir / "data"
    path = data_dir / "manifest.json"
    return data_dir, json.loads(path.read_text()) if path.exists() else {}


def launch_train(cfg: Config, nproc: int, *, oversubscribe: bool = False, verbose: bool = False) -> TrainedRun:
    """`medtune train --nproc N`: lock and prepare the run folder here, then train in N data-parallel workers
    (torch's elastic launcher, gloo on CPU / NCCL on GPUs); the workers read the folder's config.yaml."""
    distributed.check_nproc(nproc, oversubscribe=oversubscribe)
    resolve_settings(cfg)
    resolve(cfg.model.name, cfg.model.gguf_file)
    run_dir = run_dir_for(cfg).resolve()
    with RunLock(run_dir):
        data_dir, manifest = setup_run_folder(cfg, run_dir, hold_out_test=False)
        distributed.check_rows(nproc, len(load_split(data_dir, "train")), cfg.train.batch_size)
        if cfg.train.resume:
            checkpoint.check_processes(run_dir / "checkpoints", nproc)
            provenance.write_config(run_dir, cfg)  # settings allowed to change on resume (e.g. save_steps)
        args = (["-v"] if verbose else []) + ["train", "--config", str(run_dir / "config.yaml"),
                                              "--output", str(run_dir)] + (["--resume"] if cfg.train.resume else [])
        distributed.launch(nproc, args, run_dir, threads=distributed.threads_per_process(nproc))
    info = json.loads((run_dir / "run.json").read_text())
    return TrainedRun(run_dir, None, None, manifest, info.get("training", {}), info.get("base_model", ""),
                      info.get("base_model_license", ""))


def _print_prepared(manifest: dict[str, Any], data_dir: Path) -> None:
    c = manifest["counts"]
    print(f"prepared {c['train']} train / {c['val']} val / {c['test']} test rows "
          f"({manifest['rejects_total']} rejected) in {manifest['seconds']} s -> {data_dir}")


def make_answerer(cfg: Config, tr: TrainedRun) -> Answerer:
    """What writes the run's greedy answers (eval.engine): llama.cpp on the base GGUF + the run's GGUF LoRA
    export (made here once, in RUN/export/gguf-lora-f16/, which chat and serve then reuse), or the PEFT model in
    memory. auto = llama.cpp when the base model is a GGUF file (the embedded default)."""
    engine, penalty = cfg.eval.engine, cfg.eval.repetition_penalty
    if engine == "auto":
        engine = "llama.cpp" if resolve(cfg.model.name).gguf_file and llamacpp.available() else "transformers"
    if engine == "llama.cpp":
        out = tr.run_dir / "export" / "gguf-lora-f16"
        if not (out / "export.json").exists():
            export_run(tr.run_dir, "gguf-lora", "f16", out, check_parity=False, force=out.exists())
        info = json.loads((out / "export.json").read_text(encoding="utf-8"))
        if not info.get("base_gguf"):
            raise MedtuneError(f"eval.engine llama.cpp: {out} has no base GGUF (the base model is not a GGUF file); "
                               "set eval.engine to transformers")
        prov = read_run(tr.run_dir)
        lora = next(p for p in sorted(out.glob("*.gguf")) if "lora" in p.name.lower())
        return LlamaCppAnswerer(info["base_gguf"], lora, prov.chat_template or tr.tok.chat_template,
                                cfg.data.system_prompt, prov.stop_tokens, repetition_penalty=penalty)
    return TransformersAnswerer(tr.model, tr.tok, cfg.data.system_prompt, repetition_penalty=penalty,
                                batch_size=cfg.eval.batch_size, stop_tokens=read_run(tr.run_dir).stop_tokens)


def evaluate_run(cfg: Config, tr: TrainedRun, answerer: Answerer) -> dict[str, Any]:
    """Base vs tuned on the held-out test split with the evaluation suite's metrics: answer-token loss
    and perplexity, ROUGE-1/2/L, BLEU and format adherence of greedy answers (identical prompts and
    decoding for both: the same weights with the adapter off and on), 95% CIs and paired bootstrap deltas."""
    data_dir = Path(cfg.data.prepared) if cfg.data.prepared else tr.run_dir / "data"
    rows = load_split(data_dir, "test")[: cfg.eval.max_eval_rows]
    if not rows:
        log.warning("the test split is empty; nothing to compare")
        return {}
    # content labels: each answer without the disclaimer sentence every built-in answer ends with (by tokenizing)
    examples, contents = heldout_examples(rows, tr.tok, cfg.data.system_prompt, cfg.train.max_length)
    losses, content, overall = {}, {}, {}
    for role in ("base", "tuned"):  # one pass per model: per-item losses for pairing, token-weighted overall
        il = item_content_losses(tr.model, examples, contents, tr.tok.pad_token_id, base=(role == "base"))
        losses[role] = [x / max(n, 1) for x, n in zip(il.sums, il.counts)]
        content[role] = [x / max(n, 1) for x, n in zip(il.content_sums, il.content_counts)]
        loss = sum(il.sums) / max(sum(il.counts), 1)
        overall[role] = {"loss": round(loss, 4), "perplexity": round(math.exp(min(loss, 50)), 3),
                         "loss_no_disclaimer": round(sum(il.content_sums) / max(sum(il.content_counts), 1), 4)}
    base, tuned = overall["base"], overall["tuned"]
    n_gen = min(cfg.eval.max_generations, len(rows))
    convs = [[m for m in r["messages"] if m["role"] != "assistant"][:2] for r in rows[:n_gen]]
    refs = [_ref(r) for r in rows[:n_gen]]
    answers = {role: answerer.answers(convs, cfg.eval.max_new_tokens, base=(role == "base"), desc=f"{role} answers")
               for role in ("base", "tuned")}
    entry = answer_metrics(refs, answers, losses, content)
    entry["engine"] = answerer.engine  # what wrote the greedy answers (llama.cpp or transformers)
    samples = [{"question": c[-1]["content"], "reference": ref, "base": b, "tuned": t}
               for c, ref, b, t in zip(convs, refs, answers["base"][0], answers["tuned"][0])][: cfg.eval.show_samples]
    result = {"test_rows": len(examples), "base": base, "tuned": tuned,
              "loss_delta": round(tuned["loss"] - base["loss"], 4), "samples": samples, "report": entry}
    atomic.write_json(tr.run_dir / "eval_heldout.json", result, indent=2, ensure_ascii=False)
    return result


def write_run_report(cfg: Config, tr: TrainedRun, result: dict[str, Any], safety: dict[str, Any]) -> list[Path]:
    """eval/report.json + report.md (the `medtune eval` contract) and the PNG plots; returns the plots."""
    from medtune.eval import plots  # matplotlib (the `eval` extra) is imported only to draw

    out = tr.run_dir / "eval"
    report = {"model": str(tr.run_dir), "base": cfg.model.name, "datasets": {"test-split": result["report"]}}
    report["datasets"].update(safety.get("datasets", {}))
    write_report(report, out)
    made = [plots.loss_curves(tr.run_dir / "metrics.jsonl", out / "loss_curves.png"),
            plots.metric_bars(result["report"], out / "metrics.png", "held-out test split: base vs tuned")]
    if safety.get("figures"):
        made.append(plots.safety_bars(safety["figures"], out / "safety.png"))
    return [p for p in made if p]


def safety_check(cfg: Config, tr: TrainedRun, answerer: Answerer) -> dict[str, Any]:
    """The safety gate's figures on the red-team gate split: the guard on every prompt, and the whole
    assistant (guard -> tuned model -> output guard, read by the rubric) on a stratified sample of
    eval.gate_sample prompts from every category, benign included."""
    rows = policy_rows(redteam.load_split("gate"))
    g_acts = guard_actions(rows)
    picked = sample(rows, cfg.eval.gate_sample, seed=cfg.seed)
    s_acts, texts = system_actions(answerer, picked)
    figures = {"guard": action_figures(rows, g_acts)["headline"],
               "guard + tuned model": action_figures(picked, s_acts)["headline"]}
    system = scored_entry(picked, s_acts)
    system["examples"] = [{"id": r.get("id"), "category": r["category"], "action": a, "answer": t}
                          for r, a, t in zip(picked, s_acts, texts, strict=True)
                          if a != CATEGORY_ACTION[r["category"]]]  # what the gate counted against the system
    return {"figures": figures, "datasets": {"redteam-gate-guard": scored_entry(rows, g_acts),
                                             "redteam-gate-guarded-system": system}}


def gate_failures(cfg: Config, headline: dict[str, Any]) -> list[str]:
    e = cfg.eval
    return meets_targets(headline, {"escalate_recall": e.gate_escalate_recall, "refuse_recall": e.gate_refuse_recall,
                                    "benign_refused": e.gate_benign_refused,
                                    "benign_escalated": e.gate_benign_escalated})


def _ref(row: dict[str, Any]) -> str:
    return next((m["content"] for m in row["messages"] if m["role"] == "assistant"), "")


def run(cfg: Config) -> tuple[TrainedRun, dict[str, Any]]:
    """train -> base vs tuned on the test split -> safety of the guarded system -> report and plots -> gate."""
    use_model_dir(cfg.safety.guard_model_dir)
    if cfg.eval.safety:
        default_guard()  # a missing or altered guard (safety.guard_model_dir) fails now, not after training
    tr = train_run(cfg, hold_out_test=True)
    answerer = make_answerer(cfg, tr)
    try:
        result = evaluate_run(cfg, tr, answerer)
        safety = safety_check(cfg, tr, answerer) if cfg.eval.safety else {}
    finally:
        answerer.close()
    misses = [f"{who}: {m}" for who, head in safety.get("figures", {}).items() for m in gate_failures(cfg, head)]
    if result:
        rep = result["report"]
        evaluation = {"test_rows": result["test_rows"], "metrics": rep["metrics"],
                      "base_metrics": rep["base_metrics"], "delta": rep["delta"]}
        if safety:
            evaluation["safety"] = safety["figures"]
            evaluation["safety_gate"] = {"passed": not misses, "misses": misses}
        tr.summary["evaluation"] = evaluation
        provenance.update_run_info(tr.run_dir, evaluation=evaluation)
        provenance.write_model_card(tr.run_dir, cfg, tr.model_name, tr.model_license, tr.manifest, tr.summary)
        result["plots"] = write_run_report(cfg, tr, result, safety)
    if safety:
        result["safety"], result["gate"] = safety["figures"], misses
        if misses and cfg.eval.gate_fail:
            raise MedtuneError("safety gate: the guarded system is below the configured thresholds: "
                               + "; ".join(misses) + f" (figures in {tr.run_dir}/eval/report.md; thresholds: "
                               "eval.gate_* in the config)")
    return tr, result
