"""The captions bench's speech: its own sentences said by espeak-ng at 16 kHz, and streams
that say them one after another with pauses, knowing where each sentence's speech ends."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from tests.fakes.speech import espeak

__all__ = ["RATE", "SENTENCES", "Script", "Spoken", "corpus", "say", "script"]

#: What the speech models and the captions pipeline take: 16 kHz mono int16.
RATE = 16_000

# The benchmark's own sentences (what a customer says on a return call), 2-5 s each when
# espeak-ng says them at 150 words a minute.
SENTENCES: dict[str, tuple[str, ...]] = {
    "en": (
        "My order arrived two days late and nobody told me why.",
        "The charger in the box does not work with my phone.",
        "Can you send me a new cable for the speaker, please?",
        "The screen has a long scratch in the top left corner.",
        "I would like to return these headphones and get my money back.",
        "The parcel was left outside in the rain all afternoon.",
        "The left speaker makes a buzzing sound when I turn it up.",
        "I paid for express shipping but it came by normal post.",
        "The battery drains in less than an hour after a full charge.",
        "Please refund the money to the credit card I paid with.",
    ),
    "de": (
        "Meine Bestellung kam zwei Tage zu spät und niemand hat mir Bescheid gesagt.",
        "Das Ladegerät in der Packung funktioniert nicht mit meinem Telefon.",
        "Können Sie mir bitte ein neues Kabel für den Lautsprecher schicken?",
        "Der Bildschirm hat einen langen Kratzer in der oberen Ecke.",
        "Ich möchte diese Kopfhörer zurückgeben und mein Geld wiederhaben.",
        "Das Paket lag den ganzen Nachmittag draußen im Regen.",
        "Der linke Lautsprecher brummt, wenn ich die Musik lauter mache.",
        "Ich habe für Expressversand bezahlt, aber es kam mit normaler Post.",
        "Der Akku ist nach einer vollen Ladung in weniger als einer Stunde leer.",
        "Bitte erstatten Sie das Geld auf die Kreditkarte, mit der ich bezahlt habe.",
    ),
    "es": (
        "Mi pedido llegó dos días tarde y nadie me dijo por qué.",
        "El cargador de la caja no funciona con mi teléfono.",
        "¿Puede enviarme un cable nuevo para el altavoz, por favor?",
        "La pantalla tiene un rasguño largo en la esquina de arriba.",
        "Quiero devolver estos auriculares y recuperar mi dinero.",
        "El paquete se quedó fuera bajo la lluvia toda la tarde.",
        "El altavoz izquierdo hace un zumbido cuando subo el volumen.",
        "Pagué el envío urgente, pero llegó por correo normal.",
        "La batería se agota en menos de una hora después de cargarla.",
        "Por favor, devuelvan el dinero a la tarjeta con la que pagué.",
    ),
}


@dataclass(frozen=True, slots=True)
class Spoken:
    """One sentence, said: 16 kHz mono int16, leading and trailing silence trimmed."""

    language: str
    text: str
    samples: np.ndarray[Any, Any]
    #: One past the last sample of speech (the trimmed audio keeps a little quiet after it).
    speech_end: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / RATE


@dataclass(frozen=True, slots=True)
class Script:
    """A stream's audio: sentences with pauses between them, and where each one's speech is."""

    samples: np.ndarray[Any, Any]
    said: tuple[Spoken, ...]
    #: Per sentence, its first and one-past-last sample of speech in ``samples``.
    spans: tuple[tuple[int, int], ...]


def to_16k(samples: np.ndarray[Any, Any], rate: int) -> np.ndarray[Any, Any]:
    """Mono int16 at ``rate`` resampled to 16 kHz (libswresample, as aiortc's audio path)."""
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.int16)


def say(language: str, text: str) -> Spoken:
    """``text`` said by espeak-ng's voice for ``language``, silence around it trimmed."""
    audio = to_16k(espeak(text, language), 48_000)
    loud = np.flatnonzero(np.abs(audio.astype(np.int32)) > 300)
    if not len(loud):
        raise RuntimeError(f"espeak-ng said nothing for {text!r} ({language})")
    margin = RATE // 20  # keep 50 ms around the speech, as a microphone would
    first = max(0, int(loud[0]) - margin)
    last = min(len(audio), int(loud[-1]) + margin)
    return Spoken(language, text, audio[first:last], int(loud[-1]) + 1 - first)


def corpus(count: int) -> dict[str, list[Spoken]]:
    """The first ``count`` sentences of each language, said."""
    return {lang: [say(lang, text) for text in texts[:count]] for lang, texts in SENTENCES.items()}


def script(said: Sequence[Spoken], *, gap_s: float, lead_s: float, seed: int) -> Script:
    """The sentences said one after another, pauses of ``gap_s`` (+-20 %) between them and a
    little background noise throughout (a real microphone is never digital silence)."""
    rng = random.Random(seed)
    pieces = [np.zeros(int(lead_s * RATE), np.int16)]
    spans: list[tuple[int, int]] = []
    at = len(pieces[0])
    for spoken in said:
        pieces.append(spoken.samples)
        spans.append((at, at + spoken.speech_end))
        at += len(spoken.samples)
        pause = np.zeros(int(gap_s * rng.uniform(0.8, 1.2) * RATE), np.int16)
        pieces.append(pause)
        at += len(pause)
    pieces.append(np.zeros(RATE // 2, np.int16))
    noise = np.random.default_rng(seed).normal(0.0, 20.0, at + RATE // 2)
    samples = np.clip(np.concatenate(pieces) + noise, -32768, 32767).astype(np.int16)
    return Script(samples, tuple(said), tuple(spans))
