"""The in-training probe on a tiny random Llama with LoRA (offline, CPU, seconds) and best-step selection."""

import json

import pytest
import torch

from conftest import write_jsonl
from medtune.config import Config
from medtune.errors import MedtuneError
from medtune.model.load import load_for_training
from medtune.train.probe import BestCheckpoint, Probe, choose_metric, load_probe, save_best

MCQ = [
    {"question": "Which vitamin deficiency causes anemia?", "subject": "clinical_knowledge",
     "options": {"A": "Vitamin B12", "B": "Vitamin K", "C": "Vitamin D", "D": "Vitamin E"}, "answer": "A"},
    {"question": "What is a normal resting heart rate for adults?", "subject": "medicine",
     "options": {"A": "20 to 40", "B": "60 to 100", "C": "120 to 160", "D": "200"}, "answer": "B"},
    {"question": "High blood pressure is the force of blood on what?",
     "options": {"A": "bone", "B": "skin", "C": "artery walls"}, "answer": "C"},
]


@pytest.fixture(scope="module")
def lora_model(tiny_model_dir):
    cfg = Config()
    cfg.model.name = str(tiny_model_dir)
    cfg.lora.r, cfg.lora.alpha = 8, 16
    model, tok, _ = load_for_training(cfg.model, cfg.lora, seed=1)
    return model, tok


def _probe(qa_rows, **kw):
    return Probe(mcq_rows=MCQ, qa_rows=[{"question": r["question"], "answer": r["answer"]} for r in qa_rows[:3]],
                 system_prompt="Be careful.", max_new_tokens=8, **kw)


def test_probe_scores_in_unit_range_and_restores_train_mode(lora_model, qa_rows):
    model, tok = lora_model
    model.train()
    weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    rng = torch.get_rng_state()
    out = _probe(qa_rows).run(model, tok)
    assert set(out) == {"probe_acc", "probe_rougeL"}
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in out.values())
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters() if p.requires_grad)
    assert torch.equal(torch.get_rng_state(), rng)  # greedy and dropout-free: a probed run stays resumable
    assert out == _probe(qa_rows).run(model, tok)  # deterministic


def test_probe_keeps_eval_mode_and_scores_only_parts_with_rows(lora_model, qa_rows):
    model, tok = lora_model
    model.eval()
    try:
        assert set(Probe(MCQ, [], "Be careful.").run(model, tok)) == {"probe_acc"}
        assert not model.training
        only_qa = Probe([], [{"question": "What is anemia?", "answer": "Fewer red blood cells."}], "Be careful.",
                        max_new_tokens=4)
        assert set(only_qa.run(model, tok)) == {"probe_rougeL"}
        assert Probe([], [], "Be careful.").run(model, tok) == {}
    finally:
        model.train()


def test_probe_under_bf16_autocast_with_bf16_frozen_weights(tiny_model_dir, qa_rows):
    """The CPU fast path of the training loop: frozen weights stored in bf16, LoRA in fp32, bf16 autocast."""
    from medtune.train.recipe import frozen_weights_to

    cfg = Config()
    cfg.model.name = str(tiny_model_dir)
    model, tok, _ = load_for_training(cfg.model, cfg.lora, seed=1)
    assert frozen_weights_to(model, torch.bfloat16) > 0
    model.train()
    out = _probe(qa_rows).run(model, tok, autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    assert set(out) == {"probe_acc", "probe_rougeL"} and all(0.0 <= v <= 1.0 for v in out.values())
    assert model.training


def test_best_checkpoint_max_metric():
    best = BestCheckpoint("probe_acc")
    seen = [best.update(s, m) for s, m in [(1, {"loss": 3.0}), (10, {"probe_acc": 0.25}), (20, {"probe_acc": 0.5}),
                                           (25, {"eval_loss": 0.1}), (30, {"probe_acc": 0.5}),
                                           (40, {"probe_acc": 0.4}), (50, {"probe_acc": float("nan")})]]
    assert seen == [False, True, True, False, False, False, False]
    assert (best.best_step, best.best_value) == (20, 0.5)  # a tie keeps the earlier step
    assert best.as_dict() == {"metric": "probe_acc", "best_step": 20, "best_value": 0.5, "lower_is_better": False}
    rouge = BestCheckpoint("probe_rougeL")
    for step, value in [(5, 0.1), (10, 0.3), (15, 0.2)]:
        rouge.update(step, {"probe_acc": 1 - value, "probe_rougeL": value})
    assert (rouge.best_step, rouge.best_value) == (10, 0.3)


def test_best_checkpoint_eval_loss_lower_is_better():
    best = BestCheckpoint("eval_loss")
    seen = [best.update(s, {"step": s, "loss": 9.0, "eval_loss": v}) for s, v in [(16, 2.44), (32, 2.30), (48, 2.35)]]
    assert seen == [True, True, False]
    assert (best.best_step, best.best_value) == (32, 2.30)
    assert best.as_dict()["lower_is_better"] is True
    assert BestCheckpoint("eval_loss").as_dict()["best_step"] is None
    with pytest.raises(MedtuneError, match="probe_acc"):
        BestCheckpoint("accuracy")


def test_load_probe_reads_the_first_rows(tmp_path, qa_rows):
    bad = {"question": "No options here?", "answer": "A"}
    path = write_jsonl(tmp_path / "probe_mcq.jsonl", [MCQ[0], bad, *MCQ[1:], {**MCQ[0], "question": "Fourth?"}])
    prepared = [{"id": "p1", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "Q1?"},
                                          {"role": "assistant", "content": "A1."}]}]
    probe = load_probe(str(path), prepared + qa_rows, n_mcq=3, n_qa=2, system_prompt="Be careful.")
    assert probe.mcq_rows == MCQ  # the row without options is skipped, the fourth row is past n_mcq
    assert probe.qa_rows == [{"question": "Q1?", "answer": "A1."},
                             {"question": qa_rows[0]["question"], "answer": qa_rows[0]["answer"]}]
    assert probe.system_prompt == "Be careful." and probe.max_new_tokens == 48
    only_qa = load_probe(None, qa_rows, n_mcq=5, n_qa=100, system_prompt="s")
    assert only_qa.mcq_rows == [] and len(only_qa.qa_rows) == len(qa_rows)
    assert load_probe(str(path), qa_rows, n_mcq=2, n_qa=0, system_prompt="s").qa_rows == []
    assert load_probe(None, [], n_mcq=5, n_qa=5, system_prompt="s") is None
    assert load_probe(str(path), qa_rows, n_mcq=0, n_qa=0, system_prompt="s") is None
    with pytest.raises(MedtuneError, match="not found"):
        load_probe(str(tmp_path / "missing.jsonl"), [], n_mcq=5, n_qa=0, system_prompt="s")


def test_save_best_and_restore(lora_model, tmp_path):
    model, _ = lora_model
    best = BestCheckpoint("probe_acc")
    best.update(10, {"probe_acc": 0.5})
    folder = save_best(model, tmp_path / "run" / "best", best, {"probe_rougeL": 0.2})
    assert (folder / "adapter_model.safetensors").exists() and (folder / "adapter_config.json").exists()
    assert json.loads((folder / "best.json").read_text())["best_step"] == 10
    best.update(20, {"probe_acc": 0.75})
    save_best(model, folder, best)  # replaces the previous best in place
    assert json.loads((folder / "best.json").read_text())["best_value"] == 0.75
    assert sorted(p.name for p in folder.parent.iterdir()) == ["best"]
    resumed = BestCheckpoint.restore(folder, "probe_acc", max_step=30)
    assert (resumed.best_step, resumed.best_value) == (20, 0.75)
    # a new run (max_step 0), a resume from before the best step, another metric: start afresh
    for metric, max_step in (("probe_acc", 0), ("probe_acc", 19), ("eval_loss", 30)):
        fresh = BestCheckpoint.restore(folder, metric, max_step=max_step)
        assert fresh.best_step is None and fresh.metric == metric
    assert BestCheckpoint.restore(tmp_path / "nowhere", "probe_acc", 5).best_step is None


def test_choose_metric():
    qa = [{"question": "q", "answer": "a"}]
    both, qa_only = Probe(MCQ, qa, "s"), Probe([], qa, "s")
    assert [choose_metric("auto", p) for p in (both, qa_only, None)] == ["probe_acc", "probe_rougeL", "eval_loss"]
    assert choose_metric("eval_loss", None) == "eval_loss" and choose_metric("probe_rougeL", both) == "probe_rougeL"
    with pytest.raises(MedtuneError, match="probe_mcq"):
        choose_metric("probe_acc", qa_only)
    with pytest.raises(MedtuneError, match="one of"):
        choose_metric("rouge", both)
