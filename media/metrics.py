"""Prometheus figures of the media plane, read from the engine when scraped."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .engine import MediaEngine

__all__ = ["MediaCollector"]


class MediaCollector(Collector):
    """Published tracks, decoding and transcoding tracks, and forwarding totals."""

    def __init__(self, engine: MediaEngine, namespace: str = "inspect") -> None:
        self._engine = engine
        self._ns = namespace

    def collect(self) -> Iterator[Metric]:
        ns = self._ns
        sources = self._engine.all_sources()
        tracks = GaugeMetricFamily(
            f"{ns}_media_published_tracks", "Live published tracks by kind", labels=["kind"]
        )
        for kind in ("audio", "video"):
            tracks.add_metric([kind], sum(1 for s in sources if s.kind == kind))
        yield tracks
        yield GaugeMetricFamily(
            f"{ns}_media_decoding_tracks",
            "Published tracks being decoded (sampled for grading or transcoded)",
            value=sum(1 for s in sources if s.decoding),
        )
        yield GaugeMetricFamily(
            f"{ns}_media_transcodes",
            "Shared transcodes running (one per source and target codec)",
            value=sum(s.transcode_count for s in sources),
        )
        totals = self._engine.forwarding_totals
        yield CounterMetricFamily(
            f"{ns}_media_forwarded_frames",
            "Encoded frames handed to subscribers' senders",
            value=totals.frames,
        )
        yield CounterMetricFamily(
            f"{ns}_media_forwarded_bytes",
            "Encoded payload bytes handed to subscribers' senders",
            value=totals.bytes,
        )
        yield CounterMetricFamily(
            f"{ns}_media_dropped_frames",
            "Frames not forwarded (a subscriber fell behind or waited for a keyframe)",
            value=totals.dropped,
        )
        yield CounterMetricFamily(
            f"{ns}_media_subscriber_keyframe_requests",
            "Keyframe requests (PLI/FIR) from subscribers",
            value=totals.keyframe_requests,
        )
        yield CounterMetricFamily(
            f"{ns}_media_publisher_keyframe_requests",
            "Keyframe requests sent to publishers (after rate limiting), live tracks",
            value=sum(s.keyframe_requests for s in sources),
        )
