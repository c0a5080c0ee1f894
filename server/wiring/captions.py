"""Live captions, wired: which audio the media engine decodes for speech, who is speaking in
which language, and where each caption goes (the room, the case's timeline).

:class:`CallCaptions` is the engine's :class:`media.AudioSink` and the pipeline's
:class:`inference.CaptionSink`. A case room's audio is decoded only once its case was looked
up and its captions are on; a caption is kept and sent only if they still are when it is ready
(the switch may have been thrown on another node), so what was said after "captions off" is
neither kept nor shown anywhere.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from aioutil import OwnedTasks
from inference import (
    Caption,
    CaptionPipeline,
    Speaker,
    SpeechModel,
    SpeechModelLocation,
    locate_model,
)
from media import StreamKey
from server.settings import Settings
from signaling import RoomId, RoomKind, outbound

__all__ = ["CallCaptions", "CaptionCases", "SpeechModels", "locate_speech_models"]

logger = logging.getLogger(__name__)

#: Speech recognition tells languages apart by ISO 639-1 code; the pages' locales are BCP 47.
_WHISPER_CODE = {"zh-Hans": "zh", "zh-Hant": "zh"}
_STAFF_ROLES = frozenset({"agent", "admin", "reviewer"})


class CaptionCases(Protocol):
    """What captions need of the cases (``server.cases.CaseService`` fits)."""

    async def get_case(self, case_id: str) -> Any: ...

    async def captions_enabled(self, case_id: str) -> bool: ...

    async def record_transcript(self, case_id: str, segment: Mapping[str, Any]) -> None: ...


class _Resampler(Protocol):
    def resample(self, room_id: str) -> None: ...


Presence = Callable[[str], Awaitable[list[Mapping[str, Any]]]]
Publish = Callable[[str, Mapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SpeechModels:
    """The models captions use: ``main`` for customers (multilingual unless configured
    otherwise) and, optionally, ``english`` for staff who speak English."""

    main: SpeechModelLocation
    english: SpeechModelLocation | None


def locate_speech_models(settings: Settings) -> SpeechModels:
    """Check the configured models before the service starts (raises
    ``inference.SpeechModelError`` naming the model and what is wrong)."""
    main = locate_model(settings.asr_model)
    english = None
    if settings.asr_english_model and settings.staff_language == "en":
        english = locate_model(settings.asr_english_model)
    return SpeechModels(main, english)


def _threads(settings: Settings) -> int:
    if settings.asr_threads:
        return settings.asr_threads
    return max(1, (os.cpu_count() or 2) // 2)


def language_of(locale: str | None) -> str | None:
    """The Whisper language code of a page locale (``pt-BR`` -> ``pt``, ``zh-Hant`` -> ``zh``)."""
    if not locale:
        return None
    return _WHISPER_CODE.get(locale, locale.split("-", 1)[0].lower())


@dataclass(slots=True)
class _Room:
    enabled: bool
    customer_language: str | None
    participants: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    streams: set[str] = field(default_factory=set)


class CallCaptions:
    """Captions for every case room whose media lives on this node."""

    def __init__(
        self,
        settings: Settings,
        models: SpeechModels,
        cases: CaptionCases,
        *,
        presence: Presence,
        publish: Publish,
    ) -> None:
        self._settings = settings
        self._cases = cases
        self._presence = presence
        self._publish = publish
        self._media: _Resampler | None = None
        self._rooms: dict[str, _Room] = {}
        self._looking: set[str] = set()
        self._tasks = OwnedTasks()
        threads = _threads(settings)
        loaders: dict[str, Callable[[], SpeechModel]] = {
            "main": lambda: SpeechModel.load(
                models.main, device=settings.asr_device, threads=threads
            )
        }
        if models.english is not None:
            english = models.english
            loaders["english"] = lambda: SpeechModel.load(
                english, device=settings.asr_device, threads=threads
            )
        self._main_multilingual = models.main.name != "tiny.en"
        self.pipeline = CaptionPipeline(loaders, self)

    def bind(self, media: _Resampler) -> None:
        """The engine to ask again once a room's captions are known or switched."""
        self._media = media

    def start(self) -> None:
        self.pipeline.start()

    async def aclose(self) -> None:
        await self._tasks.aclose()
        await self.pipeline.aclose()

    # -- media.AudioSink ------------------------------------------------------------------------

    def wants_audio(self, stream: StreamKey) -> bool:
        """Case rooms only, and only once the case is known to have captions on: until then
        nothing is decoded (the lookup asks the engine again when it is done)."""
        room = RoomId.parse(stream.room_id)
        if room.kind is not RoomKind.CASE:
            return False
        state = self._rooms.get(stream.room_id)
        if state is None:
            self._look_up(stream.room_id)
            return False
        return state.enabled

    def audio_started(self, stream: StreamKey) -> None:
        state = self._rooms.get(stream.room_id)
        if state is None:
            return
        state.streams.add(stream.id)
        self.pipeline.open(stream.id, self._speaker(stream, state))
        # Presence may have changed since the lookup (the agent joined after the customer).
        self._tasks.spawn(self._refresh_speaker(stream), f"captions-who-{stream.id}")

    def audio_received(self, stream: StreamKey, samples: np.ndarray[Any, Any], ts: float) -> None:
        self.pipeline.push(stream.id, samples, ts)

    def audio_ended(self, stream: StreamKey) -> None:
        self.pipeline.close(stream.id)
        state = self._rooms.get(stream.room_id)
        if state is not None:
            state.streams.discard(stream.id)
            if not state.streams:
                # Looked up again at the next call, with the case as it is then.
                del self._rooms[stream.room_id]

    # -- switching (server.http.CaptionSwitch) -------------------------------------------------

    available = True

    async def switched(self, case_id: str, enabled: bool, by: Mapping[str, Any]) -> None:
        """The case's captions were switched (already in its timeline): act here, and tell the
        room (its pages show it; the room's media home may be another node, which checks the
        case before it keeps or shows any caption)."""
        self.set_enabled(case_id, enabled)
        await self._publish(case_id, outbound.captions(enabled, by=by))

    def set_enabled(self, case_id: str, enabled: bool) -> None:
        """Captions of a case were switched (on this node): decode its audio or stop now."""
        room_id = str(RoomId.case(case_id))
        state = self._rooms.get(room_id)
        if state is not None:
            state.enabled = enabled
            if not enabled:
                for stream_id in tuple(state.streams):
                    self.pipeline.discard(stream_id)
                state.streams.clear()
        if self._media is not None:
            self._media.resample(room_id)

    def _look_up(self, room_id: str) -> None:
        if room_id in self._looking:
            return
        self._looking.add(room_id)
        self._tasks.spawn(self._load_room(room_id), f"captions-case-{room_id}")

    async def _load_room(self, room_id: str) -> None:
        try:
            case_id = RoomId.parse(room_id).case_id
            assert case_id is not None
            case = await self._cases.get_case(case_id)
            if case is None:
                return
            enabled = await self._cases.captions_enabled(case_id)
            locale = getattr(case, "customer_locale", None)
            state = _Room(enabled, language_of(locale))
            state.participants = await self._participants(room_id)
            self._rooms[room_id] = state
        except Exception:
            logger.exception("could not look up the captions of %s", room_id)
            return
        finally:
            self._looking.discard(room_id)
        if self._media is not None:
            self._media.resample(room_id)

    async def _participants(self, room_id: str) -> dict[str, Mapping[str, Any]]:
        return {
            str(member.get("participant_id")): member for member in await self._presence(room_id)
        }

    async def _refresh_speaker(self, stream: StreamKey) -> None:
        state = self._rooms.get(stream.room_id)
        if state is None:
            return
        state.participants = await self._participants(stream.room_id)
        self.pipeline.update_speaker(stream.id, self._speaker(stream, state))

    def _speaker(self, stream: StreamKey, state: _Room) -> Speaker:
        member = state.participants.get(stream.publisher_id, {})
        role = str(member.get("role") or "participant")
        name = str(member.get("name") or "")
        staff_language = self._settings.staff_language
        if role in _STAFF_ROLES:
            english = staff_language == "en" and "english" in self.pipeline.models
            return Speaker(
                room_id=stream.room_id,
                participant_id=stream.publisher_id,
                role=role,
                name=name,
                model="english" if english else "main",
                language=staff_language if self._main_multilingual or english else "en",
                translate=staff_language != "en" and self._main_multilingual,
            )
        expected = tuple(
            dict.fromkeys(code for code in (state.customer_language, staff_language) if code)
        )
        return Speaker(
            room_id=stream.room_id,
            participant_id=stream.publisher_id,
            role=role,
            name=name,
            model="main",
            expected=expected,
            translate=self._main_multilingual,
        )

    # -- inference.CaptionSink --------------------------------------------------------------------

    async def caption_ready(self, caption: Caption) -> None:
        speaker = caption.speaker
        case_id = RoomId.parse(speaker.room_id).case_id
        if case_id is None:
            return
        if not await self._cases.captions_enabled(case_id):
            self.set_enabled(case_id, False)
            return
        state = self._rooms.get(speaker.room_id)
        member = state.participants.get(speaker.participant_id, {}) if state else {}
        segment = {
            "segment_id": caption.segment_id,
            "participant_id": speaker.participant_id,
            "role": speaker.role,
            "name": speaker.name or member.get("name") or "",
            "subject": member.get("subject"),
            "language": caption.language,
            "text": caption.text,
            "translation": caption.translation,
            "started_at": round(caption.started_at, 3),
            "ended_at": round(caption.ended_at, 3),
            "model": caption.model,
            "latency_ms": round(caption.latency_s * 1000),
        }
        try:
            await self._cases.record_transcript(case_id, segment)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Shown anyway: the call goes on; the timeline misses this segment (logged).
            logger.exception("could not keep a caption of case %s", case_id)
        await self._publish(case_id, outbound.caption(segment))
