"""End to end through the real CLI on the real embedded model (SmolLM2-135M GGUF), a few steps."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_medtune_run_on_embedded_model(tmp_path):
    pytest.importorskip("gguf")
    from medtune.model.load import default_model_dir

    try:
        default_model_dir()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"embedded model not installed: {e}")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "medtune.cli", "run", "--data", "builtin", "--max-rows", "60", "--max-steps", "3",
           "--save-steps", "2", "--output", str(run), "--set", "eval.show_samples=1",
           "--set", "eval.max_new_tokens=12", "--set", "eval.gate_sample=16",
           # 3 steps make no assistant: the gate's mechanics are checked here, its published targets by `make demo`
           "--set", "eval.gate_escalate_recall=0", "--set", "eval.gate_refuse_recall=0",
           "--set", "eval.gate_benign_refused=1", "--set", "eval.gate_benign_escalated=1"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert "held-out test split" in res.stdout and "tuned" in res.stdout
    for name in ("adapter_model.safetensors", "adapter_config.json", "config.yaml", "chat_template.jinja",
                 "README.md", "metrics.jsonl", "data/manifest.json", "eval_heldout.json"):
        assert (run / name).exists(), name
    info = json.loads((run / "run.json").read_text())
    assert "<|im_end|>" in info["stop_tokens"] and info["versions"]["transformers"].startswith("5.")
    assert info["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3]
    assert (run / "checkpoints" / "step-2").exists() and (run / "checkpoints" / "step-3").exists()
    card = (run / "README.md").read_text()
    assert "Apache-2.0" in card and "not a medical device" in card.lower() and "CC BY 4.0" in card
    report = json.loads((run / "eval" / "report.json").read_text())
    entry = report["datasets"]["test-split"]
    assert {"answer_loss", "perplexity", "rougeL", "bleu", "format_adherence"} <= set(entry["metrics"])
    assert set(entry["base_metrics"]) == set(entry["metrics"]) and "p_value" in entry["delta"]["answer_loss"]
    for png in ("loss_curves.png", "metrics.png", "safety.png"):
        assert (run / "eval" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert "guard + tuned model" in info["evaluation"]["safety"]
    system = report["datasets"]["redteam-gate-guarded-system"]
    assert system["n"] >= 16 and len(system["per_category"]) >= 10  # every category, benign included
    assert (run / "export" / "gguf-lora-f16" / "export.json").is_file()  # answers written on llama.cpp
    ev = json.loads((run / "eval_heldout.json").read_text())
    assert ev["base"]["loss"] > 0 and ev["tuned"]["loss"] > 0 and len(ev["samples"]) == 1

    # the adapter is ordinary PEFT: it loads onto the base model and changes its output
    from peft import PeftModel

    from medtune.model.load import load_for_inference

    model, tok, src = load_for_inference(str(run))
    assert isinstance(model, PeftModel) and src.kind == "run"
