"""The measuring verbs: `medtune eval` (a model and its base on evaluation files with 95% CIs, a served
endpoint, or the safety suite: guard, whole assistant and model per red-team category) and `medtune guard` (the input
guard's verdicts as JSON lines on stdout, or --rebuild to refit it). Flag combinations that cannot be scored are
refused in one line before any model loads; the eval and guard machinery is imported inside the verbs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from medtune.cli_config import use_guard
from medtune.errors import MedtuneError
from medtune.safety.inputs import read_prompts


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

    use_guard(args)
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


def cmd_guard(args: argparse.Namespace) -> int:
    """One JSON verdict per input on stdout (the contract); every message for people goes to stderr."""
    cfg = use_guard(args)
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
