from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto

from inference import ModelContractError, inspect_model
from tests.inference.conftest import ModelFactory, build_model, contract_metadata


def test_valid_model_is_described(tiny_model: Path) -> None:
    info = inspect_model(tiny_model)
    assert info.version == "tiny-test-1"
    assert info.grade_labels == ("A", "B", "C", "D")
    assert info.damage_labels == ("scratch", "dent", "crack", "stain", "torn_packaging")
    assert info.input_size == (32, 32)
    assert info.opset == 17
    assert info.resize == "letterbox"
    assert info.metadata["inspect.seed"] == "0"
    assert len(info.sha256) == 64
    assert info.describe()["input_size"] == [32, 32]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"input_name": "pixels"}, "missing input 'images' (inputs: 'pixels')"),
        ({"elem_type": TensorProto.UINT8}, "input 'images' has dtype uint8; expected float32"),
        ({"input_shape": ["N", 3072]}, "input 'images' has rank 2"),
        ({"input_shape": [1, 3, 32, 32]}, "fixed batch dimension 1"),
        ({"input_shape": ["N", 1, 32, 32]}, "1 channels"),
        ({"input_shape": ["N", 3, 64, 64]}, "is 64x64 but metadata inspect.input_size says 32x32"),
        ({"grade_k": 3}, "output 'grade_probs' has shape [N,3] but inspect.grade_labels lists 4"),
        (
            {"damage_k": 4},
            "output 'damage_probs' has shape [N,4] but inspect.damage_labels lists 5",
        ),
        ({"grade_output": "grades"}, "missing output 'grade_probs'"),
        ({"opset": 13}, "opset 13 is too old: the contract needs opset >= 17"),
        ({"metadata": contract_metadata(**{"inspect.version": None})}, "'inspect.version'"),
        ({"metadata": contract_metadata(**{"inspect.contract": "2"})}, "inspect.contract='2'"),
        ({"metadata": contract_metadata(**{"inspect.grade_labels": "D,C,B,A"})}, "in that order"),
        ({"metadata": contract_metadata(**{"inspect.input_size": "32"})}, "is not 'HxW'"),
        ({"metadata": contract_metadata(**{"inspect.resize": "zoom"})}, "inspect.resize='zoom'"),
    ],
)
def test_contract_violations_are_named(
    model_factory: ModelFactory, kwargs: dict[str, object], expected: str
) -> None:
    path = model_factory(**kwargs)
    with pytest.raises(ModelContractError) as caught:
        inspect_model(path)
    assert expected in str(caught.value)
    assert any(expected in p for p in caught.value.problems)
    assert isinstance(caught.value, ValueError)
    assert caught.value.code == "model_contract"


def test_every_problem_is_listed_at_once(model_factory: ModelFactory) -> None:
    meta = contract_metadata(**{"inspect.trained_on": None, "inspect.damage_labels": "a,b"})
    path = model_factory(input_name="x", opset=15, metadata=meta)
    with pytest.raises(ModelContractError) as caught:
        inspect_model(path)
    text = str(caught.value)
    assert "missing input 'images'" in text
    assert "opset 15" in text
    assert "missing metadata key 'inspect.trained_on'" in text
    assert "labels count mismatch" in text
    assert len(caught.value.problems) >= 4


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\xffthis is not protobuf" * 10)
    with pytest.raises(ModelContractError, match="unreadable file"):
        inspect_model(junk)
    with pytest.raises(ModelContractError, match="file not found"):
        inspect_model(tmp_path / "nope.onnx")


def test_external_data_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ext.onnx"
    onnx.save_model(
        build_model(),
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="ext.data",
        size_threshold=0,
    )
    with pytest.raises(ModelContractError, match="external data"):
        inspect_model(path)


def test_fp16_input_only_when_allowed(model_factory: ModelFactory) -> None:
    path = model_factory(elem_type=TensorProto.FLOAT16)
    with pytest.raises(ModelContractError, match="float16; expected float32"):
        inspect_model(path)
    assert inspect_model(path, allow_fp16_io=True).input_dtype == "float16"
