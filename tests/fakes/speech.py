"""Real speech for the captions tests and bench: sentences spoken by Debian's ``espeak-ng``, and
an aiortc audio track that says them (paced in real time, silence between and after), plus the
word error rate the tests bound.

The sentences are what a customer says in a return call, in English, German and Spanish, with
the words a translation must carry (``keywords``).
"""

from __future__ import annotations

import asyncio
import io
import re
import shutil
import subprocess
import unicodedata
import wave
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

__all__ = [
    "SENTENCES",
    "Sentence",
    "SpeechAudioTrack",
    "espeak",
    "resample",
    "silence",
    "character_error_rate",
    "word_error_rate",
    "words",
    "write_wav",
]

RATE = 48_000


@dataclass(frozen=True, slots=True)
class Sentence:
    language: str
    #: espeak-ng's voice.
    voice: str
    text: str
    #: Words the English translation must contain (lower case).
    keywords: tuple[str, ...] = ()


SENTENCES: dict[str, Sentence] = {
    "en": Sentence("en", "en", "The box arrived crushed and the phone screen is cracked."),
    "de": Sentence("de", "de", "Mein Telefon funktioniert nicht.", keywords=("phone",)),
    "es": Sentence(
        "es",
        "es",
        "Hola, el teléfono no funciona y la pantalla está rota.",
        keywords=("phone", "screen"),
    ),  # fmt: skip
}


def espeak(text: str, voice: str, *, speed: int = 150) -> np.ndarray:
    """``text`` spoken by espeak-ng, as 48 kHz mono int16."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise RuntimeError("espeak-ng is not installed (make chromium installs it)")
    done = subprocess.run(
        [binary, "-v", voice, "-s", str(speed), "--stdout", text],
        check=True,
        capture_output=True,
        timeout=30,
    )
    with wave.open(io.BytesIO(done.stdout)) as wav:
        rate = wav.getframerate()
        raw = np.frombuffer(wav.readframes(wav.getnframes()), np.int16)
    return resample(raw, rate, RATE)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.int16)


def write_wav(path: Path, samples: np.ndarray, *, pad_s: float = 1.5) -> Path:
    """``samples`` (48 kHz mono int16) as a WAV file with ``pad_s`` of silence either side: what
    Chromium's ``--use-file-for-fake-audio-capture`` plays as the microphone, in a loop."""
    padded = np.concatenate((silence(pad_s), samples, silence(pad_s)))
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(padded.astype("<i2").tobytes())
    return path


def resample(samples: np.ndarray, rate: int, to: int) -> np.ndarray:
    """Mono int16 ``samples`` at ``rate`` Hz as ``to`` Hz (libswresample, flushed)."""
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=to)
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.int16)


class SpeechAudioTrack(MediaStreamTrack):
    """Says ``samples`` (48 kHz mono int16) once, in 20 ms frames paced in real time, then
    sends silence. ``spoken`` is set when the last sample went out; ``said_at`` is the loop
    time the speech ended."""

    kind = "audio"

    def __init__(self, samples: np.ndarray, *, lead_s: float = 0.5) -> None:
        super().__init__()
        self._samples = np.concatenate((silence(lead_s), samples))
        self._per_frame = RATE // 50
        self._index = 0
        self._start: float | None = None
        self.spoken = asyncio.Event()
        self.said_at: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        delay = self._start + self._index * 0.02 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        begin = self._index * self._per_frame
        chunk = self._samples[begin : begin + self._per_frame]
        if len(chunk) < self._per_frame:
            if not self.spoken.is_set():
                self.said_at = loop.time()
                self.spoken.set()
            chunk = np.concatenate((chunk, np.zeros(self._per_frame - len(chunk), np.int16)))
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = begin
        frame.time_base = Fraction(1, RATE)
        self._index += 1
        return frame


def words(text: str) -> list[str]:
    """Lower-case words without accents or punctuation (what the error rate compares)."""
    plain = unicodedata.normalize("NFKD", text.lower())
    plain = "".join(char for char in plain if not unicodedata.combining(char))
    return re.findall(r"[a-z0-9]+", plain)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance over the reference's length."""
    return _error_rate(words(reference), words(hypothesis))


def character_error_rate(reference: str, hypothesis: str) -> float:
    """Character-level Levenshtein distance over the reference's length, on :func:`words`
    joined by single spaces: a compound split in two ("Telefon-Funk-Zioniert" for
    "funktioniert") costs a few characters, not two words of a four-word sentence."""
    return _error_rate(list(" ".join(words(reference))), list(" ".join(words(hypothesis))))


def _error_rate(ref: list[str], hyp: list[str]) -> float:
    if not ref:
        return 0.0 if not hyp else 1.0
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (r != h))
    return row[-1] / len(ref)
