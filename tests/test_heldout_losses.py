"""The held-out loss over all answer tokens and over the content before the disclaimer, from one pass per item."""

from __future__ import annotations

import pytest
import torch

from medtune.config import Config
from medtune.data.tokenize import IGNORE, collate, encode
from medtune.eval.heldout import content_labels, heldout_examples, item_content_losses, item_losses, strip_disclaimers
from medtune.model.load import load_for_training
from medtune.model.loss import full_logits_loss

DISCLAIMER = "This is general information, not medical advice; a clinician who knows your history can advise you."
SYSTEM = "You are a careful medical information assistant."


def _row(*turns: str) -> dict:
    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]
    return {"id": turns[0][:10], "messages": msgs}


ROWS = [
    _row("What is anemia?", f"Anemia means fewer healthy red blood cells. {DISCLAIMER}"),
    _row("What is high blood pressure?", "Blood pressure is the force of blood on artery walls."),  # no disclaimer
    _row("Chest pain?", f"See a doctor if you have chest pain or shortness of breath. {DISCLAIMER}"),
    _row("What is anemia?", f"Fewer healthy red blood cells. {DISCLAIMER}", "And iron?",
         f"Iron, vitamin B12 and folate matter. {DISCLAIMER}"),  # two answers, each with the disclaimer
]


@pytest.fixture(scope="module")
def model_tok(tiny_model_dir):
    cfg = Config()
    cfg.model.name = str(tiny_model_dir)
    model, tok, _ = load_for_training(cfg.model, cfg.lora)
    with torch.no_grad():  # a nonzero adapter, so base (adapter off) and tuned differ
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    return model.eval(), tok


def _by_hand(full, stripped_row, tok) -> list[int]:
    """Reference content labels for a one-answer row: the first k answer tokens, where k is the stripped
    answer's token count minus its end-of-turn token (the disclaimer starts a new token after '.')."""
    k = encode(tok, stripped_row["messages"], SYSTEM, 512).n_answer - 1
    start = next(i for i, t in enumerate(full.labels) if t != IGNORE)
    return [t if start <= i < start + k else IGNORE for i, t in enumerate(full.labels)]


@pytest.mark.parametrize("chunk", [3, 512])
@pytest.mark.parametrize("base", [True, False])
def test_one_pass_gives_old_figures_and_content_loss(model_tok, monkeypatch, chunk, base):
    from medtune.model import loss as loss_mod

    monkeypatch.setattr(loss_mod, "CE_CHUNK", chunk)  # slices of 3 tokens exercise the chunked per-token path
    model, tok = model_tok
    examples, contents = heldout_examples(ROWS, tok, SYSTEM, 512)
    assert len(examples) == len(contents) == len(ROWS)
    got = item_content_losses(model, examples, contents, tok.pad_token_id, base=base)

    # (1) all answer tokens: the same numbers as item_losses (the fused path)
    sums, counts = item_losses(model, examples, tok.pad_token_id, base=base)
    assert got.counts == counts
    torch.testing.assert_close(torch.tensor(got.sums), torch.tensor(sums), rtol=1e-5, atol=1e-5)

    # (2) content tokens: the loss of full logits over a mask built by hand
    from medtune.model.generate import adapter_off

    for i in (0, 2):
        ref_labels = _by_hand(examples[i], strip_disclaimers(ROWS[i]), tok)
        assert contents[i] == ref_labels
        batch = collate([examples[i]], tok.pad_token_id)
        with torch.no_grad(), adapter_off(model, base):
            ref, n = full_logits_loss(model, batch["input_ids"], batch["attention_mask"],
                                      torch.tensor([ref_labels]))
        assert got.content_counts[i] == int(n) > 0
        assert got.content_sums[i] == pytest.approx(float(ref), rel=1e-5, abs=1e-5)

    # (3) a row without a disclaimer: content == all, end-of-turn token included
    assert contents[1] == examples[1].labels
    assert got.content_counts[1] == got.counts[1]
    assert got.content_sums[1] == pytest.approx(got.sums[1], rel=1e-6)

    # (4) rows with a disclaimer have fewer content tokens than answer tokens, and a smaller summed loss
    for i in (0, 2, 3):
        assert 0 < got.content_counts[i] < got.counts[i]
        assert got.content_sums[i] < got.sums[i]


def test_base_and_tuned_differ(model_tok):
    model, tok = model_tok
    examples, contents = heldout_examples(ROWS, tok, SYSTEM, 512)
    base = item_content_losses(model, examples, contents, tok.pad_token_id, base=True)
    tuned = item_content_losses(model, examples, contents, tok.pad_token_id, base=False)
    assert base.counts == tuned.counts and base.sums != tuned.sums


def test_every_turn_keeps_its_content(model_tok):
    """Stripping the first answer's disclaimer shifts the second answer: turns are paired, not the prefix."""
    _, tok = model_tok
    full = encode(tok, ROWS[3]["messages"], SYSTEM, 512)
    content = content_labels(full, encode(tok, strip_disclaimers(ROWS[3])["messages"], SYSTEM, 512))
    second_answer = encode(tok, [{"role": "user", "content": "And iron?"},
                                 {"role": "assistant", "content": "Iron, vitamin B12 and folate matter."}], SYSTEM, 512)
    words = [t for t in second_answer.labels if t != IGNORE][:-1]  # without its end-of-turn token
    kept = [t for t in content if t != IGNORE]
    assert kept[-len(words):] == words  # the second turn's content is counted ...
    assert tok.eos_token_id not in kept  # ... and neither disclaimer nor end-of-turn token is


def test_cut_answers_stay_paired(model_tok):
    """A row whose answer is cut before its disclaimer is all content; a row cut inside its prompt is dropped
    from both lists, so examples and content labels stay in step."""
    _, tok = model_tok
    prompt_len = len(encode(tok, ROWS[0]["messages"], SYSTEM, 512).labels) - encode(
        tok, ROWS[0]["messages"], SYSTEM, 512).n_answer
    rows = [_row("x " * 400, "Iron matters."), ROWS[0]]
    examples, contents = heldout_examples(rows, tok, SYSTEM, prompt_len + 3)
    assert len(examples) == len(contents) == 1
    assert examples[0].n_answer == 3 and contents[0] == examples[0].labels


def test_mismatched_content_labels_are_refused(model_tok):
    model, tok = model_tok
    examples, contents = heldout_examples(ROWS[:2], tok, SYSTEM, 512)
    with pytest.raises(ValueError, match="content label"):
        item_content_losses(model, examples, contents[:1], tok.pad_token_id)


class _FixedAnswers:
    engine = "fixed"

    def answers(self, conversations, max_new_tokens, *, base, desc="generating"):
        return [f"See a doctor. {DISCLAIMER}" if not base else "Hm."] * len(conversations), [True] * len(conversations)

    def close(self) -> None:
        pass


def test_the_run_comparison_makes_one_pass_per_model(model_tok, tmp_path, monkeypatch):
    """evaluate_run: one forward per item for base and one for tuned, both losses reported and paired."""
    import json

    from medtune.model.loss import AnswerLoss
    from medtune.pipeline import TrainedRun, evaluate_run

    model, tok = model_tok
    data = tmp_path / "data"
    data.mkdir()
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    cfg = Config()
    cfg.data.prepared, cfg.data.system_prompt = str(data), SYSTEM
    calls = {"token_losses": 0, "forward": 0}
    token_losses, forward = AnswerLoss.token_losses, AnswerLoss.forward

    def counted(name, fn):
        def wrapper(self, *a, **kw):
            calls[name] += 1
            return fn(self, *a, **kw)
        return wrapper

    monkeypatch.setattr(AnswerLoss, "token_losses", counted("token_losses", token_losses))
    monkeypatch.setattr(AnswerLoss, "forward", counted("forward", forward))
    tr = TrainedRun(tmp_path / "run", model, tok, {}, {}, "tiny", "Apache-2.0")
    tr.run_dir.mkdir()
    result = evaluate_run(cfg, tr, _FixedAnswers())
    assert calls == {"token_losses": 2 * len(ROWS), "forward": 0}

    examples, contents = heldout_examples(ROWS, tok, SYSTEM, cfg.train.max_length)
    for role in ("base", "tuned"):
        il = item_content_losses(model, examples, contents, tok.pad_token_id, base=role == "base")
        assert result[role]["loss"] == round(sum(il.sums) / sum(il.counts), 4)
        assert result[role]["loss_no_disclaimer"] == round(sum(il.content_sums) / sum(il.content_counts), 4)
    entry = result["report"]
    assert "answer_loss_no_disclaimer" in entry["metrics"] and "answer_loss_no_disclaimer" in entry["base_metrics"]
    assert "answer_loss_no_disclaimer" in entry["delta"]
    assert json.loads((tr.run_dir / "eval_heldout.json").read_text())["tuned"] == result["tuned"]
