"""The `medtune` command: the parser of every verb, and `main`, which runs one and turns a failure into one line.

Run as: medtune {run,prepare,train,datasets,config} --help

Each verb parses its flags, calls one library function and prints; the verbs live in modules named for what they
own (cli_train, cli_data, cli_eval, cli_serve, cli_export; cli_config turns flags into a config). A verb imports the
heavy machinery it runs (the pipeline, torch, datasets, gradio, the guard's model) inside its own function, so
`medtune --help` or a mistyped flag answers in about 0.2 s instead of several seconds; everything light is imported
at the top. build_parser binds the verbs by their names in this module, so a test can replace one here.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
import warnings
from typing import Any

from medtune import __version__
from medtune.cli_config import add_config_args, add_guard_config_args, cmd_config
from medtune.cli_data import cmd_datasets, cmd_prepare
from medtune.cli_errors import Parser, report_crash
from medtune.cli_eval import cmd_eval, cmd_guard
from medtune.cli_export import cmd_export
from medtune.cli_serve import cmd_audit, cmd_chat, cmd_serve, cmd_ui
from medtune.cli_train import cmd_run, cmd_runs, cmd_sweep, cmd_train
from medtune.errors import MedtuneError
from medtune.progress import is_terminal
from medtune.safety.policy import ANSWER_CATEGORIES, ESCALATE_CATEGORIES, REFUSE_CATEGORIES

EPILOG = """\
examples:
  medtune run                                  # built-in data, embedded model, ~5 min on a laptop CPU
  medtune prepare --data medquad --data builtin:2 --output data/mix
  medtune train --data my_rows.jsonl --epochs 2 --lora-r 8 --output runs/mine
  medtune train --config configs/tinyllama-lora.yaml --set train.lr=1e-4
  medtune train --output runs/mine --resume     # continue after a crash or Ctrl-C

medtune is for education and research. It is not a medical device.
"""


GUARD_HELP = (
    "The input guard on its own. Prints one JSON object per input, in input order: "
    '{"id", "action": "answer|escalate|refuse", "category", "score"}; logs go to stderr. '
    f"Categories: {', '.join(ESCALATE_CATEGORIES)} (escalate); {', '.join(REFUSE_CATEGORIES)} (refuse); "
    f"{', '.join(ANSWER_CATEGORIES)} (answer). "
    "A bad row is reported on stderr as FILE:LINE and skipped (exit status 2)."
)


def _talk_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--model", default="default", help="default (embedded SmolLM2), a run folder, an export "
                    "folder, a .gguf file or a model folder")
    sp.add_argument("--engine", choices=("auto", "transformers", "llama.cpp"), default="auto",
                    help="auto = llama.cpp where there is a GGUF to run, else transformers")
    sp.add_argument("--temperature", type=float, help="sampling temperature, 0 = greedy (default 0.3)")
    sp.add_argument("--max-tokens", type=int, help="longest answer in tokens (default 512)")
    add_guard_config_args(sp)


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
        add_config_args(sp, training=training)
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
                         "split about 20 seconds instead of ~12 minutes with the model's answers. Not with --model or "
                         "--base")
    ev.add_argument("--limit", type=int, help="score at most N rows per file")
    ev.add_argument("--endpoint", metavar="URL", help="score an OpenAI-compatible server instead of a local model "
                    "(medtune serve, llama.cpp, vLLM, Ollama): open QA (ROUGE/BLEU/format), multiple choice by "
                    "generation, safety files and --suite safety; --model names the served model (default: the "
                    "first one the server lists)")
    ev.add_argument("--api-key", help="bearer key for --endpoint")
    add_guard_config_args(ev)
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
    add_guard_config_args(gd)
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
