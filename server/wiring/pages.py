"""The pages' backend: what ``web`` renders, read from accounts, cases and sites."""

from __future__ import annotations

from aiohttp import web

from server.accounts import AccountService
from server.cases import CaseKind, CaseService, CaseState
from server.http.auth import RequestAuth
from server.sites import CameraKind, CameraTokenError, SiteService
from signaling import SignalingError
from web import CameraView, JoinView, SiteView, StaffView

__all__ = ["Pages"]


class Pages:
    """Adapts the auth, case and site services to what the pages render (``web.PageBackend``)."""

    def __init__(
        self,
        accounts: AccountService,
        auth: RequestAuth,
        cases: CaseService,
        sites: SiteService,
        *,
        photo_location: bool = False,
        captions: bool = False,
    ) -> None:
        self._photo_location = photo_location
        self._captions = captions
        self._accounts = accounts
        self._auth = auth
        self._cases = cases
        self._sites = sites

    @property
    def secure_cookies(self) -> bool:
        return self._auth.secure_cookies

    async def camera_view(self, token: str) -> CameraView:
        try:
            camera, record = await self._sites.verify_token(token)
        except CameraTokenError as exc:
            return CameraView(ok=False, error=exc.reason)
        if camera.kind is not CameraKind.PHONE:
            return CameraView(ok=False, error="wrong_kind")
        site = await self._sites.get_site(camera.site_id)
        return CameraView(
            ok=True,
            error=None,
            camera_id=camera.id,
            camera_name=camera.name,
            site_name=site.name if site is not None else "",
            expires_at=record.expires_at,
        )

    async def site_view(self, site_id: str) -> SiteView | None:
        site = await self._sites.get_site(site_id)
        return SiteView(site.id, site.name) if site is not None else None

    def staff(self, request: web.Request) -> StaffView | None:
        identity = self._auth.identify(request)
        if identity is None or not identity.is_staff:
            return None
        user = self._accounts.cached_user(identity.subject)
        username = user.username if user is not None else identity.name
        return StaffView(identity.subject, username, identity.name, identity.role.value)

    async def join_view(self, token: str) -> JoinView:
        try:
            identity = self._accounts.verify_join_token(token)
        except SignalingError as exc:
            error = "expired" if exc.code.value == "token_expired" else "invalid"
            return JoinView(ok=False, error=error)
        case = await self._cases.get_case(identity.case_id or "")
        if case is None:
            return JoinView(ok=False, error="invalid")
        return JoinView(
            ok=True,
            error=None,
            case_id=case.id,
            kind=case.kind.value,
            customer_name=case.customer_name,
            order_id=case.order_id,
            sku=case.sku,
            photo_location=self._photo_location,
            locale=case.customer_locale,
            captions=self._captions and await self._cases.captions_enabled(case.id),
            intake_open=(
                case.kind is CaseKind.RETURN
                and case.intake is None
                and case.state in (CaseState.CREATED, CaseState.WAITING)
            ),
        )
