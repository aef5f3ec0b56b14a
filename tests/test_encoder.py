"""The router encoder: vectors, batching, the ONNX / int8 backends, their local build cache, and load errors."""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from hybrid_router import HybridRouter, load_routing_data
from hybrid_router.core.encoder import Encoder, EncoderLoadError, resolve_encoder_path
from hybrid_router.train.data import shipped_path

TEXTS = [
    "hi",
    "What is the capital of Australia?",
    "Write a haiku about autumn leaves falling on a quiet pond.",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return TEXTS + load_routing_data(shipped_path("routellm_gsm8k")).queries[:20]


@pytest.fixture(scope="module")
def fp32() -> Encoder:
    return Encoder()


@pytest.fixture(scope="module")
def int8() -> Encoder:
    return Encoder(backend="int8")


@pytest.fixture(scope="module")
def fp32_vectors(fp32, texts) -> np.ndarray:
    return fp32.encode(texts)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_vectors_are_unit_norm_and_deterministic(fp32, texts, fp32_vectors):
    assert fp32_vectors.shape == (len(texts), fp32.dim) and fp32_vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fp32_vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(fp32.encode(texts), fp32_vectors)
    assert cosines(fp32_vectors[:1], fp32_vectors[1:2])[0] < 0.9  # different texts, different vectors


def test_default_backend_is_plain_mean_pooled_transformer(fp32, texts, fp32_vectors):
    path = resolve_encoder_path("minilm")
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    with torch.inference_mode():
        batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    assert fp32.backend == "torch"
    np.testing.assert_allclose(fp32_vectors, expected, atol=1e-5)


def test_single_and_batched_encoding_agree(fp32, texts, fp32_vectors):
    singles = np.concatenate([fp32.encode([t]) for t in texts[:8]])
    np.testing.assert_allclose(singles, fp32_vectors[:8], atol=1e-5)
    small_batches = fp32.encode(texts, batch_size=3)
    np.testing.assert_allclose(small_batches, fp32_vectors, atol=1e-5)


def test_int8_backend_is_close_to_fp32(int8, texts, fp32_vectors):
    vectors = int8.encode(texts)
    assert vectors.shape == fp32_vectors.shape and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    cos = cosines(vectors, fp32_vectors)
    # measured on 128 GSM8K questions: min 0.984, mean 0.993
    assert cos.min() > 0.96 and cos.mean() > 0.98, (cos.min(), cos.mean())
    np.testing.assert_array_equal(int8.encode(texts), vectors)
    singles = np.concatenate([int8.encode([t]) for t in texts[:8]])
    # activations are quantized per call, so a batch shifts its members slightly
    assert cosines(singles, vectors[:8]).min() > 0.98


def test_onnx_backend_builds_into_the_cache_once_and_matches_fp32(tmp_path, monkeypatch, caplog, texts, fp32_vectors):
    monkeypatch.setenv("HYBRID_LLM_CACHE", str(tmp_path))
    with caplog.at_level(logging.INFO, logger="hybrid_router.core.encoder_onnx"):
        onnx = Encoder(backend="onnx")
    built = list((tmp_path / "encoders").glob("*.onnx"))
    assert len(built) == 1 and onnx.onnx_model.file == built[0]
    assert any("building the onnx router encoder" in r.getMessage() for r in caplog.records)
    np.testing.assert_allclose(onnx.encode(texts), fp32_vectors, atol=1e-4)
    np.testing.assert_allclose(onnx.encode(texts[:1]), fp32_vectors[:1], atol=1e-4)
    caplog.clear()
    stamp = built[0].stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="hybrid_router.core.encoder_onnx"):
        again = Encoder(backend="onnx", threads=1)
    assert again.onnx_model.file == built[0] and built[0].stat().st_mtime_ns == stamp
    assert not caplog.records
    assert not [p for p in (tmp_path / "encoders").iterdir() if p.name.startswith(".build-")]


def test_router_artifact_carries_the_encoder_backend(tmp_path, default_router):
    int8 = Encoder(backend="int8", layers=default_router.encoder_layers)
    router = HybridRouter(default_router.head, encoder=int8, calibration=default_router.calibration)
    assert router.encoder_backend == "int8"
    router.save(tmp_path)
    assert json.loads((tmp_path / "router.json").read_text())["encoder_backend"] == "int8"
    loaded = HybridRouter.load(tmp_path)
    assert loaded.encoder_backend == "int8" and loaded.encoder.backend == "int8"
    query = "Natalia sold clips to 48 of her friends in April. How many clips did she sell?"
    assert loaded.score(query) == pytest.approx(default_router.score(query), abs=0.05)
    assert HybridRouter.load(tmp_path, backend="torch").encoder_backend == "torch"
    assert default_router.encoder_backend == "torch"
    config = json.loads((tmp_path / "router.json").read_text())
    (tmp_path / "router.json").write_text(json.dumps({**config, "encoder_backend": "fp4"}))
    with pytest.raises(ValueError, match="unknown encoder backend 'fp4'"):
        HybridRouter.load(tmp_path)


def test_layer_dropped_encoder_is_the_mean_pooled_hidden_state_of_that_layer(texts, tmp_path, monkeypatch):
    path = resolve_encoder_path("minilm")
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    with torch.inference_mode():
        batch = tokenizer(texts[:6], padding=True, truncation=True, max_length=256, return_tensors="pt")
        hidden = model(**batch, output_hidden_states=True).hidden_states[3]
        mask = batch["attention_mask"].unsqueeze(-1).float()
        expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    three = Encoder(layers=3)
    assert three.layers == 3 and three.config.num_hidden_layers == 3 and len(three.model.encoder.layer) == 3
    np.testing.assert_allclose(three.encode(texts[:6]), expected, atol=1e-5)
    monkeypatch.setenv("HYBRID_LLM_CACHE", str(tmp_path))
    onnx = Encoder(backend="onnx", layers=3)  # its own cached file, not the 6-layer one
    np.testing.assert_allclose(onnx.encode(texts[:6]), expected, atol=1e-4)
    assert Encoder(backend="onnx").onnx_model.file != onnx.onnx_model.file


def test_router_artifact_carries_the_encoder_layers(tmp_path, default_router):
    router = HybridRouter(default_router.head, encoder=Encoder(layers=3))
    assert json.loads(router.save(tmp_path).joinpath("router.json").read_text())["encoder_layers"] == 3
    loaded = HybridRouter.load(tmp_path)
    assert loaded.encoder_layers == 3 and loaded.encoder.layers == 3
    assert HybridRouter.load(tmp_path, backend="int8").encoder_layers == 3
    assert default_router.encoder_layers == 3  # the depth its training chose by cross-validation
    with pytest.raises(ValueError, match="reads the first 3 layers of its encoder, but the encoder given reads all"):
        HybridRouter.load(tmp_path, encoder=Encoder())


@pytest.mark.parametrize("bad", [0, 7, -1, 2.5, True])
def test_impossible_layer_counts_are_clear_errors(bad):
    with pytest.raises(EncoderLoadError, match="layers must be an integer from 1 to 6"):
        Encoder(layers=bad)


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="unknown encoder backend 'fp16'"):
        Encoder(backend="fp16")
    with pytest.raises(ValueError, match="CPU only"):
        Encoder(backend="int8", device="cuda")


def test_missing_local_encoder_folder_is_a_clear_error(tmp_path):
    missing = tmp_path / "no-such-encoder"
    with pytest.raises(EncoderLoadError, match=f"the folder {missing} does not exist"):
        Encoder(str(missing))
    with pytest.raises(EncoderLoadError, match="does not exist"):
        Encoder("./no-such-encoder-here")


def test_incomplete_local_folder_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    for backend in ("torch", "int8"):
        with pytest.raises(EncoderLoadError, match=f"cannot load encoder '{tmp_path}'"):
            Encoder(str(tmp_path), backend=backend)


def test_hub_name_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(EncoderLoadError, match="HF_HUB_OFFLINE is set"):
        Encoder("some-org/definitely-not-a-local-model")
    assert time.perf_counter() - start < 2.0
