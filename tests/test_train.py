"""LoRA training invariants on a tiny random Llama (offline, CPU, seconds)."""

import json

import pytest
import torch

from conftest import ASSETS
from medtune.config import Config
from medtune.data.prepare import prepare
from medtune.data.tokenize import collate, encode
from medtune.errors import MedtuneError
from medtune.model.load import load_for_training
from medtune.model.loss import AnswerLoss, full_logits_loss
from medtune.train import recipe


def _cfg(model_dir, out, **train):
    cfg = Config(output=str(out), seed=7)
    cfg.model.name = str(model_dir)
    cfg.data.sources = [str(ASSETS / "qa_small.jsonl")]
    cfg.data.val_fraction = 0.0
    cfg.data.test_fraction = 0.0
    cfg.lora.r, cfg.lora.alpha = 8, 16
    cfg.train.batch_size = 4
    cfg.data.system_prompt = "Be careful."
    cfg.train.max_length = 256
    cfg.train.precision = "fp32"
    cfg.train.lr = 5e-3
    cfg.train.warmup_ratio = 0.0
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


def _train(cfg, data_dir=None):
    model, tok, _ = load_for_training(cfg.model, cfg.lora, seed=cfg.seed)
    from pathlib import Path

    run_dir = Path(cfg.output)
    if data_dir is None:
        data_dir = run_dir / "data"
        prepare(cfg.data.sources, data_dir, cfg.data, cfg.seed)
    summary = recipe.train(cfg, data_dir, run_dir, model, tok)
    return model, tok, summary


def _metrics(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_only_lora_weights_change_and_loss_falls(tiny_model_dir, tmp_path):
    cfg = _cfg(tiny_model_dir, tmp_path / "run", max_steps=100, lr=2e-2)
    model, tok, _ = load_for_training(cfg.model, cfg.lora)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    prepare(cfg.data.sources, tmp_path / "run" / "data", cfg.data, cfg.seed)
    summary = recipe.train(cfg, tmp_path / "run" / "data", tmp_path / "run", model, tok)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed and all("lora_" in n for n in changed)
    assert {n for n, p in model.named_parameters() if p.requires_grad} >= {n for n in changed if "lora_B" in n}
    losses = [m["loss"] for m in _metrics(tmp_path / "run")]
    assert len(losses) == 100 and summary["steps"] == 100
    assert losses[-1] < 0.5 * losses[0]  # a tiny set is memorised: the adapter really learns


@pytest.mark.parametrize("chunk", [3, 512])
def test_answer_only_loss_equals_full_logits(tiny_model_dir, tiny_tokenizer, monkeypatch, chunk):
    from medtune.model import loss as loss_mod

    monkeypatch.setattr(loss_mod, "CE_CHUNK", chunk)  # slices of 3 tokens exercise the chunked path
    cfg = Config()
    cfg.model.name = str(tiny_model_dir)
    model, tok, _ = load_for_training(cfg.model, cfg.lora)
    convs = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}]
             for q, a in [("What is anemia?", "Fewer red blood cells."), ("Hi", "See a doctor if it lasts.")]]
    batch = collate([encode(tok, c, "sys", 128) for c in convs], tok.pad_token_id)
    fast, n_fast = AnswerLoss(model)(**batch)
    full, n_full = full_logits_loss(model, **batch)
    assert int(n_fast) == int(n_full) > 0
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-5)
    fast.backward()
    g_fast = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    full.backward()
    for n, p in model.named_parameters():
        if n in g_fast:
            torch.testing.assert_close(g_fast[n], p.grad, rtol=1e-4, atol=1e-5)


def test_bf16_fast_path_matches_fp32_within_tolerance(tiny_model_dir):
    cfg = Config()
    cfg.model.name = str(tiny_model_dir)
    model, tok, _ = load_for_training(cfg.model, cfg.lora)
    conv = [{"role": "user", "content": "What is high blood pressure?"},
            {"role": "assistant", "content": "Blood pressure is the force of blood on artery walls."}]
    batch = collate([encode(tok, conv, "sys", 128)], tok.pad_token_id)
    ref, n = AnswerLoss(model)(**batch)
    recipe.frozen_weights_to(model, torch.bfloat16)
    assert all(p.dtype == (torch.float32 if p.requires_grad else torch.bfloat16) for p in model.parameters())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast, _ = AnswerLoss(model)(**batch)
    assert abs(float(fast / n) - float(ref / n)) < 0.02 * float(ref / n)


def test_resume_after_interrupt_matches_uninterrupted(tiny_model_dir, tmp_path, monkeypatch):
    straight = _cfg(tiny_model_dir, tmp_path / "a", max_steps=8, save_steps=2)
    model_a, _, _ = _train(straight)
    data_dir = tmp_path / "a" / "data"

    interrupted = _cfg(tiny_model_dir, tmp_path / "b", max_steps=8, save_steps=2)
    calls = {"n": 0}
    real_step = torch.optim.AdamW.step

    def dying_step(self, *a, **k):  # the 6th optimizer step is killed
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", dying_step)
    with pytest.raises(MedtuneError, match="--resume"):
        _train(interrupted, data_dir)
    monkeypatch.setattr(torch.optim.AdamW, "step", real_step)
    assert (tmp_path / "b" / "checkpoints" / "step-5").exists()  # saved on interrupt

    interrupted.train.resume = True
    model_b, _, summary = _train(interrupted, data_dir)
    assert summary["steps"] == 8
    a, b = _metrics(tmp_path / "a"), _metrics(tmp_path / "b")
    assert [m["step"] for m in b] == list(range(1, 9))
    for x, y in zip(a, b):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5)
    pa = dict(model_a.named_parameters())
    for n, p in model_b.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p, pa[n], rtol=1e-4, atol=1e-5)


def test_resume_without_checkpoint_is_a_clear_error(tiny_model_dir, tmp_path):
    cfg = _cfg(tiny_model_dir, tmp_path / "c", max_steps=2)
    prepare(cfg.data.sources, tmp_path / "c" / "data", cfg.data, cfg.seed)
    cfg.train.resume = True
    with pytest.raises(MedtuneError, match="no checkpoint"):
        _train(cfg, tmp_path / "c" / "data")
