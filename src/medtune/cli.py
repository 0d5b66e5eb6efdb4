"""The `medtune` command: each verb parses its flags, calls one library function, and prints.

Run as: medtune {run,prepare,train,datasets,config} --help
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap
from typing import Any

from medtune import __version__
from medtune.errors import MedtuneError

EPILOG = """\
examples:
  medtune run                                  # built-in data, embedded model, ~5 min on a laptop CPU
  medtune prepare --data medquad --data builtin:2 --output data/mix
  medtune train --data my_rows.jsonl --epochs 2 --lora-r 8 --output runs/mine
  medtune train --config configs/tinyllama-lora.yaml --set train.lr=1e-4
  medtune train --output runs/mine --resume     # continue after a crash or Ctrl-C

medtune is for education and research. It is not a medical device.
"""

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


def _config_args(p: argparse.ArgumentParser, *, training: bool) -> None:
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


def _load(args: argparse.Namespace) -> Any:
    from medtune.config import load_config

    overrides = list(args.overrides)
    if args.data:
        overrides.append("data.sources=" + json.dumps(args.data))
    for flag, (key, _, _) in COMMON_FLAGS.items():
        value = getattr(args, flag[2:].replace("-", "_"), None)
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")
    if getattr(args, "resume", False):
        overrides.append("train.resume=true")
    return load_config(args.config, overrides)


def cmd_prepare(args: argparse.Namespace) -> None:
    from medtune.data.prepare import prepare

    cfg = _load(args)
    out = cfg.output or "data/prepared"
    manifest = prepare(cfg.data.sources, out, cfg.data, cfg.seed)
    c = manifest["counts"]
    print(f"prepared {c['train']} train / {c['val']} val / {c['test']} test rows in {manifest['seconds']} s")
    for s in manifest["sources"]:
        rejects = ", ".join(f"{k}: {v}" for k, v in s["rejects"].items()) or "none"
        print(f"  {s['name']:<28} read {s['rows_read']:>7}  kept {sum(s['splits'].values()):>7}  rejects: {rejects}")
    print(f"wrote {out}/train.jsonl, val.jsonl, test.jsonl and manifest.json")
    if sum(c.values()) == 0:
        raise MedtuneError("no usable rows: every row was rejected (see the messages above and manifest.json)")


def cmd_train(args: argparse.Namespace) -> None:
    from medtune.pipeline import train_run

    cfg = _load(args)
    tr = train_run(cfg, hold_out_test=False)
    s = tr.summary
    print(f"trained {s['steps']} steps on {s['train_rows']} rows in {s['seconds']} s "
          f"({s['tokens_per_s']} real tokens/s, {s['precision']}); final loss {s['final_loss']}"
          + (f", eval loss {s['eval_loss']:.4f}" if s["eval_loss"] is not None else ""))
    print(f"adapter and provenance: {tr.run_dir}/")


def cmd_run(args: argparse.Namespace) -> None:
    from medtune.pipeline import run

    cfg = _load(args)
    tr, result = run(cfg)
    s = tr.summary
    print(f"\ntrained {s['steps']} steps on {s['train_rows']} rows in {s['seconds']} s "
          f"({s['tokens_per_s']} real tokens/s, {s['precision']})")
    if result:
        b, t = result["base"], result["tuned"]
        print(f"\nheld-out test split ({result['test_rows']} rows, answer tokens only):")
        print(f"  {'':<8}{'loss':>8}{'perplexity':>12}")
        print(f"  {'base':<8}{b['loss']:>8.4f}{b['perplexity']:>12.2f}")
        print(f"  {'tuned':<8}{t['loss']:>8.4f}{t['perplexity']:>12.2f}")
        for i, smp in enumerate(result["samples"], 1):
            print(f"\n[{i}] Q: {smp['question']}")
            print(textwrap.indent(textwrap.fill("base:  " + smp["base"], 100), "    "))
            print(textwrap.indent(textwrap.fill("tuned: " + smp["tuned"], 100), "    "))
    d = tr.run_dir
    print(f"\nartifacts in {d}/:\n  adapter_model.safetensors + adapter_config.json (PEFT LoRA adapter)\n"
          f"  README.md (model card), config.yaml, run.json, chat_template.jinja, tokenizer/\n"
          f"  data/ (train/val/test + manifest.json), metrics.jsonl, checkpoints/, eval_heldout.json")


def cmd_eval(args: argparse.Namespace) -> None:
    from pathlib import Path

    from medtune.eval.suite import evaluate

    if not args.data:
        raise MedtuneError("pass at least one evaluation file with --data FILE")
    report = evaluate(args.model, args.base, args.data, limit=args.limit, output=Path(args.output))
    print(f"{'dataset':<28}{'kind':<6}{'n':>5}  {'metric':<11}{'model':>8}  {'95% CI':<15}"
          + (f"{'base':>8}{'delta':>9}{'p':>7}" if args.base else ""))
    for name, e in report["datasets"].items():
        for m, v in e["metrics"].items():
            line = f"{name[:27]:<28}{e['kind']:<6}{e['n']:>5}  {m:<11}{v['value']:>8.3f}  " \
                   f"{v['ci95'][0]:.3f}-{v['ci95'][1]:.3f}  "
            if args.base:
                line += f"{e['base_metrics'][m]['value']:>8.3f}"
                d = e.get("delta", {}).get(m)
                line += f"{d['value']:>+9.3f}{d['p_value']:>7.3f}" if d else ""
            print(line)
        for m, d in e.get("delta", {}).items():
            if m not in e["metrics"]:
                print(f"  {m} tuned - base: {d['value']:+.3f} (95% CI {d['ci95'][0]:+.3f} to {d['ci95'][1]:+.3f}, "
                      f"p={d['p_value']:.3f})")
        if e["rejects"]:
            print(f"  ({len(e['rejects'])} rows not scored: {e['rejects'][0]['id']}: {e['rejects'][0]['reason']} …)")
    print(f"report: {args.output}/report.json and report.md")


def cmd_datasets(args: argparse.Namespace) -> None:
    from medtune.data.catalog import CATALOG, local_paths

    for e in CATALOG.values():
        where = "local" if local_paths(e) else (e.hub_id or "local file needed")
        print(f"{e.name:<28} {e.format:<7} {where:<45} {e.license}")
        if args.verbose:
            print(f"{'':<28} {e.description}; {e.citation}")


def cmd_config(args: argparse.Namespace) -> None:
    from medtune.config import dump_yaml

    print(dump_yaml(_load(args)), end="")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="medtune", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Fine-tune open LLMs into safe, measurable medical information assistants.")
    p.add_argument("--version", action="version", version=f"medtune {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="show library warnings and debug logs")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Any, text: str, *, training: bool = True) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=text, description=text, epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        _config_args(sp, training=training)
        sp.set_defaults(func=fn)
        return sp

    add("run", cmd_run, "prepare data, fine-tune with LoRA, compare with the base model on held-out data")
    add("prepare", cmd_prepare, "clean, scrub PHI, de-duplicate, mix and split data into DIR (--output)",
        training=False)
    add("train", cmd_train, "fine-tune with LoRA; writes the adapter and its provenance to the run folder")
    add("config", cmd_config, "print the resolved config (defaults < --config < --set < flags)")
    ev = sub.add_parser("eval", help="score a model (and its base, same prompts) with 95%% CIs",
                        description="Score a model on evaluation files: multiple choice (acc, lm-eval MMLU "
                        "protocol) and open QA (perplexity of the reference answer); with --base, the same "
                        "items and prompts for both and a paired bootstrap of the difference.",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ev.add_argument("--model", default="default", help="default, a run folder, a hub id/folder, or a .gguf")
    ev.add_argument("--base", help="a second model scored identically (e.g. the run's base: default)")
    ev.add_argument("--data", action="append", metavar="FILE", help="evaluation file (repeatable)")
    ev.add_argument("--limit", type=int, help="score at most N rows per file")
    ev.add_argument("--output", default="eval", help="folder for report.json and report.md")
    ev.set_defaults(func=cmd_eval)
    ds = sub.add_parser("datasets", help="list the datasets medtune knows by name")
    ds.set_defaults(func=cmd_datasets)
    return p


def _quiet_libraries(verbose: bool) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        stream=sys.stderr)
    if not verbose:
        import warnings

        warnings.filterwarnings("ignore")
        for name in ("transformers", "datasets", "accelerate", "peft", "torch", "httpx", "huggingface_hub"):
            logging.getLogger(name).setLevel(logging.ERROR)
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries(args.verbose)
    try:
        args.func(args)
    except MedtuneError as e:
        print(f"medtune: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medtune: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
