"""An encoder publishing over WHIP with FFmpeg's own WHIP muxer (through PyAV): numbered H.264
frames (libx264, constrained baseline, no B-frames) and an Opus tone, paced in real time.

Run in its own process (``python -m tests.fakes.whip_publisher URL ...``): the muxer does its
HTTP exchange and ICE/DTLS handshake inside blocking calls that hold the GIL, so a server in the
same process could not answer it. It prints ``started`` once the session is up and ``done <n>``
after closing the muxer (which sends DELETE to the session's ``Location``).

As measured (see DESIGN.md, interop facts), aiortc needs the client's DTLS certificate on P-256
(``--cert``/``--key``) and ``whip_flags=dtls_active``.
"""

from __future__ import annotations

import argparse
import datetime
import fractions
import math
import sys
import time
from pathlib import Path

import av
import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.fakes.camera import _draw_number

__all__ = ["make_p256_certificate", "publish"]

WIDTH, HEIGHT, FPS = 640, 360, 15
SAMPLE_RATE, AUDIO_FRAME = 48_000, 960


def make_p256_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed P-256 certificate and key for the encoder's DTLS (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "whip-test-encoder")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "whip-cert.pem", directory / "whip-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _picture(number: int) -> av.VideoFrame:
    yuv = np.empty((HEIGHT * 3 // 2, WIDTH), dtype=np.uint8)
    yuv[:HEIGHT] = 110
    yuv[HEIGHT:] = 128
    yuv[HEIGHT // 3 : HEIGHT * 2 // 3, WIDTH // 4 : WIDTH * 3 // 4] = 170
    _draw_number(yuv[:HEIGHT], number & 0xFFFF)
    frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
    frame.pts = number
    frame.time_base = fractions.Fraction(1, FPS)
    return frame


def _tone(index: int) -> av.AudioFrame:
    start = index * AUDIO_FRAME
    t = np.arange(start, start + AUDIO_FRAME) / SAMPLE_RATE
    wave = (np.sin(2 * math.pi * 440.0 * t) * 0.3 * 32767).astype(np.int16)
    frame = av.AudioFrame.from_ndarray(
        np.repeat(wave, 2).reshape(1, -1), format="s16", layout="stereo"
    )
    frame.sample_rate = SAMPLE_RATE
    frame.pts = start
    frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
    return frame


def publish(url: str, token: str | None, seconds: float, cert: Path, key: Path) -> int:
    """Publish for ``seconds``; returns the number of video frames sent."""
    options = {
        "cert_file": str(cert),
        "key_file": str(key),
        "whip_flags": "dtls_active",
        # The WHIP muxer is marked experimental in FFmpeg 8.
        "strict": "experimental",
    }
    if token is not None:
        options["authorization"] = token
    out = av.open(url, "w", format="whip", options=options)
    video = out.add_stream(
        "libx264",
        rate=FPS,
        options={
            "profile": "baseline",
            "bf": "0",
            "preset": "ultrafast",
            "tune": "zerolatency",
            "g": str(FPS),
        },
    )
    video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    audio = out.add_stream("libopus", rate=SAMPLE_RATE)
    audio.layout = "stereo"
    sent = audio_index = 0
    began = time.monotonic()
    try:
        while time.monotonic() - began < seconds:
            for packet in video.encode(_picture(sent)):
                out.mux(packet)
            if sent == 0:
                print("started", flush=True)
            sent += 1
            while audio_index * AUDIO_FRAME < sent * SAMPLE_RATE // FPS:
                for packet in audio.encode(_tone(audio_index)):
                    out.mux(packet)
                audio_index += 1
            time.sleep(max(0.0, began + sent / FPS - time.monotonic()))
    finally:
        out.close()
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--token")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    args = parser.parse_args()
    try:
        sent = publish(args.url, args.token, args.seconds, args.cert, args.key)
    except av.FFmpegError as exc:
        print(f"failed {exc}", flush=True)
        sys.exit(1)
    print(f"done {sent}", flush=True)


if __name__ == "__main__":
    main()
