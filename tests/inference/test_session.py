from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from inference import (
    Grader,
    InferenceError,
    ModelContractError,
    plan_session,
    select_providers,
    to_model_input,
)
from inference.preprocess import LETTERBOX_FILL, fit_frame
from tests.inference.conftest import ModelFactory, solid

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
ALL = [TRT, CUDA, CPU]


@pytest.mark.parametrize(
    ("setting", "available", "expected"),
    [
        ("auto", ALL, [TRT, CUDA, CPU]),
        (None, [CUDA, CPU], [CUDA, CPU]),
        ("auto", [CPU, "AzureExecutionProvider"], [CPU]),
        ("cuda", ALL, [CUDA, CPU]),
        ("TensorRT", ALL, [TRT, CUDA, CPU]),
        ("cpu", ALL, [CPU]),
        ([CUDA, CPU], ALL, [CUDA, CPU]),
    ],
)
def test_provider_selection(
    setting: str | list[str] | None, available: list[str], expected: list[str]
) -> None:
    assert select_providers(setting, available) == expected


def test_unavailable_provider_is_an_error_not_a_fallback() -> None:
    with pytest.raises(InferenceError, match="'CUDAExecutionProvider' is not available") as err:
        select_providers("cuda", [CPU])
    assert err.value.code == "provider_unavailable"
    with pytest.raises(ValueError, match="unknown inference provider 'gpu'"):
        select_providers("gpu", ALL)


def test_gpu_plans_pad_bind_and_cache(tmp_path: Path) -> None:
    model = tmp_path / "grader-v1.onnx"
    trt = plan_session(
        model, "auto", available=ALL, input_size=(224, 224), trt_cache_dir=tmp_path / "trt"
    )
    assert trt.provider == TRT and trt.use_iobinding
    assert trt.pad_sizes == (1, 2, 4, 8, 16, 32, 64)
    options = trt.provider_options[0]
    assert options["trt_fp16_enable"] is True
    assert options["trt_engine_cache_enable"] is True
    assert options["trt_engine_cache_path"] == str(tmp_path / "trt")
    assert options["trt_profile_max_shapes"] == "images:64x3x224x224"
    assert options["trt_profile_min_shapes"] == "images:1x3x224x224"

    cpu = plan_session(model, "auto", available=[CPU])
    assert cpu.providers == (CPU,) and cpu.pad_sizes == () and not cpu.use_iobinding


def test_fp16_copy_is_preferred_on_cuda_only(tmp_path: Path) -> None:
    model = tmp_path / "grader-v1.onnx"
    assert plan_session(model, "cuda", available=ALL).model_path == model  # no copy yet
    (tmp_path / "grader-v1-fp16.onnx").write_bytes(b"")
    cuda = plan_session(model, "cuda", available=ALL)
    assert cuda.model_path.name == "grader-v1-fp16.onnx" and cuda.fp16_file
    assert plan_session(model, "cuda", available=ALL, prefer_fp16=False).model_path == model
    assert plan_session(model, "tensorrt", available=ALL).model_path == model
    assert plan_session(model, "cpu", available=ALL).model_path == model


def test_grader_runs_on_cpu(tiny_model: Path) -> None:
    grader = Grader.load(tiny_model, intra_op_threads=1)
    assert grader.provider == "cpu"
    assert grader.padded_sizes == ()
    frames = [solid((250, 10, 10)), solid((10, 250, 10)), solid((10, 10, 250))]
    grade, damage = grader.predict(to_model_input(frames, grader.info.input_size))
    assert grade.shape == (3, 4) and damage.shape == (3, 5)
    assert grade.dtype == np.float32
    assert list(grade.argmax(axis=1)) == [0, 1, 2]  # A, B, C as the tiny model is built
    assert np.allclose(grade.sum(axis=1), 1.0, atol=1e-5)
    assert damage[0, 0] > 0.9 > damage[1, 0]


def test_grader_refuses_bad_model_and_missing_provider(
    model_factory: ModelFactory, tiny_model: Path
) -> None:
    with pytest.raises(ModelContractError, match="fixed batch dimension"):
        Grader.load(model_factory("fixed.onnx", input_shape=[1, 3, 32, 32]))
    with pytest.raises(InferenceError, match="not available"):
        Grader.load(tiny_model, providers="cuda", available=[CPU])


@pytest.mark.gpu
@pytest.mark.skipif(
    CUDA not in onnxruntime.get_available_providers(), reason="needs onnxruntime-gpu and CUDA"
)
def test_cuda_padded_batches_match_cpu(tiny_model: Path) -> None:
    cpu = Grader.load(tiny_model, providers="cpu")
    gpu = Grader.load(tiny_model, providers="cuda")
    assert gpu.provider == "cuda"
    batch = to_model_input([solid((i * 40, 100, 200 - i * 30)) for i in range(5)], (32, 32))
    for a, b in zip(cpu.predict(batch), gpu.predict(batch), strict=True):
        assert a.shape == b.shape
        assert np.allclose(a, b, atol=1e-3)


def test_letterbox_keeps_aspect_and_range() -> None:
    frame = np.zeros((50, 100, 3), np.uint8)
    frame[...] = (255, 0, 0)
    out = fit_frame(frame, (32, 32))
    # 100x50 -> 32x16, centred vertically: grey bars of 8 rows above and below
    assert (out[:8] == LETTERBOX_FILL).all() and (out[-8:] == LETTERBOX_FILL).all()
    assert (out[8:24, :, 0] == 255).all() and (out[8:24, :, 1] == 0).all()
    batch = to_model_input([frame, np.full((20, 10, 3), 7, np.uint8)], (32, 32))
    assert batch.shape == (2, 3, 32, 32) and batch.dtype == np.float32
    assert batch.max() == 255.0 and batch[0, 0, 16, 16] == 255.0 and batch[0, 1, 16, 16] == 0.0
    crop = fit_frame(frame, (32, 32), "center_crop")
    assert (crop[..., 0] == 255).all()  # no borders: the overhang is cut instead
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        to_model_input([np.zeros((8, 8), np.uint8)], (32, 32))
