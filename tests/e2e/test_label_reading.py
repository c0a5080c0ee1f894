"""Text on labels in real Chromium: the customer's phone camera shows an item's label (the fake
camera plays a Y4M file of a drawn label), and the agent's console lists its serial, IMEI and
model number beside the codes, the serial marked as the case's unit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.async_api import async_playwright
from playwright.async_api import expect as pw_expect

from server.settings import Settings
from tests.conftest import LiveService
from tests.e2e._browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    DESK,
    PHONE,
    create_case,
    log_in,
    new_page,
    start_call,
    tid,
)
from tests.fakes.labels import draw_label

pytestmark = pytest.mark.e2e

#: OCR runs on one frame every second here; the models load on the first (a few seconds).
READ_WAIT_MS = 60_000


@pytest.fixture
def service_settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "var", port=0, shutdown_timeout_s=2.0, grading=True, label_reading_s=1.0
    )


def write_y4m(path: Path, image: np.ndarray[Any, Any], frames: int = 30) -> None:
    """``image`` (H x W x 3 RGB, even sides) as a 15 fps YUV 4:2:0 Y4M file (BT.601)."""
    rgb = image.astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    planes = [y] + [c.reshape(c.shape[0] // 2, 2, c.shape[1] // 2, 2).mean((1, 3)) for c in (u, v)]
    frame = b"".join(np.clip(p, 0, 255).astype(np.uint8).tobytes() for p in planes)
    h, w = image.shape[:2]
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{w} H{h} F15:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            out.write(b"FRAME\n" + frame)


async def test_the_agent_sees_the_serial_on_the_customer_s_label(
    live_service: LiveService, tmp_path: Path
) -> None:
    label = draw_label(seed=5)
    camera = tmp_path / "label.y4m"
    write_y4m(camera, label.image)
    base_url = live_service.base_url.rstrip("/")
    created = await create_case(base_url, live_service.admin_token, unit_id=label.serial)
    case_id = created["case"]["id"]
    errors: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)

    async with async_playwright() as pw:
        args = [*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={camera}"]
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            _, agent = await new_page(browser, errors, **DESK)
            _, customer = await new_page(browser, errors, **PHONE)
            await log_in(agent, base_url, live_service.agent_username, live_service.agent_password)
            await start_call(agent, customer, str(created["join_url"]), case_id)

            serial = agent.locator(f'{tid("label-row")}[data-kind="serial"]')
            await pw_expect(serial).to_contain_text(label.serial, timeout=READ_WAIT_MS)
            await pw_expect(serial.locator(tid("code-match"))).to_have_attribute(
                "data-ref", "unit_id"
            )
            await pw_expect(serial).to_contain_text("matches unit")
            imei = agent.locator(f'{tid("label-row")}[data-kind="imei"]')
            await pw_expect(imei).to_contain_text(label.imei, timeout=READ_WAIT_MS)
            # The rows are redrawn with every update; the list itself stays.
            await agent.locator(tid("code-list")).scroll_into_view_if_needed()
            await agent.screenshot(path=str(ARTIFACTS / "e2e-agent-label-read.png"))
        finally:
            await browser.close()
    assert not errors, "errors in the pages:\n" + "\n".join(errors)
