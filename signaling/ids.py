"""Room and subject ids: the kinds of string that name a room or an identity, built and read
here and nowhere else.

Rooms (what signaling joins sockets into and the media engine groups peers by):

- a **case room**: the case id itself; the customer and the agent, and the call's media
- ``site:<site id>``: a site's signaling room (its camera pages and the staff watching them);
  evidence of a site's camera filed outside any case is filed under it too
- ``camera:<camera id>``: one camera's media room (its publisher and one peer per viewer)

Subjects (``Identity.subject``, who did something):

- a staff user: the user id itself
- ``customer:<case id>`` (a join token), ``token:<token id>`` (an API token),
  ``camera-token:<token id>`` (a phone camera page), ``camera:<camera id>`` (a WHIP encoder),
  ``station:<camera id>`` (a packing or receiving station filing its own clips)

Both types subclass ``str``: the bus, the media engine and JSON keep seeing the very same
string (they treat ids as opaque), while mypy refuses a plain ``str`` where a ``RoomId`` or a
``SubjectId`` is asked for. Every instance is parsed when it is made, so ``kind`` is never a
guess.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "RoomId",
    "RoomKind",
    "SubjectId",
    "SubjectKind",
    "camera_room",
    "site_room",
]


class RoomKind(StrEnum):
    CASE = "case"
    SITE = "site"
    CAMERA = "camera"


#: The scheme of each kind of room but a case's (a case room is the bare case id).
_ROOM_SCHEMES: dict[RoomKind, str] = {RoomKind.SITE: "site:", RoomKind.CAMERA: "camera:"}


def _room_kind(value: str) -> RoomKind:
    for kind, scheme in _ROOM_SCHEMES.items():
        if value.startswith(scheme):
            return kind
    return RoomKind.CASE


class RoomId(str):
    """A room's id: ``RoomId.case(id)``, ``RoomId.site(id)``, ``RoomId.camera(id)``, or
    ``RoomId.parse(text)`` for one that arrives as a string (a media stream's room)."""

    __slots__ = ()

    def __new__(cls, value: str) -> RoomId:
        if not value:
            raise ValueError("a room id cannot be empty")
        return super().__new__(cls, value)

    @classmethod
    def parse(cls, value: str) -> RoomId:
        """The room ``value`` names (any non-empty string names one: a case's, if it has no
        scheme). Raises ``ValueError`` for an empty string."""
        return value if isinstance(value, RoomId) else cls(value)

    @classmethod
    def case(cls, case_id: str) -> RoomId:
        """A case's room. Raises ``ValueError`` for an id that would read as another kind."""
        if _room_kind(case_id) is not RoomKind.CASE:
            raise ValueError(f"{case_id!r} is not a case id")
        return cls(case_id)

    @classmethod
    def site(cls, site_id: str) -> RoomId:
        """A site's signaling room: its camera pages and the staff watching them."""
        return cls(_ROOM_SCHEMES[RoomKind.SITE] + site_id)

    @classmethod
    def camera(cls, camera_id: str) -> RoomId:
        """One camera's media room: its publisher (phone page, WHIP encoder or RTSP pull) and
        one peer per viewer, so that what a viewer receives, what a capture records and what a
        snapshot shows is that camera and nothing else."""
        return cls(_ROOM_SCHEMES[RoomKind.CAMERA] + camera_id)

    @property
    def kind(self) -> RoomKind:
        return _room_kind(self)

    @property
    def key(self) -> str:
        """The id of the case, site or camera the room belongs to."""
        scheme = _ROOM_SCHEMES.get(self.kind, "")
        return str(self)[len(scheme) :]

    @property
    def case_id(self) -> str | None:
        """The case of a case room; ``None`` for any other room."""
        return self.key if self.kind is RoomKind.CASE else None

    @property
    def site_id(self) -> str | None:
        """The site of a site room; ``None`` for any other room."""
        return self.key if self.kind is RoomKind.SITE else None

    @property
    def camera_id(self) -> str | None:
        """The camera of a camera room; ``None`` for any other room."""
        return self.key if self.kind is RoomKind.CAMERA else None

    def __repr__(self) -> str:
        return f"RoomId({str(self)!r})"


def site_room(site_id: str) -> RoomId:
    """Same as :meth:`RoomId.site`."""
    return RoomId.site(site_id)


def camera_room(camera_id: str) -> RoomId:
    """Same as :meth:`RoomId.camera`."""
    return RoomId.camera(camera_id)


class SubjectKind(StrEnum):
    #: A staff account: the user id, with no scheme.
    USER = "user"
    CUSTOMER = "customer"
    API_TOKEN = "token"
    CAMERA_TOKEN = "camera-token"
    CAMERA = "camera"
    STATION = "station"


_SUBJECT_SCHEMES: dict[SubjectKind, str] = {
    kind: f"{kind.value}:" for kind in SubjectKind if kind is not SubjectKind.USER
}


def _subject_kind(value: str) -> SubjectKind:
    for kind, scheme in _SUBJECT_SCHEMES.items():
        if value.startswith(scheme):
            return kind
    return SubjectKind.USER


class SubjectId(str):
    """Who an identity is: built by the class methods below, read back by :meth:`parse`."""

    __slots__ = ()

    def __new__(cls, value: str) -> SubjectId:
        if not value:
            raise ValueError("a subject cannot be empty")
        return super().__new__(cls, value)

    @classmethod
    def parse(cls, value: str) -> SubjectId:
        """The subject ``value`` names (a staff user's, if it has no scheme). Raises
        ``ValueError`` for an empty string."""
        return value if isinstance(value, SubjectId) else cls(value)

    @classmethod
    def user(cls, user_id: str) -> SubjectId:
        """A staff user. Raises ``ValueError`` for an id that would read as another kind."""
        if _subject_kind(user_id) is not SubjectKind.USER:
            raise ValueError(f"{user_id!r} is not a user id")
        return cls(user_id)

    @classmethod
    def customer(cls, case_id: str) -> SubjectId:
        """The customer of a case (whoever holds its join token)."""
        return cls(_SUBJECT_SCHEMES[SubjectKind.CUSTOMER] + case_id)

    @classmethod
    def api_token(cls, token_id: str) -> SubjectId:
        """An integration calling the API with a bearer token."""
        return cls(_SUBJECT_SCHEMES[SubjectKind.API_TOKEN] + token_id)

    @classmethod
    def camera_token(cls, token_id: str) -> SubjectId:
        """A phone camera page, by the camera token it opened with (one per token, so that
        revoking a token can close exactly the pages that used it)."""
        return cls(_SUBJECT_SCHEMES[SubjectKind.CAMERA_TOKEN] + token_id)

    @classmethod
    def camera(cls, camera_id: str) -> SubjectId:
        """A camera publishing without a page (a WHIP encoder)."""
        return cls(_SUBJECT_SCHEMES[SubjectKind.CAMERA] + camera_id)

    @classmethod
    def station(cls, camera_id: str) -> SubjectId:
        """A packing or receiving station: the camera that files its own clips."""
        return cls(_SUBJECT_SCHEMES[SubjectKind.STATION] + camera_id)

    @property
    def kind(self) -> SubjectKind:
        return _subject_kind(self)

    @property
    def key(self) -> str:
        """The id after the scheme: the user, case, token or camera id."""
        scheme = _SUBJECT_SCHEMES.get(self.kind, "")
        return str(self)[len(scheme) :]

    def __repr__(self) -> str:
        return f"SubjectId({str(self)!r})"
