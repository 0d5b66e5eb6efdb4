"""Resume that cannot lie: `--resume` continues the run that was started, with the config it was started with.

The run folder's own `config.yaml` is the config of a resumed run. A flag (or `--set`, or `--config`
value) that repeats a saved value is accepted, so "the same command plus --resume" works; one that
contradicts it would silently train a different run (another epoch count ends at another step, another
batch size reorders the data), so it is refused with a message naming the flag. Only settings that do not
change what is learned may differ (how often to checkpoint or log, threads, trackers).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from medtune.config import Config, load_config, parse_override, set_value
from medtune.errors import MedtuneError

MAY_CHANGE = frozenset({"output", "train.resume", "train.save_steps", "train.save_total_limit",
                        "train.logging_steps", "train.num_threads", "train.report_to"})


def _flatten(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in values.items():
        if isinstance(value, dict):
            out += _flatten(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def _get(cfg: Config, dotted: str) -> Any:
    obj: Any = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def requested_output(config_file: str | None, overrides: list[str]) -> str | None:
    """The run folder named on the command line (`--output` / `--set output=`), else in the --config file."""
    out = None
    if config_file:
        out = dict(_flatten(_read_yaml(config_file))).get("output")
    for text in overrides:
        key, value = parse_override(text)
        if key == "output":
            out = value
    return str(out) if out else None


def _read_yaml(path: str) -> dict[str, Any]:
    try:
        values = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError:
        raise MedtuneError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        raise MedtuneError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(values, dict):
        raise MedtuneError(f"{path}: expected a mapping of sections at the top level")
    return values


def resume_config(config_file: str | None, overrides: list[str], flag_names: dict[str, str] | None = None) -> Config:
    """The saved config of the run to resume, checked against what the command line asks for."""
    names = flag_names or {}
    out = requested_output(config_file, overrides)
    if not out:
        raise MedtuneError("--resume: name the run folder to continue with --output RUN_DIR")
    run_dir = Path(out)
    if not run_dir.is_dir():
        raise MedtuneError(f"--resume: {run_dir} does not exist; start the run without --resume")
    saved_path = run_dir / "config.yaml"
    if not saved_path.exists():
        raise MedtuneError(f"--resume: {run_dir} is not a medtune run folder (no config.yaml); "
                           "start a run there without --resume, or name the run folder")
    saved = load_config(saved_path)
    asked = [(key, value, f"--config {config_file} ({key})") for key, value in
             _flatten(_read_yaml(config_file))] if config_file else []
    for text in overrides:
        key, value = parse_override(text)
        asked.append((key, value, f"{names[key]} {value}" if key in names else f"--set {text}"))
    cfg = copy.deepcopy(saved)
    for key, value, where in asked:
        probe = copy.deepcopy(saved)
        set_value(probe, key, value)  # type-checks and names an unknown key
        if key in MAY_CHANGE:
            set_value(cfg, key, value)
        elif _get(probe, key) != _get(saved, key):
            raise MedtuneError(f"--resume: {where} contradicts the run's saved config ({key}: "
                               f"{_get(saved, key)!r} in {saved_path}); a resumed run keeps its config: drop the "
                               "flag, or start a new run in another --output")
    cfg.output = str(run_dir)
    cfg.train.resume = True
    return cfg
