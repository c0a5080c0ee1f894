"""``join``: who a socket is and which room it may enter, for each role.

- a **customer** (join token): its own case's room, while the call is open, and only while no
  other customer socket is in it (a second holder of a link, such as another agent who minted
  one, is refused; the same customer reconnecting once its old socket is gone is not); a
  waiting case is queued for the agents
- **staff** (session cookie or bearer token): the lobby (the queue), a case they hold, or a
  site's room to watch its cameras
- a **camera page** (camera token): its site's room, publishing its camera; a newer page of
  the same camera replaces it (4409)"""

from __future__ import annotations

from . import outbound
from ._connection import Connection
from ._names import customer_name
from ._queue import AgentQueue
from ._rooms import Rooms
from ._watching import CameraWatching
from .bus import Bus
from .config import HubConfig
from .errors import CloseCode, SignalingError, SignalingErrorCode
from .ids import RoomId
from .messages import JoinMessage, Role
from .ports import Authenticator, CaseDirectory, CaseStatus, Identity, SiteDirectory

__all__ = ["Joins"]


class Joins:
    def __init__(
        self,
        *,
        bus: Bus,
        auth: Authenticator,
        cases: CaseDirectory,
        sites: SiteDirectory | None,
        rooms: Rooms,
        queue: AgentQueue,
        watching: CameraWatching,
        config: HubConfig,
    ) -> None:
        self._bus = bus
        self._auth = auth
        #: Cases whose customer join is under way on this node (between the check that no
        #: customer is in the room and its entry).
        self._customer_joins: set[str] = set()
        self._cases = cases
        self._sites = sites
        self._rooms = rooms
        self._queue = queue
        self._watching = watching
        self._config = config

    async def join(self, conn: Connection, message: JoinMessage) -> None:
        if message.case_id and message.site_id:
            raise SignalingError(
                SignalingErrorCode.INVALID, "join a case or a site, not both", ref="join"
            )
        if conn.identity is not None:
            # Staff in the lobby may move into a room with a second join.
            wants_room = message.case_id or message.site_id
            if conn.identity.is_staff and wants_room and conn.room is None:
                await self._staff(conn, conn.identity, message)
                return
            raise SignalingError(SignalingErrorCode.ALREADY_JOINED, "already joined", ref="join")
        if message.camera_token:
            if message.token or message.case_id or message.site_id:
                raise SignalingError(
                    SignalingErrorCode.INVALID,
                    "a camera joins with camera_token alone (its token names its site)",
                    ref="join",
                )
            if self._sites is None:
                raise SignalingError(
                    SignalingErrorCode.UNAUTHORIZED, "this server has no cameras", ref="join"
                )
            camera = await self._sites.verify_camera_token(message.camera_token)
            await self._camera(conn, camera, message)
            return
        if message.token:
            identity = self._auth.verify_join_token(message.token)
        elif conn.request_identity is not None:
            identity = conn.request_identity
        else:
            raise SignalingError(
                SignalingErrorCode.UNAUTHORIZED,
                "join needs a customer token or a staff session",
                ref="join",
            )
        if identity.role is Role.CUSTOMER:
            await self._customer(conn, identity, message)
        else:
            await self._staff(conn, identity, message)

    async def _customer(self, conn: Connection, identity: Identity, message: JoinMessage) -> None:
        case_id = identity.case_id
        if message.site_id:
            raise SignalingError(
                SignalingErrorCode.FORBIDDEN, "a customer link cannot open a site", ref="join"
            )
        if case_id is None or (message.case_id and message.case_id != case_id):
            raise SignalingError(
                SignalingErrorCode.FORBIDDEN, "this link is for another case", ref="join"
            )
        summary = await self._cases.get(case_id)
        if summary is None:
            raise SignalingError(SignalingErrorCode.NOT_FOUND, "no such case", ref="join")
        if not summary.status.call_open:
            raise SignalingError(
                SignalingErrorCode.NOT_IN_CALL, "the call for this case has ended", ref="join"
            )
        # The customer is shown by the name the merchant gave the case unless they give one
        # (restricted, and marked as theirs for the staff who see it).
        chosen = customer_name(message.name) if message.name else None
        if case_id in self._customer_joins or await self._customer_present(case_id):
            raise SignalingError(
                SignalingErrorCode.FORBIDDEN,
                "the customer is already connected to this call (on another tab or device)",
                ref="join",
            )
        self._customer_joins.add(case_id)
        try:
            name = chosen or summary.customer_name or identity.name
            conn.identity = Identity(identity.subject, name, identity.role, identity.case_id)
            conn.name_source = "customer" if chosen else "case"
            self._queue.customer_back(case_id)
            summary = await self._cases.customer_arrived(case_id)
            await self._rooms.enter_case(conn, summary, message.resume_from)
        finally:
            self._customer_joins.discard(case_id)
        if summary.status is CaseStatus.WAITING:
            await self._queue.enqueue(summary)
            await self._queue.publish()

    async def _customer_present(self, case_id: str) -> bool:
        """Whether a customer socket is in the case's room, on any node."""
        present = await self._bus.presence_list(RoomId.case(case_id))
        return any(p.get("role") == Role.CUSTOMER.value for p in present)

    async def _staff(self, conn: Connection, identity: Identity, message: JoinMessage) -> None:
        conn.identity = identity
        if message.site_id is not None:
            await self._site(conn, message.site_id, message.resume_from)
            return
        if message.case_id is None:
            await self._rooms.enter_lobby(conn)
            return
        summary = await self._cases.get(message.case_id)
        if summary is None:
            raise SignalingError(SignalingErrorCode.NOT_FOUND, "no such case", ref="join")
        if summary.status is not CaseStatus.IN_CALL:
            raise SignalingError(
                SignalingErrorCode.NOT_IN_CALL, "this case has no call in progress", ref="join"
            )
        if summary.agent_id != identity.subject and identity.role is not Role.ADMIN:
            raise SignalingError(
                SignalingErrorCode.FORBIDDEN, "another agent holds this call", ref="join"
            )
        await self._rooms.enter_case(conn, summary, message.resume_from)

    async def _site(self, conn: Connection, site_id: str, resume_from: int) -> None:
        """Staff watch a site: its room carries the camera status and the cameras' presence."""
        summary = await self._sites.site(site_id) if self._sites is not None else None
        if summary is None:
            raise SignalingError(SignalingErrorCode.NOT_FOUND, "no such site", ref="join")
        details = outbound.site_details(summary, preroll_s=self._config.preroll_s)
        await self._rooms.enter(conn, RoomId.site(site_id), None, details, resume_from)

    async def _camera(self, conn: Connection, identity: Identity, message: JoinMessage) -> None:
        assert self._sites is not None
        camera_id, site_id = identity.camera_id, identity.site_id
        summary = await self._sites.site(site_id) if site_id is not None else None
        if camera_id is None or summary is None or not summary.has_camera(camera_id):
            raise SignalingError(SignalingErrorCode.UNAUTHORIZED, "unknown camera", ref="join")
        conn.identity = identity
        previous = self._watching.publish(camera_id, conn)
        if previous is not None:
            # A phone that changed network may leave a half-open socket behind: the newest page
            # publishes, the older one is told why and does not reconnect.
            previous.send(
                outbound.error(
                    SignalingErrorCode.REPLACED, "this camera was opened on another device or tab"
                )
            )
            previous.close_soon(CloseCode.REPLACED, "replaced")
        camera = next((dict(c) for c in summary.cameras if c.get("id") == camera_id), {})
        details = outbound.camera_page_details(summary, camera)
        await self._rooms.enter(
            conn, RoomId.site(summary.site_id), None, details, message.resume_from
        )
        await self._sites.camera_connected(camera_id, conn.participant_id)
