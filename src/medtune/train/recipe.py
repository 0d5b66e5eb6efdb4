"""The LoRA fine-tuning recipe, top to bottom: setup -> train -> save.

CPU fast path (on by default where it helps): bf16 autocast when the CPU has bf16 instructions, logits
only on answer tokens (`AnswerLoss`), length-grouped batches so padding nearly vanishes, all cores for
torch, and no per-step metric that needs a pass over the vocabulary. The same loop runs on one or many
GPUs through accelerate (`accelerate launch` / `torchrun -m medtune.cli train …`).

A run resumes exactly: the data order of every epoch is a function of the seed, and a checkpoint holds
the adapter, optimizer, scheduler and RNG states, so `--resume` continues to the same final step with a
continuous loss curve. Ctrl-C or SIGTERM writes a checkpoint before stopping.

Run as: medtune train --data NAME_OR_FILE --output DIR
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from medtune.config import Config
from medtune.data.prepare import load_split
from medtune.data.tokenize import Example, collate, encode, length_grouped_batches
from medtune.errors import MedtuneError
from medtune.hardware import cpu_supports_bf16
from medtune.train import checkpoint
from medtune.train.loss import AnswerLoss
from medtune.train.probe import BestCheckpoint, choose_metric, load_probe, save_best
from medtune.train.trackers import Trackers

log = logging.getLogger("medtune.train")
PAD_MULTIPLE = 32  # batch widths are rounded up to this: a few reusable kernel shapes instead of hundreds


def device_type() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_precision(precision: str, device: str) -> str:
    if precision != "auto":
        return precision
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_supports_bf16() else "fp32"


def frozen_weights_to(model: Any, dtype: torch.dtype) -> int:
    """Store frozen base weights in `dtype` so autocast stops re-casting them every step.

    Under bf16 autocast every matmul runs in bf16 anyway; keeping the frozen fp32 copy only costs a cast
    per layer per step (about a fifth of a CPU step for a 135M model). Trainable (LoRA) weights stay fp32.
    Returns the number of tensors cast.
    """
    n = 0
    for p in model.parameters():
        if not p.requires_grad and p.dtype == torch.float32:
            p.data = p.data.to(dtype)
            n += 1
    return n


def tokenize_rows(rows: list[dict[str, Any]], tok: Any, system_prompt: str, max_length: int) -> list[Example]:
    examples = [encode(tok, r["messages"], system_prompt, max_length) for r in rows]
    return [e for e in examples if e.n_answer > 0]


def _steps(cfg: Config, n_batches: int) -> int:
    if cfg.train.max_steps > 0:
        return cfg.train.max_steps
    return max(1, math.ceil(cfg.train.epochs * n_batches / cfg.train.grad_accum))


class _Stop(Exception):
    pass


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Stop()


@torch.no_grad()
def eval_loss(loss_model: AnswerLoss, examples: list[Example], batch_size: int, pad_id: int,
              autocast: Any) -> float:
    """Mean loss per answer token over examples (teacher forcing)."""
    was_training = loss_model.training
    loss_model.eval()
    total, count = 0.0, 0
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    device = next(loss_model.parameters()).device
    for s in range(0, len(order), batch_size):
        batch = {k: v.to(device) for k, v in collate([examples[i] for i in order[s: s + batch_size]], pad_id).items()}
        with autocast():
            loss, n = loss_model(**batch)
        total += float(loss)
        count += int(n)
    loss_model.train(was_training)
    return total / max(count, 1)


def train(cfg: Config, data_dir: Path, run_dir: Path, model: Any, tok: Any) -> dict[str, Any]:
    """Fine-tune `model` (already wrapped with LoRA) on data_dir/train.jsonl; returns a summary."""
    from accelerate import Accelerator
    from transformers import get_scheduler

    t = cfg.train
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    torch.manual_seed(cfg.seed)
    device = device_type()
    precision = resolve_precision(t.precision, device)
    acc = Accelerator(cpu=device == "cpu", mixed_precision={"fp32": "no"}.get(precision, precision))

    train_ex = tokenize_rows(load_split(data_dir, "train"), tok, cfg.data.system_prompt, t.max_length)
    val_ex = tokenize_rows(load_split(data_dir, "val"), tok, cfg.data.system_prompt, t.max_length)
    if not train_ex:
        raise MedtuneError(f"{data_dir}/train.jsonl has no rows with answer tokens: nothing to train on")
    lengths = [len(e.input_ids) for e in train_ex]
    per_epoch = math.ceil(len(train_ex) / t.batch_size)
    per_epoch_local = math.ceil(per_epoch / acc.num_processes)
    total_steps = _steps(cfg, per_epoch_local)

    if precision == "bf16" and cfg.model.quantize == "none":
        frozen_weights_to(model, torch.bfloat16)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    scheduler = get_scheduler("constant_with_warmup" if t.scheduler == "constant" else t.scheduler, optimizer,
                              num_warmup_steps=int(t.warmup_ratio * total_steps), num_training_steps=total_steps)
    loss_model = AnswerLoss(model)
    loss_model, optimizer = acc.prepare(loss_model, optimizer)
    pad_id = tok.pad_token_id

    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = run_dir / "checkpoints"
    metrics_path = run_dir / "metrics.jsonl"
    step = 0
    if t.resume:
        found = checkpoint.list_checkpoints(ckpt_dir)
        if not found:
            raise MedtuneError(f"--resume: no checkpoint in {ckpt_dir}")
        step = checkpoint.load(found[-1], acc.unwrap_model(loss_model).model, optimizer, scheduler)
        _truncate_metrics(metrics_path, step)
        log.info("resuming from %s (step %d of %d)", found[-1], step, total_steps)
    elif metrics_path.exists():
        metrics_path.unlink()
    if not t.resume:
        shutil.rmtree(run_dir / "best", ignore_errors=True)
    trackers = Trackers(t.report_to, run_dir, {"lr": t.lr, "batch_size": t.batch_size, "grad_accum": t.grad_accum,
                                                "epochs": t.epochs, "lora_r": cfg.lora.r, "model": cfg.model.name}) \
        if t.report_to and acc.is_main_process else None
    probe, best = None, None
    if t.probe_steps:
        probe = load_probe(t.probe_mcq, load_split(data_dir, "val"), t.probe_mcq_rows, t.probe_qa_rows,
                           cfg.data.system_prompt)
        best = BestCheckpoint.restore(run_dir / "best", choose_metric(t.best_metric, probe), step)

    def batches_from(micro_start: int):  # noqa: ANN202
        epoch, skip = divmod(micro_start, per_epoch_local)
        while True:
            gen = torch.Generator().manual_seed(cfg.seed + epoch)
            batches = length_grouped_batches(lengths, t.batch_size, gen, t.group_by_length)
            batches = batches[acc.process_index:: acc.num_processes][:per_epoch_local]
            for b in batches[skip:]:
                yield epoch, b
            epoch, skip = epoch + 1, 0

    autocast = acc.autocast
    stream = batches_from(step * t.grad_accum)
    bar = tqdm(total=total_steps, initial=step, desc="training", unit="step", disable=not acc.is_main_process,
               file=sys.stderr, dynamic_ncols=True)
    old_handler = signal.signal(signal.SIGTERM, _on_sigterm) if acc.is_main_process else None
    last_eval = None
    started = time.perf_counter()
    tokens_seen = 0
    loss_model.train()
    try:
        while step < total_steps:
            t0 = time.perf_counter()
            micro = [next(stream) for _ in range(t.grad_accum)]
            micro_done = (step + 1) * t.grad_accum
            n_answer = sum(sum(train_ex[i].n_answer for i in b) for _, b in micro)
            step_loss, real_tokens = 0.0, 0
            for _, b in micro:
                rows = [train_ex[i] for i in b]
                batch = {k: v.to(acc.device) for k, v in collate(rows, pad_id, PAD_MULTIPLE).items()}
                real_tokens += int(batch["attention_mask"].sum())
                with autocast():
                    loss_sum, _ = loss_model(**batch)
                loss = loss_sum / max(n_answer, 1)
                acc.backward(loss)
                step_loss += float(loss)
            if t.max_grad_norm > 0:
                acc.clip_grad_norm_(params, t.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            dt = time.perf_counter() - t0
            tokens_seen += real_tokens
            record: dict[str, Any] = {"step": step, "epoch": round(micro_done / per_epoch_local, 3),
                                      "loss": round(step_loss, 5), "lr": scheduler.get_last_lr()[0],
                                      "tokens_per_s": round(real_tokens * acc.num_processes / dt, 1)}
            if val_ex and t.eval_steps and step % t.eval_steps == 0 and step < total_steps:
                last_eval = eval_loss(acc.unwrap_model(loss_model), val_ex, cfg.eval.batch_size, pad_id, autocast)
                record["eval_loss"] = round(last_eval, 5)
            if step == total_steps and val_ex:
                last_eval = eval_loss(acc.unwrap_model(loss_model), val_ex, cfg.eval.batch_size, pad_id, autocast)
                record["eval_loss"] = round(last_eval, 5)
            probed = probe is not None and acc.is_main_process and (step % t.probe_steps == 0 or step == total_steps)
            if probed:
                record.update(probe.run(acc.unwrap_model(loss_model).model, tok, autocast))
            if best and acc.is_main_process and best.update(step, record):
                save_best(acc.unwrap_model(loss_model).model, run_dir / "best", best)
            if acc.is_main_process and (step % t.logging_steps == 0 or "eval_loss" in record or probed
                                        or step == total_steps):
                with metrics_path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                if trackers:
                    trackers.log(record)
            bar.set_postfix(loss=f"{step_loss:.3f}", tok_s=f"{record['tokens_per_s']:.0f}")
            bar.update(1)
            if acc.is_main_process and t.save_steps and step % t.save_steps == 0 and step < total_steps:
                checkpoint.save(ckpt_dir, step, acc.unwrap_model(loss_model).model, optimizer, scheduler,
                                t.save_total_limit)
    except (KeyboardInterrupt, _Stop):
        bar.close()
        if acc.is_main_process and step > 0:
            checkpoint.save(ckpt_dir, step, acc.unwrap_model(loss_model).model, optimizer, scheduler,
                            t.save_total_limit)
        raise MedtuneError(f"interrupted at step {step} of {total_steps}; checkpoint saved in {ckpt_dir}. "
                           "Continue with the same command and --resume.") from None
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)
        if trackers:
            trackers.close()
    bar.close()
    seconds = time.perf_counter() - started
    if acc.is_main_process:
        checkpoint.save(ckpt_dir, step, acc.unwrap_model(loss_model).model, optimizer, scheduler,
                        t.save_total_limit)
    return {"steps": step, "train_rows": len(train_ex), "val_rows": len(val_ex), "precision": precision,
            "seconds": round(seconds, 1),
            "tokens_per_s": round(tokens_seen * acc.num_processes / max(seconds, 1e-9), 1),
            "final_loss": _last_loss(metrics_path), "eval_loss": last_eval,
            "peak_memory_mb": _peak_memory_mb(device), "threads": torch.get_num_threads(),
            "processes": acc.num_processes, "best": best.as_dict() if best else None}


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop records past the resumed step so the curve stays continuous and has no duplicates."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in keep))


def _last_loss(path: Path) -> float | None:
    if not path.exists():
        return None
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return lines[-1]["loss"] if lines else None


def _peak_memory_mb(device: str) -> float:
    """Peak memory of this process: CUDA allocator peak, or the CPU resident-set peak (Linux reports kB)."""
    import resource

    if device == "cuda":
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
