import torch

from medtune.data.tokenize import IGNORE, collate, encode, length_grouped_batches, prompt_ids

SYSTEM = "You are a careful medical information assistant."


def _conv(q="What is anemia?", a="Fewer healthy red blood cells."):
    return [{"role": "user", "content": q}, {"role": "assistant", "content": a}]


def test_labels_mask_exactly_the_answer_and_keep_eos(tiny_tokenizer):
    tok = tiny_tokenizer
    ex = encode(tok, _conv(), SYSTEM, 512)
    answer_ids = [t for t, lab in zip(ex.input_ids, ex.labels) if lab != IGNORE]
    assert tok.decode(answer_ids) == "Fewer healthy red blood cells.<|im_end|>"
    assert answer_ids[-1] == tok.eos_token_id  # the model learns to stop even though pad == eos
    labelled = [lab for lab in ex.labels if lab != IGNORE]
    assert labelled == answer_ids
    prompt = tok.decode(ex.input_ids[: ex.labels.index(answer_ids[0])])
    assert prompt.startswith("<|im_start|>system\n" + SYSTEM) and prompt.endswith("<|im_start|>assistant\n")


def test_multi_turn_masks_each_assistant_turn(tiny_tokenizer):
    conv = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "one"},
            {"role": "user", "content": "more"}, {"role": "assistant", "content": "two"}]
    ex = encode(tiny_tokenizer, conv, SYSTEM, 512)
    text = tiny_tokenizer.decode([t for t, lab in zip(ex.input_ids, ex.labels) if lab != IGNORE])
    assert text == "one<|im_end|>two<|im_end|>"


def test_truncation_and_prompt_ids(tiny_tokenizer):
    ex = encode(tiny_tokenizer, _conv(a="word " * 200), SYSTEM, 64)
    assert len(ex.input_ids) == len(ex.labels) == 64
    p = prompt_ids(tiny_tokenizer, _conv(), SYSTEM)
    full = encode(tiny_tokenizer, _conv(), SYSTEM, 512)
    assert full.input_ids[: len(p)] == p and full.labels[len(p) - 1] == IGNORE and full.labels[len(p)] != IGNORE


def test_collate_pads_with_ignored_labels(tiny_tokenizer):
    a = encode(tiny_tokenizer, _conv(), SYSTEM, 512)
    b = encode(tiny_tokenizer, _conv(a="Yes."), SYSTEM, 512)
    batch = collate([a, b], tiny_tokenizer.pad_token_id)
    assert batch["input_ids"].shape == (2, len(a.input_ids))
    assert int(batch["attention_mask"][1].sum()) == len(b.input_ids)
    assert (batch["labels"][1, len(b.input_ids):] == IGNORE).all()


def test_length_grouped_batches_cover_every_row_once():
    lengths = [((i * 37) % 101) + 1 for i in range(300)]
    batches = length_grouped_batches(lengths, 8, torch.Generator().manual_seed(1), True)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(300))
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    shuffled = length_grouped_batches(lengths, 8, torch.Generator().manual_seed(1), False)
    padded_plain = sum(max(lengths[i] for i in b) * len(b) for b in shuffled)
    assert padded < 0.8 * padded_plain  # grouping cuts padding
    again = length_grouped_batches(lengths, 8, torch.Generator().manual_seed(1), True)
    assert again == batches  # same seed, same order: what resume relies on


def test_collate_rounds_width_to_a_multiple(tiny_tokenizer):
    a = encode(tiny_tokenizer, _conv(), SYSTEM, 512)
    batch = collate([a], tiny_tokenizer.pad_token_id, multiple=32)
    width = batch["input_ids"].shape[1]
    assert width % 32 == 0 and len(a.input_ids) <= width < len(a.input_ids) + 32
    assert int(batch["attention_mask"].sum()) == len(a.input_ids)
    assert (batch["labels"][0, len(a.input_ids):] == IGNORE).all()
