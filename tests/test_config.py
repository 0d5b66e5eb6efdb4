from pathlib import Path

import pytest

from medtune.config import Config, load_config, parse_override, set_value
from medtune.errors import MedtuneError

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


def test_shipped_configs_exist():
    names = {p.stem for p in CONFIGS}
    assert {"default", "tinyllama-lora", "mistral-7b-qlora", "biomistral-7b-qlora", "llama31-8b-qlora"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_validates(path):
    cfg = load_config(path)
    assert cfg.lora.alpha >= cfg.lora.r
    if "qlora" in path.stem:
        assert cfg.model.quantize == "4bit" and cfg.lora.dropout == pytest.approx(0.05)
        assert cfg.lora.alpha == 2 * cfg.lora.r and cfg.train.lr == pytest.approx(2e-4)
        assert 8 <= cfg.train.batch_size * cfg.train.grad_accum <= 16 and cfg.train.max_length == 2048


def test_unknown_key_is_named():
    with pytest.raises(MedtuneError, match="train.no_such_key"):
        load_config(None, ["train.no_such_key=1"])
    with pytest.raises(MedtuneError, match="'trian'"):
        load_config(None, ["trian.lr=1"])


def test_unknown_key_in_yaml_names_file_and_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  lr: 1e-4\n  epoch: 3\n")
    with pytest.raises(MedtuneError, match=r"c\.yaml.*train\.epoch"):
        load_config(p)


def test_overrides_are_typed():
    cfg = load_config(None, ["train.lr=1e-4", "lora.r=8", "data.sources=[a, b:2]", "train.resume=true"])
    assert cfg.train.lr == 1e-4 and cfg.lora.r == 8 and cfg.data.sources == ["a", "b:2"] and cfg.train.resume


@pytest.mark.parametrize("override,match", [
    ("lora.r=eight", "lora.r.*integer"), ("train.resume=maybe", "train.resume"),
    ("train.precision=fp8", "train.precision"), ("data.val_fraction=1.5", "val_fraction"),
    ("train.lr=0", "train.lr"),
])
def test_bad_values_are_errors(override, match):
    with pytest.raises(MedtuneError, match=match):
        load_config(None, [override])


def test_parse_override_needs_equals():
    with pytest.raises(MedtuneError, match="KEY=VALUE"):
        parse_override("train.lr")


def test_set_value_section_is_not_a_value():
    with pytest.raises(MedtuneError, match="section"):
        set_value(Config(), "train", 3)
