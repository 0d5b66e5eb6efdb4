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
