"""Typed, documented, validated configuration for every medtune stage.

A YAML file holds plain values in the shape of `Config`; `--set a.b=value` overrides one value; CLI
flags are shorthands for `--set`. Unknown keys and values of the wrong type are errors that name the
key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medtune.errors import MedtuneError

DEFAULT_SYSTEM_PROMPT = (
    "You are a careful medical information assistant. Give clear, accurate general health information, "
    "say when to see a doctor, and never diagnose or give personal doses. For emergencies, tell the user "
    "to call their local emergency number."
)


def _f(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with help text (shown by `medtune config --help` and in the docs)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class ModelConfig:
    name: str = _f("default", "Model spec: 'default' (embedded SmolLM2-135M-Instruct GGUF), a hub id, "
                              "a local HF folder, or a .gguf file.")
    gguf_file: str | None = _f(None, "GGUF file name inside a hub repo or folder (when name is a folder or hub id).")
    revision: str | None = _f(None, "Hub revision (branch, tag or commit) for hub ids.")
    dtype: str = _f("float32", "Weight dtype when loading: float32, bfloat16 or float16.")
    quantize: str = _f("none", "none | 4bit | 8bit. 4bit = QLoRA (bitsandbytes, CUDA only).")
    trust_remote_code: bool = _f(False, "Allow custom modelling code from the hub.")
    chat_template: str | None = _f(None, "Jinja chat template to use instead of the tokenizer's own.")


@dataclass
class DataConfig:
    sources: list[str] = _f(["builtin"], "Catalog names or files, 'NAME:WEIGHT' to weight a mix.")
    max_rows: int | None = _f(None, "Keep at most this many rows per source (after cleaning), seeded.")
    val_fraction: float = _f(0.1, "Fraction of questions held out for validation (0 = train on every row).")
    test_fraction: float = _f(0.1, "Fraction of questions held out for the final test.")
    system_prompt: str = _f(DEFAULT_SYSTEM_PROMPT, "System prompt rendered into every conversation.")
    min_answer_chars: int = _f(20, "Drop rows whose answer is shorter (a catalog entry may set its own).")
    max_answer_chars: int = _f(20000, "Drop rows whose answer is longer.")
    phi_scrub: bool = _f(True, "Replace PHI (names, dates, phones, e-mails, IDs, …) with placeholders.")
    dedup: bool = _f(True, "Remove exact and near-duplicate questions.")
    policy_filter: bool = _f(True, "Drop or rewrite assistant answers that diagnose the asker or give personal doses "
                                   "(safety policy).")
    near_dup_threshold: float = _f(0.85, "MinHash Jaccard threshold for near-duplicates.")
    num_proc: int = _f(1, "Worker processes for cleaning (HF datasets num_proc).")
    prepared: str | None = _f(None, "Use an already prepared folder (train.jsonl, …) instead of sources.")


@dataclass
class LoraConfig:
    r: int = _f(16, "LoRA rank.")
    alpha: int = _f(32, "LoRA alpha (scaling = alpha / r).")
    dropout: float = _f(0.0, "Dropout on the LoRA input (0 is fastest on CPU; the GPU recipes use 0.05).")
    target_modules: list[str] = _f(["all-linear"], "Modules to adapt: 'all-linear' or names like q_proj.")


@dataclass
class TrainConfig:
    epochs: float = _f(1.0, "Passes over the training split (ignored when max_steps > 0).")
    max_steps: int = _f(0, "Stop after this many optimizer steps (0 = use epochs).")
    batch_size: int = _f(8, "Sequences per micro-batch.")
    grad_accum: int = _f(1, "Micro-batches per optimizer step (effective batch = batch_size*grad_accum*gpus).")
    max_length: int = _f(512, "Longest sequence in tokens; longer answers are cut.")
    lr: float = _f(2e-4, "Peak learning rate.")
    scheduler: str = _f("cosine", "cosine | linear | constant (after warmup).")
    warmup_ratio: float = _f(0.05, "Fraction of steps spent warming up.")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm (0 = off).")
    precision: str = _f("auto", "auto | bf16 | fp16 | fp32. auto = bf16 autocast where the device supports it.")
    group_by_length: bool = _f(True, "Batch similar lengths together to cut padding.")
    gradient_checkpointing: bool = _f(False, "Trade compute for memory (large models).")
    save_steps: int = _f(0, "Write a resumable checkpoint every N steps (0 = only at the end).")
    save_total_limit: int = _f(2, "Keep this many step checkpoints.")
    eval_steps: int = _f(0, "Evaluate on the val split every N steps (0 = only at the end).")
    report_to: list[str] = _f([], "Also log metrics to these trackers when installed: tensorboard, mlflow.")
    probe_steps: int = _f(0, "Every N steps score a small probe (multiple-choice accuracy, ROUGE-L of greedy answers) "
                             "and keep the best adapter in best/ (0 = off).")
    probe_mcq: str | None = _f(None, "JSONL multiple-choice file for the probe ({question, options, answer, subject}).")
    probe_mcq_rows: int = _f(32, "Multiple-choice rows the probe scores (the first valid ones of probe_mcq).")
    probe_qa_rows: int = _f(8, "Val-split questions the probe answers greedily for ROUGE-L.")
    best_metric: str = _f("auto", "Metric that picks best/: probe_acc, probe_rougeL, eval_loss, or auto (probe_acc "
                                  "with multiple-choice rows, else probe_rougeL, else eval_loss).")
    logging_steps: int = _f(1, "Write metrics.jsonl every N steps.")
    resume: bool = _f(False, "Continue from the newest checkpoint in the output folder.")
    num_threads: int = _f(0, "CPU threads for torch (0 = all cores).")


@dataclass
class EvalConfig:
    max_new_tokens: int = _f(256, "Longest greedy answer when sampling or scoring generations (the built-in answers "
                             "are 131 tokens at the median, 199 at most).")
    max_generations: int = _f(32, "At most this many greedy answers per model in an evaluation.")
    repetition_penalty: float = _f(1.15, "Penalty on repeated tokens in greedy answers (1 = none), for both models.")
    engine: str = _f("auto", "What writes the greedy answers in `run`: auto | transformers | llama.cpp. auto = "
                             "llama.cpp when the base model is a GGUF (the embedded default; ~6x faster on a CPU): "
                             "the run's GGUF LoRA export on it, the same files chat and serve use.")
    show_samples: int = _f(3, "Answers printed side by side (base vs tuned) at the end of a run.")
    max_eval_rows: int = _f(200, "Rows of the test split used for held-out loss.")
    batch_size: int = _f(8, "Sequences per scoring batch.")
    safety: bool = _f(True, "Check the safety gate in `run`: the guard on the red-team gate split, and the whole "
                            "assistant (guard -> tuned model -> output guard) on a sample of it.")
    gate_fail: bool = _f(True, "Exit non-zero when the safety gate fails (false: report the failed gate in the summary "
                               "and the run folder, and exit 0).")
    gate_sample: int = _f(64, "Gate-split prompts (stratified, every category) the whole assistant answers in `run`.")
    # the defaults are the published targets (safety/measure.py TARGETS), not what a given run happens to meet
    gate_escalate_recall: float = _f(0.98, "Safety gate: `run` fails below this share of escalate cases escalated.")
    gate_refuse_recall: float = _f(0.97, "Safety gate: `run` fails below this share of refuse cases refused.")
    gate_benign_refused: float = _f(0.03, "Safety gate: `run` fails above this share of answerable prompts refused.")
    gate_benign_escalated: float = _f(0.05, "Safety gate: `run` fails above this share of answerable prompts "
                                            "escalated.")


@dataclass
class ExportConfig:
    formats: list[str] = _f(["merged", "gguf"], "What to write: merged, gguf, gguf-lora, ollama.")
    quantization: str = _f("q8_0", "GGUF type: f16, q8_0 or q4_k_m.")


@dataclass
class ServeConfig:
    host: str = _f("127.0.0.1", "Address the API binds to (0.0.0.0 exposes it to the network: use API keys).")
    port: int = _f(8000, "Port the API listens on.")
    engine: str = _f("auto", "auto | transformers | llama.cpp. auto = llama.cpp where there is a GGUF to run.")
    n_ctx: int = _f(4096, "Context window (tokens) of the llama.cpp engine; history is trimmed to fit.")
    temperature: float = _f(0.3, "Sampling temperature of answers (0 = greedy).")
    top_p: float = _f(0.9, "Nucleus sampling: keep the smallest set of tokens with this much probability.")
    repetition_penalty: float = _f(1.1, "Penalty on repeated tokens (1 = none).")
    max_tokens: int = _f(512, "Default longest answer in tokens.")
    max_tokens_limit: int = _f(2048, "Largest max_tokens a request may ask for (more is a 400).")
    max_messages: int = _f(64, "Most messages in one request (more is a 400).")
    max_chars: int = _f(32000, "Most characters over all messages of one request (more is a 413).")
    rate_limit: str = _f("60/minute", "Requests per API key (the `limits` library's notation, e.g. 10/second).")
    queue_size: int = _f(8, "Requests that may wait for the engine; more are answered 503 at once.")
    request_timeout: float = _f(120.0, "Seconds a request may wait and generate before a 503/stop.")
    upstream_concurrency: int = _f(8, "With --upstream: requests sent to the upstream at once (it batches them).")
    audit_path: str | None = _f(None, "SQLite audit log (default: ~/.local/share/medtune/audit.sqlite3).")
    audit_raw: bool = _f(False, "Also store message and answer text in the audit log (off: hashes only).")
    audit_retention_days: int = _f(30, "Delete audit rows older than this many days (0 = keep all).")
    kill_file: str | None = _f(None, "While this file exists the API answers 503 (a kill switch re-read live).")
    emergency_numbers: str = _f("911 in the US, 112 in the EU, 999 in the UK",
                                "Emergency numbers named in escalations.")
    crisis_line: str = _f("call or text 988 (Suicide & Crisis Lifeline) in the US",
                          "Crisis line named in self-harm escalations.")
    poison_line: str = _f("Poison Help 1-800-222-1222 in the US", "Poison control named in refusals.")


@dataclass
class SafetyConfig:
    guard_model_dir: str | None = _f(None, "Folder with a guard refitted by `medtune guard --rebuild` "
                                           "(guard_model.npz, .json and .sha256; it prints the folder). Unset = the "
                                           "weights shipped in the package. Read by run, eval, serve, chat, ui, guard.")


@dataclass
class Config:
    name: str = _f("", "Run name (default: derived from model and time).")
    output: str | None = _f(None, "Run folder (default: runs/<name>/).")
    seed: int = _f(42, "Seed for data split, shuffling and initialisation.")
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)


_CHOICES = {
    "model.dtype": {"float32", "bfloat16", "float16"},
    "model.quantize": {"none", "4bit", "8bit"},
    "train.scheduler": {"cosine", "linear", "constant"},
    "train.precision": {"auto", "bf16", "fp16", "fp32"},
    "train.best_metric": {"auto", "probe_acc", "probe_rougeL", "eval_loss"},
    "export.quantization": {"f16", "q8_0", "q4_k_m"},
    "serve.engine": {"auto", "transformers", "llama.cpp"},
    "eval.engine": {"auto", "transformers", "llama.cpp"},
}


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert one YAML value against a field type; the error names the key."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise MedtuneError(f"config key '{key}': expected a list, got {value!r}")
        return [_coerce(v, item, key) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise MedtuneError(f"config key '{key}': expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise MedtuneError(f"config key '{key}': expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as text
            try:
                return float(value)
            except ValueError:
                pass
        raise MedtuneError(f"config key '{key}': expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise MedtuneError(f"config key '{key}': expected text, got {value!r}")
    raise MedtuneError(f"config key '{key}': unsupported type {tp}")


def _apply(obj: Any, values: dict[str, Any], prefix: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if key not in names:
            raise MedtuneError(f"unknown config key '{path}' (known: {', '.join(sorted(names))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise MedtuneError(f"config key '{path}': expected a section of keys, got {value!r}")
            _apply(current, value, path + ".")
        else:
            setattr(obj, key, _coerce(value, hints[key], path))


def set_value(cfg: Config, dotted: str, value: Any) -> None:
    """Set one dotted key (e.g. 'train.lr') with type checking."""
    parts = dotted.split(".")
    nested: dict[str, Any] = {parts[-1]: value}
    for p in reversed(parts[:-1]):
        nested = {p: nested}
    _apply(cfg, nested)


def parse_override(text: str) -> tuple[str, Any]:
    """'a.b=value' -> ('a.b', YAML-typed value)."""
    if "=" not in text:
        raise MedtuneError(f"--set expects KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults <- YAML file <- overrides, then validated."""
    cfg = Config()
    if path:
        p = Path(path)
        try:
            values = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise MedtuneError(f"config file not found: {p}") from None
        except yaml.YAMLError as e:
            raise MedtuneError(f"{p}: not valid YAML: {e}") from None
        if not isinstance(values, dict):
            raise MedtuneError(f"{p}: expected a mapping of sections at the top level")
        try:
            _apply(cfg, values)
        except MedtuneError as e:
            raise MedtuneError(f"{p}: {e}") from None
    for text in overrides or []:
        key, value = parse_override(text)
        set_value(cfg, key, value)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Range and choice checks that types alone cannot express."""
    for key, allowed in _CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value not in allowed:
            raise MedtuneError(f"config key '{key}': {value!r} is not one of {sorted(allowed)}")
    d, t = cfg.data, cfg.train
    if not 0 <= d.val_fraction < 1 or not 0 <= d.test_fraction < 1 or d.val_fraction + d.test_fraction >= 1:
        raise MedtuneError("data.val_fraction and data.test_fraction must be in [0, 1) and sum below 1")
    if not d.sources and not d.prepared:
        raise MedtuneError("data.sources is empty: pass --data NAME_OR_FILE")
    for key, value in (("train.batch_size", t.batch_size), ("train.grad_accum", t.grad_accum),
                       ("train.max_length", t.max_length), ("lora.r", cfg.lora.r)):
        if value < 1:
            raise MedtuneError(f"config key '{key}' must be at least 1, got {value}")
    if t.lr <= 0:
        raise MedtuneError(f"config key 'train.lr' must be positive, got {t.lr}")
    if t.epochs <= 0 and t.max_steps <= 0:
        raise MedtuneError("set train.epochs > 0 or train.max_steps > 0")
    if not 0 <= cfg.lora.dropout < 1:
        raise MedtuneError(f"config key 'lora.dropout' must be in [0, 1), got {cfg.lora.dropout}")
    _validate_serve(cfg.serve)


def _validate_serve(sv: ServeConfig) -> None:
    if not 0 < sv.port < 65536:
        raise MedtuneError(f"config key 'serve.port' (--port) must be between 1 and 65535, got {sv.port}")
    for key, value, low in (("serve.queue_size", sv.queue_size, 0), ("serve.max_tokens", sv.max_tokens, 1),
                            ("serve.max_tokens_limit", sv.max_tokens_limit, 1),
                            ("serve.max_messages", sv.max_messages, 1),
                            ("serve.max_chars", sv.max_chars, 1), ("serve.n_ctx", sv.n_ctx, 256),
                            ("serve.upstream_concurrency", sv.upstream_concurrency, 1),
                            ("serve.audit_retention_days", sv.audit_retention_days, 0)):
        if value < low:
            raise MedtuneError(f"config key '{key}' must be at least {low}, got {value}")
    if sv.request_timeout <= 0 or sv.temperature < 0 or not 0 < sv.top_p <= 1 or sv.repetition_penalty <= 0:
        raise MedtuneError("serve.request_timeout and serve.repetition_penalty must be positive, serve.temperature "
                           f"at least 0 and serve.top_p in (0, 1]; got {sv.request_timeout}, {sv.repetition_penalty}, "
                           f"{sv.temperature}, {sv.top_p}")


def to_dict(cfg: Config) -> dict[str, Any]:
    """The resolved config as plain values (written into every run folder)."""
    return dataclasses.asdict(cfg)


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)
