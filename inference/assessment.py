"""The live, per-session view of what the model sees: smoothed grade, damage, codes, counts.

Per-frame predictions are noisy (the item turns, the hand covers it), so they are combined into
an exponentially weighted mean: each usable frame counts with its quality weight
(:attr:`~inference.quality.FrameQuality.weight`, sharper counts more) and older frames fade by
``decay`` per frame. The agent sees a grade with a confidence and a "sure" / "not sure" status,
never a bare per-frame label: the model's output is evidence, not the verdict.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .batcher import Prediction
from .codes import CodeMatch, ReadCode
from .labels import LabelFields, LabelMatch
from .quality import FrameQuality

__all__ = ["AssessmentConfig", "SessionAssessment"]


@dataclass(frozen=True, slots=True)
class AssessmentConfig:
    """Knobs of the live aggregation."""

    #: Weight kept by the past at each new frame (0.8: a frame's influence halves in ~3 frames,
    #: ~1.5 s at 2 fps).
    decay: float = 0.8
    #: Usable frames needed before the view can be "sure".
    min_frames: int = 3
    #: Smoothed probability of the top grade needed to be "sure".
    sure_confidence: float = 0.6
    #: Recent frames considered for "poor quality" and the share of them that must be usable.
    quality_window: int = 10
    min_usable_share: float = 0.5
    #: Smoothed damage probability over which a damage type is reported as seen.
    damage_threshold: float = 0.5


class SessionAssessment:
    """Aggregates one stream's predictions; :meth:`snapshot` is what the agent's console shows.

    Not thread-safe: one analyzer updates it on the event loop.
    """

    def __init__(
        self,
        grade_labels: Iterable[str],
        damage_labels: Iterable[str],
        *,
        stream_id: str = "",
        refs: Mapping[str, str | None] | None = None,
        config: AssessmentConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stream_id = stream_id
        self.grade_labels = tuple(grade_labels)
        self.damage_labels = tuple(damage_labels)
        self.refs: dict[str, str] = {k: v for k, v in (refs or {}).items() if v}
        self.config = config or AssessmentConfig()
        self._clock = clock
        self._grade_sum = np.zeros(len(self.grade_labels))
        self._damage_sum = np.zeros(len(self.damage_labels))
        self._weight = 0.0
        self._damage_max = np.zeros(len(self.damage_labels))
        self._damage_first: dict[str, float] = {}
        self._recent: deque[bool] = deque(maxlen=self.config.quality_window)
        self._codes: dict[tuple[str, str], dict[str, Any]] = {}
        self._labels: dict[tuple[str, str], dict[str, Any]] = {}
        self.model_version: str | None = None
        self.frames_analysed = 0
        self.frames_skipped = 0
        self.frames_dropped = 0
        self.frames_failed = 0
        self.skip_reasons: Counter[str] = Counter()
        self.last_quality: FrameQuality | None = None
        self.last_latency_ms: float | None = None
        self.started_at = clock()
        self.updated_at = self.started_at

    # -- updates -------------------------------------------------------------------------------

    def add_prediction(
        self, prediction: Prediction, quality: FrameQuality, ts: float | None = None
    ) -> None:
        """Fold one graded frame in, weighted by its quality."""
        ts = self._clock() if ts is None else ts
        weight = quality.weight
        decay = self.config.decay
        self._grade_sum = decay * self._grade_sum + weight * np.asarray(prediction.grade_probs)
        damage = np.asarray(prediction.damage_probs)
        self._damage_sum = decay * self._damage_sum + weight * damage
        self._weight = decay * self._weight + weight
        self._damage_max = np.maximum(self._damage_max, damage)
        smoothed = self._damage_sum / self._weight if self._weight > 0 else self._damage_sum
        for label, prob in zip(self.damage_labels, smoothed, strict=True):
            if prob >= self.config.damage_threshold:
                self._damage_first.setdefault(label, ts)
        self.model_version = prediction.model_version
        self.frames_analysed += 1
        self._recent.append(True)
        self.last_quality = quality
        self.last_latency_ms = prediction.queue_wait_ms + prediction.latency_ms
        self.updated_at = ts

    def add_skipped(self, quality: FrameQuality, ts: float | None = None) -> None:
        """A frame the quality gate refused (counts against "sure")."""
        self.frames_skipped += 1
        self.skip_reasons[quality.reason or "unknown"] += 1
        self._recent.append(False)
        self.last_quality = quality
        self.updated_at = self._clock() if ts is None else ts

    def add_dropped(self, count: int = 1) -> None:
        """Frames dropped because analysis was behind (not a quality problem)."""
        self.frames_dropped += count

    def add_failed(self) -> None:
        self.frames_failed += 1

    def add_codes(
        self, codes: Iterable[ReadCode], matches: Iterable[CodeMatch], ts: float | None = None
    ) -> list[dict[str, Any]]:
        """Record codes read in a frame; returns the entries that are new this time."""
        refs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for match in matches:
            ref = {"ref": match.ref, "value": match.value, "exact": match.exact}
            refs.setdefault((match.code.format, match.code.text), []).append(ref)
        found = [(code.format, code.text) for code in codes]
        return self._record(self._codes, "format", found, refs, ts)

    def add_labels(
        self, fields: LabelFields, matches: Iterable[LabelMatch], ts: float | None = None
    ) -> list[dict[str, Any]]:
        """Record the serials, IMEIs and model numbers read off a label in a frame; returns the
        entries that are new this time."""
        refs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for match in matches:
            ref = {"ref": match.ref, "value": match.value, "exact": True}
            refs.setdefault((match.kind, match.value), []).append(ref)
        found = [("serial", v) for v in fields.serials] + [("imei", v) for v in fields.imeis]
        found += [("model", v) for v in fields.models]
        return self._record(self._labels, "kind", found, refs, ts)

    def _record(
        self,
        table: dict[tuple[str, str], dict[str, Any]],
        kind_field: str,
        found: Iterable[tuple[str, str]],
        refs: Mapping[tuple[str, str], list[dict[str, Any]]],
        ts: float | None,
    ) -> list[dict[str, Any]]:
        """Count each (kind, text) of ``found`` in ``table``, with the references it matches;
        the entries that are new this time."""
        ts = self._clock() if ts is None else ts
        new: list[dict[str, Any]] = []
        for key in found:
            entry = table.get(key)
            if entry is None:
                entry = table[key] = {
                    kind_field: key[0],
                    "text": key[1],
                    "first_seen": ts,
                    "last_seen": ts,
                    "count": 0,
                    "matches": [],
                }
                new.append(entry)
            entry["count"] += 1
            entry["last_seen"] = ts
            for ref in refs.get(key, []):
                if ref not in entry["matches"]:
                    entry["matches"].append(ref)
        if new:
            self.updated_at = ts
        return new

    # -- views ---------------------------------------------------------------------------------

    def grade_probs(self) -> dict[str, float]:
        """Smoothed grade probabilities (empty before the first graded frame)."""
        if self._weight <= 0:
            return {}
        probs = self._grade_sum / self._weight
        return {label: float(p) for label, p in zip(self.grade_labels, probs, strict=True)}

    def status(self) -> tuple[str, list[str]]:
        """("sure" | "not_sure", reasons); reasons among too_few_frames, low_confidence,
        poor_quality."""
        reasons: list[str] = []
        if self.frames_analysed < self.config.min_frames:
            reasons.append("too_few_frames")
        probs = self.grade_probs()
        if not probs or max(probs.values()) < self.config.sure_confidence:
            reasons.append("low_confidence")
        if self._recent and (sum(self._recent) / len(self._recent) < self.config.min_usable_share):
            reasons.append("poor_quality")
        return ("not_sure" if reasons else "sure"), reasons

    def linked_refs(self) -> dict[str, str]:
        """References (order_id, tracking_number, unit_id...) confirmed by a code read or by
        a value read off a label."""
        linked: dict[str, str] = {}
        for entry in [*self._codes.values(), *self._labels.values()]:
            for match in entry["matches"]:
                linked.setdefault(match["ref"], match["value"])
        return linked

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready view for the agent's console (see the package docs for an example)."""
        probs = self.grade_probs()
        grade = max(probs, key=lambda k: probs[k]) if probs else None
        status, reasons = self.status()
        damage: list[dict[str, Any]] = []
        if self._weight > 0:
            smoothed = self._damage_sum / self._weight
            for i, label in enumerate(self.damage_labels):
                if label in self._damage_first:
                    damage.append(
                        {
                            "label": label,
                            "prob": round(float(smoothed[i]), 3),
                            "max_prob": round(float(self._damage_max[i]), 3),
                            "first_seen": self._damage_first[label],
                        }
                    )
            damage.sort(key=lambda d: -d["prob"])
        return {
            "stream_id": self.stream_id,
            "model_version": self.model_version,
            "grade": grade,
            "confidence": round(probs[grade], 3) if grade else 0.0,
            "status": status,
            "reasons": reasons,
            "grade_probs": {k: round(v, 3) for k, v in probs.items()},
            "damage": damage,
            "codes": [
                {**entry, "matches": [dict(m) for m in entry["matches"]]}
                for entry in self._codes.values()
            ],
            # Serials, IMEIs and model numbers read off labels (inference/labels.py).
            "labels": [
                {**entry, "matches": [dict(m) for m in entry["matches"]]}
                for entry in self._labels.values()
            ],
            "linked_refs": self.linked_refs(),
            "frames": {
                "analysed": self.frames_analysed,
                "skipped": self.frames_skipped,
                "dropped": self.frames_dropped,
                "failed": self.frames_failed,
                "skip_reasons": dict(self.skip_reasons),
            },
            "quality": self.last_quality.as_dict() if self.last_quality else None,
            "latency_ms": round(self.last_latency_ms, 1) if self.last_latency_ms else None,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
        }
