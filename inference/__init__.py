"""Inference: model contract, ONNX Runtime sessions, dynamic batching, frame quality, codes,
the grade rule table and the live per-session assessment.

Wiring (done by ``server``)::

    grader = Grader.load(path, providers="auto", intra_op_threads=4)
    batcher = DynamicBatcher(grader, max_batch=16, max_delay_ms=10, queue_size=64,
                             concurrency=1, metrics=BatcherMetrics(registry))
    batcher.start()
    hub = AnalysisHub(batcher, frame_threads=2, metrics=...)
    analyzer = hub.open(stream_id, refs={"order_id": ...}, on_update=send_to_agent)
    analyzer.offer(rgb_frame, ts)          # from the media sampler, never blocks
    ...
    await hub.aclose(); await batcher.aclose()

This package imports nothing from ``server``, ``signaling``, ``media`` or ``web``.
"""

from __future__ import annotations

from .analyzer import AnalysisHub, OnUpdate, StreamAnalyzer
from .assessment import AssessmentConfig, SessionAssessment
from .batcher import BatcherMetrics, BatchModel, DynamicBatcher, FrameBatcher, Prediction
from .captions import Caption, CaptionPipeline, CaptionSink, CaptionStats, Segmenter, Speaker
from .codes import CODE_FORMATS, CodeMatch, ReadCode, match_codes, normalise_code, read_codes
from .contract import (
    CONTRACT_VERSION,
    DEFAULT_DAMAGE_LABELS,
    GRADE_LABELS,
    MIN_OPSET,
    ModelInfo,
    inspect_model,
)
from .errors import (
    BatcherClosed,
    FrameDropped,
    InferenceError,
    InferenceTimeout,
    ModelContractError,
)
from .faces import (
    REDACT_METHODS,
    FaceDetector,
    RedactMethod,
    Region,
    TextDetector,
    redact_image,
)
from .grading import (
    RULES,
    RULES_VERSION,
    Cosmetic,
    Functional,
    Grade,
    GradeFacts,
    GradeResult,
    GradeRule,
    Packaging,
    ResaleChannel,
    derive_grade,
    resale_channel,
)
from .labels import LabelFields, LabelMatch, LabelReader, TextLine, label_fields, match_label
from .live import GradingService, LiveStream, compact
from .preprocess import to_model_input
from .quality import BestFrames, FrameQuality, SnapshotCandidate, assess_quality
from .remote import InferenceWorker, RemoteBatcher, RemoteKeys
from .session import (
    GPU_BATCH_SIZES,
    PROVIDER_SETTINGS,
    Grader,
    SessionPlan,
    plan_session,
    select_providers,
)
from .speech import (
    PACKAGED_MODELS,
    Recognition,
    SpeechDevice,
    SpeechModel,
    SpeechModelError,
    SpeechModelLocation,
    locate_model,
)

__all__ = [
    "PACKAGED_MODELS",
    "Caption",
    "CaptionPipeline",
    "CaptionSink",
    "CaptionStats",
    "Recognition",
    "Segmenter",
    "Speaker",
    "SpeechDevice",
    "SpeechModel",
    "SpeechModelError",
    "SpeechModelLocation",
    "locate_model",
    "LabelFields",
    "LabelMatch",
    "LabelReader",
    "TextLine",
    "label_fields",
    "match_label",
    "CODE_FORMATS",
    "CONTRACT_VERSION",
    "DEFAULT_DAMAGE_LABELS",
    "GPU_BATCH_SIZES",
    "GRADE_LABELS",
    "MIN_OPSET",
    "PROVIDER_SETTINGS",
    "REDACT_METHODS",
    "RULES",
    "RULES_VERSION",
    "AnalysisHub",
    "AssessmentConfig",
    "BatchModel",
    "BatcherClosed",
    "BatcherMetrics",
    "BestFrames",
    "CodeMatch",
    "Cosmetic",
    "DynamicBatcher",
    "FaceDetector",
    "FrameBatcher",
    "FrameDropped",
    "FrameQuality",
    "Functional",
    "Grade",
    "GradeFacts",
    "GradeResult",
    "GradeRule",
    "Grader",
    "GradingService",
    "InferenceError",
    "InferenceTimeout",
    "InferenceWorker",
    "LiveStream",
    "ModelContractError",
    "ModelInfo",
    "OnUpdate",
    "Packaging",
    "Prediction",
    "ReadCode",
    "RedactMethod",
    "Region",
    "RemoteBatcher",
    "RemoteKeys",
    "ResaleChannel",
    "SessionAssessment",
    "SessionPlan",
    "SnapshotCandidate",
    "StreamAnalyzer",
    "TextDetector",
    "assess_quality",
    "compact",
    "derive_grade",
    "inspect_model",
    "match_codes",
    "normalise_code",
    "plan_session",
    "read_codes",
    "redact_image",
    "resale_channel",
    "select_providers",
    "to_model_input",
]
