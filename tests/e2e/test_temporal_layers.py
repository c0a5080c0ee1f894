"""Chromium sends its camera in three temporal layers (VP8 L1T3, asked for by the pages through
``scalabilityMode``); the server reads each frame's layer from its payload descriptor, forwards
every layer to a viewer whose link carries them, and has only the base layer decoded for the
grading sampler. The premise that makes leaving layers out safe is checked on Chromium's own
stream: its lower layers decode alone, with libvpx, to exactly the pictures they give inside
the whole stream."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from playwright.async_api import async_playwright

from media.keyframes import EncodedFrame
from media.source import TrackSource
from server.settings import Settings
from signaling import RoomId
from tests.conftest import LiveService
from tests.e2e._browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DESK,
    PHONE,
    assert_playing,
    create_case,
    log_in,
    new_page,
    start_call,
    tid,
)
from tests.waits import until

#: Frames of Chromium's stream kept for the decoding check (about 4 s at 30 fps).
KEEP = 120


@pytest.fixture
def service_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "var", port=0, shutdown_timeout_s=2.0, grading=True)


def _decode(frames: list[EncodedFrame]) -> list[np.ndarray]:
    decoder = av.CodecContext.create("vp8", "r")
    pictures: list[np.ndarray] = []
    for frame in frames:
        pictures += [p.to_ndarray(format="gray") for p in decoder.decode(av.Packet(frame.data))]
    return pictures


async def test_chromium_sends_three_temporal_layers_and_grading_decodes_only_the_base(
    live_service: LiveService,
) -> None:
    base_url = live_service.base_url.rstrip("/")
    created = await create_case(base_url, live_service.admin_token)
    case_id = created["case"]["id"]
    room = str(RoomId.case(case_id))
    media = live_service.state.media
    errors: list[str] = []
    kept: list[EncodedFrame] = []

    def keep(frame: EncodedFrame) -> None:
        if (kept or frame.keyframe) and len(kept) < KEEP:
            kept.append(frame)

    def video() -> TrackSource | None:
        return next((s for s in media.sources(room) if s.kind == "video"), None)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            _, agent = await new_page(browser, errors, **DESK)
            _, customer = await new_page(browser, errors, **PHONE)
            await log_in(agent, base_url, live_service.agent_username, live_service.agent_password)
            await start_call(agent, customer, str(created["join_url"]), case_id)
            await until(lambda: video() is not None, 20, "the customer's video")
            source = video()
            assert source is not None
            source.add_encoded_tap(keep)
            source.request_keyframe()
            await until(lambda: len(kept) >= KEEP, 30, "four seconds of the customer's video")
            await assert_playing(agent, tid("remote-video"))

            assert source.temporal_layers == 3
            assert {f.temporal_id for f in kept} == {0, 1, 2}
            # The agent's link is loopback: every layer reaches it, nothing is left out.
            (outlet,) = source.subscribers
            assert getattr(outlet, "layer_skipped", None) == 0
            # Grading decodes the base layer alone: about a quarter of the frames.
            assert source.decoded_frames > 0
            assert source.decoded_frames * 2 < source.frames, (source.decoded_frames, source.frames)
        finally:
            await browser.close()
    assert not errors, errors

    everything = _decode(kept)
    assert len(everything) == len(kept)
    for layers in ((0,), (0, 1)):
        indices = [i for i, f in enumerate(kept) if (f.temporal_id or 0) in layers]
        alone = _decode([kept[i] for i in indices])
        assert len(alone) == len(indices)
        for picture, i in zip(alone, indices, strict=True):
            assert np.array_equal(picture, everything[i]), f"frame {i} differs with {layers}"
