"""A local RTSP camera for the RTSP pull tests: Debian's GStreamer RTSP server in a subprocess.

The server side of this file runs under the *system* Python (``/usr/bin/python3`` with
``python3-gi`` and the GStreamer introspection data), never the project's virtual environment,
so it imports nothing but ``gi`` and the standard library. The camera numbers its frames the way
:class:`tests.fakes.camera.NumberedVideoTrack` does (a band of black and white blocks that
:func:`tests.fakes.camera.read_frame_number` reads back), encodes them with ``x264enc`` or
``x265enc`` and serves them at ``rtsp://127.0.0.1:<port>/cam``, optionally with Basic
authentication, an audio track, a copy of the exact encoded video bytes written to a file, and
``scenes``: what the camera looks at, frame by frame (a packing bench with parcel labels, for
station tests).

The test side is :class:`RtspCamera`: start it (a free port, or the port of a camera that was
stopped, to play a camera that reboots), read its ``url``, stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
from pathlib import Path
from urllib.parse import quote

__all__ = ["PACKAGES", "RtspCamera", "Scene", "free_port"]

#: What the camera shows for a number of frames: a luma picture (rows of 0-255 values, pasted in
#: the middle of an empty bench; e.g. a barcode label) or ``None`` for the empty bench. Frames
#: after the last scene show the empty bench.
Scene = tuple[int, "list[bytes] | None"]

SYSTEM_PYTHON = "/usr/bin/python3"
_HAVE_SYSTEM_PYTHON = os.path.exists(SYSTEM_PYTHON)
#: The Debian packages this camera needs (the Makefile's ``chromium`` target installs them).
PACKAGES = (
    "python3-gi",
    "gir1.2-gst-rtsp-server-1.0",
    "gstreamer1.0-plugins-base",
    "gstreamer1.0-plugins-good",
    "gstreamer1.0-plugins-ugly",
    "gstreamer1.0-plugins-bad",
    "gstreamer1.0-rtsp",
)
#: GStreamer element -> the Debian package that ships it.
ELEMENTS = {
    "appsrc": "gstreamer1.0-plugins-base",
    "audioconvert": "gstreamer1.0-plugins-base",
    "opusenc": "gstreamer1.0-plugins-base",
    "rtph264pay": "gstreamer1.0-plugins-good",
    "rtph265pay": "gstreamer1.0-plugins-good",
    "rtpopuspay": "gstreamer1.0-plugins-good",
    "rtpmp4gpay": "gstreamer1.0-plugins-good",
    "x264enc": "gstreamer1.0-plugins-ugly",
    "x265enc": "gstreamer1.0-plugins-bad",
    "voaacenc": "gstreamer1.0-plugins-bad",
}

# Same geometry as tests/fakes/camera.py: 20 cells (white, black, 16 bits, parity, black).
_CELLS = 20
_BITS = 16
_WHITE, _BLACK = 235, 16

VIDEO = {
    # Constrained baseline, no B-frames: forwarded as it is.
    "h264": (
        "x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bitrate=800"
        " ! video/x-h264,profile=constrained-baseline",
        "rtph264pay",
    ),
    # High profile with B-frames (reordered): must be transcoded.
    "h264-bframes": (
        "x264enc speed-preset=veryfast bframes=2 b-adapt=false key-int-max={gop} bitrate=800"
        " rc-lookahead=2 sync-lookahead=0 ! video/x-h264,profile=high",
        "rtph264pay",
    ),
    # H.265 (with B-frames): must be transcoded.
    "h265": (
        "x265enc speed-preset=ultrafast key-int-max={gop} bitrate=800 ! video/x-h265",
        "rtph265pay",
    ),
}
AUDIO = {
    "opus": "opusenc ! rtpopuspay name=pay1 pt=97",
    "aac": "voaacenc ! rtpmp4gpay name=pay1 pt=97",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- test side ----------------------------------------------------------------------------------


class RtspCamera:
    """The GStreamer RTSP camera as a subprocess (see the module docstring)."""

    def __init__(
        self,
        *,
        video: str = "h264",
        audio: str | None = None,
        port: int | None = None,
        user: str | None = None,
        password: str | None = None,
        width: int = 320,
        height: int = 240,
        fps: int = 15,
        gop: int = 15,
        dump: Path | None = None,
        scenes: list[Scene] | None = None,
    ) -> None:
        self.video, self.audio = video, audio
        self.scenes = scenes
        self.port = port or free_port()
        self.user, self.password = user, password
        self.width, self.height, self.fps, self.gop = width, height, fps, gop
        self.dump = dump
        self._process: asyncio.subprocess.Process | None = None
        self._stderr: asyncio.Task[bytes] | None = None

    def url(self, user: str | None = None, password: str | None = None) -> str:
        """The camera's URL, with the given credentials (default: the camera's own)."""
        user = self.user if user is None else user
        password = self.password if password is None else password
        auth = ""
        if user is not None:
            auth = f"{quote(user, safe='')}:{quote(password or '', safe='')}@"
        return f"rtsp://{auth}127.0.0.1:{self.port}/cam"

    async def start(self, ready_within_s: float = 10.0) -> None:
        """Start serving and return once the server listens."""
        if not _HAVE_SYSTEM_PYTHON:
            raise AssertionError(
                f"{SYSTEM_PYTHON} is missing; install the Debian packages: {' '.join(PACKAGES)}"
            )
        args = [
            SYSTEM_PYTHON,
            __file__,
            "--port",
            str(self.port),
            "--video",
            self.video,
            "--size",
            f"{self.width}x{self.height}",
            "--fps",
            str(self.fps),
            "--gop",
            str(self.gop),
        ]
        if self.audio:
            args += ["--audio", self.audio]
        if self.user is not None:
            args += ["--user", self.user, "--password", self.password or ""]
        if self.dump is not None:
            args += ["--dump", str(self.dump)]
        scenes_file = None
        if self.scenes is not None:
            scenes_file = _write_scenes(self.scenes)
            args += ["--scenes", scenes_file]
        self._process = await asyncio.create_subprocess_exec(
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        assert self._process.stdout is not None and self._process.stderr is not None
        self._stderr = asyncio.create_task(self._process.stderr.read(), name="rtsp-camera-err")
        try:
            async with asyncio.timeout(ready_within_s):
                line = await self._process.stdout.readline()
        except TimeoutError:
            line = b""
        finally:
            if scenes_file is not None:
                os.unlink(scenes_file)  # read at start
        if not line.startswith(b"READY"):
            await self.stop()
            errors = (await self._stderr if self._stderr else b"").decode(errors="replace")
            raise AssertionError(
                "the GStreamer RTSP camera did not start "
                f"(Debian packages needed: {' '.join(PACKAGES)}):\n{errors}"
            )

    async def stop(self) -> None:
        """Stop serving (the TCP connections close, as when a camera loses power)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)  # in case it was frozen
                process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(5):
                    await process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if self._stderr is not None:
            await self._stderr

    def freeze(self) -> None:
        """Stop the server process where it is: connections stay open, nothing more is sent
        (a camera that hangs)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    async def __aenter__(self) -> RtspCamera:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _write_scenes(scenes: list[Scene]) -> str:
    """Scenes as a file for the server process: per scene a line ``<frames> <rows> <width>``,
    then the picture's bytes (none for the empty bench, where rows and width are 0)."""
    import tempfile

    with tempfile.NamedTemporaryFile("wb", suffix=".scenes", delete=False) as out:
        for frames, picture in scenes:
            rows = picture or []
            width = len(rows[0]) if rows else 0
            out.write(f"{frames} {len(rows)} {width}\n".encode())
            out.write(b"".join(rows))
        return out.name


# -- server side (system Python, GStreamer) -----------------------------------------------------


def _read_scenes(path: str) -> list[Scene]:
    scenes: list[Scene] = []
    with open(path, "rb") as source:
        while header := source.readline():
            frames, rows, width = (int(n) for n in header.split())
            data = source.read(rows * width)
            picture = [data[r * width : (r + 1) * width] for r in range(rows)] if rows else None
            scenes.append((frames, picture))
    return scenes


def _band_row(number: int, width: int) -> bytes:
    bits = [(number >> (_BITS - 1 - i)) & 1 for i in range(_BITS)]
    cells = [1, 0, *bits, sum(bits) & 1, 0]
    cell_w = width // _CELLS
    row = bytearray([110]) * width
    for i, bit in enumerate(cells):
        row[i * cell_w : (i + 1) * cell_w] = bytes([_WHITE if bit else _BLACK]) * cell_w
    return bytes(row)


class _Frames:
    """Numbered I420 frames: a grey picture with an orange box and the number band on top, or,
    with scenes, a grey bench with each scene's picture in the middle."""

    def __init__(self, width: int, height: int, scenes: list[Scene] | None = None) -> None:
        self.width, self.height = width, height
        self.band_h = max(16, height // 8)
        self._scenes: list[tuple[int, bytes]] = []
        if scenes is not None:
            bench = bytes([110]) * (width * (height - self.band_h))
            self._chroma = bytes([128]) * (width * height // 2)
            self._below = bench
            end = 0
            for frames, picture in scenes:
                end += frames
                self._scenes.append((end, self._paste(bench, picture)))
            return
        y = bytearray([110]) * (width * height)
        top, bottom, left, right = height * 3 // 8, height * 7 // 8, width // 4, width * 3 // 4
        for row in range(top, bottom):
            y[row * width + left : row * width + right] = bytes([160]) * (right - left)
        cw, ch = width // 2, height // 2
        u = bytearray([128]) * (cw * ch)
        v = bytearray([128]) * (cw * ch)
        for row in range(top // 2, bottom // 2):
            u[row * cw + left // 2 : row * cw + right // 2] = bytes([80]) * ((right - left) // 2)
            v[row * cw + left // 2 : row * cw + right // 2] = bytes([190]) * ((right - left) // 2)
        self._below = bytes(y[self.band_h * width :])
        self._chroma = bytes(u + v)

    def _paste(self, bench: bytes, picture: list[bytes] | None) -> bytes:
        if not picture:
            return bench
        width, rows = self.width, self.height - self.band_h
        y = bytearray(bench)
        top, left = (rows - len(picture)) // 2, (width - len(picture[0])) // 2
        if top < 0 or left < 0:
            raise ValueError(f"a scene's picture is larger than {width}x{rows}")
        for i, row in enumerate(picture):
            start = (top + i) * width + left
            y[start : start + len(row)] = row
        return bytes(y)

    def frame(self, number: int) -> bytes:
        below = self._below
        for end, picture in self._scenes:
            if number < end:
                below = picture
                break
        return _band_row(number & 0xFFFF, self.width) * self.band_h + below + self._chroma


def _tone() -> bytes:
    """20 ms of a 400 Hz tone, 48 kHz mono s16le: exactly 8 periods, so it loops seamlessly."""
    import math
    import struct

    samples = [int(9000 * math.sin(2 * math.pi * 400 * i / 48_000)) for i in range(960)]
    return struct.pack("<960h", *samples)


def _serve(options: argparse.Namespace) -> int:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    encoder, payloader = VIDEO[options.video]
    needed = ["appsrc", encoder.split()[0], payloader]
    if options.audio:
        needed += ["audioconvert", *(part.split()[0] for part in AUDIO[options.audio].split(" ! "))]
    missing = [e for e in needed if Gst.ElementFactory.find(e) is None]
    if missing:
        packages = sorted({ELEMENTS.get(e, "gstreamer1.0-plugins-*") for e in missing})
        print(f"missing GStreamer elements {missing}: install {packages}", file=sys.stderr)
        return 2

    width, height = (int(n) for n in options.size.split("x"))
    fps, gop = options.fps, options.gop
    frames = _Frames(width, height, _read_scenes(options.scenes) if options.scenes else None)
    caps = f"video/x-raw,format=I420,width={width},height={height},framerate={fps}/1"
    # Live appsrcs, not test sources: a seekable source makes the server fail FFmpeg's PLAY
    # (it sends a Range header, which the server turns into a seek of the shared pipeline).
    launch = (
        f"appsrc name=video is-live=true format=time do-timestamp=true caps={caps}"
        f" ! queue ! {encoder.format(gop=gop)}"
    )
    if options.dump:
        launch += (
            f" ! tee name=t ! queue ! {payloader} name=pay0 pt=96 config-interval=-1"
            f" t. ! queue ! filesink location={options.dump} buffer-mode=unbuffered"
        )
    else:
        launch += f" ! {payloader} name=pay0 pt=96 config-interval=-1"
    if options.audio:
        audio_caps = "audio/x-raw,format=S16LE,layout=interleaved,rate=48000,channels=1"
        launch += (
            f" appsrc name=audio is-live=true format=time do-timestamp=true caps={audio_caps}"
            f" ! queue ! audioconvert ! {AUDIO[options.audio]}"
        )
    tone = _tone()

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f"( {launch} )")
    factory.set_shared(True)

    def configure(_factory: object, media: object) -> None:
        # One media per set of clients; its frames are numbered from 0.
        element = media.get_element()  # type: ignore[attr-defined]
        video = element.get_by_name_recurse_up("video")
        audio = element.get_by_name_recurse_up("audio")
        counter = [0]

        def push_video() -> bool:
            buffer = Gst.Buffer.new_wrapped(frames.frame(counter[0]))
            buffer.duration = Gst.SECOND // fps
            counter[0] += 1
            return bool(video.emit("push-buffer", buffer) == Gst.FlowReturn.OK)

        def push_audio() -> bool:
            buffer = Gst.Buffer.new_wrapped(tone)
            buffer.duration = Gst.SECOND // 50
            return bool(audio.emit("push-buffer", buffer) == Gst.FlowReturn.OK)

        GLib.timeout_add(max(1, 1000 // fps), push_video)
        if audio is not None:
            GLib.timeout_add(20, push_audio)

    factory.connect("media-configure", configure)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(options.port))
    if options.user is not None:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "camera-user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(options.user, options.password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_role_from_structure(
            Gst.Structure.from_string(
                "camera-user, media.factory.access=(boolean)true,"
                " media.factory.construct=(boolean)true"
            )[0]
        )
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory("/cam", factory)
    if not server.attach(None):
        print(f"cannot listen on 127.0.0.1:{options.port}", file=sys.stderr)
        return 3
    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, lambda: loop.quit() or False)
    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--video", choices=sorted(VIDEO), default="h264")
    parser.add_argument("--audio", choices=sorted(AUDIO))
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--gop", type=int, default=15)
    parser.add_argument("--user")
    parser.add_argument("--password", default="")
    parser.add_argument("--dump")
    parser.add_argument("--scenes")
    return _serve(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
