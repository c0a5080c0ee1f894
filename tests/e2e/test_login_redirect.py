"""After signing in, Chromium goes to ``?next=`` only when it names a page of this site: a target
that a browser reads as another host (``/<TAB>/evil.example`` is ``//evil.example`` once the tab is
dropped) ends on the console instead."""

from __future__ import annotations

import pytest
from playwright.async_api import async_playwright
from playwright.async_api import expect as pw_expect

from tests.conftest import LiveService
from tests.e2e._browser import CHROMIUM, CHROMIUM_ARGS, DESK, WAIT_MS, new_page, tid

pytestmark = pytest.mark.e2e

#: ``safeNext`` of util.js on each value, in the page (so with the page's origin).
_SAFE_NEXT = """async (values) => {
  const { safeNext } = await import('/static/js/util.js');
  return values.map((value) => safeNext(value));
}"""

#: (value, where safeNext sends the browser); every value is exactly what the page receives.
_CASES = [
    ("/\t/evil.example/x", "/agent"),
    ("/\n/evil.example/x", "/agent"),
    ("/\r\n/evil.example/x", "/agent"),
    (" //evil.example/x", "/agent"),
    ("/\\evil.example/x", "/agent"),
    ("\\\\evil.example/x", "/agent"),
    ("//evil.example/x", "/agent"),
    ("https://evil.example/x", "/agent"),
    ("javascript:alert(1)", "/agent"),
    ("", "/agent"),
    ("/%09/evil.example/x", "/%09/evil.example/x"),  # an escaped tab is a path on this site
    ("/evidence?case_id=c-1#item", "/evidence?case_id=c-1#item"),
    ("/walkthrough/site_1", "/walkthrough/site_1"),
]


async def test_a_next_that_leaves_the_site_lands_on_the_console(live_service: LiveService) -> None:
    base_url = live_service.base_url.rstrip("/")
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            _, page = await new_page(browser, errors, **DESK)
            await page.goto(f"{base_url}/login?next=/%09/evil.example/x")
            await page.fill(tid("login-username"), live_service.agent_username)
            await page.fill(tid("login-password"), live_service.agent_password)
            await page.click(tid("login-submit"))
            await page.wait_for_url(f"{base_url}/agent", timeout=WAIT_MS)
            await pw_expect(page.locator(tid("lobby-state"))).to_have_text("Live", timeout=WAIT_MS)

            values = [value for value, _ in _CASES]
            assert await page.evaluate(_SAFE_NEXT, values) == [target for _, target in _CASES]

            # A path on the site is where the browser goes after signing in.
            await page.context.clear_cookies()
            await page.goto(f"{base_url}/login?next=/walkthrough")
            await page.fill(tid("login-username"), live_service.agent_username)
            await page.fill(tid("login-password"), live_service.agent_password)
            await page.click(tid("login-submit"))
            await page.wait_for_url(f"{base_url}/walkthrough", timeout=WAIT_MS)
        finally:
            await browser.close()
    assert not errors, "errors in the pages:\n" + "\n".join(errors)
