"""The command line: bad input gets one clear line naming FILE:LINE or the key, never a traceback."""

import json
import subprocess
import sys

import pytest

from conftest import write_jsonl
from medtune.cli import main


def test_broken_line_is_named_and_skipped(tmp_path, capsys):
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps({"question": "What is anemia?", "answer": "Fewer healthy red blood cells than normal."})
                 + '\n{"question": "broken", "answer": \n' + json.dumps({"question": "What causes gout?"}) + "\n")
    assert main(["prepare", "--data", str(p), "--output", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert f"{p}:2: broken JSON" in err and f"{p}:3: missing field 'answer'" in err
    assert (tmp_path / "out" / "train.jsonl").exists()


def test_unusable_file_exits_nonzero_without_writing(tmp_path, capsys):
    p = tmp_path / "bin.jsonl"
    p.write_bytes(b"\xff\xfe not utf8\n")
    assert main(["prepare", "--data", str(p), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "not UTF-8" in err and f"{p}:1" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["prepare", "--data", str(empty), "--output", str(tmp_path / "o2")]) == 2
    assert "empty" in capsys.readouterr().err


def test_unknown_config_key_exits_2(tmp_path, capsys):
    assert main(["train", "--set", "train.no_such_key=1", "--output", str(tmp_path / "r")]) == 2
    assert "train.no_such_key" in capsys.readouterr().err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lora:\n  rank: 8\n")
    assert main(["config", "--config", str(cfg)]) == 2
    assert "lora.rank" in capsys.readouterr().err


def test_flags_map_to_config(capsys):
    assert main(["config", "--data", "medquad:2", "--data", "builtin", "--lora-r", "8", "--lr", "1e-4",
                 "--val-fraction", "0", "--max-length", "256", "--set", "train.grad_accum=2"]) == 0
    out = capsys.readouterr().out
    for text in ("- medquad:2", "- builtin", "r: 8", "lr: 0.0001", "val_fraction: 0.0", "max_length: 256",
                 "grad_accum: 2"):
        assert text in out


def test_missing_model_folder_is_clear(tmp_path, capsys):
    rows = write_jsonl(tmp_path / "r.jsonl", [{"question": "What is gout?", "answer": "A form of arthritis " * 3}])
    code = main(["train", "--data", str(rows), "--model", str(tmp_path / "nope.gguf"), "--output", str(tmp_path / "r")])
    assert code == 2 and "GGUF file not found" in capsys.readouterr().err


def test_help_teaches():
    out = subprocess.run([sys.executable, "-m", "medtune.cli", "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for text in ("--data", "NAME:WEIGHT", "--resume", "--set", "not a medical device"):
        assert text in out.stdout


@pytest.mark.parametrize("spec", ["someone/some-model-that-is-not-here"])
def test_hub_model_offline_fails_fast(spec, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rows = write_jsonl(tmp_path / "r.jsonl", [{"question": "What is gout?", "answer": "A form of arthritis " * 3}])
    code = main(["train", "--data", str(rows), "--model", spec, "--output", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and spec in err and "--model default" in err


def test_flags_are_never_abbreviated_and_a_near_miss_gets_a_suggestion(capsys):
    with pytest.raises(SystemExit) as e:
        main(["config", "--epoch", "1"])  # argparse would otherwise take it for --epochs
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "medtune config: error: unrecognized arguments: --epoch 1 (did you mean --epochs?)" in err
    with pytest.raises(SystemExit):
        main(["confg"])
    assert "(did you mean config?)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--zzz"])
    assert "did you mean" not in capsys.readouterr().err


def test_an_internal_error_is_one_line_with_the_trace_in_a_log_file(monkeypatch, tmp_path, capsys):
    import medtune.cli as cli

    def broken(args):
        raise KeyError("plan")

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.setattr(cli, "cmd_datasets", broken)
    assert main(["datasets"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("medtune: internal error: KeyError: 'plan' (full trace in ") and "\n" not in err
    logs = list((tmp_path / "medtune" / "logs").glob("crash-*.log"))
    assert len(logs) == 1 and str(logs[0]) in err
    text = logs[0].read_text()
    assert text.startswith("medtune datasets") and "Traceback" in text and "raise KeyError" in text


def test_train_without_data_says_it_uses_the_builtin_data(tmp_path, capsys):
    code = main(["train", "--model", str(tmp_path / "nope.gguf"), "--output", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "no --data given: training on the built-in demo data (builtin); pass --data FILE" in err
    rows = write_jsonl(tmp_path / "r.jsonl", [{"question": "What is gout?", "answer": "A form of arthritis " * 3}])
    main(["train", "--data", str(rows), "--model", str(tmp_path / "nope.gguf"), "--output", str(tmp_path / "r2")])
    assert "no --data given" not in capsys.readouterr().err


def test_progress_is_one_line_per_stage_outside_a_terminal():
    import io

    from medtune.progress import StageLine, progress

    log = io.StringIO()
    assert sum(progress(range(5), desc="base answers", unit="batch", file=log, leave=False)) == 10
    bar = progress(total=3, desc="training", unit="step", file=log)
    for _ in range(3):
        inner = progress(range(2), desc="probe answers", unit="batch", file=log)  # a stage inside another
        list(inner)
        bar.set_postfix(loss="1.234")
        bar.update(1)
    bar.close()
    with progress(total=4, desc="stopped early", unit="row", file=log) as b:
        b.update(1)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 7
    assert lines[0].startswith("base answers: 5 batches ... done in ") and lines[0].endswith(" s")
    assert lines[1] == "training: 3 steps ..."  # ended when the inner stage began, finished further down
    assert all(x.startswith("probe answers: 2 batches ... done in ") for x in lines[2:5])
    assert lines[5].startswith("training: done in ") and lines[5].endswith(" s (loss 1.234)")
    assert lines[6].startswith("stopped early: 4 rows ... stopped at 1/4 after ")

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert not isinstance(progress(range(2), desc="x", file=Terminal()), StageLine)  # a real bar on a terminal


def _summary_inputs(tmp_path):
    from types import SimpleNamespace

    from medtune.config import Config
    from medtune.eval.suite import answer_metrics

    refs = ["Drink water and rest. See a doctor if it lasts more than a week."] * 8
    base = (["Well " * 60] * 8, [False] * 8)  # runs on to the token budget
    tuned = (["Drink water and rest; see a doctor if it lasts. This is general information, not medical advice; "
              "a clinician who knows your history can advise you."] * 8, [True] * 8)
    rep = answer_metrics(refs, {"base": base, "tuned": tuned}, {"base": [2.0 + i / 10 for i in range(8)],
                                                                "tuned": [1.0 + i / 10 for i in range(8)]})
    head = {"escalate_recall": {"value": 0.96}, "refuse_recall": {"value": 0.91}, "benign_refused": {"value": 0.01},
            "benign_escalated": {"value": 0.02}}
    samples = [{"question": "How long does a cold last? " * 8, "reference": refs[0], "base": base[0][0],
                "tuned": tuned[0][0]}] * 3
    result = {"test_rows": 40, "report": rep, "samples": samples,
              "safety": {"guard": head, "guard + tuned model": head}}
    tr = SimpleNamespace(run_dir=tmp_path / "runs" / "demo", model_name="HuggingFaceTB/SmolLM2-135M-Instruct",
                         summary={"steps": 114, "train_rows": 912, "seconds": 243.1, "tokens_per_s": 1530.2,
                                  "precision": "bf16"}, manifest={})
    return Config(), tr, result


def test_the_run_summary_fits_one_screen_in_a_newcomers_order(tmp_path):
    from medtune.run_summary import run_summary

    cfg, tr, result = _summary_inputs(tmp_path)
    text = run_summary(cfg, tr, result)
    lines = text.splitlines()
    assert len(lines) <= 40 and max(len(x) for x in lines if str(tr.run_dir) not in x) <= 100
    flat = " ".join(text.split())  # the order, whatever the line breaks
    order = [flat.index(s) for s in (
        "trained: a LoRA adapter (rank 16) on HuggingFaceTB/SmolLM2-135M-Instruct (the embedded GGUF, de-quantized), "
        "with 912 rows of builtin; 114 steps",
        "base vs tuned on the held-out test split (40 questions;", "format adherence", "safety (guard + tuned model",
        "[3] How long", f"where things are ({tr.run_dir}/)", f"medtune chat --model {tr.run_dir}")]
    assert "32 greedy answers" in flat  # max_generations of the 40 test questions
    assert order == sorted(order)
    fa = next(x for x in lines if x.strip().startswith("format adherence")).split()
    assert fa[2:5] == ["0.000", "1.000", "+1.000"]  # base never stops, tuned always does: the visible change
    assert "escalates 96% of emergencies" in text and "Well Well" in text and "Well " * 60 not in text
    empty = run_summary(cfg, tr, {"safety": result["safety"]}, ["no test split: data.test_fraction is 0"])
    assert "no base vs tuned comparison: no test split: data.test_fraction is 0" in empty
    assert "tuned - base" not in empty and "safety (guard + tuned model" in empty
    assert "SAFETY GATE FAILED" not in text  # a passed gate says nothing more
    failed = run_summary(cfg, tr, {**result, "gate": ["guard + tuned model: benign_escalated 0.111 > 0.05"]})
    assert "SAFETY GATE FAILED (published targets): guard + tuned model: benign_escalated 0.111 > 0.05" in \
        " ".join(failed.split())


def test_run_says_why_it_compared_nothing(tmp_path, tiny_model_dir, capsys):
    rows = write_jsonl(tmp_path / "r.jsonl", [{"question": f"What is condition number {i}?",
                                              "answer": f"Condition {i} is a made-up example; see a doctor."}
                                             for i in range(6)])
    code = main(["run", "--model", str(tiny_model_dir), "--data", str(rows), "--max-steps", "1",
                 "--set", "data.test_fraction=0", "--set", "eval.safety=false", "--set", "train.precision=fp32",
                 "--output", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == 0 and "no base vs tuned comparison: no test split: data.test_fraction is 0" in out
    assert "where things are" in out


def test_library_progress_bars_stay_out_of_a_log_even_with_verbose(capsys):
    import datasets
    import transformers

    datasets.enable_progress_bars()
    transformers.utils.logging.enable_progress_bar()
    assert main(["-v", "config"]) == 0  # stderr is captured here, as in a log file: no library bars
    assert datasets.are_progress_bars_disabled() and not transformers.utils.logging.is_progress_bar_enabled()


def test_readme_names_every_setting_where_train_defaults_differ_from_the_demo_config():
    from pathlib import Path

    from medtune.config import Config, load_config, to_dict

    def flat(d, prefix=""):
        for k, v in d.items():
            yield from flat(v, f"{prefix}{k}.") if isinstance(v, dict) else [(prefix + k, v)]

    root = Path(__file__).resolve().parents[1]
    defaults, demo = dict(flat(to_dict(Config()))), dict(flat(to_dict(load_config(root / "configs" / "default.yaml"))))
    differ = {k for k in defaults if defaults[k] != demo[k]}
    readme = " ".join((root / "README.md").read_text().split())
    section = readme[readme.index("Without `--config`, `train`"):readme.index("Bad input never produces a traceback")]
    named = {"train.batch_size": "micro-batches of 8", "train.grad_accum": "2 x 2 accumulation steps",
             "train.max_length": "`train.max_length` 512 vs 384", "train.lr": "`train.lr` 2e-4 vs 1e-3",
             "train.save_steps": "`train.save_steps`", "train.eval_steps": "`train.eval_steps`",
             "eval.gate_fail": "`eval.gate_fail` true vs false", "data.sources": "`builtin` vs `builtin-info`",
             "data.system_prompt": "`data.system_prompt`", "eval.max_generations": "`eval.max_generations` 32 vs 24"}
    assert differ == set(named), f"configs/default.yaml changed: update the README paragraph ({differ ^ set(named)})"
    assert all(text in section for text in named.values())
