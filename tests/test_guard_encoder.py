"""The guard encoder's fast path (ONNX Runtime, int8 weights) against its reference (the traced torch model).

The fitted head was fitted on the reference's embeddings; the fast path may only stand in for it while it
gives nearly the same vectors. The first run on a machine exports and quantizes the graph into the medtune
cache (about 15 s); later runs load it.
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest

from medtune.safety import encoder

TEXTS = [
    "my dad collapsed and is breathing strangely, what do I do",
    "Is it safe to take ibuprofen with lisinopril for a bad back?",
    "how many of my sleeping pills would it take to not wake up",
    "What is the maximum daily dose of acetaminophen on the label? " * 3,
]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row: the mean over LAYERS of the cosine of the unit-length blocks."""
    return (a * b).sum(1) / len(encoder.LAYERS)


def test_fast_path_embeddings_match_the_reference_path():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    fast = encoder._onnx_runner()
    assert fast is not None, "the ONNX Runtime path failed to build or load (see the warning logged)"
    batch = encoder._tokenizer()([*TEXTS, "hi"], padding=True, return_tensors="np")
    got = fast(batch["input_ids"], batch["attention_mask"])
    ref = encoder._torch_runner()(batch["input_ids"], batch["attention_mask"])
    assert got.shape == ref.shape == (len(TEXTS) + 1, encoder.DIM)
    assert (_cosines(got[:-1], ref[:-1]) > 0.99).all(), _cosines(got, ref)
    assert _cosines(got[-1:], ref[-1:])[0] > 0.98  # three tokens ("hi"): the largest relative rounding
    assert not np.allclose(got, ref, atol=1e-4)  # really the int8 graph, not the torch one
    # each row is run alone, without padding: a text's embedding does not depend on the rest of its batch
    one = encoder._tokenizer()(TEXTS[:1], return_tensors="np")
    np.testing.assert_allclose(fast(one["input_ids"], one["attention_mask"])[0], got[0], atol=1e-6)


def test_without_onnxruntime_the_torch_path_runs(monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if it were not installed
    with caplog.at_level(logging.WARNING, logger="medtune.guard"):
        assert encoder._onnx_runner() is None
    assert "ONNX Runtime path unavailable" in caplog.text and "using torch" in caplog.text
    encoder._load.cache_clear()
    try:
        assert encoder._load()[2].startswith("torch")
        emb = encoder.encode(TEXTS[:2])
        batch = encoder._tokenizer()(TEXTS[:2], padding=True, return_tensors="np")
        np.testing.assert_allclose(emb, encoder._torch_runner()(batch["input_ids"], batch["attention_mask"]),
                                   atol=1e-5)
    finally:
        encoder._load.cache_clear()  # the next caller picks the fast path again


def test_the_environment_can_force_the_torch_path(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(encoder.BACKEND_ENV, "torch")
    encoder._load.cache_clear()
    try:
        assert encoder._load()[2].startswith("torch")
    finally:
        encoder._load.cache_clear()


def test_thread_count_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    monkeypatch.delenv(encoder.THREADS_ENV, raising=False)
    assert encoder._threads() == 1
    monkeypatch.setenv(encoder.THREADS_ENV, "2")
    assert encoder._threads() == 2
    for bad in ("two", "0", "-1"):
        monkeypatch.setenv(encoder.THREADS_ENV, bad)
        with caplog.at_level("WARNING", logger="medtune.guard"):
            assert encoder._threads() == 1
        assert encoder.THREADS_ENV in caplog.text and repr(bad) in caplog.text


def test_two_threads_give_the_same_embeddings(monkeypatch: pytest.MonkeyPatch):
    pytest.importorskip("onnxruntime")
    encoder._load.cache_clear()
    try:
        one = encoder.encode(TEXTS)
        monkeypatch.setenv(encoder.THREADS_ENV, "2")
        encoder._load.cache_clear()
        assert encoder._load()[2] == "onnxruntime int8, 2 threads"
        np.testing.assert_allclose(encoder.encode(TEXTS), one, atol=1e-5)
    finally:
        encoder._load.cache_clear()
