"""Run as a child process by test_recorder: publish a numbered camera into a MediaEngine and
record it until killed. Prints ``path``, then ``sent N`` lines."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from media import MediaConfig, MediaEngine
from tests.fakes.camera import (
    NumberedVideoTrack,
    client_accept,
    client_offer,
    client_pc,
    wait_connected,
)


async def main(directory: Path) -> None:
    engine = MediaEngine(MediaConfig(preroll_s=1.0, keyframe_interval_s=1.0))
    pc = client_pc()
    video = NumberedVideoTrack(320, 240, fps=15)
    pc.addTrack(video)
    await client_accept(pc, await engine.answer("room", "cam", await client_offer(pc)))
    await wait_connected(pc)
    while video.frames_sent < 20:  # noqa: ASYNC110 - the camera has no event to wait on
        await asyncio.sleep(0.05)
    handle = await engine.start_capture("room", directory, name="killed", preroll=False)
    print(handle.files[0], flush=True)
    while True:
        await asyncio.sleep(0.1)
        print("sent", video.frames_sent, flush=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
