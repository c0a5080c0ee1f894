"""The browser-facing edge in real Chromium: a page on another origin of the same host cannot
make a signed-in staff member's browser change anything, and a customer link leaves its token
in no URL the browser sends or keeps.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Request, Response, async_playwright
from playwright.async_api import expect as pw_expect

from server.app import free_port
from tests.conftest import LiveService
from tests.e2e._browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    DESK,
    PHONE,
    WAIT_MS,
    create_case,
    get_case,
    log_in,
    new_page,
    tid,
)

pytestmark = pytest.mark.e2e

#: What a page on another origin tries: a "simple" POST (no preflight, the cookie goes with
#: it because the site is the same) and a JSON POST (which needs a preflight first).
_ATTACK_JS = """
window.attack = async (target, caseId) => {
  const url = `${target}/api/cases/${caseId}/join-link`;
  const out = {};
  try {
    await fetch(url, { method: 'POST', mode: 'no-cors', credentials: 'include' });
    out.simple = 'sent';
  } catch (err) {
    out.simple = `failed: ${err}`;
  }
  try {
    const response = await fetch(url, {
      method: 'POST', credentials: 'include',
      headers: { 'Content-Type': 'application/json' }, body: '{}',
    });
    out.json = response.status;
  } catch (err) {
    out.json = 'blocked';
  }
  return out;
};
window.postForm = (action) => {
  const form = document.createElement('form');
  form.method = 'POST';
  form.action = action;
  document.body.append(form);
  form.submit();
};
window.openSocket = (url) => new Promise((resolve) => {
  const ws = new WebSocket(url);
  ws.onopen = () => { ws.send(JSON.stringify({ type: 'join' })); };
  ws.onmessage = (event) => { resolve(`answered ${JSON.parse(event.data).type}`); ws.close(); };
  ws.onerror = () => resolve('refused');
  setTimeout(() => resolve('timeout'), 5000);
});
"""


@pytest.fixture
async def other_origin() -> AsyncIterator[str]:
    """A page served by the test on another port of 127.0.0.1: the same site, another origin."""

    async def page(request: web.Request) -> web.Response:
        html = f"<!doctype html><title>elsewhere</title><script>{_ATTACK_JS}</script>"
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port("127.0.0.1")
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _join_links(stored: dict[str, Any]) -> int:
    return sum(1 for event in stored["events"] if event["type"] == "case.join_link")


async def test_another_origin_cannot_change_anything(
    live_service: LiveService, other_origin: str
) -> None:
    base_url = live_service.base_url.rstrip("/")
    case_id = (await create_case(base_url, live_service.admin_token))["case"]["id"]
    before = _join_links(await get_case(base_url, live_service.admin_token, case_id))
    errors: list[str] = []
    statuses: list[int] = []

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context, agent = await new_page(browser, errors, **DESK)
            await log_in(agent, base_url, live_service.agent_username, live_service.agent_password)

            # The same browser, signed in, opens a page of another origin on the same host.
            elsewhere = await context.new_page()

            def on_response(response: Response) -> None:
                if response.url.startswith(base_url):
                    statuses.append(response.status)

            elsewhere.on("response", on_response)
            await elsewhere.goto(other_origin)
            tried = await elsewhere.evaluate(
                "([target, id]) => window.attack(target, id)", [base_url, case_id]
            )
            assert tried == {"simple": "sent", "json": "blocked"}, tried
            assert statuses == [403], "the simple POST reached the service and was refused"
            stored = await get_case(base_url, live_service.admin_token, case_id)
            assert _join_links(stored) == before, "no join link was minted"

            # Nor can it open a socket with the agent's cookie: the upgrade is refused (M5); the
            # console's own socket stays live (below).
            ws_url = base_url.replace("http", "ws", 1) + "/ws"
            opened = await elsewhere.evaluate("(url) => window.openSocket(url)", ws_url)
            assert opened == "refused", opened

            # A form posted from there (a top-level navigation) cannot sign the agent out.
            async with elsewhere.expect_navigation():
                await elsewhere.evaluate("(url) => window.postForm(url)", f"{base_url}/api/logout")
            assert statuses[-1] == 403
            refusal = json.loads(await elsewhere.locator("body").inner_text())
            assert refusal["error"]["code"] == "forbidden"
            await agent.goto(f"{base_url}/agent")
            await pw_expect(agent).to_have_url(f"{base_url}/agent")
            await pw_expect(agent.locator(tid("lobby-state"))).to_have_text("Live", timeout=WAIT_MS)

            # The service's own page still may: the same POST from /agent mints the link.
            status = await agent.evaluate(
                """async (id) => (await fetch(`/api/cases/${id}/join-link`,
                                              { method: 'POST' })).status""",
                case_id,
            )
            assert status == 201
            stored = await get_case(base_url, live_service.admin_token, case_id)
            assert _join_links(stored) == before + 1
        finally:
            await browser.close()

    unexpected = [
        e for e in errors if "status of 403" not in e and "Unexpected response code: 403" not in e
    ]
    assert not unexpected, "errors in the pages:\n" + "\n".join(unexpected)


async def test_a_fragment_link_lands_on_a_token_free_page(live_service: LiveService) -> None:
    base_url = live_service.base_url.rstrip("/")
    created = await create_case(base_url, live_service.admin_token)
    case_id, token = created["case"]["id"], created["join_token"]
    errors: list[str] = []
    sent: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            _, customer = await new_page(browser, errors, **PHONE)

            def on_request(request: Request) -> None:
                sent.append(f"{request.url} {request.headers.get('referer', '')}")

            customer.on("request", on_request)
            await customer.goto(f"{base_url}/join#t={token}")
            await customer.wait_for_url(f"{base_url}/join/c/{case_id}", timeout=WAIT_MS)
            await pw_expect(customer.locator(tid("start-camera"))).to_be_visible()
            assert token not in customer.url
            await customer.screenshot(path=str(ARTIFACTS / "e2e-join-landed.png"))
            # A reload of the token-free page works: the cookie holds the token.
            await customer.reload()
            await pw_expect(customer.locator(tid("start-camera"))).to_be_visible()
            # The link's own entry was replaced too: going back never shows the token.
            await customer.go_back()
            assert token not in customer.url, customer.url
            assert sent and not [line for line in sent if token in line], sent

            # Another browser that has only the token-free address gets no call.
            _, stranger = await new_page(browser, errors, **PHONE)
            await stranger.goto(f"{base_url}/join/c/{case_id}")
            await pw_expect(stranger.locator(tid("join-error"))).to_have_attribute(
                "data-error", "missing"
            )
            await pw_expect(stranger.locator(tid("start-camera"))).to_have_count(0)
        finally:
            await browser.close()

    # The stranger's page answered 404, which Chromium logs; nothing else may be logged.
    unexpected = [e for e in errors if not re.search(r"/join/c/\S+: .*status of 404", e)]
    assert not unexpected, "errors in the pages:\n" + "\n".join(unexpected)
