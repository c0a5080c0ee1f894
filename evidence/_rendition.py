"""An MP4 rendition of a recorded clip (VP8 in WebM, H.264 in Matroska), for the copy that
carries content credentials: C2PA signs MP4 but not WebM or Matroska. H.264 is copied packet
for packet; VP8 and VP9 are re-encoded to H.264; the sound goes to AAC. The original is not
touched: the rendition's assertion names it and its SHA-256."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av

__all__ = ["RENDERED", "mp4_rendition"]

#: The recorded containers a rendition is made of.
RENDERED = frozenset({".webm", ".mkv"})


def mp4_rendition(source: Path, dest: Path) -> Path:
    """Blocking: write ``source`` as MP4 at ``dest`` (raises ``av.FFmpegError`` or
    ``ValueError`` for a file that cannot be read)."""
    with av.open(str(source)) as src, av.open(str(dest), "w", format="mp4") as out:
        video_in = next((s for s in src.streams.video), None)
        if video_in is None:
            raise ValueError(f"{source.name} has no video")
        audio_in = next((s for s in src.streams.audio), None)
        copy_video = video_in.codec_context.name == "h264"
        video_out: Any
        if copy_video:
            video_out = out.add_stream_from_template(video_in)
        else:
            rate = video_in.average_rate or video_in.guessed_rate or 30
            video_out = out.add_stream("libx264", rate=rate)
            video_out.width = video_in.codec_context.width
            video_out.height = video_in.codec_context.height
            video_out.pix_fmt = "yuv420p"
            video_out.options = {"preset": "veryfast", "crf": "18"}
        audio_out: Any = None
        if audio_in is not None:
            audio_out = out.add_stream("aac", rate=48000)
            audio_out.layout = "stereo"
        streams = [video_in] + ([audio_in] if audio_in is not None else [])
        for packet in src.demux(*streams):
            if packet.stream is video_in:
                if copy_video:
                    if packet.dts is None:
                        continue
                    packet.stream = video_out
                    out.mux(packet)
                else:
                    for frame in packet.decode():
                        if not isinstance(frame, av.VideoFrame):
                            continue
                        frame.pts = None
                        for encoded in video_out.encode(frame):
                            out.mux(encoded)
            elif audio_out is not None:
                for frame in packet.decode():
                    if not isinstance(frame, av.AudioFrame):
                        continue
                    frame.pts = None
                    for encoded in audio_out.encode(frame):
                        out.mux(encoded)
        if not copy_video:
            for encoded in video_out.encode():
                out.mux(encoded)
        if audio_out is not None:
            for encoded in audio_out.encode():
                out.mux(encoded)
    return dest
