"""Cutting a stream into utterances and recognising them off the loop: the segmenter's cuts and
times, what it refuses, Silero's check before any model loads, the bounded queue that drops the
oldest utterance when the model is behind, and the caption with its latency from the speech's
end."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest

from inference import Caption, CaptionPipeline, Segmenter, Speaker
from inference.speech import SpeechModel, locate_model
from tests.fakes.speech import SENTENCES, espeak
from tests.waits import until

RATE = 16_000


def tone(seconds: float, hz: float = 440.0, level: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (np.sin(2 * np.pi * hz * t) * level).astype(np.int16)


def quiet(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.int16)


def feed(segmenter: Segmenter, audio: np.ndarray, chunk: int = 320) -> list[Any]:
    out = []
    for start in range(0, len(audio), chunk):
        out += segmenter.push(audio[start : start + chunk], start / RATE)
    return out


def test_the_segmenter_cuts_at_the_end_silence_and_times_the_speech() -> None:
    segmenter = Segmenter("s1", end_silence_s=0.5)
    audio = np.concatenate((quiet(1.0), tone(1.2), quiet(1.0), tone(0.6), quiet(1.0)))
    cuts = feed(segmenter, audio)
    assert len(cuts) == 2
    first, second = cuts
    # It starts a little before the first loud frame (the lead kept for the onset).
    assert first.started_at == pytest.approx(1.0, abs=0.3)
    assert first.ended_at == pytest.approx(2.2, abs=0.05), "ends at the last voiced frame"
    # The utterance keeps the speech and a short tail, not the silence that ended it.
    assert len(first.samples) / RATE == pytest.approx(1.2 + 0.2 + 0.2, abs=0.25)
    assert second.started_at == pytest.approx(3.2, abs=0.3)
    assert segmenter.flush() is None


def test_long_speech_is_cut_at_the_longest_utterance() -> None:
    segmenter = Segmenter("s1", max_utterance_s=2.0)
    cuts = feed(segmenter, np.concatenate((tone(5.0), quiet(1.0))))
    assert [round(len(c.samples) / RATE) for c in cuts[:2]] == [2, 2]


def test_float_audio_is_refused() -> None:
    with pytest.raises(TypeError, match="int16"):
        Segmenter("s1").push(np.zeros(320, np.float32), 0.0)


class Sink:
    def __init__(self) -> None:
        self.captions: list[Caption] = []
        self.event = asyncio.Event()

    async def caption_ready(self, caption: Caption) -> None:
        self.captions.append(caption)
        self.event.set()


SPEAKER = Speaker("room", "p1", "customer", "Mia", "tiny.en", language="en")


async def test_a_tone_is_no_speech_and_loads_no_model() -> None:
    loads: list[str] = []

    def load() -> SpeechModel:
        loads.append("tiny.en")
        return SpeechModel.load(locate_model("tiny.en"), device="cpu", threads=1)

    sink = Sink()
    pipeline = CaptionPipeline({"tiny.en": load}, sink)
    pipeline.start()
    try:
        pipeline.open("s1", SPEAKER)
        pipeline.push("s1", np.concatenate((tone(1.5), quiet(1.0))), 0.0)
        # The pipeline sends nothing for silence: its counter says it was heard and dropped.
        await until(lambda: pipeline.stats.silent >= 1, 20, "the tone checked")
    finally:
        await pipeline.aclose()
    assert sink.captions == [] and loads == []


async def test_speech_is_captioned_with_its_latency_from_the_speech_end() -> None:
    sentence = SENTENCES["en"]
    speech = np.ascontiguousarray(espeak(sentence.text, "en")[::3])
    sink = Sink()
    model = SpeechModel.load(locate_model("tiny.en"), device="cpu", threads=2)
    pipeline = CaptionPipeline({"tiny.en": lambda: model}, sink)
    pipeline.start()
    try:
        pipeline.open("s1", SPEAKER)
        pipeline.push("s1", np.concatenate((quiet(0.5), speech, quiet(1.0))), 100.0)
        async with asyncio.timeout(30):
            await sink.event.wait()
    finally:
        await pipeline.aclose()
    caption = sink.captions[0]
    assert caption.speaker == SPEAKER and caption.language == "en"
    assert caption.started_at >= 100.0 and caption.ended_at > caption.started_at
    # Pushed at once: the latency counts the end silence and the decoding, nothing before.
    assert 0 < caption.latency_s < 10
    assert pipeline.stats.captions == 1 and pipeline.stats.real_time_factor > 0


async def test_a_model_behind_drops_the_oldest_utterance() -> None:
    release = threading.Event()

    class Slow:
        """Stands in for a model that takes a while (blocks its thread until released)."""

        def recognize(self, audio: Any, **_: Any) -> Any:
            release.wait(10)
            raise RuntimeError("not a real model")

    sink = Sink()
    pipeline = CaptionPipeline({"slow": lambda: Slow()}, sink, queue_size=2)  # type: ignore[dict-item,return-value]
    pipeline.start()
    speaker = Speaker("room", "p1", "customer", "Mia", "slow")
    speech = np.ascontiguousarray(espeak("Hello there, the box is crushed.", "en")[::3])
    try:
        await asyncio.sleep(0.05)  # the lane is waiting for work
        # Five utterances at once, before the lane takes any: the queue keeps the newest two.
        for index in range(5):
            pipeline.open(f"s{index}", speaker)
            pipeline.push(f"s{index}", np.concatenate((speech, quiet(1.0))), 0.0)
        assert pipeline.stats.utterances == 5 and pipeline.stats.dropped == 3
    finally:
        release.set()
        await pipeline.aclose()
    assert sink.captions == []
