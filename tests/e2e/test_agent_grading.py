"""Live grading in real Chromium, with the shipped model: the customer's fake camera is graded
while the agent watches, the decision form derives a grade from the facts, and the agent's
override with its reason is what the case keeps.

The shipped model (``inference/models/grader-v1.onnx``) must be there: without it the service
cannot start with grading on, and this test fails rather than skips.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright
from playwright.async_api import expect as pw_expect

from server.settings import Settings
from server.wiring.grading import DEFAULT_MODEL
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
    start_call,
    tid,
)

pytestmark = pytest.mark.e2e

#: The model needs a few clear frames before it grades (the sampler takes ~2 per second).
GRADE_WAIT_MS = 40_000


@pytest.fixture
def service_settings(tmp_path: Path) -> Settings:
    assert DEFAULT_MODEL.is_file(), f"the shipped grading model is missing: {DEFAULT_MODEL}"
    return Settings(data_dir=tmp_path / "var", port=0, shutdown_timeout_s=2.0, grading=True)


async def _best_frames_load(agent: Page) -> None:
    """At least one best frame is shown, as a decoded JPEG that opens full size in a new tab."""
    await agent.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid="best-frame"]')]
             .some((img) => img.complete && img.naturalWidth > 0)""",
        timeout=WAIT_MS,
    )
    link = agent.locator(f"{tid('best-frames')} a").first
    await pw_expect(link).to_have_attribute("target", "_blank")
    await pw_expect(link).to_have_attribute("href", re.compile(r"^/api/cases/[^/]+/frames/\d+$"))


async def _until_model_view_stored(live: LiveService, case_id: str) -> dict[str, Any]:
    """The case once the customer's stream ended and the model's final view was kept."""
    async with asyncio.timeout(WAIT_MS / 1000):
        while True:
            stored = await get_case(live.base_url, live.admin_token, case_id)
            if any(e["type"] == "grading.model_view" for e in stored["events"]):
                return stored
            await asyncio.sleep(0.2)  # written by a task of the grading service


async def test_agent_sees_live_grading_and_overrides_the_grade(live_service: LiveService) -> None:
    base_url = live_service.base_url.rstrip("/")
    created = await create_case(base_url, live_service.admin_token, unit_id="UNIT-7F3K2Q")
    case_id = created["case"]["id"]
    errors: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            _, agent = await new_page(browser, errors, **DESK)
            _, customer = await new_page(browser, errors, **PHONE)
            await log_in(agent, base_url, live_service.agent_username, live_service.agent_password)
            panel = agent.locator(tid("grading-panel"))
            await pw_expect(agent.locator(tid("grading-waiting"))).to_have_text(
                "Waiting for video…"
            )

            await start_call(agent, customer, created["join_url"], case_id)

            # The model grades the fake camera live: the panel leaves "Waiting for video…".
            await pw_expect(panel).to_be_visible()
            await pw_expect(agent.locator(tid("grading-waiting"))).to_be_hidden(
                timeout=GRADE_WAIT_MS
            )
            grade = agent.locator(tid("live-grade"))
            # A first view may come before any clear frame (no grade yet): wait for a grade.
            await pw_expect(grade).to_have_attribute(
                "data-grade", re.compile(r"^[ABCD]$"), timeout=GRADE_WAIT_MS
            )
            await pw_expect(grade).to_have_text(re.compile(r"^[ABCD]$"))
            await pw_expect(agent.locator(tid("live-confidence"))).to_have_text(
                re.compile(r"^\d{1,3}% confident$")
            )
            await pw_expect(agent.locator(tid("live-status"))).to_have_text(
                re.compile(r"^(Sure|Not sure: .+)$")
            )
            await pw_expect(agent.locator(f"{tid('grade-probs')} li")).to_have_count(4)
            frames = agent.locator(tid("frames-count"))
            await pw_expect(frames).to_have_attribute(
                "data-analysed", re.compile(r"^[1-9]\d*$"), timeout=GRADE_WAIT_MS
            )
            await pw_expect(frames).to_contain_text(re.compile(r"^\d+ frames? analysed"))
            await pw_expect(agent.locator(tid("model-version"))).not_to_have_text("–")
            await _best_frames_load(agent)

            # The decision form derives the grade from the facts, next to the model's grade.
            await agent.select_option(tid("fact-cosmetic"), "light_wear")
            await agent.select_option(tid("fact-functional"), "works")
            await agent.select_option(tid("fact-packaging"), "damaged")
            derived = agent.locator(tid("derived-grade"))
            await pw_expect(derived).to_have_attribute("data-grade", "B", timeout=WAIT_MS)
            await pw_expect(agent.locator(tid("derived-explanation"))).to_contain_text(
                "light signs of use"
            )
            await pw_expect(agent.locator(tid("resale-channel"))).to_contain_text("discount")
            await pw_expect(agent.locator(tid("decision-model-grade"))).to_have_attribute(
                "data-grade", re.compile(r"^[ABCD]$")
            )

            # Overriding needs a reason.
            await agent.check(tid("grade-override-toggle"))
            await pw_expect(agent.locator(tid("grade-override-select"))).to_have_value("B")
            await agent.select_option(tid("grade-override-select"), "C")
            await agent.fill(tid("decision-note"), "Scuffed hinge, not covered by the facts.")
            await agent.click(tid("decision-submit"))
            error = agent.locator(tid("decision-error"))
            await pw_expect(error).to_be_visible()
            await pw_expect(error).to_contain_text("override")
            await agent.fill(tid("grade-override-reason"), "Scuffed hinge seen on the video")
            await pw_expect(error).to_be_hidden()
            # Tall enough for the video, the grading panel and the form in one picture.
            await agent.set_viewport_size({"width": 1440, "height": 1640})
            await agent.evaluate("window.scrollTo(0, 0)")
            await agent.screenshot(path=str(ARTIFACTS / "e2e-agent-grading.png"))
            await agent.set_viewport_size(DESK["viewport"])

            await agent.click(tid("decision-submit"))
            result = agent.locator(tid("decision-result"))
            await pw_expect(result).to_be_visible(timeout=WAIT_MS)
            await pw_expect(result).to_have_attribute("data-grade-source", "override")
            await pw_expect(agent.locator(tid("result-final-grade"))).to_have_text("C")
            await pw_expect(agent.locator(tid("result-grade-source"))).to_have_text(
                "Agent override"
            )
            await pw_expect(agent.locator(tid("result-resale-channel"))).to_contain_text(
                "live / social commerce"
            )
            await agent.screenshot(path=str(ARTIFACTS / "e2e-agent-grading-decided.png"))

            # The call is over; once the model's final view is kept, the case page shows the
            # whole grading record and the model's view in the timeline.
            await pw_expect(customer.locator(tid("call-ended"))).to_be_visible(timeout=WAIT_MS)
            await _until_model_view_stored(live_service, case_id)
            await agent.click(tid("case-link"))
            record = agent.locator(tid("case-grading"))
            await pw_expect(agent.locator(tid("grading-final"))).to_have_attribute(
                "data-source", "override", timeout=WAIT_MS
            )
            await pw_expect(agent.locator(tid("grading-final"))).to_have_attribute(
                "data-grade", "C"
            )
            await pw_expect(record).to_contain_text("Scuffed hinge seen on the video")
            await pw_expect(record).to_contain_text("light signs of use")
            await pw_expect(agent.locator(tid("grading-model"))).to_contain_text("confident")
            model_event = agent.locator(f'{tid("timeline-event")}[data-type="grading.model_view"]')
            await pw_expect(model_event).to_contain_text("Model's view of the video")
            await pw_expect(model_event).to_contain_text(re.compile(r"Grade [ABCD] · \d+%"))
            await agent.screenshot(path=str(ARTIFACTS / "e2e-case-grading.png"), full_page=True)
        finally:
            await browser.close()

    stored = await get_case(base_url, live_service.admin_token, case_id)
    grading = stored["case"]["grading"]
    assert grading["source"] == "override"
    assert grading["final_grade"] == "C"
    assert grading["override"] == {"grade": "C", "reason": "Scuffed hinge seen on the video"}
    assert grading["derived"]["grade"] == "B"
    assert grading["model"]["grade"] in {"A", "B", "C", "D"}
    assert grading["model"]["frames"]["analysed"] > 0
    assert grading["resale_channel"]["name"] == "live_social"
    assert not errors, "errors in the pages:\n" + "\n".join(errors)
