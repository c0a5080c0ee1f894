"""Live captions: each speaker's audio cut into utterances, recognised off the event loop, and
handed on as :class:`Caption` segments.

The path, per audio stream:

1. :class:`Segmenter` (on the loop, microseconds per 20 ms frame) finds utterances by energy
   against a noise floor that follows the room: an utterance ends after ``end_silence_s`` of
   quiet, or is cut at ``max_utterance_s`` so long speech still captions every few seconds.
2. The utterance waits in its model's bounded queue (oldest dropped and counted when the model
   is behind: captions fall behind real time, they never pile up without bound).
3. On the model's own thread: Silero VAD (the ONNX model faster-whisper ships) confirms there is
   speech at all, so a beep, a cough or a door does not reach Whisper, which would invent words
   for it; then :meth:`~inference.speech.SpeechModel.recognize`.
4. The :class:`CaptionSink` gets the segment (the server sends it to the room and keeps it
   with the case).

Each model has one thread, so staff speech on the English model never waits behind a
customer's utterance on the multilingual one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from aioutil import OwnedTasks

from .speech import Recognition, SpeechModel

__all__ = [
    "Caption",
    "CaptionPipeline",
    "CaptionSink",
    "CaptionStats",
    "Segmenter",
    "Speaker",
    "Utterance",
]

logger = logging.getLogger(__name__)

_RATE = 16_000
#: The segmenter's analysis frame: 20 ms.
_FRAME = 320
#: What an utterance keeps after its last voiced frame: 200 ms.
_TAIL_SAMPLES = 10 * _FRAME


@dataclass(frozen=True, slots=True)
class Speaker:
    """Who speaks on a stream and how to recognise them."""

    room_id: str
    participant_id: str
    #: ``customer``, ``agent``...: shown with the caption.
    role: str
    name: str
    #: Which model (a key of the pipeline's models).
    model: str
    #: The language spoken when known for sure (``None``: detect it).
    language: str | None = None
    #: The languages this call expects, most likely first (detection prefers them).
    expected: tuple[str, ...] = ()
    #: Translate speech that is not English into English.
    translate: bool = False


@dataclass(frozen=True, slots=True)
class Utterance:
    """A stretch of one stream's speech; times are wall-clock seconds."""

    stream_id: str
    started_at: float
    ended_at: float
    samples: np.ndarray[Any, Any]
    #: Monotonic time the segmenter closed it (after the end silence).
    closed_at: float
    #: Monotonic time the last voiced frame arrived: caption latency is measured from there,
    #: as a listener hears the speech end (the end silence is part of the latency).
    spoke_until: float = 0.0


@dataclass(frozen=True, slots=True)
class Caption:
    """One recognised segment, as shown and kept."""

    segment_id: str
    speaker: Speaker
    started_at: float
    ended_at: float
    language: str
    text: str
    translation: str | None
    model: str
    #: Seconds from the end of the speech (its last voiced frame) to the caption being ready.
    latency_s: float
    compute_s: float


class CaptionSink(Protocol):
    """Where captions go. Awaited on the loop, one caption at a time per model."""

    async def caption_ready(self, caption: Caption) -> None: ...


@dataclass(slots=True)
class CaptionStats:
    """Counters for ``/metrics`` and the bench."""

    utterances: int = 0
    captions: int = 0
    #: Utterances in which Silero heard no speech, or Whisper recognised nothing.
    silent: int = 0
    #: Utterances dropped from a full queue (the model was behind).
    dropped: int = 0
    failed: int = 0
    audio_s: float = 0.0
    compute_s: float = 0.0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=512))

    @property
    def real_time_factor(self) -> float:
        return self.compute_s / self.audio_s if self.audio_s else 0.0


class Segmenter:
    """Cuts one stream's 16 kHz mono audio into utterances by energy (see the module doc)."""

    def __init__(
        self,
        stream_id: str,
        *,
        end_silence_s: float = 0.5,
        max_utterance_s: float = 8.0,
        min_utterance_s: float = 0.3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream_id = stream_id
        self._end_frames = max(1, round(end_silence_s * _RATE / _FRAME))
        self._max_samples = int(max_utterance_s * _RATE)
        self._min_samples = int(min_utterance_s * _RATE)
        self._clock = clock
        self._pending = np.zeros(0, np.int16)
        self._pending_ts = 0.0
        #: Frames before speech kept as lead-in (Whisper misses a word cut at its first sound).
        self._lead: deque[np.ndarray[Any, Any]] = deque(maxlen=10)
        self._speech: list[np.ndarray[Any, Any]] = []
        self._speech_started = 0.0
        self._quiet = 0
        self._floor = 200.0
        self._cursor_ts = 0.0
        self._voice_ts = 0.0
        self._voice_clock = 0.0
        self._voice_samples = 0

    @property
    def speaking(self) -> bool:
        return bool(self._speech)

    def push(self, samples: np.ndarray[Any, Any], ts: float) -> list[Utterance]:
        """Add audio whose first sample was captured at ``ts``; returns the utterances that
        ended in it."""
        if samples.dtype != np.int16:
            raise TypeError(f"the segmenter takes 16 kHz mono int16 samples, not {samples.dtype}")
        if not len(self._pending):
            self._pending_ts = ts
        self._pending = np.concatenate((self._pending, samples))
        done: list[Utterance] = []
        offset = 0
        while len(self._pending) - offset >= _FRAME:
            frame = self._pending[offset : offset + _FRAME]
            frame_ts = self._pending_ts + offset / _RATE
            offset += _FRAME
            utterance = self._frame(frame, frame_ts)
            if utterance is not None:
                done.append(utterance)
        self._pending = self._pending[offset:]
        self._pending_ts += offset / _RATE
        return done

    def _frame(self, frame: np.ndarray[Any, Any], ts: float) -> Utterance | None:
        rms = float(np.sqrt(np.mean(frame.astype(np.float32) ** 2)))
        self._cursor_ts = ts + _FRAME / _RATE
        loud = rms > max(self._floor * 3.0, 300.0)
        if not self._speech:
            # The floor follows quiet stretches only, slowly, so speech never raises it.
            self._floor = 0.95 * self._floor + 0.05 * max(rms, 50.0)
            if not loud:
                self._lead.append(frame)
                return None
            self._speech = [*self._lead, frame]
            self._speech_started = ts - len(self._lead) * _FRAME / _RATE
            self._lead.clear()
            self._quiet = 0
            self._voiced(ts)
            return None
        self._speech.append(frame)
        self._quiet = 0 if loud else self._quiet + 1
        if loud:
            self._voiced(ts)
        if self._quiet >= self._end_frames:
            return self._close()
        if len(self._speech) * _FRAME >= self._max_samples:
            return self._close()
        return None

    def _voiced(self, ts: float) -> None:
        self._voice_ts = ts + _FRAME / _RATE
        self._voice_clock = self._clock()
        self._voice_samples = len(self._speech) * _FRAME

    def flush(self) -> Utterance | None:
        """The utterance in progress, if any (the stream ended)."""
        return self._close() if self._speech else None

    def _close(self) -> Utterance | None:
        speech, self._speech = self._speech, []
        # The speech and a short tail after its last voiced frame (the model needs no more of
        # the silence that ended it).
        samples = np.concatenate(speech)[: self._voice_samples + _TAIL_SAMPLES]
        self._quiet = 0
        if len(samples) < self._min_samples:
            return None
        return Utterance(
            stream_id=self.stream_id,
            started_at=self._speech_started,
            ended_at=self._voice_ts,
            samples=samples,
            closed_at=self._clock(),
            spoke_until=self._voice_clock,
        )


class _Voice:
    """Silero VAD (shipped in faster-whisper's wheel): does an utterance hold speech at all?"""

    def __init__(self) -> None:
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        self._options = VadOptions(min_speech_duration_ms=150, min_silence_duration_ms=300)
        self._detect = get_speech_timestamps

    def speech_s(self, audio: np.ndarray[Any, Any]) -> float:
        spans = self._detect(audio, self._options)
        return float(sum(span["end"] - span["start"] for span in spans)) / _RATE


@dataclass(slots=True)
class _Stream:
    speaker: Speaker
    segmenter: Segmenter
    count: int = 0


class _Lane:
    """One model, its thread and its queue of utterances."""

    def __init__(self, name: str, load: Callable[[], SpeechModel], queue_size: int) -> None:
        self.name = name
        self._load = load
        self.model: SpeechModel | None = None
        self.voice: _Voice | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"asr-{name}")
        self.queue: deque[tuple[Speaker, Utterance, str]] = deque()
        self.queue_size = queue_size
        self.ready = asyncio.Event()

    def recognize(self, speaker: Speaker, utterance: Utterance) -> Recognition | None:
        """On the lane's thread: check for speech, load the model on first use, recognise."""
        if self.voice is None:
            self.voice = _Voice()
        audio = utterance.samples.astype(np.float32) / 32768.0
        if self.voice.speech_s(audio) < 0.15:
            return None
        # Loaded at the first speech heard: a call with only tones and noise loads nothing.
        if self.model is None:
            self.model = self._load()
        return self.model.recognize(
            audio,
            language=speaker.language,
            expected=speaker.expected,
            translate=speaker.translate,
        )


class CaptionPipeline:
    """Utterances of every captioned stream of this process, recognised and sent on.

    ``models`` maps a model key (what :attr:`Speaker.model` names) to a loader, called on the
    model's thread the first time it is needed (seconds), so a process that never captions
    never loads a model. :meth:`open`, :meth:`push` and :meth:`close` are called on the loop
    and return at once.
    """

    def __init__(
        self,
        models: dict[str, Callable[[], SpeechModel]],
        sink: CaptionSink,
        *,
        queue_size: int = 8,
        end_silence_s: float = 0.5,
        max_utterance_s: float = 8.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not models:
            raise ValueError("captions need at least one speech model")
        self._lanes = {name: _Lane(name, load, queue_size) for name, load in models.items()}
        self._sink = sink
        self._end_silence_s = end_silence_s
        self._max_utterance_s = max_utterance_s
        self._clock = clock
        self._streams: dict[str, _Stream] = {}
        self._tasks = OwnedTasks()
        self._started = False
        self.stats = CaptionStats()

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self._lanes)

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        for lane in self._lanes.values():
            self._tasks.spawn(self._run(lane), f"captions-{lane.name}")

    async def aclose(self) -> None:
        """Stop the lanes (an utterance being recognised is finished first) and their threads."""
        self._streams.clear()
        await self._tasks.aclose()
        for lane in self._lanes.values():
            lane.executor.shutdown(wait=True, cancel_futures=True)

    # -- streams ------------------------------------------------------------------------------

    def open(self, stream_id: str, speaker: Speaker) -> None:
        if speaker.model not in self._lanes:
            raise ValueError(f"no speech model {speaker.model!r}")
        self._streams[stream_id] = _Stream(
            speaker,
            Segmenter(
                stream_id,
                end_silence_s=self._end_silence_s,
                max_utterance_s=self._max_utterance_s,
                clock=self._clock,
            ),
        )

    def update_speaker(self, stream_id: str, speaker: Speaker) -> None:
        """Who speaks on an open stream became known (their utterances from now on)."""
        stream = self._streams.get(stream_id)
        if stream is not None and speaker.model in self._lanes:
            stream.speaker = speaker

    def is_open(self, stream_id: str) -> bool:
        return stream_id in self._streams

    def push(self, stream_id: str, samples: np.ndarray[Any, Any], ts: float) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        for utterance in stream.segmenter.push(samples, ts):
            self._queue(stream, utterance)

    def close(self, stream_id: str) -> None:
        """The stream ended: its last utterance is still recognised."""
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return
        utterance = stream.segmenter.flush()
        if utterance is not None:
            self._queue(stream, utterance)

    def discard(self, stream_id: str) -> None:
        """Forget a stream and whatever of it is still queued (captions were switched off)."""
        self._streams.pop(stream_id, None)
        for lane in self._lanes.values():
            kept = [entry for entry in lane.queue if entry[1].stream_id != stream_id]
            lane.queue.clear()
            lane.queue.extend(kept)

    def _queue(self, stream: _Stream, utterance: Utterance) -> None:
        lane = self._lanes[stream.speaker.model]
        stream.count += 1
        segment_id = f"{utterance.stream_id}#{stream.count}"
        self.stats.utterances += 1
        if len(lane.queue) >= lane.queue_size:
            lane.queue.popleft()
            self.stats.dropped += 1
            logger.warning("captions behind on model %s: an utterance was dropped", lane.name)
        lane.queue.append((stream.speaker, utterance, segment_id))
        lane.ready.set()

    # -- the lanes ----------------------------------------------------------------------------

    async def _run(self, lane: _Lane) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not lane.queue:
                lane.ready.clear()
                await lane.ready.wait()
                continue
            speaker, utterance, segment_id = lane.queue.popleft()
            try:
                result = await loop.run_in_executor(
                    lane.executor, lane.recognize, speaker, utterance
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                self.stats.failed += 1
                logger.exception("recognising an utterance on model %s failed", lane.name)
                continue
            duration = len(utterance.samples) / _RATE
            self.stats.audio_s += duration
            if result is not None:
                self.stats.compute_s += result.compute_s
            if result is None or not result.text:
                self.stats.silent += 1
                continue
            latency = self._clock() - (utterance.spoke_until or utterance.closed_at)
            self.stats.latencies.append(latency)
            self.stats.captions += 1
            caption = Caption(
                segment_id=segment_id,
                speaker=speaker,
                started_at=utterance.started_at,
                ended_at=utterance.ended_at,
                language=result.language,
                text=result.text,
                translation=result.translation,
                model=lane.name,
                latency_s=latency,
                compute_s=result.compute_s,
            )
            try:
                await self._sink.caption_ready(caption)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("a caption could not be delivered")
