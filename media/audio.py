"""Decoded speech for whoever transcribes it, taken from a published audio track.

A published audio track is forwarded encoded (Opus packets go to the subscribers untouched); it is
decoded only while an :class:`AudioSink` wants it, through an :class:`AudioSampler` tapped on the
track's :class:`~media.source.TrackSource` (the decoder thread is aiortc's own). The sampler turns
aiortc's 48 kHz stereo frames into 16 kHz mono ``int16`` (what speech models read) and hands
them on without waiting: the sink must return at once and drop when it is behind.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from av import AudioFrame, AudioResampler

from .sampler import StreamKey

__all__ = ["SPEECH_RATE", "AudioSampler", "AudioSink"]

logger = logging.getLogger(__name__)

#: Samples per second of the audio an :class:`AudioSink` receives (mono, ``int16``).
SPEECH_RATE = 16_000


class AudioSink(Protocol):
    """Where decoded speech goes (the server wires captions in). Every method must return
    without waiting on recognition."""

    def wants_audio(self, stream: StreamKey) -> bool:
        """Whether to decode ``stream`` at all: an audio track nobody wants is never decoded
        (captions off costs nothing). Asked when the track is published and again at
        ``MediaEngine.resample``."""
        ...

    def audio_started(self, stream: StreamKey) -> None: ...

    def audio_received(self, stream: StreamKey, samples: np.ndarray[Any, Any], ts: float) -> None:
        """``samples``: 16 kHz mono ``int16``; ``ts``: wall-clock seconds of their first sample."""
        ...

    def audio_ended(self, stream: StreamKey) -> None: ...


class AudioSampler:
    """A frame tap on one audio track: every decoded frame, resampled, to the sink."""

    def __init__(
        self,
        stream: StreamKey,
        sink: AudioSink,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.stream = stream
        self._sink = sink
        self._wall_clock = wall_clock
        self._resampler = AudioResampler(format="s16", layout="mono", rate=SPEECH_RATE)
        self._closed = False
        #: Decoded frames seen and 16 kHz samples handed on.
        self.frames = 0
        self.samples = 0
        sink.audio_started(stream)

    def push(self, frame: object) -> None:
        """Called (on the loop thread) for every decoded frame of the track."""
        if self._closed or not isinstance(frame, AudioFrame):
            return
        self.frames += 1
        # The frame's first sample was captured its duration before it reached us.
        ts = self._wall_clock() - frame.samples / max(frame.sample_rate, 1)
        try:
            for out in self._resampler.resample(frame):
                samples = out.to_ndarray().reshape(-1).astype(np.int16, copy=False)
                self.samples += len(samples)
                self._sink.audio_received(self.stream, samples, ts)
        except Exception:
            logger.exception("resampling audio of %s failed", self.stream.id)

    def close(self) -> None:
        """The track ended, or nobody wants it any more; tell the sink once."""
        if self._closed:
            return
        self._closed = True
        try:
            self._sink.audio_ended(self.stream)
        except Exception:
            logger.exception("closing the audio stream %s failed", self.stream.id)
