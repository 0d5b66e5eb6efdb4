"""Data-parallel training, handed to torch.distributed and accelerate (never a home-made engine).

`medtune train --nproc N` prepares the run folder once in the calling process (lock, data split,
resolved config.yaml), then starts N workers through torch's elastic launcher (the engine behind
`torchrun`), each running `medtune train` on that folder with `WORLD_SIZE`/`RANK` set; accelerate's
`Accelerator` in the recipe picks them up (gloo on CPU, NCCL on GPUs) and wraps the model in DDP, or in
DeepSpeed/FSDP when started by `accelerate launch --config_file configs/accelerate/...`. Started from
outside (`accelerate launch -m medtune.cli train ...`), rank 0 prepares the data while the others wait.

Each worker gets cores // processes threads, so two processes never each take every core.

Run as: medtune train --nproc 2 --data FILE --output DIR
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch

from medtune.errors import MedtuneError

log = logging.getLogger("medtune.train")
LAUNCHED_ENV = "MEDTUNE_LAUNCHED_RUN"  # set by `--nproc` for its workers: the folder is locked and prepared


@dataclass(frozen=True)
class World:
    rank: int
    local_rank: int
    size: int
    local_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """This process's place among the workers, from the launcher's environment (1 process when unset)."""
    env = os.environ
    size = int(env.get("WORLD_SIZE", 1))
    return World(int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), size,
                 int(env.get("LOCAL_WORLD_SIZE", size)))


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def threads_per_process(processes: int) -> int:
    return max(1, cores() // max(1, processes))


def launched_for(run_dir: Path) -> bool:
    """True in a worker started by `--nproc` for this folder (its setup is already done)."""
    return os.environ.get(LAUNCHED_ENV) == str(Path(run_dir).resolve())


def check_nproc(nproc: int, *, oversubscribe: bool = False) -> None:
    if nproc < 1:
        raise MedtuneError(f"--nproc {nproc}: must be at least 1")
    n = cores()
    if nproc > n and not oversubscribe:
        raise MedtuneError(f"--nproc {nproc}: this machine gives medtune {n} CPU cores, and more processes than "
                           f"cores only slow each other down; use --nproc {n} or fewer (or --oversubscribe to run "
                           "them anyway, e.g. to try a launch)")


def check_rows(nproc: int, rows: int, batch_size: int) -> None:
    """Every process needs at least one micro-batch of its own."""
    if nproc > rows:
        raise MedtuneError(f"--nproc {nproc}: the training split has only {rows} rows; each process needs at "
                           f"least one (use --nproc {max(1, rows)} or fewer, or more data)")
    batches = -(-rows // batch_size)
    if nproc > batches:
        raise MedtuneError(f"--nproc {nproc}: {rows} training rows make only {batches} batches of --batch-size "
                           f"{batch_size}; each process needs at least one (lower --batch-size or --nproc)")


def shard(batches: list[list[int]], rank: int, size: int) -> list[list[int]]:
    """This rank's share of one epoch's batches (rank, rank+size, ...), padded by wrapping around like
    torch's DistributedSampler, so every rank takes the same number of steps."""
    per_rank = -(-len(batches) // size)
    padded = batches + batches[: per_rank * size - len(batches)]
    return padded[rank::size]


def barrier(cpu: bool) -> None:
    """Wait for every worker (no-op for one process); initialises the process group through accelerate."""
    if world().size > 1:
        from accelerate import PartialState

        PartialState(cpu=cpu).wait_for_everyone()


def all_reduce_sum(values: list[float], device: torch.device | str = "cpu") -> list[float]:
    """Sums of `values` over all workers (the values themselves for one process)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def launch(nproc: int, cli_args: list[str], run_dir: Path, *, threads: int) -> None:
    """Run `python -m medtune.cli CLI_ARGS` in `nproc` workers on this machine through torch's elastic
    launcher (what torchrun does, rendezvous on a free loopback port); a failed worker is a MedtuneError."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    env_keep = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), LAUNCHED_ENV: os.environ.get(LAUNCHED_ENV)}
    os.environ["OMP_NUM_THREADS"] = str(threads)  # workers inherit this environment
    os.environ[LAUNCHED_ENV] = str(Path(run_dir).resolve())
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"medtune-{uuid.uuid4().hex[:8]}",
                          rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=0,
                          monitor_interval=0.5, local_addr="127.0.0.1")
    elastic_log = logging.getLogger("torch.distributed.elastic")
    level = elastic_log.level
    if not log.isEnabledFor(logging.DEBUG):
        elastic_log.setLevel(logging.CRITICAL)  # its per-worker failure lines repeat what the worker printed
    try:
        elastic_launch(config, sys.executable)("-m", "medtune.cli", *cli_args)
    except ChildFailedError as e:
        codes = sorted({f.exitcode for f in e.failures.values()})
        raise MedtuneError(f"--nproc {nproc}: a training process stopped (exit code {', '.join(map(str, codes))}; "
                           "its message is above)") from None
    except SignalException as e:  # Ctrl-C / SIGTERM: the workers were stopped (rank 0 checkpoints on the way out)
        raise MedtuneError(f"--nproc {nproc}: interrupted ({e.sigval.name}); continue with --resume") from None
    finally:
        elastic_log.setLevel(level)
        for key, value in env_keep.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
