"""REST routes of live captions: a case's transcript, and switching its captions on or off.

The transcript is part of the case's timeline (``transcript.segment`` entries), so any staff
member who may read the case reads it. Switching is the case holder's (or an admin's, with a
reason), and is itself in the timeline.
"""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import StringConstraints, ValidationError

from server.cases import CaseAction
from server.errors import InvalidRequest
from server.http._request import CALL_TAKERS, case_id_of, read_body, require, validation_error
from server.http.authz import REASON_HEADER, require_case_holder
from server.http.keys import CAPTIONS_KEY, CASES_KEY
from server.http.openapi import ApiRoute
from server.http.replies import JsonReply, Out, reply
from server.http.wire import Body
from web.locales import SUPPORTED_LOCALES, catalogues, supported_locale

__all__ = ["routes"]


class SegmentOut(Out):
    segment_id: str
    participant_id: str | None = None
    role: str | None = None
    name: str | None = None
    language: str | None = None
    text: str
    #: The English translation of speech that was not English.
    translation: str | None = None
    started_at: float
    ended_at: float
    model: str | None = None
    latency_ms: int | None = None


class TranscriptResponse(Out):
    case_id: str
    #: Whether the case's speech is transcribed now.
    enabled: bool
    #: Whether this service transcribes speech at all (``INSPECT_CAPTIONS``).
    available: bool
    segments: list[SegmentOut]


class CaptionsBody(Body):
    enabled: bool


class CaptionsResponse(Out):
    case_id: str
    enabled: bool
    available: bool


class PhrasesQuery(Body):
    #: A BCP 47 tag; the catalogue it maps to answers (``pt-BR`` -> ``pt``).
    locale: Annotated[str, StringConstraints(min_length=1, max_length=35)] = "en"


class PhraseOut(Out):
    key: str
    #: The phrase in the asked language, as the customer reads it.
    text: str
    #: The same phrase in English, for the agent.
    english: str


class PhrasesResponse(Out):
    locale: str
    phrases: list[PhraseOut]


def _segment(data: dict[str, Any]) -> dict[str, Any]:
    return {key: data.get(key) for key in SegmentOut.model_fields} | {
        "text": str(data.get("text") or "")
    }


async def case_transcript(request: web.Request) -> JsonReply[TranscriptResponse]:
    await require(request)
    cases = request.app[CASES_KEY]
    case = await cases.require(case_id_of(request))
    segments = [_segment(segment) for segment in await cases.transcript(case.id)]
    return reply(
        TranscriptResponse,
        {
            "case_id": case.id,
            "enabled": await cases.captions_enabled(case.id),
            "available": request.app[CAPTIONS_KEY].available,
            "segments": segments,
        },
    )


async def switch_captions(request: web.Request) -> JsonReply[CaptionsResponse]:
    identity = await require(request, CALL_TAKERS)
    cases = request.app[CASES_KEY]
    case = await cases.require(case_id_of(request))
    await require_case_holder(request, identity, case, CaseAction.VIEW_LIVE)
    body = await read_body(request, CaptionsBody)
    await cases.set_captions(case.id, body.enabled, actor=identity.subject)
    live = request.app[CAPTIONS_KEY]
    by = {"subject": identity.subject, "role": identity.role.value, "name": identity.name}
    await live.switched(case.id, body.enabled, by)
    return reply(
        CaptionsResponse,
        {"case_id": case.id, "enabled": body.enabled, "available": live.available},
    )


async def phrases(request: web.Request) -> JsonReply[PhrasesResponse]:
    await require(request, CALL_TAKERS)
    try:
        query = PhrasesQuery.model_validate(dict(request.query))
    except ValidationError as exc:
        raise validation_error(exc) from None
    locale = supported_locale(query.locale)
    if locale is None:
        raise InvalidRequest(
            f"locale: no catalogue for {query.locale!r}: one of {', '.join(SUPPORTED_LOCALES)}",
            fields=("locale",),
        )
    books = catalogues()
    # In the catalogue's order: the most asked first.
    keys = [key for key in books.messages["en"] if key.startswith("phrase.")]
    return reply(
        PhrasesResponse,
        {
            "locale": locale,
            "phrases": [
                {
                    "key": key,
                    "text": books.render(locale, key, {}),
                    "english": books.render("en", key, {}),
                }
                for key in keys
            ],
        },
    )


def routes() -> list[ApiRoute]:
    """The captions endpoints, registered and documented with the rest of the API."""
    R = ApiRoute
    held = f"the case's holder, or an admin with an {REASON_HEADER} header"
    return [
        R("GET", "/api/cases/{id}/transcript", case_transcript,
          "The case's captioned speech, oldest first: speaker, language, words and their "
          "English translation, times", "staff", response=TranscriptResponse,
          errors=(401, 404), tag="captions"),
        R("PUT", "/api/cases/{id}/captions", switch_captions,
          "Switch the transcription of the case's speech on or off (kept in the timeline; "
          "both pages are told); " + held, "agent holding the case, admin",
          body=(CaptionsBody,), response=CaptionsResponse,
          errors=(400, 401, 403, 404, 409, 413, 415), tag="captions"),
        R("GET", "/api/phrases", phrases,
          "The canned phrases an agent sends a customer, in the asked language with their "
          "English", "agent, admin", query=PhrasesQuery, response=PhrasesResponse,
          errors=(400, 401, 403), tag="captions"),
    ]  # fmt: skip
