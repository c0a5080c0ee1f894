"""The returns analytics page in real Chromium: a generated year of returns (with its sales and
the alerts it raises) behind the full service; a reviewer opens /analytics on that year, sees
the totals, seven charts drawn by the server and the table, breaks the figures down by carrier,
filters to one country, and the CSV link follows the filters."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.async_api import async_playwright
from playwright.async_api import expect as pw_expect

from server.returns.analytics import AnalyticsService
from server.storage.sqlite.analytics import SqliteAnalyticsStore
from tests.conftest import LiveService
from tests.e2e._browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, DESK, WAIT_MS, new_page, tid
from tests.fakes.returns_history import DAMAGE_CARRIER, HIGH_SKU, generate, write

pytestmark = pytest.mark.e2e

ALERTS = [
    {"id": "sku-rate", "kind": "sku_return_rate", "threshold": 0.25},
    {"id": "carrier-damage", "kind": "carrier_damage_share", "threshold": 0.3},
]


async def test_a_reviewer_reads_a_year_of_returns(live_service: LiveService) -> None:
    history = generate()
    db = live_service.state.services.db
    await db.transaction(lambda conn: write(conn, history))
    raised = await AnalyticsService(
        SqliteAnalyticsStore(db), clock=lambda: history.now
    ).evaluate_alerts(ALERTS, version=1)
    assert {alert.subject for alert in raised} >= {HIGH_SKU, DAMAGE_CARRIER}
    base_url = live_service.base_url.rstrip("/")
    errors: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)
    year = f"since={history.start}&until={history.end}"

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            _, reviewer = await new_page(browser, errors, **DESK)
            await reviewer.goto(f"{base_url}/analytics?{year}")
            await pw_expect(reviewer).to_have_url(re.compile(r"/login\?next="))
            await reviewer.fill(tid("login-username"), "reviewer")
            await reviewer.fill(tid("login-password"), live_service.agent_password)
            await reviewer.click(tid("login-submit"))
            await reviewer.wait_for_url(re.compile(r"/analytics\?"), timeout=WAIT_MS)

            returns = reviewer.locator(tid("tile-returns"))
            await pw_expect(returns).to_contain_text(f"{history.case_count:,}", timeout=WAIT_MS)
            await pw_expect(reviewer.locator("body")).to_have_attribute(
                "data-loading", "false", timeout=WAIT_MS
            )
            await pw_expect(reviewer.locator("figure.chart svg")).to_have_count(7)
            top = reviewer.locator(f"{tid('chart-top')} svg title").first
            await pw_expect(top).to_have_text("Most returned products (rate × returns)")
            first_row = reviewer.locator(tid("analytics-row")).first
            await pw_expect(first_row).to_have_attribute("data-key", re.compile(r"^SKU-"))
            alerts = reviewer.locator(tid("alert"))
            await pw_expect(alerts).to_have_count(len(raised))
            await pw_expect(alerts.filter(has_text=DAMAGE_CARRIER)).to_have_count(1)
            await reviewer.locator(tid("analytics-summary")).scroll_into_view_if_needed()
            await reviewer.screenshot(path=str(ARTIFACTS / "e2e-analytics.png"), full_page=True)

            await reviewer.select_option(tid("filter-dimension"), "carrier")
            await pw_expect(reviewer.locator(tid("table-dimension"))).to_have_text("carrier")
            damage = reviewer.locator(f'{tid("analytics-row")}[data-key="{DAMAGE_CARRIER}"]')
            await pw_expect(damage).to_have_count(1, timeout=WAIT_MS)

            await reviewer.fill(tid("filter-country"), "GB")
            await reviewer.click(tid("apply-filters"))
            await pw_expect(reviewer.locator(tid("analytics-slice"))).to_contain_text(
                "country GB", timeout=WAIT_MS
            )
            await pw_expect(damage).to_have_count(0)
            csv_link = await reviewer.locator(tid("analytics-csv")).get_attribute("href")
            assert csv_link is not None
            query = parse_qs(urlparse(csv_link).query)
            assert query["country"] == ["GB"] and query["dimension"] == ["carrier"]
            download = await reviewer.context.request.get(f"{base_url}{csv_link}")
            assert download.status == 200
            assert (await download.text()).startswith("carrier,label,returns")
        finally:
            await browser.close()
    assert not errors, "errors in the pages:\n" + "\n".join(errors)
