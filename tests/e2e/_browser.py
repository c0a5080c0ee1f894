"""What the browser tests share: Chromium with a fake camera, pages that collect their errors,
the staff login and the REST calls the tests make beside the pages."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page
from playwright.async_api import expect as pw_expect

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WAIT_MS = 20_000
DESK = {"viewport": {"width": 1440, "height": 900}}
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
    "permissions": ["camera", "microphone"],
}


def tid(test_id: str) -> str:
    """The selector of a ``data-testid``."""
    return f'[data-testid="{test_id}"]'


async def new_page(
    browser: Browser, errors: list[str], **context_args: Any
) -> tuple[BrowserContext, Page]:
    """A page in its own context whose uncaught errors and console errors land in ``errors``."""
    context = await browser.new_context(**context_args)
    page = await context.new_page()
    page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(f"{page.url}: console: {message.text}")

    page.on("console", on_console)
    return context, page


async def create_case(base_url: str, token: str, **fields: str) -> dict[str, Any]:
    body = {
        "kind": "return",
        "customer_name": "Maria Lopez",
        "order_id": "ORD-20931",
        "sku": "HEADPHONES-X2",
        "reason": "Left ear cup rattles",
        **fields,
    }
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.post(f"{base_url}/api/cases", json=body) as response,
    ):
        assert response.status == 201, await response.text()
        created: dict[str, Any] = await response.json()
    return created


async def get_case(base_url: str, token: str, case_id: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.get(f"{base_url}/api/cases/{case_id}") as response,
    ):
        assert response.status == 200, await response.text()
        data: dict[str, Any] = await response.json()
    return data


async def log_in(page: Page, base_url: str, username: str, password: str) -> None:
    await page.goto(f"{base_url}/agent")
    await pw_expect(page).to_have_url(re.compile(r"/login\?next=/agent$"))
    await page.fill(tid("login-username"), username)
    await page.fill(tid("login-password"), password)
    await page.click(tid("login-submit"))
    await page.wait_for_url(f"{base_url}/agent", timeout=WAIT_MS)


async def start_call(agent: Page, customer: Page, join_url: str, case_id: str) -> None:
    """The customer opens the link and starts the camera; the agent accepts the case; both
    pages show the call as connected."""
    await pw_expect(agent.locator(tid("lobby-state"))).to_have_text("Live", timeout=WAIT_MS)
    await customer.goto(join_url)
    await customer.click(tid("start-camera"))
    state = customer.locator(tid("connection-state"))
    await pw_expect(state).to_have_text("Waiting for an agent", timeout=WAIT_MS)
    item = agent.locator(tid(f"queue-item-{case_id}"))
    await pw_expect(item).to_be_visible(timeout=WAIT_MS)
    await agent.click(tid(f"accept-{case_id}"))
    await pw_expect(item).to_have_count(0, timeout=WAIT_MS)
    await pw_expect(state).to_contain_text("Connected with", timeout=WAIT_MS)
    await pw_expect(agent.locator(tid("connection-state"))).to_contain_text(
        "Connected", timeout=WAIT_MS
    )


#: Samples a video twice, 800 ms apart, and draws the frame to a canvas: a playing
#: stream has a size, an advancing clock, and pixels that are neither black nor flat.
VIDEO_PROBE = """
async (selector) => {
  const video = document.querySelector(selector);
  const t0 = video.currentTime;
  await new Promise((resolve) => setTimeout(resolve, 800));
  const canvas = document.createElement('canvas');
  canvas.width = 160;
  canvas.height = 120;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
  const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let sum = 0;
  let sumSq = 0;
  const n = px.length / 4;
  for (let i = 0; i < px.length; i += 4) {
    const y = 0.299 * px[i] + 0.587 * px[i + 1] + 0.114 * px[i + 2];
    sum += y;
    sumSq += y * y;
  }
  const mean = sum / n;
  return {
    width: video.videoWidth,
    height: video.videoHeight,
    t0,
    t1: video.currentTime,
    paused: video.paused,
    mean,
    variance: sumSq / n - mean * mean,
  };
}
"""


async def assert_playing(page: Page, selector: str) -> None:
    """The video at ``selector`` plays: it has a size, its clock advances, and its pixels are
    neither black nor one flat colour."""
    probe = await page.evaluate(VIDEO_PROBE, selector)
    assert probe["width"] > 0 and probe["height"] > 0, probe
    assert probe["t1"] > probe["t0"], f"video is frozen: {probe}"
    assert not probe["paused"], probe
    assert probe["mean"] > 20, f"video is black: {probe}"
    assert probe["variance"] > 20, f"video is a flat colour: {probe}"
