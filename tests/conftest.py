"""Shared fixtures: a tiny random Llama and a BPE tokenizer built offline, and paths to real data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ASSETS = Path(__file__).parent / "assets"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

CORPUS = [
    "What is high blood pressure? Blood pressure is the force of blood on artery walls.",
    "See a doctor if you have chest pain, shortness of breath or a severe headache.",
    "This is general information, not medical advice; a clinician who knows your history can advise you.",
    "Anemia means fewer healthy red blood cells. Iron, vitamin B12 and folate matter.",
    "You are a careful medical information assistant. system user assistant",
    "0123456789 .,;:!?'\"()-/%",
]


def shared_file(name: str) -> Path:
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"{path} not present (real datasets live in ../shared/data beside the project)")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from medtune.model.load import CHATML_TEMPLATE

    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    raw.train_from_iterator(CORPUS * 5, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|im_end|>",
                                  unk_token="<unk>")
    tok.chat_template = CHATML_TEMPLATE
    return tok


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A 2-layer random Llama saved as an ordinary HF folder (usable as `--model DIR`)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      eos_token_id=tiny_tokenizer.eos_token_id, pad_token_id=tiny_tokenizer.pad_token_id,
                      bos_token_id=None, tie_word_embeddings=True, initializer_range=0.3)
    model = LlamaForCausalLM(cfg)
    out = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(out)
    tiny_tokenizer.save_pretrained(out)
    return out


@pytest.fixture()
def qa_rows() -> list[dict]:
    return [json.loads(line) for line in (ASSETS / "qa_small.jsonl").read_text().splitlines() if line.strip()]
