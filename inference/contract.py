"""The model contract: what a grading model file must look like, checked before it is served.

Contract version 1 (see DESIGN.md, "Inference"):

- ONNX, default-domain opset >= 17, all weights inside the file (no external data);
- one input ``images``: float32 ``[N, 3, H, W]``, RGB 0-255, N dynamic (normalisation is inside
  the model);
- outputs ``grade_probs`` ``[N, len(grade_labels)]`` and ``damage_probs``
  ``[N, len(damage_labels)]``, float32 probabilities;
- metadata_props ``inspect.contract`` = ``"1"``, ``inspect.grade_labels`` = ``"A,B,C,D"``,
  ``inspect.damage_labels`` (comma separated), ``inspect.input_size`` (``"HxW"``),
  ``inspect.normalisation``, ``inspect.version``, ``inspect.trained_on``; optional
  ``inspect.seed``, ``inspect.base`` and ``inspect.resize`` (``letterbox`` | ``center_crop`` |
  ``stretch``: how frames are fitted to the input size; letterbox when absent).

:func:`inspect_model` reads the file with ``onnx`` (graph only, without external data) and
raises :class:`~inference.errors.ModelContractError` naming every problem, so the server
refuses to start with a bad model and says why.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import ModelContractError

__all__ = [
    "CONTRACT_VERSION",
    "DEFAULT_DAMAGE_LABELS",
    "GRADE_LABELS",
    "MIN_OPSET",
    "REQUIRED_METADATA",
    "RESIZE_MODES",
    "ModelInfo",
    "inspect_model",
]

logger = logging.getLogger(__name__)

CONTRACT_VERSION = "1"
MIN_OPSET = 17
GRADE_LABELS: tuple[str, ...] = ("A", "B", "C", "D")
DEFAULT_DAMAGE_LABELS: tuple[str, ...] = ("scratch", "dent", "crack", "stain", "torn_packaging")
INPUT_NAME = "images"
GRADE_OUTPUT = "grade_probs"
DAMAGE_OUTPUT = "damage_probs"
REQUIRED_METADATA: tuple[str, ...] = (
    "inspect.contract",
    "inspect.grade_labels",
    "inspect.damage_labels",
    "inspect.input_size",
    "inspect.normalisation",
    "inspect.version",
    "inspect.trained_on",
)
RESIZE_MODES: tuple[str, ...] = ("letterbox", "center_crop", "stretch")

# onnx.TensorProto element types, named for messages (kept here so importing this module does
# not need onnx; onnx is only needed to inspect a file).
_FLOAT, _FLOAT16 = 1, 10
_ELEM_NAMES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    5: "int16",
    6: "int32",
    7: "int64",
    9: "bool",
    10: "float16",
    11: "float64",
    16: "bfloat16",
}


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the server knows about a model that met the contract."""

    path: str
    version: str
    grade_labels: tuple[str, ...]
    damage_labels: tuple[str, ...]
    #: (height, width) the model takes.
    input_size: tuple[int, int]
    normalisation: str
    trained_on: str
    opset: int
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: How frames are fitted to ``input_size`` (``inspect.resize``; letterbox by default).
    resize: str = "letterbox"
    #: Element type of ``images``: "float32" (the contract) or "float16" (an fp16 GPU copy
    #: exported without keeping float32 I/O; the grader casts for it).
    input_dtype: str = "float32"
    #: SHA-256 of the file, so a grade can name exactly which model produced it.
    sha256: str = ""

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary (for logs, ``/healthz`` and evidence records)."""
        return {
            "path": self.path,
            "version": self.version,
            "sha256": self.sha256,
            "grade_labels": list(self.grade_labels),
            "damage_labels": list(self.damage_labels),
            "input_size": list(self.input_size),
            "normalisation": self.normalisation,
            "trained_on": self.trained_on,
            "opset": self.opset,
            "resize": self.resize,
            "input_dtype": self.input_dtype,
        }


def _dims(value_info: Any) -> list[int | str | None] | None:
    """Dims of a graph value: int (fixed), str (named dynamic), None (unknown); None if no
    shape at all."""
    tensor = value_info.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    dims: list[int | str | None] = []
    for dim in tensor.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param"):
            dims.append(str(dim.dim_param))
        else:
            dims.append(None)
    return dims


def _show(dims: list[int | str | None]) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in dims) + "]"


def _labels(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _parse_size(text: str) -> tuple[int, int] | None:
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    h, w = int(parts[0]), int(parts[1])
    return (h, w) if h > 0 and w > 0 else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def inspect_model(path: str | Path, *, allow_fp16_io: bool = False) -> ModelInfo:
    """Check ``path`` against the model contract and return what it declares.

    Every problem found is collected and reported together in one
    :class:`ModelContractError` (``problems`` holds them one by one). ``allow_fp16_io`` accepts a
    float16 ``images`` input (the fp16 GPU copy); the served contract is float32.
    """
    import onnx  # heavy import, only needed here

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except FileNotFoundError:
        raise ModelContractError(str(path), ["file not found"]) from None
    except Exception as exc:  # protobuf raises various DecodeError types
        raise ModelContractError(
            str(path), [f"unreadable file: not an ONNX model ({type(exc).__name__}: {exc})"]
        ) from exc

    problems: list[str] = []
    graph = model.graph

    # --- opset ---------------------------------------------------------------------------
    opset = 0
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            opset = int(entry.version)
    if opset == 0:
        problems.append("no default-domain (ai.onnx) opset import")
    elif opset < MIN_OPSET:
        problems.append(f"opset {opset} is too old: the contract needs opset >= {MIN_OPSET}")

    # --- external data ---------------------------------------------------------------------
    external = [t.name for t in graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        shown = ", ".join(external[:3]) + (" ..." if len(external) > 3 else "")
        problems.append(
            f"weights stored as external data ({len(external)} tensors: {shown}); "
            "the contract needs one self-contained file"
        )

    # --- metadata ----------------------------------------------------------------------------
    metadata = {p.key: p.value for p in model.metadata_props}
    for key in REQUIRED_METADATA:
        if not metadata.get(key, "").strip():
            problems.append(f"missing metadata key {key!r}")
    contract = metadata.get("inspect.contract", "").strip()
    if contract and contract != CONTRACT_VERSION:
        problems.append(
            f"metadata inspect.contract={contract!r}; this server serves contract "
            f"{CONTRACT_VERSION!r}"
        )
    grade_labels = _labels(metadata.get("inspect.grade_labels", ""))
    if grade_labels and grade_labels != GRADE_LABELS:
        problems.append(
            f"metadata inspect.grade_labels={','.join(grade_labels)!r}; the contract needs "
            f"{','.join(GRADE_LABELS)!r} in that order"
        )
    damage_labels = _labels(metadata.get("inspect.damage_labels", ""))
    if len(set(damage_labels)) != len(damage_labels):
        problems.append(f"metadata inspect.damage_labels has duplicates: {damage_labels}")
    size_text = metadata.get("inspect.input_size", "").strip()
    input_size = _parse_size(size_text) if size_text else None
    if size_text and input_size is None:
        problems.append(f"metadata inspect.input_size={size_text!r} is not 'HxW' (e.g. '224x224')")
    resize = metadata.get("inspect.resize", "letterbox").strip() or "letterbox"
    if resize not in RESIZE_MODES:
        problems.append(f"metadata inspect.resize={resize!r}; expected one of {RESIZE_MODES}")

    # --- input -------------------------------------------------------------------------------
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    by_name = {i.name: i for i in inputs}
    input_dtype = "float32"
    if INPUT_NAME not in by_name:
        names = ", ".join(repr(i.name) for i in inputs) or "none"
        problems.append(f"missing input {INPUT_NAME!r} (inputs: {names})")
    else:
        image = by_name[INPUT_NAME]
        elem = image.type.tensor_type.elem_type
        if elem == _FLOAT16 and allow_fp16_io:
            input_dtype = "float16"
        elif elem != _FLOAT:
            problems.append(
                f"input {INPUT_NAME!r} has dtype {_ELEM_NAMES.get(elem, str(elem))}; "
                "expected float32"
            )
        dims = _dims(image)
        if dims is None:
            problems.append(f"input {INPUT_NAME!r} has no shape; expected [N,3,H,W]")
        elif len(dims) != 4:
            problems.append(
                f"input {INPUT_NAME!r} has rank {len(dims)} {_show(dims)}; expected rank 4 "
                "[N,3,H,W]"
            )
        else:
            if isinstance(dims[0], int):
                problems.append(
                    f"input {INPUT_NAME!r} has a fixed batch dimension {dims[0]}; "
                    "export with a dynamic batch axis (dynamic_axes / dim_param 'N')"
                )
            if isinstance(dims[1], int) and dims[1] != 3:
                problems.append(
                    f"input {INPUT_NAME!r} has {dims[1]} channels {_show(dims)}; expected 3 (RGB)"
                )
            hw = dims[2], dims[3]
            if input_size is not None and all(isinstance(d, int) for d in hw):
                if hw != input_size:
                    problems.append(
                        f"input {INPUT_NAME!r} is {hw[0]}x{hw[1]} but metadata "
                        f"inspect.input_size says {size_text}"
                    )
    for extra in inputs:
        if extra.name != INPUT_NAME:
            problems.append(
                f"unexpected extra input {extra.name!r}: the server feeds only 'images'"
            )

    # --- outputs -----------------------------------------------------------------------------
    outputs = {o.name: o for o in graph.output}
    for name, labels, meta_key in (
        (GRADE_OUTPUT, grade_labels, "inspect.grade_labels"),
        (DAMAGE_OUTPUT, damage_labels, "inspect.damage_labels"),
    ):
        if name not in outputs:
            names = ", ".join(repr(n) for n in outputs) or "none"
            problems.append(f"missing output {name!r} (outputs: {names})")
            continue
        out = outputs[name]
        elem = out.type.tensor_type.elem_type
        if elem not in (_FLOAT, _FLOAT16):
            problems.append(
                f"output {name!r} has dtype {_ELEM_NAMES.get(elem, str(elem))}; expected float32"
            )
        dims = _dims(out)
        if dims is None:
            continue  # shape not declared: checked at the first run instead
        if len(dims) != 2:
            problems.append(f"output {name!r} has rank {len(dims)} {_show(dims)}; expected [N,K]")
            continue
        if isinstance(dims[0], int):
            problems.append(f"output {name!r} has a fixed batch dimension {dims[0]}")
        if labels and isinstance(dims[1], int) and dims[1] != len(labels):
            problems.append(
                f"output {name!r} has shape {_show(dims)} but {meta_key} lists {len(labels)} "
                f"labels ({','.join(labels)}): labels count mismatch"
            )

    if problems:
        raise ModelContractError(str(path), problems)
    assert input_size is not None  # guaranteed by the checks above
    info = ModelInfo(
        path=str(path),
        version=metadata["inspect.version"].strip(),
        grade_labels=grade_labels,
        damage_labels=damage_labels,
        input_size=input_size,
        normalisation=metadata["inspect.normalisation"].strip(),
        trained_on=metadata["inspect.trained_on"].strip(),
        opset=opset,
        metadata=MappingProxyType(dict(metadata)),
        resize=resize,
        input_dtype=input_dtype,
        sha256=_sha256(path),
    )
    logger.debug("model %s meets contract %s", path, CONTRACT_VERSION)
    return info
