"""A tiny ONNX grading model built with the ``onnx`` helper API, and a factory for broken ones.

The model: ``images`` [N,3,32,32] -> x/255 -> GlobalAveragePool -> Flatten -> [N,3] mean RGB ->
MatMul/Add -> Softmax (``grade_probs``) and -> MatMul/Add -> Sigmoid (``damage_probs``).
Its weights make the prediction follow the picture's colour, so tests can steer it: a mostly
red frame grades A, green B, blue C, dark D; a red frame also scores high "scratch".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

DAMAGE = ("scratch", "dent", "crack", "stain", "torn_packaging")


def contract_metadata(**overrides: str | None) -> dict[str, str]:
    meta: dict[str, str | None] = {
        "inspect.contract": "1",
        "inspect.grade_labels": "A,B,C,D",
        "inspect.damage_labels": ",".join(DAMAGE),
        "inspect.input_size": "32x32",
        "inspect.normalisation": "x/255 inside the model",
        "inspect.version": "tiny-test-1",
        "inspect.trained_on": "nothing (hand-set weights for tests)",
        "inspect.seed": "0",
    }
    meta.update(overrides)
    return {k: v for k, v in meta.items() if v is not None}


def build_model(
    *,
    input_name: str = "images",
    elem_type: int = TensorProto.FLOAT,
    input_shape: list[Any] | None = None,
    grade_k: int = 4,
    damage_k: int = len(DAMAGE),
    grade_output: str = "grade_probs",
    opset: int = 17,
    metadata: Mapping[str, str] | None = None,
) -> onnx.ModelProto:
    """The tiny model; every argument lets a test break one part of the contract."""
    shape = input_shape if input_shape is not None else ["N", 3, 32, 32]
    rank4 = len(shape) == 4
    x = helper.make_tensor_value_info(input_name, elem_type, shape)
    wg = np.zeros((3, grade_k), np.float32)
    bg = np.zeros(grade_k, np.float32)
    # mean R -> A, G -> B, B -> C, darkness -> D
    for i in range(min(3, grade_k)):
        wg[i, i] = 12.0
    if grade_k >= 4:
        wg[:, 3] = -4.0
        bg[3] = 4.0
    wd = np.zeros((3, damage_k), np.float32)
    wd[0, 0] = 10.0  # red -> scratch
    bd = np.full(damage_k, -5.0, np.float32)
    inits = [
        numpy_helper.from_array(np.array(1 / 255, np.float32), "scale"),
        numpy_helper.from_array(wg, "wg"),
        numpy_helper.from_array(bg, "bg"),
        numpy_helper.from_array(wd, "wd"),
        numpy_helper.from_array(bd, "bd"),
    ]
    source = input_name
    nodes = []
    if elem_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", [source], ["xf"], to=TensorProto.FLOAT))
        source = "xf"
    nodes.append(helper.make_node("Mul", [source, "scale"], ["xs"]))
    if rank4:
        nodes += [
            helper.make_node("GlobalAveragePool", ["xs"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["feat"], axis=1),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["xs"], ["feat"]))
    nodes += [
        helper.make_node("MatMul", ["feat", "wg"], ["gl"]),
        helper.make_node("Add", ["gl", "bg"], ["gl2"]),
        helper.make_node("Softmax", ["gl2"], [grade_output], axis=-1),
        helper.make_node("MatMul", ["feat", "wd"], ["dl"]),
        helper.make_node("Add", ["dl", "bd"], ["dl2"]),
        helper.make_node("Sigmoid", ["dl2"], ["damage_probs"]),
    ]
    outputs = [
        helper.make_tensor_value_info(grade_output, TensorProto.FLOAT, ["N", grade_k]),
        helper.make_tensor_value_info("damage_probs", TensorProto.FLOAT, ["N", damage_k]),
    ]
    graph = helper.make_graph(nodes, "tiny_grader", [x], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    helper.set_model_props(model, dict(contract_metadata() if metadata is None else metadata))
    return model


ModelFactory = Callable[..., Path]


@pytest.fixture
def model_factory(tmp_path: Path) -> ModelFactory:
    """``model_factory(name="m.onnx", **build_model kwargs) -> path`` of a saved model."""

    def make(name: str = "tiny.onnx", **kwargs: Any) -> Path:
        path = tmp_path / name
        onnx.save(build_model(**kwargs), str(path))
        return path

    return make


@pytest.fixture
def tiny_model(model_factory: ModelFactory) -> Path:
    """A model that meets the contract."""
    return model_factory()


def solid(rgb: tuple[int, int, int], h: int = 48, w: int = 64) -> np.ndarray[Any, Any]:
    """An H x W x 3 uint8 RGB frame of one colour (steers the tiny model)."""
    image = np.empty((h, w, 3), np.uint8)
    image[...] = rgb
    return image
