"""The case page's "What was said" panel in real Chromium: segments captioned in a call (handed
to the running service's captions sink, as its speech pipeline hands them on, so they are kept
in the case's timeline by the real case service) are listed oldest first, each with who spoke,
the language, the words as said and, for speech that was not English, the English translation;
a caption's words are shown as text, never as markup. A screenshot goes to ``test-artifacts/``.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest
from playwright.async_api import async_playwright
from playwright.async_api import expect as pw_expect

from inference import Caption, Speaker
from signaling import RoomId
from tests.conftest import LiveService
from tests.e2e._browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    DESK,
    WAIT_MS,
    create_case,
    log_in,
    new_page,
    tid,
)

pytestmark = pytest.mark.e2e

#: What was said, oldest first: (role, name, language, words, English or None).
SAID = (
    ("customer", "Mia Becker", "de", "Die Schachtel kam zerdrückt an.", "The box arrived crushed."),
    ("agent", "Alex Agent", "en", "Please show me the label on the box.", None),
    (
        "customer",
        "Mia Becker",
        "de",
        "Das Etikett ist <b>nass</b> geworden.",
        "The label got <i>wet</i>.",
    ),
)


async def _file_transcript(live: LiveService, case_id: str) -> None:
    """Each segment through the service's captions sink, as the pipeline delivers a caption:
    kept with the case (``transcript.segment`` in its timeline) and sent to the room."""
    captions = live.state.captions
    assert captions is not None, "captions are on in this service"
    room = str(RoomId.case(case_id))
    # Said in the call, after the case was opened.
    start = time.time()
    for index, (role, name, language, text, english) in enumerate(SAID):
        speaker = Speaker(
            room_id=room,
            participant_id=f"p-{role}",
            role=role,
            name=name,
            model="english" if role == "agent" else "main",
            language=language,
            translate=english is not None,
        )
        await captions.caption_ready(
            Caption(
                segment_id=f"p-{role}#{index}",
                speaker=speaker,
                started_at=start + 2.0 * index,
                ended_at=start + 2.0 * index + 1.5,
                language=language,
                text=text,
                translation=english,
                model="base" if role == "customer" else "tiny.en",
                latency_s=0.8,
                compute_s=0.3,
            )
        )


async def _lines(page: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = await page.eval_on_selector_all(
        tid("transcript-line"),
        """(items) => items.map((el) => ({
            role: el.dataset.role,
            language: el.dataset.language,
            speaker: el.querySelector('.transcript-meta strong')?.textContent ?? '',
            badge: el.querySelector('.caption-lang')?.textContent ?? '',
            badgeTitle: el.querySelector('.caption-lang')?.title ?? '',
            time: el.querySelector('.transcript-meta time')?.textContent ?? '',
            text: el.querySelector('[data-testid="transcript-text"]')?.textContent ?? '',
            textLang: el.querySelector('[data-testid="transcript-text"]')?.lang ?? '',
            translation:
              el.querySelector('[data-testid="transcript-translation"]')?.textContent ?? null,
            markup: el.querySelectorAll('b, i').length,
        }))""",
    )
    return result


async def test_the_case_page_shows_what_was_said_with_its_translation(
    live_service: LiveService,
) -> None:
    base_url = live_service.base_url.rstrip("/")
    created = await create_case(
        base_url, live_service.admin_token, customer_locale="de", customer_name="Mia Becker"
    )
    case_id = str(created["case"]["id"])
    await _file_transcript(live_service, case_id)
    # The service kept them: the transcript API answers them, oldest first.
    async with (
        aiohttp.ClientSession(headers=live_service.headers()) as http,
        http.get(f"{base_url}/api/cases/{case_id}/transcript") as response,
    ):
        assert response.status == 200, await response.text()
        stored = await response.json()
    assert [segment["text"] for segment in stored["segments"]] == [said[3] for said in SAID]

    errors: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            _, agent = await new_page(browser, errors, **DESK)
            await log_in(agent, base_url, live_service.agent_username, live_service.agent_password)
            await agent.goto(f"{base_url}/agent/cases/{case_id}")
            panel = agent.locator(tid("case-transcript"))
            await pw_expect(panel.locator(tid("transcript-line"))).to_have_count(
                len(SAID), timeout=WAIT_MS
            )
            await pw_expect(panel.locator(tid("transcript-state"))).to_have_text("Captions on")
            await pw_expect(panel.locator(tid("transcript"))).to_have_attribute(
                "data-count", str(len(SAID))
            )
            lines = await _lines(agent)
            for line, (role, name, language, text, english) in zip(lines, SAID, strict=True):
                assert line["role"] == role and line["language"] == language, line
                assert line["speaker"] == name, line
                assert line["badge"] == language.upper(), line
                assert line["badgeTitle"] == {"de": "German", "en": "English"}[language], line
                assert line["time"] not in ("", "—"), line
                assert line["text"] == text and line["textLang"] == language, line
                assert line["translation"] == english, line
                # Words as text: the "<b>" a caption might hold is not markup on the page.
                assert line["markup"] == 0, line
            # English speech has no translation line; the German lines carry theirs.
            assert await panel.locator(tid("transcript-translation")).count() == 2
            # The timeline has each segment too, as said.
            said = agent.locator(f'{tid("timeline-event")}[data-type="transcript.segment"]')
            await pw_expect(said).to_have_count(len(SAID), timeout=WAIT_MS)
            await pw_expect(said.first).to_contain_text("(DE)")
            await pw_expect(said.first).to_contain_text("English: “The box arrived crushed.”")
            await panel.scroll_into_view_if_needed()
            await agent.screenshot(path=str(ARTIFACTS / "e2e-case-transcript.png"), full_page=True)
        finally:
            await browser.close()
    assert errors == []
