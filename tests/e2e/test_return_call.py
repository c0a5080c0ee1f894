"""A whole return verification in real Chromium: customer on a phone, agent at a desk.

The customer page publishes Chromium's fake camera; the agent must see it as real, moving,
non-black video, both chat directions must arrive exactly once, and the decision the agent
records must be stored on the case. Chromium that cannot start is a failure, not a skip.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page, async_playwright
from playwright.async_api import expect as pw_expect

from tests.e2e._browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    WAIT_MS,
    assert_playing,
    create_case,
    get_case,
    log_in,
    new_page,
    tid,
)

pytestmark = pytest.mark.e2e


async def _chat(sender: Page, receiver: Page, text: str) -> None:
    await sender.fill(tid("chat-input"), text)
    await sender.click(tid("chat-send"))
    for page in (sender, receiver):
        message = page.locator(f'{tid("chat-log")} [data-testid="chat-message"]', has_text=text)
        await pw_expect(message).to_have_count(1, timeout=WAIT_MS)


async def _has_audio_track(page: Page) -> None:
    await page.wait_for_function(
        """() => {
          const el = document.querySelector('[data-testid="remote-audio"]');
          return Boolean(el && el.srcObject && el.srcObject.getAudioTracks().length > 0);
        }""",
        timeout=WAIT_MS,
    )


async def test_return_verification_call(live_service: Any) -> None:
    base_url = live_service.base_url.rstrip("/")
    created = await create_case(base_url, live_service.admin_token)
    case_id = created["case"]["id"]
    join_url = created["join_url"]
    assert join_url.startswith(("http://", "https://"))
    errors: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)

    async with async_playwright() as pw:
        # No try/except: a Chromium that cannot launch fails the test.
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            _, agent = await new_page(browser, errors, viewport={"width": 1440, "height": 900})
            _, customer = await new_page(
                browser,
                errors,
                viewport={"width": 390, "height": 844},
                device_scale_factor=2,
                is_mobile=True,
                has_touch=True,
                permissions=["camera", "microphone"],
            )

            await log_in(agent, base_url, live_service.agent_username, live_service.agent_password)
            await pw_expect(agent.locator(tid("lobby-state"))).to_have_text("Live", timeout=WAIT_MS)

            # The customer opens the link on the phone: the page moves the token out of the
            # address and lands on the case's token-free page, then starts the camera.
            await customer.goto(join_url)
            await customer.wait_for_url(f"{base_url}/join/c/{case_id}", timeout=WAIT_MS)
            assert created["join_token"] not in customer.url
            await customer.click(tid("start-camera"))
            state = customer.locator(tid("connection-state"))
            await pw_expect(state).to_have_text("Waiting for an agent", timeout=WAIT_MS)

            # The case shows up in the agent's live queue with a running wait timer.
            item = agent.locator(tid(f"queue-item-{case_id}"))
            await pw_expect(item).to_be_visible(timeout=WAIT_MS)
            await pw_expect(item).to_contain_text("Maria Lopez")
            await agent.click(tid(f"accept-{case_id}"))
            await pw_expect(item).to_have_count(0, timeout=WAIT_MS)

            await pw_expect(state).to_contain_text("Connected with", timeout=WAIT_MS)
            await pw_expect(agent.locator(tid("connection-state"))).to_contain_text(
                "Connected", timeout=WAIT_MS
            )

            # The agent sees the customer's camera: real, moving, not black.
            await agent.wait_for_function(
                """() => {
                  const v = document.querySelector('[data-testid="remote-video"]');
                  return v && v.videoWidth > 0 && v.currentTime > 0 && !v.paused;
                }""",
                timeout=WAIT_MS,
            )
            await assert_playing(agent, tid("remote-video"))

            # Both sides hear each other: each has a remote audio track.
            await _has_audio_track(agent)
            await _has_audio_track(customer)

            # Chat in both directions, each message exactly once on both pages.
            await _chat(customer, agent, "Hi! Here is the box and the headphones.")
            await _chat(agent, customer, "Thanks Maria, please show the left ear cup.")

            await customer.click(tid("checklist-label"))
            await customer.click(tid("checklist-item"))
            await customer.screenshot(path=str(ARTIFACTS / "e2e-customer.png"))

            # The agent records a partial refund with the observed facts.
            await agent.select_option(tid("decision-select"), "partial_refund")
            await pw_expect(agent.locator(tid("refund-amount"))).to_be_visible()
            await agent.fill(tid("refund-amount"), "12.50")
            await agent.select_option(tid("fact-cosmetic"), "light_wear")
            await agent.select_option(tid("fact-functional"), "does_not_work")
            await agent.select_option(tid("fact-packaging"), "intact")
            await agent.fill(tid("decision-note"), "Left ear cup rattles; cosmetics fine.")
            await agent.click(tid("decision-submit"))
            result = agent.locator(tid("decision-result"))
            await pw_expect(result).to_be_visible(timeout=WAIT_MS)
            await pw_expect(result).to_contain_text("Partial refund")
            await pw_expect(result).to_contain_text("12.50")
            await pw_expect(agent.locator(tid("case-link"))).to_have_attribute(
                "href", f"/agent/cases/{case_id}"
            )
            await agent.screenshot(path=str(ARTIFACTS / "e2e-agent.png"))

            # The customer is told the call is over.
            await pw_expect(customer.locator(tid("call-ended"))).to_be_visible(timeout=WAIT_MS)
            await customer.screenshot(path=str(ARTIFACTS / "e2e-customer-ended.png"))

            # The case page shows the stored decision and the timeline.
            await agent.click(tid("case-link"))
            await pw_expect(agent.locator(tid("case-state"))).to_have_text(
                "Decided", timeout=WAIT_MS
            )
            await pw_expect(agent.locator(tid("case-decision"))).to_contain_text("Partial refund")
            await pw_expect(agent.locator(tid("timeline-event")).first).to_be_visible()
            await agent.screenshot(path=str(ARTIFACTS / "e2e-case.png"), full_page=True)
        finally:
            await browser.close()

    stored = await get_case(base_url, live_service.admin_token, case_id)
    case = stored["case"]
    assert case["state"] == "decided"
    assert case["decision"] == "partial_refund"
    assert float(case["refund_amount"]) == pytest.approx(12.5)
    facts = case["facts"]
    assert facts["cosmetic"] == "light_wear"
    assert facts["functional"] == "does_not_work"
    assert facts["packaging"] == "intact"
    assert facts["accessories_complete"] is True
    assert stored["events"], "the case timeline is empty"
    assert not errors, "errors in the pages:\n" + "\n".join(errors)
