"""The verbs that put the guarded assistant in front of people: `chat` (terminal), `ui` (Gradio page),
`serve` (the OpenAI-compatible API with keys, limits and an audit log) and `audit` (that log read back). Sampling
defaults come from the config's serve: section; flags override them and are checked before a model loads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from medtune.cli_config import use_guard
from medtune.config import load_config
from medtune.errors import MedtuneError
from medtune.serve.audit import format_rows, read_rows
from medtune.serve.auth import load_keys


def _talk_assistant(args: argparse.Namespace) -> Any:
    """The guarded Assistant for `chat` and `ui`: sampling defaults from the serve config, overridden by flags."""
    from medtune.assistant import GenParams, load_assistant

    s = use_guard(args).serve
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
