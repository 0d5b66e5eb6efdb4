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
from pathlib import Path
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

    return load_config(args.config, _overrides(args))


def _overrides(args: argparse.Namespace) -> list[str]:
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
        rep = result["report"]
        print(f"\nheld-out test split ({result['test_rows']} rows; overlap/format on {rep['n']} greedy answers):")
        print(f"  {'metric':<18}{'base':>9}{'tuned':>9}   95% CI (tuned)")
        for m, v in rep["metrics"].items():
            b = rep["base_metrics"][m]["value"]
            print(f"  {m:<18}{b:>9.3f}{v['value']:>9.3f}   {v['ci95'][0]:.3f}-{v['ci95'][1]:.3f}")
        for m, d in rep["delta"].items():
            print(f"  {m} tuned - base: {d['value']:+.3f} (95% CI {d['ci95'][0]:+.3f} to {d['ci95'][1]:+.3f}, "
                  f"p={d['p_value']:.3f})")
        for name, h in result.get("safety", {}).items():
            print(f"  safety, {name}: " + ", ".join(f"{k} {x['value']:.3f}" for k, x in h.items()))
        for i, smp in enumerate(result["samples"], 1):
            print(f"\n[{i}] Q: {smp['question']}")
            print(textwrap.indent(textwrap.fill("base:  " + smp["base"], 100), "    "))
            print(textwrap.indent(textwrap.fill("tuned: " + smp["tuned"], 100), "    "))
    d = tr.run_dir
    print(f"\nartifacts in {d}/:\n  adapter_model.safetensors + adapter_config.json (PEFT LoRA adapter)\n"
          f"  README.md (model card), config.yaml, run.json, chat_template.jinja, tokenizer/\n"
          f"  data/ (train/val/test + manifest.json), metrics.jsonl, checkpoints/, eval_heldout.json\n"
          f"  eval/ (report.json, report.md, loss_curves.png, metrics.png, safety.png)")


def cmd_eval(args: argparse.Namespace) -> None:
    from medtune.eval.suite import evaluate

    if args.suite == "safety":
        from medtune.eval.safety import evaluate_safety

        report = evaluate_safety(args.model, args.base, limit=args.limit or 60, output=Path(args.output))
        _print_safety(report)
        print(f"report: {args.output}/report.json and report.md")
        return
    if not args.data:
        raise MedtuneError("pass at least one evaluation file with --data FILE (or --suite safety)")
    protocols = tuple(p.strip() for p in args.mcq_protocols.split(",") if p.strip())
    unknown = set(protocols) - {"letters", "text", "chat", "generative"}
    if unknown:
        raise MedtuneError(f"--mcq-protocols: unknown {sorted(unknown)} (letters, text, chat, generative)")
    report = evaluate(args.model, args.base, args.data, limit=args.limit, output=Path(args.output),
                      mcq_protocols=protocols, bf16=args.bf16)
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


def cmd_guard(args: argparse.Namespace) -> int:
    """One JSON verdict per input on stdout (the contract); every message for people goes to stderr."""
    if args.rebuild:
        from medtune.safety.build import build

        info = build(Path(args.data_dir) if args.data_dir else None)
        h = info["cv_headline"]
        print(f"guard rebuilt in {info['seconds']} s: thresholds {info['thresholds']}; cross-validated escalate recall "
              f"{h['escalate_recall']['value']:.3f}, refuse recall {h['refuse_recall']['value']:.3f}, benign refused "
              f"{h['benign_refused']['value']:.3f}, escalated {h['benign_escalated']['value']:.3f}", file=sys.stderr)
        return 0
    from medtune.safety.guard import default_guard
    from medtune.safety.inputs import read_prompts

    if not args.text and not args.file:
        raise MedtuneError("pass a message (medtune guard \"TEXT\") or --file FILE.jsonl")
    items, bad = read_prompts(args.file) if args.file else ([(i, t) for i, t in enumerate(args.text, 1)], [])
    for where, reason in bad:
        print(f"medtune guard: {where}: {reason} (skipped)", file=sys.stderr)
    verdicts = default_guard().check_many([t for _, t in items]) if items else []
    for (ident, _), v in zip(items, verdicts):
        print(json.dumps({"id": ident, "action": v.action, "category": v.category, "score": v.score}), flush=True)
    return 1 if bad else 0


GUARD_HELP = (
    "The input guard on its own. Prints one JSON object per input, in input order: "
    '{"id", "action": "answer|escalate|refuse", "category", "score"}; logs go to stderr. '
    "Categories: emergency, self_harm (escalate); lethal_dose, harm_others, prescription_request, "
    "unethical_practice (refuse); stop_medication, diagnosis_request, out_of_scope, benign "
    "(answer). A bad JSONL line is reported with its line number and skipped (exit status 1)."
)


def cmd_runs(args: argparse.Namespace) -> None:
    from medtune.track.runs import diff_runs, find_runs, format_diff, load_run, runs_table

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
    from medtune.track.runs import runs_table
    from medtune.track.sweep import parse_grid, sweep

    if not args.grid:
        raise MedtuneError("pass at least one --grid KEY=V1,V2 (KEY is a config path, as in --set)")
    out_root = Path(args.output or "runs/sweep")
    overrides = [o for o in _overrides(args) if not o.startswith("output=")]
    records = sweep(overrides, args.config, parse_grid(args.grid), out_root, run)
    print(runs_table(records, fmt="markdown"), end="")
    print(f"experiment table: {out_root}/experiments.md, experiments.csv and experiments.png")


def _print_safety(report: dict[str, Any]) -> None:
    from medtune.eval.safety import HEADLINE

    print(f"{'system':<34}{'n':>5}  " + "".join(f"{m:>18}" for m in HEADLINE))
    for name, e in report["datasets"].items():
        for role in ("metrics", "base_metrics"):
            if role not in e:
                continue
            label = name + (" (base)" if role == "base_metrics" else "")
            cells = "".join(f"{e[role][m]['value']:>18.3f}" if m in e[role] else f"{'-':>18}" for m in HEADLINE)
            print(f"{label[:33]:<34}{e['n']:>5}  {cells}")


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
    ev.add_argument("--bf16", action="store_true", help="run the forwards under bf16 autocast: ~2.4x faster on CPUs "
                    "with native bf16; the default fp32 matches lm-evaluation-harness exactly")
    ev.add_argument("--suite", choices=("safety",), help="safety: the red-team test split through the guard and "
                    "through the model's own answers (rubric), per category; --limit caps the model's prompts (60)")
    ev.add_argument("--limit", type=int, help="score at most N rows per file")
    ev.add_argument("--output", default="eval", help="folder for report.json and report.md")
    ev.add_argument("--mcq-protocols", default="letters", metavar="LIST",
                    help="multiple-choice protocols: letters (acc, lm-eval MMLU), text (acc_norm), chat (acc_chat: "
                         "letters through the chat template), generative (acc_gen + unparsed_rate); default "
                         "letters")
    ev.set_defaults(func=cmd_eval)
    gd = sub.add_parser("guard", help="classify messages: escalate, refuse or answer (JSON lines on stdout)",
                        description=textwrap.fill(GUARD_HELP, 100),
                        epilog="examples:\n  medtune guard \"my dad collapsed and isn't breathing\"\n"
                        "  medtune guard --file prompts.jsonl > verdicts.jsonl\n"
                        "  medtune guard --rebuild --data-dir ../shared/data   # refit the shipped classifier",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    gd.add_argument("text", nargs="*", help="message(s) to classify (ids are their positions, from 1)")
    gd.add_argument("--file", metavar="FILE.jsonl", help="rows with `prompt` or `question`, optional `id`")
    gd.add_argument("--rebuild", action="store_true", help="refit the guard from the red-team build/dev split, "
                    "MedSafetyBench train and consumer questions; writes the packaged guard_model.*")
    gd.add_argument("--data-dir", help="folder with the public datasets for --rebuild (default: the catalog's search)")
    gd.set_defaults(func=cmd_guard)
    rn = sub.add_parser("runs", help="list runs with their settings and metrics, or diff two runs",
                        description="The experiment table of every run folder under --root (read from the run "
                        "folders themselves: run.json, config.yaml, metrics.jsonl), best run marked.",
                        epilog="examples:\n  medtune runs\n  medtune runs --format csv > runs.csv\n"
                        "  medtune runs --diff runs/a runs/b", formatter_class=argparse.RawDescriptionHelpFormatter)
    rn.add_argument("--root", default="runs", help="folder that holds run folders (default: runs)")
    rn.add_argument("--format", choices=("markdown", "csv"), default="markdown")
    rn.add_argument("--diff", nargs=2, metavar=("RUN_A", "RUN_B"), help="settings and metrics that differ")
    rn.set_defaults(func=cmd_runs)
    sw = add("sweep", cmd_sweep, "one run per combination of --grid values; writes the experiment table")
    sw.add_argument("--grid", action="append", metavar="KEY=V1,V2",
                    help="config path and values, e.g. --grid train.lr=1e-4,5e-5 --grid lora.r=8,16 (repeatable)")
    sw.epilog = ("examples:\n  medtune sweep --grid train.lr=3e-4,1e-4 --grid lora.r=8,16 --output runs/sweep1\n"
                 "  (run the same command again to continue an interrupted sweep)\n")
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
        status = args.func(args)
    except MedtuneError as e:
        print(f"medtune: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medtune: interrupted", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
