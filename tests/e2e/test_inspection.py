"""The inspection tools in real Chromium, agent at a desk and customer on a phone: freeze, draw,
the customer's canvas shows the marks at the same spots of the picture (read back from its
pixels), point back, back to live; a photo at the fake camera's full size, found in the archive
graded and hashed; the torch on a camera without one prompts the customer; the phone in portrait
and in landscape; audio plus photos and back."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page, async_playwright
from playwright.async_api import expect as pw_expect

from server.settings import Settings
from tests.conftest import LiveService
from tests.e2e._browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    DESK,
    PHONE,
    WAIT_MS,
    create_case,
    log_in,
    new_page,
    start_call,
    tid,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def service_settings(tmp_path: Path) -> Settings:
    # The model grades the photos; label reading is left to its own test.
    return Settings(
        data_dir=tmp_path / "var", port=0, shutdown_timeout_s=2.0, grading=True, label_reading_s=0
    )


LANDSCAPE = {**PHONE, "viewport": {"width": 844, "height": 390}}

#: The canvas pixel (RGBA) at a spot of the picture, given as a share of its width and height.
PIXEL_AT = """
([testid, x, y, offset]) => {
  const canvas = document.querySelector(`[data-testid="${testid}"]`);
  const img = document.querySelector('[data-testid="frozen-image"]');
  const W = canvas.clientWidth, H = canvas.clientHeight;
  const s = Math.min(W / img.naturalWidth, H / img.naturalHeight);
  const w = img.naturalWidth * s, h = img.naturalHeight * s;
  const dpr = canvas.width / W;
  // offset: a share of a numbered marker's radius to the right (off its white number).
  const radius = Math.max(9, 0.025 * Math.min(w, h));
  const px = ((W - w) / 2 + x * w + (offset || 0) * radius) * dpr;
  const py = ((H - h) / 2 + y * h) * dpr;
  const d = canvas.getContext('2d').getImageData(Math.round(px) - 1, Math.round(py) - 1, 3, 3).data;
  let best = [0, 0, 0, 0];
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] > best[3]) best = [d[i], d[i + 1], d[i + 2], d[i + 3]];
  }
  return best;
}
"""

#: Where a spot of the picture is on the page (for the mouse or a tap).
SPOT = """
([testid, picture, x, y]) => {
  const canvas = document.querySelector(`[data-testid="${testid}"]`);
  const el = document.querySelector(picture);
  const natW = el.naturalWidth || el.videoWidth, natH = el.naturalHeight || el.videoHeight;
  const box = canvas.getBoundingClientRect();
  const s = Math.min(box.width / natW, box.height / natH);
  const w = natW * s, h = natH * s;
  return [box.left + (box.width - w) / 2 + x * w, box.top + (box.height - h) / 2 + y * h];
}
"""


async def spot(page: Page, x: float, y: float, picture: str = tid("frozen-image")) -> list[float]:
    result: list[float] = await page.evaluate(SPOT, ["markup-canvas", picture, x, y])
    return result


async def drag(page: Page, a: tuple[float, float], b: tuple[float, float]) -> None:
    x1, y1 = await spot(page, *a)
    x2, y2 = await spot(page, *b)
    await page.mouse.move(x1, y1)
    await page.mouse.down()
    for i in range(1, 6):
        await page.mouse.move(x1 + (x2 - x1) * i / 5, y1 + (y2 - y1) * i / 5)
    await page.mouse.up()


async def pixel(page: Page, x: float, y: float, offset: float = 0.0) -> list[int]:
    result: list[int] = await page.evaluate(PIXEL_AT, ["markup-canvas", x, y, offset])
    return result


async def near(page: Page, attribute: str, expected: tuple[float, float]) -> None:
    """The canvas names a tapped spot within a pixel or two of ``expected``."""
    canvas = page.locator(tid("markup-canvas"))
    await pw_expect(canvas).to_have_attribute(attribute, re.compile(r"^[\d.]+,[\d.]+$"))
    x, y = (float(v) for v in (await canvas.get_attribute(attribute) or "").split(","))
    assert abs(x - expected[0]) < 0.01 and abs(y - expected[1]) < 0.01, (x, y)


def is_red(rgba: list[int]) -> bool:
    r, g, b, a = rgba
    return a > 200 and r > 200 and g < 90 and b < 90


async def evidence(live: LiveService, case_id: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"{live.base_url}/api/cases/{case_id}/evidence", headers=live.headers()
        ) as response:
            assert response.status == 200, await response.text()
            items: list[dict[str, Any]] = (await response.json())["items"]
            return items


async def freeze_and_draw(agent: Page, customer: Page) -> None:
    await agent.click(tid("inspect-freeze"))
    await pw_expect(agent.locator(tid("frozen-image"))).to_be_visible(timeout=WAIT_MS)
    await pw_expect(customer.locator(tid("frozen-image"))).to_be_visible(timeout=WAIT_MS)
    await pw_expect(customer.locator(tid("frozen-banner"))).to_be_visible()
    for page in (agent, customer):
        await page.wait_for_function(
            "document.querySelector('[data-testid=frozen-image]').naturalWidth > 0"
        )
    await agent.click(tid("tool-arrow"))
    await drag(agent, (0.2, 0.3), (0.6, 0.5))
    await agent.click(tid("tool-circle"))
    await drag(agent, (0.55, 0.6), (0.85, 0.9))
    await agent.click(tid("tool-freehand"))
    await drag(agent, (0.1, 0.1), (0.3, 0.15))
    await agent.click(tid("tool-marker"))
    x, y = await spot(agent, 0.8, 0.2)
    await agent.mouse.click(x, y)
    await agent.fill(tid("markup-text"), "scratch here")
    await agent.click(tid("tool-text"))
    x, y = await spot(agent, 0.1, 0.75)
    await agent.mouse.click(x, y)
    canvas = customer.locator(tid("markup-canvas"))
    await pw_expect(canvas).to_have_attribute("data-strokes", "5", timeout=WAIT_MS)


async def test_freeze_draw_point_back_photo_and_torch_prompt_in_portrait(
    live_service: LiveService,
) -> None:
    base_url = live_service.base_url.rstrip("/")
    created = await create_case(base_url, live_service.admin_token, unit_id="UNIT-1")
    case_id = created["case"]["id"]
    errors: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            _, agent = await new_page(browser, errors, **DESK)
            _, customer = await new_page(browser, errors, **PHONE)
            await log_in(agent, base_url, live_service.agent_username, live_service.agent_password)
            await start_call(agent, customer, str(created["join_url"]), case_id)
            await pw_expect(agent.locator(tid("camera-caps"))).to_contain_text(
                "Phone camera", timeout=WAIT_MS
            )

            await freeze_and_draw(agent, customer)
            # The arrow's middle, the marker's ring, on both canvases at the same shares of
            # the picture, whatever the screen.
            for page in (agent, customer):
                assert is_red(await pixel(page, 0.4, 0.4)), await pixel(page, 0.4, 0.4)
                assert is_red(await pixel(page, 0.8, 0.2, offset=0.8))
                assert (await pixel(page, 0.45, 0.15))[3] == 0, "nothing drawn elsewhere"
            await agent.screenshot(path=str(ARTIFACTS / "e2e-agent-markup.png"))
            await customer.screenshot(path=str(ARTIFACTS / "e2e-customer-markup-portrait.png"))

            # Undo takes the newest mark back on the customer's screen too.
            await agent.click(tid("markup-undo"))
            await pw_expect(customer.locator(tid("markup-canvas"))).to_have_attribute(
                "data-strokes", "4", timeout=WAIT_MS
            )

            # The customer taps the frozen picture: the agent sees where.
            x, y = await spot(customer, 0.5, 0.5)
            await customer.touchscreen.tap(x, y)
            await near(agent, "data-customer-point", (0.5, 0.5))

            await agent.click(tid("inspect-unfreeze"))
            await pw_expect(customer.locator(tid("frozen-image"))).to_be_hidden(timeout=WAIT_MS)
            await pw_expect(agent.locator(tid("frozen-image"))).to_be_hidden()
            kinds = {item["record"]["kind"] for item in await evidence(live_service, case_id)}
            assert {"snapshot", "markup"} <= kinds, kinds

            # Live video: a tap at a spot shows the customer a pulsing marker there.
            x, y = await spot(agent, 0.25, 0.75, tid("remote-video"))
            await agent.mouse.click(x, y)
            await near(customer, "data-agent-point", (0.25, 0.75))

            # A photo asked for is taken at the camera's own size and filed graded and hashed.
            await agent.fill(tid("photo-note"), "the label on the back")
            await agent.click(tid("photo-request"))
            await pw_expect(customer.locator(tid("photo-request-note"))).to_contain_text(
                "the label on the back", timeout=WAIT_MS
            )
            track = await customer.evaluate(
                "() => document.querySelector('[data-testid=local-video]').srcObject"
                ".getVideoTracks()[0].getSettings()"
            )
            await customer.click(tid("take-photo"))
            await pw_expect(customer.locator(tid("photo-status"))).to_contain_text(
                "Sent ✓", timeout=WAIT_MS
            )
            preview = customer.locator(tid("photo-preview"))
            assert await preview.get_attribute("data-width") == str(track["width"])
            assert await preview.get_attribute("data-height") == str(track["height"])
            item_id = await preview.get_attribute("data-item-id")
            photo = agent.locator(tid(f"photo-{item_id}"))
            await pw_expect(photo).to_be_visible(timeout=WAIT_MS)
            assert await photo.get_attribute("data-width") == str(track["width"])
            await customer.screenshot(path=str(ARTIFACTS / "e2e-customer-photo-sent.png"))
            items = {i["item_id"]: i for i in await evidence(live_service, case_id)}
            filed = items[str(item_id)]
            assert (await photo.get_attribute("data-grade")) in {"A", "B", "C", "D"}, str(
                filed["record"]["grading"]
            )
            assert filed["record"]["kind"] == "photo"
            assert filed["record"]["details"]["width"] == track["width"]
            assert filed["record"]["details"]["requested"]
            assert filed["record"]["grading"]["model"]["grade"]
            assert all(len(f["sha256"]) == 64 for f in filed["files"])

            # The fake camera has no torch: the customer is asked for light instead.
            await agent.click(tid("cam-torch"))
            prompt = customer.locator(tid("camera-prompt"))
            await pw_expect(prompt).to_contain_text("turn on a light", timeout=WAIT_MS)
            result = agent.locator(tid("camera-result"))
            await pw_expect(result).to_have_attribute("data-ok", "false", timeout=WAIT_MS)
            await pw_expect(result).to_contain_text("turn on a light")
            await customer.screenshot(path=str(ARTIFACTS / "e2e-customer-torch-prompt.png"))
            await agent.locator(tid("inspect-panel")).scroll_into_view_if_needed()
            await agent.screenshot(path=str(ARTIFACTS / "e2e-agent-inspect-panel.png"))
        finally:
            await browser.close()
    assert not errors, "errors in the pages:\n" + "\n".join(errors)


async def test_markup_lands_on_the_same_spots_in_landscape_and_audio_mode_round_trip(
    live_service: LiveService,
) -> None:
    base_url = live_service.base_url.rstrip("/")
    created = await create_case(base_url, live_service.admin_token)
    case_id = created["case"]["id"]
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            _, agent = await new_page(browser, errors, **DESK)
            _, customer = await new_page(browser, errors, **LANDSCAPE)
            await log_in(agent, base_url, live_service.agent_username, live_service.agent_password)
            await start_call(agent, customer, str(created["join_url"]), case_id)
            await freeze_and_draw(agent, customer)
            assert is_red(await pixel(customer, 0.4, 0.4))
            assert await customer.evaluate("screen.orientation.type") == "landscape-primary"
            await customer.screenshot(path=str(ARTIFACTS / "e2e-customer-markup-landscape.png"))
            await agent.click(tid("markup-clear"))
            await pw_expect(customer.locator(tid("markup-canvas"))).to_have_attribute(
                "data-strokes", "0", timeout=WAIT_MS
            )
            await agent.click(tid("inspect-unfreeze"))
            await pw_expect(customer.locator(tid("frozen-image"))).to_be_hidden(timeout=WAIT_MS)

            # Audio plus photos: the phone stops sending video, and comes back to it.
            await agent.click(tid("video-mode"))
            await pw_expect(customer.locator(tid("audio-mode"))).to_be_visible(timeout=WAIT_MS)
            await pw_expect(customer.locator("body")).to_have_attribute("data-video-mode", "audio")
            await pw_expect(agent.locator(tid("mode-state"))).to_have_attribute(
                "data-mode", "audio"
            )
            await agent.click(tid("video-mode"))
            await pw_expect(customer.locator(tid("audio-mode"))).to_be_hidden(timeout=WAIT_MS)
            await pw_expect(customer.locator("body")).to_have_attribute("data-video-mode", "video")
        finally:
            await browser.close()
    assert not errors, "errors in the pages:\n" + "\n".join(errors)


async def test_the_console_switches_to_audio_when_the_video_cannot_hold_and_tries_again(
    live_service: LiveService,
) -> None:
    """The automatic switch's rule, run in the browser on a sequence of measured seconds."""
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            _, page = await new_page(browser, errors, **DESK)
            await page.goto(f"{live_service.base_url}/login")
            decisions = await page.evaluate(
                """async () => {
                  const { LinkJudge } = await import('/static/js/lowband.js');
                  const judge = new LinkJudge({ holdS: 4, retryS: 10, graceS: 2 });
                  let mode = 'video';
                  const out = [];
                  const feed = (t, kbps, fps) => {
                    const verdict = judge.sample({ kbps, fps, t, mode });
                    if (verdict) { mode = verdict; out.push([t, verdict]); }
                  };
                  for (let t = 0; t < 10; t++) feed(t, 600, 25);   // good video
                  for (let t = 10; t < 20; t++) feed(t, 40, 3);    // it cannot hold
                  for (let t = 20; t < 60; t++) feed(t, 0, 0);     // audio: nothing to measure
                  return out;
                }"""
            )
        finally:
            await browser.close()
    assert decisions[0] == [14, "audio"], decisions  # low for 4 s
    assert decisions[1] == [25, "video"], decisions  # tried again 10 s later
    assert decisions[2] == [31, "audio"], decisions  # still cannot hold (after its grace)
    assert decisions[3] == [52, "video"], "it waits twice as long the next time"
    assert not errors, errors
