"""The LoRA fine-tuning recipe, top to bottom: setup -> train -> save.

CPU fast path (on by default where it helps): bf16 autocast when the CPU has bf16 instructions, logits
only on answer tokens (`AnswerLoss`), length-grouped batches so padding nearly vanishes, all cores for
torch, and no per-step metric that needs a pass over the vocabulary. The same loop runs on one or many
GPUs through accelerate (`accelerate launch` / `torchrun -m medtune.cli train …`).

Data parallel (`--nproc N`, torchrun, `accelerate launch`): each process takes every N-th batch of the
same seeded, length-grouped epoch order; the loss of an optimizer step is divided by the answer tokens of
all processes together (one all-reduce), so N processes with grad_accum G optimise exactly what one
process with grad_accum N*G does. Rank 0 alone writes metrics, checkpoints and progress bars.

A run resumes exactly: the data order of every epoch is a function of the seed, and a checkpoint holds
the adapter, optimizer, scheduler and RNG states, so `--resume` continues to the same final step with a
continuous loss curve. Ctrl-C or SIGTERM writes a checkpoint before stopping.

Run as: medtune train --data NAME_OR_FILE --output DIR
"""

from __future__ import annotations

import json
import logging
import math
import resource
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch

from medtune import atomic
from medtune.config import Config
from medtune.data.prepare import load_split
from medtune.data.tokenize import Example, collate, encode, length_grouped_batches
from medtune.errors import MedtuneError
from medtune.model.loss import AnswerLoss
from medtune.progress import progress
from medtune.train import checkpoint, distributed
from medtune.train.probe import BestCheckpoint, choose_metric, load_probe, save_best
from medtune.train.settings import Settings, make_optimizer, resolve_settings
from medtune.train.trackers import Trackers

log = logging.getLogger("medtune.train")
PAD_MULTIPLE = 32  # batch widths are rounded up to this: a few reusable kernel shapes instead of hundreds


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


def train(cfg: Config, data_dir: Path, run_dir: Path, model: Any, tok: Any,
          settings: Settings | None = None) -> dict[str, Any]:
    """Fine-tune `model` (already wrapped with LoRA) on data_dir/train.jsonl; returns a summary.

    `adapter_state` in the summary is the adapter gathered from the processes under ZeRO-3/FSDP (else None:
    the model itself holds it); pass it to `save_pretrained(state_dict=...)` and drop it from the summary.
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedType
    from transformers import get_scheduler

    t = cfg.train
    settings = settings or resolve_settings(cfg)
    here = distributed.world()
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    elif here.size > 1 and settings.device == "cpu":
        torch.set_num_threads(distributed.threads_per_process(here.local_size))
    torch.manual_seed(cfg.seed)
    device, precision = settings.device, settings.precision
    acc = Accelerator(cpu=device == "cpu", mixed_precision={"fp32": "no"}.get(precision, precision),
                      gradient_accumulation_steps=t.grad_accum)
    plugin = _check_engine(acc, t.grad_accum, t.batch_size)
    sharded = acc.distributed_type == DistributedType.FSDP or (plugin is not None and plugin.zero_stage == 3)
    main = acc.is_main_process
    if sharded and (t.save_steps or t.resume):
        raise MedtuneError("step checkpoints and --resume are not supported under DeepSpeed ZeRO-3 or FSDP (the "
                           "weights are sharded): set train.save_steps=0, or use configs/accelerate/ddp.yaml or "
                           "deepspeed-zero2.yaml")

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
    optimizer = make_optimizer(settings, params, t.lr, t.weight_decay)
    scheduler = get_scheduler("constant_with_warmup" if t.scheduler == "constant" else t.scheduler, optimizer,
                              num_warmup_steps=int(t.warmup_ratio * total_steps), num_training_steps=total_steps)
    loss_model = AnswerLoss(model, fused=not sharded)
    loss_model, optimizer = acc.prepare(loss_model, optimizer)
    inner = acc.unwrap_model(loss_model).model
    pad_id = tok.pad_token_id

    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = run_dir / "checkpoints"
    metrics_path = run_dir / "metrics.jsonl"
    step = 0
    if t.resume:
        found, step = checkpoint.load_latest(ckpt_dir, inner, optimizer, scheduler, processes=acc.num_processes)
        if main:
            _truncate_metrics(metrics_path, step)
        log.info("resuming from %s (step %d of %d)", found, step, total_steps)
    elif metrics_path.exists() and main:
        metrics_path.unlink()
    if not t.resume and main:
        shutil.rmtree(run_dir / "best", ignore_errors=True)
    trackers = Trackers(t.report_to, run_dir, {"lr": t.lr, "batch_size": t.batch_size, "grad_accum": t.grad_accum,
                                                "epochs": t.epochs, "lora_r": cfg.lora.r, "model": cfg.model.name}) \
        if t.report_to and main else None
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
            for b in distributed.shard(batches, acc.process_index, acc.num_processes)[skip:]:
                yield epoch, b
            epoch, skip = epoch + 1, 0

    def save_checkpoint() -> None:
        checkpoint.save(ckpt_dir, step, inner, optimizer, scheduler, t.save_total_limit,
                        processes=acc.num_processes)

    autocast = acc.autocast
    stream = batches_from(step * t.grad_accum)
    bar = progress(total=total_steps, initial=step, desc="training", unit="step", disable=not main,
               file=sys.stderr, dynamic_ncols=True)
    old_handler = signal.signal(signal.SIGTERM, _on_sigterm)
    last_eval = None
    started = time.perf_counter()
    tokens_seen = 0
    loss_model.train()
    try:
        while step < total_steps:
            t0 = time.perf_counter()
            micro = [next(stream) for _ in range(t.grad_accum)]
            micro_done = (step + 1) * t.grad_accum
            (n_answer,) = distributed.all_reduce_sum([sum(sum(train_ex[i].n_answer for i in b) for _, b in micro)],
                                                     acc.device)
            # accelerate divides by grad_accum and DDP averages over processes: undo both, so the gradient is
            # the sum of token losses over every process's micro-batches divided by their answer tokens
            scale = acc.num_processes * t.grad_accum / max(n_answer, 1)
            loss_sum_local, real_local = 0.0, 0
            for _, b in micro:
                rows = [train_ex[i] for i in b]
                batch = {k: v.to(acc.device) for k, v in collate(rows, pad_id, PAD_MULTIPLE).items()}
                real_local += int(batch["attention_mask"].sum())
                with acc.accumulate(loss_model):
                    with autocast():
                        loss_sum, _ = loss_model(**batch)
                    acc.backward(loss_sum * scale)
                loss_sum_local += float(loss_sum.detach())
            if t.max_grad_norm > 0:
                acc.clip_grad_norm_(params, t.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            loss_total, real_tokens = distributed.all_reduce_sum([loss_sum_local, real_local], acc.device)
            step_loss = loss_total / max(n_answer, 1)
            dt = time.perf_counter() - t0
            tokens_seen += real_tokens
            record: dict[str, Any] = {"step": step, "epoch": round(micro_done / per_epoch_local, 3),
                                      "loss": round(step_loss, 5), "lr": scheduler.get_last_lr()[0],
                                      "tokens_per_s": round(real_tokens / dt, 1)}
            if main and val_ex and ((t.eval_steps and step % t.eval_steps == 0) or step == total_steps):
                last_eval = eval_loss(acc.unwrap_model(loss_model), val_ex, cfg.eval.batch_size, pad_id, autocast)
                record["eval_loss"] = round(last_eval, 5)
            probed = probe is not None and main and (step % t.probe_steps == 0 or step == total_steps)
            if probed:
                record.update(probe.run(inner, tok, autocast))
            if best and main and best.update(step, record):
                save_best(inner, run_dir / "best", best)
            if main and (step % t.logging_steps == 0 or "eval_loss" in record or probed or step == total_steps):
                with metrics_path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                if trackers:
                    trackers.log(record)
            bar.set_postfix(loss=f"{step_loss:.3f}", tok_s=f"{record['tokens_per_s']:.0f}")
            bar.update(1)
            if main and t.save_steps and step % t.save_steps == 0 and step < total_steps:
                save_checkpoint()
    except (KeyboardInterrupt, _Stop):
        bar.close()
        if main and step > 0 and not sharded:
            save_checkpoint()
        raise MedtuneError(f"interrupted at step {step} of {total_steps}; checkpoint saved in {ckpt_dir}. "
                           "Continue with --resume (the run's saved config is used).") from None
    finally:
        signal.signal(signal.SIGTERM, old_handler)
        if trackers:
            trackers.close()
    bar.close()
    seconds = time.perf_counter() - started
    if main and not sharded:
        save_checkpoint()
    gathered = None
    if sharded:  # every process takes part in gathering the sharded weights; rank 0 receives them
        gathered = {k.removeprefix("model."): v for k, v in acc.get_state_dict(loss_model).items() if "lora_" in k}
    return {"adapter_state": gathered, "steps": step, "train_rows": len(train_ex), "val_rows": len(val_ex),
            "precision": precision,
            "seconds": round(seconds, 1), "tokens_per_s": round(tokens_seen / max(seconds, 1e-9), 1),
            "final_loss": _last_loss(metrics_path), "eval_loss": last_eval,
            "peak_memory_mb": _peak_memory_mb(device), "threads": torch.get_num_threads(),
            "processes": acc.num_processes, "effective_batch": t.batch_size * t.grad_accum * acc.num_processes,
            "optimizer": settings.optimizer, "quantization": settings.quantization,
            "gradient_checkpointing": settings.gradient_checkpointing, "best": best.as_dict() if best else None}


def _check_engine(acc: Any, grad_accum: int, batch_size: int) -> Any:
    """The DeepSpeed plugin (or None) after checking that its config agrees with ours.

    accelerate silently prefers DeepSpeed's gradient_accumulation_steps when they differ; here a
    difference is an error naming both. No dataloader is prepared, so the micro-batch size is filled in.
    """
    plugin = getattr(acc.state, "deepspeed_plugin", None)
    if plugin is None:
        return None
    ds = plugin.deepspeed_config
    gas = ds.get("gradient_accumulation_steps", "auto")
    if gas not in ("auto", grad_accum):
        raise MedtuneError(f"the accelerate DeepSpeed config sets gradient_accumulation_steps={gas} but "
                           f"train.grad_accum is {grad_accum}; make them equal (or set it to auto)")
    ds["gradient_accumulation_steps"] = grad_accum
    if ds.get("train_micro_batch_size_per_gpu", "auto") == "auto":
        ds["train_micro_batch_size_per_gpu"] = batch_size
    return plugin


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of metrics.jsonl; a line torn by a kill (or any unreadable line) is skipped with a warning."""
    if not path.exists():
        return []
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            int(rec["step"])
        except (ValueError, KeyError, TypeError):
            log.warning("%s:%d: unreadable record (cut short by a crash?), dropped", path, n)
            continue
        records.append(rec)
    return records


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop records past the resumed step (and torn lines) so the curve stays continuous, without duplicates."""
    if not path.exists():
        return
    keep = [r for r in read_metrics(path) if int(r["step"]) <= step]
    atomic.write_text(path, "".join(json.dumps(r) + "\n" for r in keep))


def _last_loss(path: Path) -> float | None:
    records = read_metrics(path)
    return records[-1]["loss"] if records else None


def _peak_memory_mb(device: str) -> float:
    """Peak memory of this process: CUDA allocator peak, or the CPU resident-set peak (Linux reports kB)."""
    if device == "cuda":
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
