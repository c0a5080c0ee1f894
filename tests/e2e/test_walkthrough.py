"""A warehouse walkthrough in real Chromium: a staff phone opens its camera link and publishes
Chromium's fake camera; an agent opens the site's walkthrough and sees it playing in the grid,
enlarges it, talks to the phone and saves a snapshot; a reviewer watches without capture
controls; the admin sees the camera live and revokes its token, which stops the phone. Who may
open which page is checked for a customer, an agent, a reviewer, an admin and the camera token.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from playwright.async_api import async_playwright
from playwright.async_api import expect as pw_expect

from signaling import Role
from tests.conftest import AGENT_PASSWORD, LiveService
from tests.e2e._browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    DESK,
    PHONE,
    WAIT_MS,
    assert_playing,
    create_case,
    log_in,
    new_page,
    tid,
)

pytestmark = pytest.mark.e2e


async def _api(live: LiveService, method: str, path: str, **kwargs: Any) -> Any:
    async with (
        aiohttp.ClientSession(headers=live.headers()) as http,
        http.request(method, f"{live.base_url}{path}", **kwargs) as response,
    ):
        assert response.status < 300, await response.text()
        return await response.json() if response.status != 204 else None


async def test_walkthrough_of_a_phone_camera(live_service: LiveService) -> None:
    base = live_service.base_url.rstrip("/")
    await live_service.state.accounts.create_user("ada", AGENT_PASSWORD, "Ada Admin", Role.ADMIN)
    site = (await _api(live_service, "POST", "/api/sites", json={"name": "Valencia DC"}))["site"]
    camera = (
        await _api(
            live_service, "POST", f"/api/sites/{site['id']}/cameras",
            json={"name": "Returns bench", "kind": "phone", "station_stage": "returns_qc"},
        )
    )["camera"]  # fmt: skip
    issued = await _api(live_service, "POST", f"/api/cameras/{camera['id']}/tokens", json={})
    cam_id = camera["id"]
    case = await create_case(base, live_service.admin_token)
    errors: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # The staff phone opens its camera link: it starts publishing by itself.
            _, phone = await new_page(browser, errors, **PHONE)
            await phone.goto(issued["camera_url"])
            await pw_expect(phone.locator(tid("camera-state"))).to_have_text(
                "Live", timeout=WAIT_MS
            )
            await pw_expect(phone.locator(tid("camera-name"))).to_have_text("Returns bench")

            # The agent's walkthrough shows it playing in the grid.
            _, agent = await new_page(browser, errors, **DESK)
            await log_in(agent, base, live_service.agent_username, live_service.agent_password)
            await agent.goto(f"{base}/walkthrough/{site['id']}")
            await pw_expect(agent.locator(tid("walkthrough-state"))).to_have_text(
                "Live", timeout=WAIT_MS
            )
            tile = agent.locator(tid(f"tile-{cam_id}"))
            await pw_expect(tile).to_have_attribute("data-playing", "true", timeout=WAIT_MS)
            await pw_expect(agent.locator(tid(f"tile-name-{cam_id}"))).to_have_text("Returns bench")
            await pw_expect(agent.locator(tid(f"tile-status-{cam_id}"))).to_have_text(
                "Live", timeout=WAIT_MS
            )
            await pw_expect(agent.locator(tid(f"tile-stats-{cam_id}"))).to_contain_text(
                "via phone", timeout=WAIT_MS
            )
            await assert_playing(agent, tid(f"tile-video-{cam_id}"))
            await pw_expect(phone.locator(tid("viewer-count"))).to_have_text(
                "1 watching", timeout=WAIT_MS
            )

            # Enlarged, it plays in the focus view; the agent talks to the phone.
            await tile.click()
            focus = agent.locator(tid("focus-panel"))
            await pw_expect(focus).to_be_visible()
            await pw_expect(agent.locator(tid("focus-name"))).to_have_text("Returns bench")
            await agent.wait_for_function(
                """() => {
                  const v = document.querySelector('[data-testid="focus-video"]');
                  return v && v.videoWidth > 0 && v.currentTime > 0 && !v.paused;
                }""",
                timeout=WAIT_MS,
            )
            await assert_playing(agent, tid("focus-video"))
            await agent.click(tid("talk-toggle"))
            await pw_expect(agent.locator(tid("talk-toggle"))).to_have_attribute(
                "aria-pressed", "true", timeout=WAIT_MS
            )
            await pw_expect(agent.locator(tid("talk-state"))).to_contain_text("hears you")
            await phone.wait_for_function(
                """() => [...document.querySelectorAll('[data-testid="talkback-audio"]')]
                  .some((a) => a.srcObject && a.srcObject.getAudioTracks().length > 0)""",
                timeout=WAIT_MS,
            )

            # A snapshot from the walkthrough is evidence of the site, the camera and the stage.
            await agent.fill(tid("focus-tracking"), "1Z-WALK-1")
            await agent.click(tid("focus-snapshot"))
            message = agent.locator(tid("focus-message"))
            await pw_expect(message).to_contain_text("Snapshot saved", timeout=WAIT_MS)
            await pw_expect(message).to_contain_text("Refurbishment QC")
            await agent.screenshot(path=str(ARTIFACTS / "e2e-walkthrough.png"), full_page=True)
            await phone.screenshot(path=str(ARTIFACTS / "e2e-camera-phone.png"))
            await agent.click(tid("talk-toggle"))
            await pw_expect(agent.locator(tid("talk-toggle"))).to_have_attribute(
                "aria-pressed", "false", timeout=WAIT_MS
            )

            # A reviewer watches too (several viewers at once), without capture controls.
            _, reviewer = await new_page(browser, errors, **DESK)
            await log_in(reviewer, base, "reviewer", AGENT_PASSWORD)
            await reviewer.goto(f"{base}/walkthrough/{site['id']}")
            await pw_expect(reviewer.locator(tid(f"tile-{cam_id}"))).to_have_attribute(
                "data-playing", "true", timeout=WAIT_MS
            )
            await reviewer.click(tid(f"tile-{cam_id}"))
            await pw_expect(reviewer.locator(tid("focus-capture"))).to_be_hidden()
            await pw_expect(agent.locator(tid(f"tile-{cam_id}"))).to_have_attribute(
                "data-playing", "true"
            )
            await pw_expect(phone.locator(tid("viewer-count"))).to_have_text(
                "2 watching", timeout=WAIT_MS
            )

            # Who may open what: an agent is refused the administration pages.
            await agent.goto(f"{base}/admin/sites/{site['id']}")
            await pw_expect(agent.locator(tid("forbidden-message"))).to_contain_text(
                "for administrators"
            )

            # A customer (a join link, no staff session) is sent to the login page.
            _, customer = await new_page(browser, errors, **PHONE)
            await customer.goto(case["join_url"])
            await pw_expect(customer.locator(tid("start-camera"))).to_be_visible()
            for path in (f"/walkthrough/{site['id']}", "/admin/sites"):
                await customer.goto(f"{base}{path}")
                await pw_expect(customer.locator(tid("login-username"))).to_be_visible()

            # The admin sees the camera live and revokes its token: the phone stops at once.
            _, admin = await new_page(browser, errors, **DESK)
            await log_in(admin, base, "ada", AGENT_PASSWORD)
            await admin.goto(f"{base}/admin/sites/{site['id']}")
            await pw_expect(admin.locator(tid(f"camera-status-{cam_id}"))).to_contain_text(
                "Live", timeout=WAIT_MS
            )
            await admin.click(tid(f"tokens-{cam_id}"))
            await pw_expect(admin.locator(tid(f"token-{issued['id']}"))).to_have_attribute(
                "data-state", "active", timeout=WAIT_MS
            )
            await admin.screenshot(path=str(ARTIFACTS / "e2e-admin-site.png"), full_page=True)
            await admin.click(tid(f"revoke-{issued['id']}"))
            await pw_expect(admin.locator(tid(f"token-{issued['id']}"))).to_have_attribute(
                "data-state", "revoked", timeout=WAIT_MS
            )
            await pw_expect(phone.locator(tid("camera-ended"))).to_be_visible(timeout=WAIT_MS)
            await pw_expect(phone.locator(tid("camera-ended-message"))).to_contain_text("revoked")
            await pw_expect(
                agent.locator(tid("forbidden-message"))
            ).to_be_visible()  # the agent page stays as it was
            await phone.goto(issued["camera_url"])
            await pw_expect(phone.locator(tid("camera-error-page"))).to_have_attribute(
                "data-error", "revoked"
            )
            await pw_expect(phone.locator(tid("error-message"))).to_contain_text("revoked")
        finally:
            await browser.close()

    items = (await _api(live_service, "GET", f"/api/sites/{site['id']}/evidence"))["items"]
    [snapshot] = items
    assert snapshot["camera_id"] == cam_id
    record = snapshot["record"]
    assert record["case_id"] == f"site:{site['id']}" and record["tracking_number"] == "1Z-WALK-1"
    assert record["logistics_stage"] == "refurbishment_qc"
    assert record["operator"] == "Alex Agent"
    # The refusals the test provoked show in the console as failed page loads; nothing else may:
    # the admin page refused to the agent, and the revoked link (its page at /camera/<token>, or
    # the exchange of /camera#t=<token>).
    refused = "console: Failed to load resource: the server responded with a status of"
    unexpected = [
        e
        for e in errors
        if not e.startswith(f"{base}/admin/sites/{site['id']}: {refused} 403")
        and not (e.startswith(f"{base}/camera") and f"{refused} 410" in e)
    ]
    assert not unexpected, "errors in the pages:\n" + "\n".join(unexpected)
