"""The verbs that make and read run folders: `run` (prepare -> train -> eval -> report), `train` (in this
process, or in N data-parallel ones), `sweep` (one run per grid point) and `runs` (the experiment table, or the
difference between two runs). The pipeline and torch are imported inside the verbs that run them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from medtune.cli_config import flag_overrides, load_args_config
from medtune.errors import MedtuneError
from medtune.run_summary import run_summary
from medtune.track.runs import diff_runs, find_runs, format_diff, load_run, runs_table
from medtune.track.sweep import parse_grid, sweep


def cmd_train(args: argparse.Namespace) -> None:
    from medtune.pipeline import launch_train, train_run
    from medtune.train import distributed

    cfg = load_args_config(args)
    here = distributed.world()
    if (not args.data and not cfg.train.resume and not cfg.data.prepared and cfg.data.sources == ["builtin"]
            and here.is_main and not os.environ.get(distributed.LAUNCHED_ENV)):
        print("no --data given: training on the built-in demo data (builtin); pass --data FILE to use yours",
              file=sys.stderr)
    if args.nproc not in (None, 1) and here.size == 1:
        tr = launch_train(cfg, args.nproc, oversubscribe=args.oversubscribe, verbose=args.verbose)
    else:
        tr = train_run(cfg, hold_out_test=False)
        if not here.is_main or os.environ.get(distributed.LAUNCHED_ENV):
            return  # the launching process (or rank 0 alone) reports
    s = tr.summary
    print(f"trained {s['steps']} steps on {s['train_rows']} rows in {s['seconds']} s "
          f"({s['tokens_per_s']} real tokens/s, {s['precision']}); final loss {s['final_loss']}"
          + (f", eval loss {s['eval_loss']:.4f}" if s["eval_loss"] is not None else ""))
    print(f"adapter and provenance: {tr.run_dir}/")


def cmd_run(args: argparse.Namespace) -> None:
    from medtune.pipeline import run

    cfg = load_args_config(args)
    tr, result = run(cfg)
    print("\n" + run_summary(cfg, tr, result, tr.manifest.get("notes")))


def cmd_runs(args: argparse.Namespace) -> None:
    if args.diff:
        a, b = (load_run(Path(p)) for p in args.diff)
        if a is None or b is None:
            raise MedtuneError(f"--diff needs two run folders with a readable run.json: {args.diff}")
        print(format_diff(diff_runs(a, b), a.name, b.name))
        return
    records = find_runs(Path(args.root))
    if not records:
        raise MedtuneError(f"no runs under {args.root}/ (a run folder holds run.json)")
    print(runs_table(records, fmt=args.format), end="")


def cmd_sweep(args: argparse.Namespace) -> None:
    from medtune.pipeline import run

    if not args.grid:
        raise MedtuneError("pass at least one --grid KEY=V1,V2 (KEY is a config path, as in --set)")
    out_root = Path(args.output or "runs/sweep")
    overrides = [o for o in flag_overrides(args) if not o.startswith("output=")]
    records = sweep(overrides, args.config, parse_grid(args.grid), out_root, run)
    print(runs_table(records, fmt="markdown"), end="")
    print(f"experiment table: {out_root}/experiments.md, experiments.csv and experiments.png")
