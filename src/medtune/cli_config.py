"""How a verb's flags become a config: the shared --config/--set/--data group, the flag shorthands
(COMMON_FLAGS) turned into `key=value` overrides, --resume, and the guard's weights for the verbs that need only those.

Every verb module resolves its config through these functions, so a flag means the same thing in all of them; they
sit below the verbs (and apart from cli.py) so no verb imports the parser, and `python -m medtune.cli` never
imports medtune.cli a second time. `medtune config` lives here too: it only prints what these functions resolve.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from medtune.config import dump_yaml, load_config
from medtune.train.resume import resume_config

# flag -> (config key, type, help)
COMMON_FLAGS: dict[str, tuple[str, Any, str]] = {
    "--model": ("model.name", str, "default (embedded SmolLM2-135M), a hub id, a local folder or a .gguf"),
    "--max-rows": ("data.max_rows", int, "at most this many rows per source"),
    "--val-fraction": ("data.val_fraction", float, "share of questions held out for validation (0 = none)"),
    "--epochs": ("train.epochs", float, "passes over the training split"),
    "--max-steps": ("train.max_steps", int, "stop after this many optimizer steps"),
    "--batch-size": ("train.batch_size", int, "sequences per micro-batch"),
    "--max-length": ("train.max_length", int, "longest sequence in tokens"),
    "--lora-r": ("lora.r", int, "LoRA rank"),
    "--lora-alpha": ("lora.alpha", int, "LoRA alpha"),
    "--lr": ("train.lr", float, "peak learning rate"),
    "--save-steps": ("train.save_steps", int, "checkpoint every N steps (0 = at the end)"),
    "--output": ("output", str, "run folder (default runs/<name>/)"),
    "--seed": ("seed", int, "seed for split, order and init"),
}


def add_config_args(p: argparse.ArgumentParser, *, training: bool) -> None:
    """The "configuration" group: --config, --set, --data and the COMMON_FLAGS shorthands (only the data ones
    unless `training`, which also adds --resume)."""
    g = p.add_argument_group("configuration (file < --set < flags)")
    g.add_argument("--config", metavar="FILE.yaml", help="a YAML config (see configs/)")
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, e.g. --set train.lr=1e-4 (repeatable)")
    g.add_argument("--data", action="append", metavar="NAME|FILE[:WEIGHT]",
                   help="a catalog name (see `medtune datasets`) or a .jsonl/.json/.csv/.parquet file; "
                        "repeat to mix, NAME:WEIGHT to weight (default: builtin)")
    for flag, (key, typ, text) in COMMON_FLAGS.items():
        if not training and flag not in ("--max-rows", "--val-fraction", "--output", "--seed"):
            continue
        g.add_argument(flag, type=typ, metavar=key.split(".")[-1].upper(), help=f"{text} ({key})")
    if training:
        g.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output")


def load_args_config(args: argparse.Namespace) -> Any:
    """The config of a verb with the configuration group: file < --set < flags, or with --resume the run's own."""
    if getattr(args, "resume", False):  # the run's own config.yaml; a contradicting flag is refused by name
        names = {key: flag for flag, (key, _, _) in COMMON_FLAGS.items()} | {"data.sources": "--data"}
        return resume_config(args.config, flag_overrides(args), names)
    return load_config(args.config, flag_overrides(args))


def flag_overrides(args: argparse.Namespace) -> list[str]:
    """--set values and flag shorthands as `key=value` overrides (flags win: they come last)."""
    overrides = list(args.overrides)
    if args.data:
        overrides.append("data.sources=" + json.dumps(args.data))
    for flag, (key, _, _) in COMMON_FLAGS.items():
        value = getattr(args, flag[2:].replace("-", "_"), None)
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")
    if getattr(args, "resume", False):
        overrides.append("train.resume=true")
    return overrides


def add_guard_config_args(p: argparse.ArgumentParser) -> None:
    """--config/--set for verbs that read a config only for the guard's weights (and serve.* for chat/ui)."""
    p.add_argument("--config", metavar="FILE.yaml", help="a YAML config (its safety: section is read)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, e.g. --set safety.guard_model_dir=DIR (repeatable)")


def use_guard(args: argparse.Namespace) -> Any:
    """The resolved config of --config/--set; the guard loads from its safety.guard_model_dir from now on."""
    from medtune.safety.guard import use_model_dir

    cfg = load_config(getattr(args, "config", None), list(getattr(args, "overrides", None) or []))
    use_model_dir(cfg.safety.guard_model_dir)
    return cfg


def cmd_config(args: argparse.Namespace) -> None:
    """`medtune config`: the resolved config as YAML on stdout."""
    print(dump_yaml(load_args_config(args)), end="")
