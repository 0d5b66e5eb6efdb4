"""`medtune export`: a run folder as merged weights, GGUF, a GGUF LoRA or an Ollama folder, with the parity
check's result per export printed and a failed check as exit 1 (the folder kept for inspection); optionally pushed
to the Hugging Face Hub. Flags are checked before the export's minutes of work.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medtune.errors import MedtuneError


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
