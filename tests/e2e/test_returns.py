"""Returns operations in real Chromium: a Spanish customer answers the intake before the call (the
reason, what is wrong, a photo) and takes the offer the rules make for it, in Spanish with the
amount in euros; the agent sees the answers in the call and records the reason the call shows,
which differs from the claim; an admin tries a rule table on past cases and saves it on the
rules page. Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import io
from pathlib import Path

import aiohttp
import pytest
from PIL import Image
from playwright.async_api import async_playwright
from playwright.async_api import expect as pw_expect

from server.settings import Settings
from signaling import Role
from tests.conftest import AGENT_PASSWORD, LiveService
from tests.e2e._browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    DESK,
    PHONE,
    WAIT_MS,
    log_in,
    new_page,
    tid,
)
from web.locales import translate

pytestmark = pytest.mark.e2e

TABLE = {
    "rules": [
        {"id": "keep-unwanted", "name": "Offer to keep cheap unwanted items", "on": ["intake"],
         "when": {"claimed_reason": {"in": ["unwanted", "style"]}, "order_value": {"lt": 100}},
         "then": [{"action": "offer", "kind": "keep", "percent": 30},
                  {"action": "offer", "kind": "exchange"}]},
        {"id": "mismatch", "on": ["verified"], "when": {"mismatch": True},
         "then": [{"action": "hold_refund"}]},
    ]
}  # fmt: skip


@pytest.fixture
def service_settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "var", port=0, shutdown_timeout_s=2.0, grading=False, captions=False
    )


def _photo(path: Path) -> Path:
    image = Image.new("RGB", (640, 480), (180, 40, 40))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    path.write_bytes(buffer.getvalue())
    return path


async def test_intake_offer_verified_reason_and_the_rules_page(
    live_service: LiveService, tmp_path: Path
) -> None:
    base = live_service.base_url.rstrip("/")
    admin = live_service.headers()
    await live_service.state.accounts.create_user(
        "boss", AGENT_PASSWORD, name="Bea Boss", role=Role.ADMIN
    )
    async with aiohttp.ClientSession() as http:
        async with http.put(f"{base}/api/returns/rules", json=TABLE, headers=admin) as response:
            assert response.status == 201, await response.text()
        body = {"kind": "return", "customer_name": "Lucía Gómez", "order_id": "ORD-ES-7",
                "sku": "SNEAKER-42", "order_value": 40, "order_currency": "EUR",
                "customer_locale": "es", "country": "ES"}  # fmt: skip
        async with http.post(f"{base}/api/cases", json=body, headers=admin) as response:
            assert response.status == 201, await response.text()
            created = await response.json()
    case_id = str(created["case"]["id"])
    errors: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            _, customer = await new_page(browser, errors, **PHONE)
            _, agent = await new_page(browser, errors, **DESK)
            await log_in(agent, base, live_service.agent_username, live_service.agent_password)
            await customer.goto(str(created["join_url"]))
            intake = customer.locator(tid("intake"))
            await pw_expect(intake).to_be_visible(timeout=WAIT_MS)
            # The form works once the page's script runs (it enables it).
            await pw_expect(customer.locator(tid("intake-reason"))).to_be_enabled(timeout=WAIT_MS)
            await pw_expect(intake.locator("h2")).to_have_text(translate("es", "intake.title"))

            async with customer.expect_response(
                lambda r: r.url.endswith("/offers"), timeout=60_000
            ) as answered:
                await customer.select_option(tid("intake-reason"), "unwanted")
            assert (await answered.value).status == 200
            keep = customer.locator(tid("offer-keep"))
            await pw_expect(keep).to_be_visible(timeout=WAIT_MS)
            # 30 % of 40 EUR, written the Spanish way.
            amount = await customer.evaluate(
                "() => new Intl.NumberFormat('es', {style: 'currency', currency: 'EUR'}).format(12)"
            )
            await pw_expect(keep).to_contain_text(translate("es", "offer.keep", amount=amount))
            await customer.click(tid("offer-accept-keep"))
            await pw_expect(keep).to_have_attribute("data-chosen", "true")
            await customer.fill(tid("intake-description"), "No me queda bien.")
            await customer.set_input_files(tid("intake-photos"), str(_photo(tmp_path / "s.jpg")))
            await pw_expect(customer.locator(tid("intake-photo-count"))).to_have_text(
                translate("es", "intake.photos_added", count=1)
            )
            await customer.screenshot(path=str(ARTIFACTS / "e2e-intake.png"))
            await customer.click(tid("intake-submit"))
            await pw_expect(customer.locator(tid("intake-done"))).to_have_text(
                translate("es", "offer.accepted"), timeout=WAIT_MS
            )

            await customer.click(tid("start-camera"))
            await pw_expect(customer.locator(tid("connection-state"))).to_have_text(
                translate("es", "state.waiting"), timeout=WAIT_MS
            )
            await agent.click(tid(f"accept-{case_id}"))
            facts = agent.locator(tid("reason-facts"))
            await pw_expect(facts).to_contain_text("No longer wanted", timeout=WAIT_MS)
            await pw_expect(facts).to_contain_text("No me queda bien.")
            await pw_expect(facts).to_contain_text("Keep")
            await agent.select_option(tid("verified-reason"), "size_too_small")
            await agent.click(tid("record-reason"))
            badge = agent.locator(tid("reason-mismatch"))
            await pw_expect(badge).to_have_attribute("data-mismatch", "true", timeout=WAIT_MS)
            await pw_expect(facts).to_contain_text("Held")
            await agent.locator(tid("reason-panel")).scroll_into_view_if_needed()
            await agent.screenshot(path=str(ARTIFACTS / "e2e-agent-reason.png"))

            _, boss = await new_page(browser, errors, **DESK)
            await boss.goto(f"{base}/login?next=/admin/returns")
            await boss.fill(tid("login-username"), "boss")
            await boss.fill(tid("login-password"), AGENT_PASSWORD)
            await boss.click(tid("login-submit"))
            await boss.wait_for_url(f"{base}/admin/returns", timeout=WAIT_MS)
            await pw_expect(boss.locator(tid("rules-version"))).to_have_text(
                "return-rules/1", timeout=WAIT_MS
            )
            await boss.click(tid("rules-dry-run"))
            row = boss.locator(f'{tid("dry-run-row")}[data-rule="mismatch"]')
            await pw_expect(row).to_have_attribute("data-cases", "1", timeout=WAIT_MS)
            # A broken table is refused with where the problem is, and nothing is saved.
            await boss.fill(tid("rules-editor"), '{"rules": [{"id": "x", "on": ["soon"]}]}')
            await boss.click(tid("rules-save"))
            await pw_expect(boss.locator(tid("rules-error"))).to_contain_text(
                "rules[0].on[0]", timeout=WAIT_MS
            )
            await boss.screenshot(path=str(ARTIFACTS / "e2e-rules-page.png"), full_page=True)
        finally:
            await browser.close()
    # The broken table's refusal is the one failed request the browser logs.
    refused = [e for e in errors if "/admin/returns" in e and "status of 400" in e]
    assert len(refused) == 1 and [e for e in errors if e not in refused] == [], errors
