"""The `medtune` command: each verb parses its flags, calls one library function, and prints.

Run as: medtune {run,prepare,train,datasets,config} --help

A verb imports the heavy machinery it runs (the pipeline, torch, datasets, gradio, the guard's model) inside
its own function, so `medtune --help` or a mistyped flag answers in about 0.2 s instead of several seconds;
everything light is imported at the top.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

from medtune import __version__
from medtune.cli_errors import Parser, report_crash
from medtune.config import dump_yaml, load_config
from medtune.data.catalog import CATALOG, local_paths
from medtune.errors import MedtuneError
from medtune.progress import is_terminal
from medtune.run_summary import run_summary
from medtune.safety.inputs import read_prompts
from medtune.safety.policy import ANSWER_CATEGORIES, ESCALATE_CATEGORIES, REFUSE_CATEGORIES
from medtune.serve.audit import format_rows, read_rows
from medtune.serve.auth import load_keys
from medtune.track.runs import diff_runs, find_runs, format_diff, load_run, runs_table
from medtune.track.sweep import parse_grid, sweep
from medtune.train.resume import resume_config

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
    if getattr(args, "resume", False):  # the run's own config.yaml; a contradicting flag is refused by name
        names = {key: flag for flag, (key, _, _) in COMMON_FLAGS.items()} | {"data.sources": "--data"}
        return resume_config(args.config, _overrides(args), names)
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


def _guard_args(p: argparse.ArgumentParser) -> None:
    """--config/--set for verbs that read a config only for the guard's weights (and serve.* for chat/ui)."""
    p.add_argument("--config", metavar="FILE.yaml", help="a YAML config (its safety: section is read)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, e.g. --set safety.guard_model_dir=DIR (repeatable)")


def _use_guard(args: argparse.Namespace) -> Any:
    """The resolved config of --config/--set; the guard loads from its safety.guard_model_dir from now on."""
    from medtune.safety.guard import use_model_dir

    cfg = load_config(getattr(args, "config", None), list(getattr(args, "overrides", None) or []))
    use_model_dir(cfg.safety.guard_model_dir)
    return cfg


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
    if manifest.get("stopped_early"):  # a torn file: the rows before the break are prepared, the rest is missing
        raise MedtuneError(f"{manifest['stopped_early'][0]}: the file breaks off here and the rest of it was not "
                           "read; the rows before the break were prepared. Fix or re-download the file and run "
                           "prepare again")


def cmd_train(args: argparse.Namespace) -> None:
    from medtune.pipeline import launch_train, train_run
    from medtune.train import distributed

    cfg = _load(args)
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

    cfg = _load(args)
    tr, result = run(cfg)
    print("\n" + run_summary(cfg, tr, result, tr.manifest.get("notes")))


def _check_guard_only(args: argparse.Namespace, model_given: bool) -> None:
    """--guard-only scores medtune's own guard on a red-team split and loads no model: anything else is a
    usage error, named in one line before anything is loaded."""
    if args.suite != "safety":
        raise MedtuneError("--guard-only scores the guard alone on a red-team split: use it with --suite safety "
                           "(without it to score a model on --data files)")
    if args.endpoint:
        raise MedtuneError("--guard-only scores medtune's own guard, --endpoint a server's answers: drop one of them")
    given = [flag for flag, on in (("--model", model_given), ("--base", bool(args.base))) if on]
    if given:
        raise MedtuneError(f"--guard-only loads no model, so {' and '.join(given)} would not be scored: drop "
                           f"{' and '.join(given)}, or drop --guard-only to score the whole assistant")


def cmd_eval(args: argparse.Namespace) -> None:
    model_given, args.model = args.model is not None, args.model or "default"
    if args.guard_only:
        _check_guard_only(args, model_given)
    from medtune.eval.safety import BASE_WITH_SAFETY
    from medtune.eval.suite import evaluate, evaluate_safety

    _use_guard(args)
    if args.endpoint:
        from medtune.eval.endpoint import evaluate_endpoint

        if not args.data and args.suite != "safety":
            raise MedtuneError("--endpoint: pass evaluation files with --data FILE and/or --suite safety")
        report = evaluate_endpoint(args.endpoint, args.api_key, args.data or [], limit=args.limit,
                                   output=Path(args.output), suite=args.suite, split=args.split,
                                   model=None if args.model == "default" else args.model)
        for name, e in report["datasets"].items():
            print(f"{name[:27]:<28}{e['kind']:<7}{e['n']:>5}  " + ", ".join(
                f"{m} {v['value']:.3f}" for m, v in e["metrics"].items()))
        print(f"report: {args.output}/report.json and report.md")
        return
    if args.suite == "safety":
        if args.base:
            raise MedtuneError(f"--suite safety: {BASE_WITH_SAFETY}")
        report = evaluate_safety(None if args.guard_only else args.model, limit=args.limit or 60,
                                 output=Path(args.output), split=args.split)
        _print_safety(report)
        if report.get("guard_only"):
            print("whole assistant and model without the guard: skipped (--guard-only; no model loaded)")
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
            if args.base:  # a guard-only entry (safety file) has no base figure
                b = e.get("base_metrics", {}).get(m)
                line += f"{b['value']:>8.3f}" if b else f"{'-':>8}"
                d = e.get("delta", {}).get(m)
                line += f"{d['value']:>+9.3f}{d['p_value']:>7.3f}" if d else ""
            print(line)
        for m, d in e.get("delta", {}).items():
            if m not in e["metrics"]:
                print(f"  {m} tuned - base: {d['value']:+.3f} (95% CI {d['ci95'][0]:+.3f} to {d['ci95'][1]:+.3f}, "
                      f"p={d['p_value']:.3f})")
        if e.get("rejects"):
            print(f"  ({len(e['rejects'])} rows not scored: {e['rejects'][0]['id']}: {e['rejects'][0]['reason']} …)")
        if e.get("delta_note"):
            print(f"  {e['delta_note']}")
    print(f"report: {args.output}/report.json and report.md")


def cmd_guard(args: argparse.Namespace) -> int:
    """One JSON verdict per input on stdout (the contract); every message for people goes to stderr."""
    cfg = _use_guard(args)
    if args.rebuild:
        from medtune.safety import weights

        builder = weights.load_builder()  # one line when this is an installed copy, not a checkout
        configured = cfg.safety.guard_model_dir
        out = Path(configured).expanduser() if configured else weights.user_dir()
        info = builder.build(Path(args.data_dir) if args.data_dir else None, out)
        h = info["cv_headline"]
        print(f"guard rebuilt in {info['seconds']} s: thresholds {info['thresholds']}; cross-validated escalate recall "
              f"{h['escalate_recall']['value']:.3f}, refuse recall {h['refuse_recall']['value']:.3f}, benign refused "
              f"{h['benign_refused']['value']:.3f}, escalated {h['benign_escalated']['value']:.3f}", file=sys.stderr)
        print(f"written to {out}/ (guard_model.npz, .json, .sha256); " + (
            "safety.guard_model_dir points at it" if configured else
            f"use it with --set safety.guard_model_dir={out} or `safety: {{guard_model_dir: {out}}}` in a config; "
            "without that the shipped weights stay in use"), file=sys.stderr)
        return 0
    from medtune.safety.guard import default_guard

    if not args.text and not args.file:
        raise MedtuneError("pass a message (medtune guard \"TEXT\") or --file FILE.jsonl")
    items, bad = read_prompts(args.file) if args.file else ([(i, t) for i, t in enumerate(args.text, 1)], [])
    for where, reason in bad:
        print(f"medtune guard: {where}: {reason} (skipped)", file=sys.stderr)
    verdicts = default_guard().check_many([t for _, t in items]) if items else []
    for (ident, _), v in zip(items, verdicts):
        print(json.dumps({"id": ident, "action": v.action, "category": v.category, "score": v.score}), flush=True)
    return 2 if bad else 0  # bad input, as every other command; 1 means an internal error


GUARD_HELP = (
    "The input guard on its own. Prints one JSON object per input, in input order: "
    '{"id", "action": "answer|escalate|refuse", "category", "score"}; logs go to stderr. '
    f"Categories: {', '.join(ESCALATE_CATEGORIES)} (escalate); {', '.join(REFUSE_CATEGORIES)} (refuse); "
    f"{', '.join(ANSWER_CATEGORIES)} (answer). "
    "A bad row is reported on stderr as FILE:LINE and skipped (exit status 2)."
)


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
    for e in CATALOG.values():
        where = "local" if local_paths(e) else (e.hub_id or "local file needed")
        print(f"{e.name:<28} {e.format:<7} {where:<45} {e.license}")
        if args.verbose:
            print(f"{'':<28} {e.description}; {e.citation}")


def cmd_config(args: argparse.Namespace) -> None:
    print(dump_yaml(_load(args)), end="")


def _talk_assistant(args: argparse.Namespace) -> Any:
    """The guarded Assistant for `chat` and `ui`: sampling defaults from the serve config, overridden by flags."""
    from medtune.assistant import GenParams, load_assistant

    s = _use_guard(args).serve
    temperature = s.temperature if args.temperature is None else args.temperature
    max_tokens = s.max_tokens if args.max_tokens is None else args.max_tokens
    if temperature < 0:
        raise MedtuneError(f"--temperature {temperature}: must be 0 (greedy) or more")
    if not 1 <= max_tokens <= s.max_tokens_limit:
        raise MedtuneError(f"--max-tokens {max_tokens}: must be between 1 and {s.max_tokens_limit}")
    print(f"loading {args.model} ...", file=sys.stderr, flush=True)
    defaults = GenParams(temperature=temperature, top_p=s.top_p, repetition_penalty=s.repetition_penalty,
                         max_tokens=max_tokens)
    return load_assistant(args.model, args.engine, defaults=defaults, n_ctx=s.n_ctx)


def cmd_chat(args: argparse.Namespace) -> int:
    from medtune.serve.chat import run_chat

    assistant = _talk_assistant(args)
    return run_chat(assistant, assistant.defaults)


def cmd_ui(args: argparse.Namespace) -> None:
    from medtune.serve.ui import build_ui, launch_ui

    launch_ui(build_ui(_talk_assistant(args)), host=args.host, port=args.port, share=args.share == "public")


def cmd_serve(args: argparse.Namespace) -> None:
    from medtune.serve.server import serve

    overrides = list(args.overrides)
    for flag in ("host", "port", "engine"):
        if getattr(args, flag) is not None:
            overrides.append(f"serve.{flag}={json.dumps(getattr(args, flag))}")
    resolved = load_config(args.config, overrides)
    from medtune.safety.guard import use_model_dir

    use_model_dir(resolved.safety.guard_model_dir)
    cfg = resolved.serve
    if args.upstream_key and not args.upstream:
        raise MedtuneError("--upstream-key needs --upstream URL")
    serve(args.model, cfg, load_keys(args.api_key, args.keys_file, args.admin_key), upstream=args.upstream,
          upstream_key=args.upstream_key or os.environ.get("MEDTUNE_UPSTREAM_KEY"))


def cmd_audit(args: argparse.Namespace) -> None:
    path = args.path or (load_config(args.config).serve.audit_path if args.config else None)
    sys.stdout.write(format_rows(read_rows(path, args.since), args.format))


def cmd_export(args: argparse.Namespace) -> int:
    from medtune.export import export_run
    from medtune.export.hub import check_repo_id, push

    if (args.dry_run or args.private) and not args.push_to_hub:
        raise MedtuneError(f"{'--dry-run' if args.dry_run else '--private'} applies only with --push-to-hub OWNER/NAME")
    if args.push_to_hub:
        check_repo_id(args.push_to_hub)  # before the export's minutes of work, not after
    for flag, value in (("--parity-prompts", args.parity_prompts), ("--parity-tokens", args.parity_tokens)):
        if value is not None and value < 1:
            raise MedtuneError(f"{flag} must be at least 1, got {value}")
    result = export_run(Path(args.run), args.format, args.quant, args.out, check_parity=not args.no_parity,
                        force=args.force, lora=args.lora, parity_limit=args.parity_prompts,
                        max_new_tokens=args.parity_tokens)
    info = result.info
    print(f"{info['format']} ({info['quant']}) of {info['source_run']} in {info['seconds']} s -> {result.folder}")
    print(f"  starts from: {info['starts_from']}")
    for name in info["files"]:
        size = (result.folder / name).stat().st_size
        types = info["tensor_types"].get(name)
        print(f"  {name:<34}{size / 1e6:>9.1f} MB" + (f"  tensor types {types}" if types else ""))
    for r in info["parity"].get("results", []):
        req = f" (needs >= {r['required']:.0%})" if r["required"] else ""
        print(f"  parity {r['export']}: first {info['parity']['compared_tokens']} tokens match the run on "
              f"{r['match_first_32']:.0%} of {r['prompts']} prompts{req}; stopped {r['stopped']}/{r['prompts']} "
              f"(run {r['run_stopped']}); answer perplexity {r['perplexity']} (run {r['run_perplexity']}) -> "
              + ("ok" if r["passed"] else "FAILED"))
        for d in r["diverged"][:3]:
            print(f"    {d['prompt']}: diverges at token {d['token']}: run {d['run']!r} vs export {d['export']!r}")
        if r["missed_stops"]:
            print(f"    did not stop where the run stops: {', '.join(r['missed_stops'])}")
    if not result.passed:
        print(f"medtune: export failed its parity check; kept for inspection in {result.folder}", file=sys.stderr)
        return 1
    if args.push_to_hub:
        files = push(result.folder, args.push_to_hub, private=args.private, dry_run=args.dry_run)
        verb = "would upload" if args.dry_run else "uploaded"
        print(f"{verb} {len(files)} files to {args.push_to_hub}" + (" (private)" if args.private else ""))
        for name, size in files:
            print(f"  {name}  {size} bytes")
    return 0


def _talk_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--model", default="default", help="default (embedded SmolLM2), a run folder, an export "
                    "folder, a .gguf file or a model folder")
    sp.add_argument("--engine", choices=("auto", "transformers", "llama.cpp"), default="auto",
                    help="auto = llama.cpp where there is a GGUF to run, else transformers")
    sp.add_argument("--temperature", type=float, help="sampling temperature, 0 = greedy (default 0.3)")
    sp.add_argument("--max-tokens", type=int, help="longest answer in tokens (default 512)")
    _guard_args(sp)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
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
    tr = add("train", cmd_train, "fine-tune with LoRA; writes the adapter and its provenance to the run folder")
    tr.add_argument("--nproc", type=int, metavar="N", help="train in N data-parallel processes on this machine "
                    "(torch's elastic launcher; effective batch = batch_size x grad_accum x N; each process gets "
                    "cores/N threads). Several GPUs or DeepSpeed/FSDP: accelerate launch -m medtune.cli train ...")
    tr.add_argument("--oversubscribe", action="store_true", help="allow --nproc above the number of CPU cores")
    add("config", cmd_config, "print the resolved config (defaults < --config < --set < flags)")
    ev = sub.add_parser("eval", help="score a model (and its base, same prompts) with 95%% CIs",
                        description="Score a model on evaluation files: multiple choice (acc, lm-eval MMLU "
                        "protocol) and open QA (perplexity of the reference answer); with --base, the same "
                        "items and prompts for both and a paired bootstrap of the difference.",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ev.add_argument("--model", help="default (when not given), a run folder, a hub id/folder, or a .gguf")
    ev.add_argument("--base", help="a second model scored identically (e.g. the run's base: default)")
    ev.add_argument("--data", action="append", metavar="FILE", help="evaluation file (repeatable)")
    ev.add_argument("--bf16", action="store_true", help="run the forwards under bf16 autocast: ~2.4x faster on CPUs "
                    "with native bf16; the default fp32 matches lm-evaluation-harness exactly")
    ev.add_argument("--suite", choices=("safety",), help="safety: a red-team split (--split) through the guard, the "
                    "whole assistant (guard -> model -> output guard) and the model's own answers (rubric), per "
                    "category; --limit caps the model-without-guard prompts (60); --guard-only skips the model")
    ev.add_argument("--split", choices=("gate", "sealed", "dev"), default="gate",
                    help="--suite safety: gate (the split every `medtune run` checks; default), sealed (written "
                         "apart from the guard's data, hash-checked; score it once per release) or dev (small and "
                         "quick, but it helped choose the guard's thresholds, so its figures are not held out)")
    ev.add_argument("--guard-only", action="store_true",
                    help="--suite safety: score the guard alone on --split (and the held-out consumer questions) "
                         "and load no model; the whole-assistant and model-without-guard figures are skipped. Use "
                         "it for a guard release check (--suite safety --split sealed --guard-only): on the sealed "
                         "split about 1 minute instead of ~12 with the model's answers. Not with --model or --base")
    ev.add_argument("--limit", type=int, help="score at most N rows per file")
    ev.add_argument("--endpoint", metavar="URL", help="score an OpenAI-compatible server instead of a local model "
                    "(medtune serve, llama.cpp, vLLM, Ollama): open QA (ROUGE/BLEU/format), multiple choice by "
                    "generation, safety files and --suite safety; --model names the served model (default: the "
                    "first one the server lists)")
    ev.add_argument("--api-key", help="bearer key for --endpoint")
    _guard_args(ev)
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
                        "  medtune guard --rebuild --data-dir ../shared/data   # refit it (from a checkout)\n"
                        "  medtune guard --set safety.guard_model_dir=~/.local/share/medtune/guard \"TEXT\"",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    gd.add_argument("text", nargs="*", help="message(s) to classify (ids are their positions, from 1)")
    gd.add_argument("--file", metavar="FILE.jsonl", help="rows with `prompt` or `question`, optional `id`")
    gd.add_argument("--rebuild", action="store_true", help="(a checkout of medtune only) refit the guard from the "
                    "red-team build/dev split, guard/fit/, MedSafetyBench train and consumer questions; writes "
                    "guard_model.* to safety.guard_model_dir or ~/.local/share/medtune/guard/")
    gd.add_argument("--data-dir", help="folder with the public datasets for --rebuild (default: the catalog's search)")
    _guard_args(gd)
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
    ch = sub.add_parser("chat", help="talk to a model in the terminal, behind the safety guard",
                        description="A multi-turn chat with the guarded assistant: answers stream as the output "
                        "guard releases them; emergencies and crises get a fixed message with the numbers to call. "
                        "/reset starts over, /exit (or Ctrl-D) quits; Ctrl-C stops an answer.",
                        epilog="examples:\n  medtune chat\n  medtune chat --model runs/mine --engine transformers\n",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    _talk_flags(ch)
    ch.set_defaults(func=cmd_chat)
    ui = sub.add_parser("ui", help="a web chat (Gradio) with the guarded assistant",
                        description="A Gradio chat page over the guarded assistant, on this machine only by "
                        "default; needs the ui extra (pip install 'medtune[ui]').",
                        epilog="examples:\n  medtune ui\n  medtune ui --model runs/mine --port 7861\n",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    _talk_flags(ui)
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 exposes the page to the network)")
    ui.add_argument("--port", type=int, default=7860, help="port of the page (default 7860)")
    ui.add_argument("--share", choices=("never", "public"), default="never",
                    help="never (default): no public link; public: a temporary gradio.live link through "
                    "Gradio's servers (needs network; anyone with the link can use the model)")
    ui.set_defaults(func=cmd_ui)
    sv = sub.add_parser("serve", help="an OpenAI-compatible REST API over the guarded assistant",
                        description="POST /v1/chat/completions (streamed or not; the guard's verdict in the extra "
                        "`medtune` field), GET /v1/models, /health and /metrics (Prometheus), behind API keys, a "
                        "per-key rate limit, request limits, a bounded queue, a kill switch and a SQLite audit log "
                        "(serve.* config keys). Without a key the API is open and allowed on loopback only.",
                        epilog="examples:\n  medtune serve --model default --api-key \"$(openssl rand -hex 16)\"\n"
                        "  medtune serve --model runs/mine --keys-file keys.txt --admin-key ADMINKEY --port 9000\n"
                        "  medtune serve --set serve.rate_limit=10/second --set serve.kill_file=/tmp/medtune.off\n"
                        "  # guard, limits and audit here, generation on a vLLM (or any OpenAI-compatible) server:\n"
                        "  medtune serve --upstream http://gpu-box:8000/v1 --model my-merged-model --api-key KEY\n",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sv.add_argument("--model", default="default", help="default (embedded SmolLM2), a run folder, an export "
                    "folder, a .gguf file or a model folder")
    sv.add_argument("--engine", choices=("auto", "transformers", "llama.cpp"), help="serve.engine (default auto)")
    sv.add_argument("--upstream", metavar="URL", help="generate on this OpenAI-compatible server (vLLM, llama.cpp "
                    "server, another medtune serve); --model is then the model name it serves")
    sv.add_argument("--upstream-key", metavar="KEY", help="bearer key for --upstream (or $MEDTUNE_UPSTREAM_KEY)")
    sv.add_argument("--host", help="address to bind (serve.host, default 127.0.0.1)")
    sv.add_argument("--port", type=int, help="port (serve.port, default 8000)")
    sv.add_argument("--api-key", action="append", default=[], metavar="KEY", help="a bearer key (repeatable)")
    sv.add_argument("--keys-file", metavar="FILE", help="`ID KEY` lines: the audit log records the ID")
    sv.add_argument("--admin-key", metavar="KEY", help="bearer key of POST /admin/kill and /admin/resume")
    sv.add_argument("--config", metavar="FILE.yaml", help="a YAML config (its serve: section is read)")
    sv.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override one config value, e.g. --set serve.rate_limit=10/second (repeatable)")
    sv.set_defaults(func=cmd_serve)
    au = sub.add_parser("audit", help="list or export the API's audit log (one row per chat request)",
                        description="The SQLite audit log `medtune serve` writes (default: the serve.audit_path "
                        "default, $XDG_DATA_HOME/medtune/audit.sqlite3). Text appears only as SHA-256 hashes "
                        "unless the server ran with serve.audit_raw=true.",
                        epilog="examples:\n  medtune audit --since 7d\n  medtune audit --format csv > audit.csv\n"
                        "  medtune audit --path /srv/audit.sqlite3 --since 2026-12-01 --format jsonl\n",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    au.add_argument("--path", metavar="FILE", help="the audit log (default: the server's default path)")
    au.add_argument("--config", metavar="FILE.yaml", help="read serve.audit_path from this config")
    au.add_argument("--since", metavar="WHEN", help="only rows since a date (2026-12-01) or an age (7d, 12h, 30m)")
    au.add_argument("--format", choices=("table", "csv", "jsonl"), default="table")
    au.set_defaults(func=cmd_audit)
    ex = sub.add_parser("export", help="merged weights, GGUF, GGUF LoRA or an Ollama folder, checked for parity",
                        description="Export a run folder for other runtimes with its chat template, system prompt "
                        "and stop tokens, then check that the export answers like the run (greedy answers to 16 "
                        "shipped medical prompts + the run's first test questions: merged and f16 must match the "
                        "run's first 32 tokens on >= 90%% and stop wherever the run stops; other exports must not "
                        "lose a stop where they give the run's answer). Writes "
                        "export.json (files + SHA-256, parity, tensor types, provenance) into the output folder.",
                        epilog="examples:\n  medtune export --run runs/mine --format gguf --quant q4_k_m\n"
                        "  medtune export --run runs/mine --format ollama   # then: ollama create mine -f Modelfile\n"
                        "  medtune export --run runs/mine --format merged --push-to-hub me/mine --dry-run\n",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ex.add_argument("--run", required=True, metavar="DIR", help="the run folder (adapter + provenance)")
    ex.add_argument("--format", required=True, choices=("merged", "gguf", "gguf-lora", "ollama"))
    ex.add_argument("--quant", choices=("f32", "f16", "q8_0", "q4_k_m"),
                    help="gguf/ollama: f16, q8_0 (default), q4_k_m; gguf-lora: f16 (default), q8_0; merged: f32 "
                    "(default), f16")
    ex.add_argument("--out", metavar="DIR", help="output folder (default RUN/export/FORMAT-QUANT/, which serving "
                    "reuses)")
    ex.add_argument("--force", action="store_true", help="replace an existing output folder")
    ex.add_argument("--lora", action="store_true", help="ollama: the unchanged base GGUF + the LoRA as ADAPTER "
                    "instead of one merged GGUF")
    ex.add_argument("--no-parity", action="store_true", help="skip the parity check")
    ex.add_argument("--parity-prompts", type=int, metavar="N", help="check only the first N prompts")
    ex.add_argument("--parity-tokens", type=int, default=256, metavar="N", help="longest answer (default 256)")
    ex.add_argument("--push-to-hub", metavar="OWNER/NAME", help="upload the export folder as one commit")
    ex.add_argument("--private", action="store_true", help="create the hub repo private")
    ex.add_argument("--dry-run", action="store_true", help="with --push-to-hub: list the files, upload nothing")
    ex.set_defaults(func=cmd_export)
    return p


def _quiet_libraries(verbose: bool) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        stream=sys.stderr)
    if not verbose:
        warnings.filterwarnings("ignore")
        for name in ("transformers", "datasets", "accelerate", "peft", "torch", "httpx", "huggingface_hub", "absl",
                     "gguf"):
            logging.getLogger(name).setLevel(logging.ERROR)
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        import transformers

        transformers.utils.logging.set_verbosity_error()
    if not verbose or not is_terminal():  # the libraries' own bars: only with -v, and never into a log
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()


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
    except Exception as e:  # a bug, not the user's input: one line here, the trace in a log file
        return report_crash(e, sys.argv[1:] if argv is None else argv)
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
