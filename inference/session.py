"""ONNX Runtime sessions for a grading model: provider choice, GPU binding, fixed batch sizes.

Provider order is TensorRT, then CUDA, then CPU, among those ``onnxruntime`` reports as
available (``onnxruntime-gpu`` is the optional ``gpu`` extra; the CPU wheel reports only CPU).
A setting value (``"auto"``, ``"tensorrt"``, ``"cuda"``, ``"cpu"``) can force one; asking for a
provider that is not available is an error at start, not a silent fallback.

On a GPU provider:

- inputs are padded to a few fixed batch sizes (:data:`GPU_BATCH_SIZES`) so CUDA / TensorRT plan
  (and TensorRT builds engines) for those shapes once, at warm-up, instead of for every new N;
- CUDA runs through IOBinding: the batch is copied to the device once, outputs stay on the device
  until copied back together;
- TensorRT builds fp16 engines (``trt_fp16_enable``) with an on-disk engine cache, and an
  optimisation profile covering batch 1 to the largest fixed size;
- with CUDA, ``<name>-fp16.onnx`` beside the model is used when present and valid. TensorRT keeps
  the float32 file and does its own fp16 conversion, which handles precision-sensitive layers
  (softmax, normalisation) better than a converted graph.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .contract import DAMAGE_OUTPUT, GRADE_OUTPUT, INPUT_NAME, ModelInfo, inspect_model
from .errors import InferenceError, ModelContractError

__all__ = [
    "GPU_BATCH_SIZES",
    "PROVIDER_SETTINGS",
    "Grader",
    "SessionPlan",
    "plan_session",
    "select_providers",
]

logger = logging.getLogger(__name__)

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
#: Setting value -> provider chain (first is the one wanted; ORT places unsupported nodes on the
#: next ones).
PROVIDER_SETTINGS: Mapping[str, tuple[str, ...]] = {
    "tensorrt": (TENSORRT, CUDA, CPU),
    "cuda": (CUDA, CPU),
    "cpu": (CPU,),
}
_SHORT = {TENSORRT: "tensorrt", CUDA: "cuda", CPU: "cpu"}
#: Batch sizes a GPU session is padded to (a batch of 5 runs as 8).
GPU_BATCH_SIZES: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)


def select_providers(setting: str | Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """The provider chain for a setting, given what onnxruntime reports as available.

    ``setting``: ``None`` / ``"auto"`` (best available), ``"tensorrt"``, ``"cuda"``, ``"cpu"``,
    or an explicit list of provider names. Raises :class:`InferenceError` (code
    ``provider_unavailable``) when the wanted provider is not available.
    """
    avail = list(available)
    if setting is None or (isinstance(setting, str) and setting.strip().lower() == "auto"):
        for first in (TENSORRT, CUDA, CPU):
            if first in avail:
                return [p for p in PROVIDER_SETTINGS[_SHORT[first]] if p in avail]
        raise InferenceError(
            f"no usable onnxruntime provider (available: {avail})", code="provider_unavailable"
        )
    if isinstance(setting, str):
        key = setting.strip().lower()
        if key not in PROVIDER_SETTINGS:
            raise ValueError(
                f"unknown inference provider {setting!r}: expected auto, tensorrt, cuda or cpu"
            )
        chain = list(PROVIDER_SETTINGS[key])
    else:
        chain = list(setting)
    if not chain or chain[0] not in avail:
        raise InferenceError(
            f"inference provider {chain[0] if chain else setting!r} is not available "
            f"(onnxruntime reports {avail}); install the 'gpu' extra (onnxruntime-gpu) with a "
            "matching CUDA, or set the provider to 'auto' or 'cpu'",
            code="provider_unavailable",
        )
    return [p for p in chain if p in avail]


def fp16_variant(path: Path) -> Path:
    """``grader-v1.onnx`` -> ``grader-v1-fp16.onnx`` (same folder)."""
    return path.with_name(f"{path.stem}-fp16{path.suffix}")


@dataclass(frozen=True, slots=True)
class SessionPlan:
    """Everything decided before creating the session (pure, so it is tested without a GPU)."""

    model_path: Path
    providers: tuple[str, ...]
    provider_options: tuple[dict[str, Any], ...]
    #: Fixed batch sizes to pad to (empty: run every N as is, the CPU case).
    pad_sizes: tuple[int, ...]
    use_iobinding: bool
    fp16_file: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def provider(self) -> str:
        return self.providers[0]


def plan_session(
    path: str | Path,
    setting: str | Sequence[str] | None = "auto",
    *,
    available: Sequence[str],
    input_size: tuple[int, int] = (224, 224),
    trt_cache_dir: str | Path | None = None,
    prefer_fp16: bool = True,
    device_id: int = 0,
    batch_sizes: Sequence[int] = GPU_BATCH_SIZES,
) -> SessionPlan:
    """Decide providers, their options, the model file and padding for ``path``."""
    path = Path(path)
    chain = select_providers(setting, available)
    first = chain[0]
    notes: list[str] = []
    model_path, fp16_file = path, False
    if first == CUDA and prefer_fp16:
        candidate = fp16_variant(path)
        if candidate.is_file():
            model_path, fp16_file = candidate, True
            notes.append(f"using fp16 copy {candidate.name}")
    h, w = input_size
    sizes = tuple(sorted(set(batch_sizes)))
    options: list[dict[str, Any]] = []
    for provider in chain:
        if provider == TENSORRT:
            cache = str(trt_cache_dir or path.parent / ".trt-cache")
            options.append(
                {
                    "device_id": device_id,
                    "trt_fp16_enable": True,
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": cache,
                    "trt_timing_cache_enable": True,
                    "trt_timing_cache_path": cache,
                    "trt_profile_min_shapes": f"{INPUT_NAME}:1x3x{h}x{w}",
                    "trt_profile_opt_shapes": f"{INPUT_NAME}:{sizes[len(sizes) // 2]}x3x{h}x{w}",
                    "trt_profile_max_shapes": f"{INPUT_NAME}:{sizes[-1]}x3x{h}x{w}",
                }
            )
        elif provider == CUDA:
            options.append(
                {
                    "device_id": device_id,
                    "arena_extend_strategy": "kSameAsRequested",
                    "cudnn_conv_algo_search": "EXHAUSTIVE",
                    "do_copy_in_default_stream": True,
                }
            )
        else:
            options.append({})
    gpu = first in (TENSORRT, CUDA)
    return SessionPlan(
        model_path=model_path,
        providers=tuple(chain),
        provider_options=tuple(options),
        pad_sizes=sizes if gpu else (),
        use_iobinding=gpu,
        fp16_file=fp16_file,
        notes=tuple(notes),
    )


def _pad_size(n: int, sizes: Sequence[int]) -> int:
    for size in sizes:
        if size >= n:
            return size
    return sizes[-1]


class Grader:
    """A loaded grading model: ``predict(batch) -> (grade_probs, damage_probs)``.

    Thread-safe: ``predict`` may be called from several executor threads at once (an ORT
    session's ``run`` is thread-safe; each call gets its own IOBinding).
    """

    def __init__(self, session: Any, info: ModelInfo, plan: SessionPlan) -> None:
        self._session = session
        self.info = info
        self.plan = plan
        actual = list(session.get_providers())
        #: Short name of the provider that actually runs the model ("tensorrt", "cuda", "cpu").
        self.provider = _SHORT.get(actual[0], actual[0]) if actual else "cpu"
        self._iobinding = plan.use_iobinding and actual[:1] and actual[0] in (TENSORRT, CUDA)
        self._pad_sizes = plan.pad_sizes if self._iobinding else ()
        self._device_id = int(plan.provider_options[0].get("device_id", 0))
        self._input_dtype = np.float16 if info.input_dtype == "float16" else np.float32
        self._lock = threading.Lock()
        self.runs = 0

    @classmethod
    def load(
        cls,
        path: str | Path,
        providers: str | Sequence[str] | None = None,
        intra_op_threads: int = 0,
        inter_op_threads: int = 1,
        *,
        available: Sequence[str] | None = None,
        trt_cache_dir: str | Path | None = None,
        prefer_fp16: bool = True,
        warmup: bool = True,
    ) -> Grader:
        """Check ``path`` against the contract, pick providers and create the session.

        ``providers``: a setting value (``"auto"``/``None``, ``"tensorrt"``, ``"cuda"``,
        ``"cpu"``) or explicit provider names. ``intra_op_threads`` 0 lets ORT use one thread
        per physical core; give an explicit count when several sessions or the media plane
        share the host. ``available`` overrides ``onnxruntime.get_available_providers()``.
        Raises :class:`ModelContractError` for a bad model, :class:`InferenceError` when the
        provider cannot be had.
        """
        import onnxruntime as ort

        path = Path(path)
        info = inspect_model(path)
        avail = list(ort.get_available_providers() if available is None else available)
        plan = plan_session(
            path,
            providers,
            available=avail,
            input_size=info.input_size,
            trt_cache_dir=trt_cache_dir,
            prefer_fp16=prefer_fp16,
        )
        if plan.fp16_file:
            try:
                fp16_info = inspect_model(plan.model_path, allow_fp16_io=True)
            except ModelContractError as exc:
                logger.warning("ignoring %s: %s", plan.model_path, exc)
                plan = plan_session(
                    path,
                    providers,
                    available=avail,
                    input_size=info.input_size,
                    trt_cache_dir=trt_cache_dir,
                    prefer_fp16=False,
                )
            else:
                if (fp16_info.grade_labels, fp16_info.damage_labels, fp16_info.input_size) != (
                    info.grade_labels,
                    info.damage_labels,
                    info.input_size,
                ):
                    raise ModelContractError(
                        str(plan.model_path),
                        [f"labels or input size differ from {path.name}; re-export both together"],
                    )
                info = fp16_info
        if TENSORRT in plan.providers:
            os.makedirs(
                plan.provider_options[plan.providers.index(TENSORRT)]["trt_engine_cache_path"],
                exist_ok=True,
            )

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(0, int(intra_op_threads))
        options.inter_op_num_threads = max(1, int(inter_op_threads))
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(
                str(plan.model_path),
                sess_options=options,
                providers=list(plan.providers),
                provider_options=[dict(o) for o in plan.provider_options],
            )
        except Exception as exc:
            raise InferenceError(
                f"cannot create an onnxruntime session for {plan.model_path} on "
                f"{list(plan.providers)}: {exc}",
                code="session_failed",
            ) from exc
        grader = cls(session, info, plan)
        wanted = _SHORT.get(plan.provider, plan.provider)
        if grader.provider != wanted:
            logger.warning(
                "inference provider %s requested but onnxruntime runs %s (check the CUDA / "
                "TensorRT libraries)",
                wanted,
                grader.provider,
            )
        logger.info(
            "inference model %s version %s on %s (chain %s%s), intra-op threads %s",
            plan.model_path.name,
            info.version,
            grader.provider,
            ",".join(_SHORT.get(p, p) for p in plan.providers),
            f"; {'; '.join(plan.notes)}" if plan.notes else "",
            intra_op_threads or "auto",
        )
        if warmup:
            grader.warmup()
        return grader

    @property
    def padded_sizes(self) -> tuple[int, ...]:
        """Fixed batch sizes this session pads to (empty on CPU)."""
        return self._pad_sizes

    def warmup(self, sizes: Sequence[int] | None = None) -> None:
        """Run each fixed batch size once so planning / engine builds happen at start."""
        h, w = self.info.input_size
        for n in sizes or self._pad_sizes or (1,):
            self.predict(np.full((n, 3, h, w), 114.0, dtype=np.float32))

    def predict(
        self, batch: np.ndarray[Any, Any]
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """``batch`` [N,3,H,W] float32 RGB 0-255 -> (grade_probs [N,4], damage_probs [N,K])."""
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected a [N,3,H,W] batch, got shape {batch.shape}")
        n = int(batch.shape[0])
        if n == 0:
            k = len(self.info.damage_labels)
            return np.zeros((0, len(self.info.grade_labels)), np.float32), np.zeros(
                (0, k), np.float32
            )
        if not self._iobinding:
            grade, damage = self._session.run(
                [GRADE_OUTPUT, DAMAGE_OUTPUT],
                {INPUT_NAME: batch.astype(self._input_dtype, copy=False)},
            )
        else:
            largest = self._pad_sizes[-1]
            parts = [self._run_bound(batch[i : i + largest]) for i in range(0, n, largest)]
            grade = np.concatenate([p[0] for p in parts])
            damage = np.concatenate([p[1] for p in parts])
        with self._lock:
            self.runs += 1
        return np.asarray(grade, dtype=np.float32), np.asarray(damage, dtype=np.float32)

    def _run_bound(
        self, batch: np.ndarray[Any, Any]
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """One GPU run through IOBinding, padded to a fixed batch size."""
        import onnxruntime as ort

        n = int(batch.shape[0])
        size = _pad_size(n, self._pad_sizes)
        if size != n:
            padded = np.empty((size, *batch.shape[1:]), dtype=self._input_dtype)
            padded[:n] = batch
            padded[n:] = 114.0
        else:
            padded = np.ascontiguousarray(batch, dtype=self._input_dtype)
        binding = self._session.io_binding()
        device_input = ort.OrtValue.ortvalue_from_numpy(padded, "cuda", self._device_id)
        binding.bind_ortvalue_input(INPUT_NAME, device_input)
        binding.bind_output(GRADE_OUTPUT, "cuda", self._device_id)
        binding.bind_output(DAMAGE_OUTPUT, "cuda", self._device_id)
        self._session.run_with_iobinding(binding)
        grade, damage = binding.copy_outputs_to_cpu()
        return grade[:n], damage[:n]
