"""The self-signed certificate: SANs, private key file, reuse, and a real TLS handshake."""

from __future__ import annotations

import ipaddress
import ssl
import stat
from pathlib import Path

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from server.tls import local_names, self_signed_certificate, ssl_context


def _sans(cert_path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(name.value) for name in san}


def test_certificate_names_key_and_reuse(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path, ["inspect.lan", "192.168.1.20"])
    assert {"localhost", "127.0.0.1", "::1", "inspect.lan", "192.168.1.20"} <= _sans(cert)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    assert isinstance(loaded.public_key(), ec.EllipticCurvePublicKey)
    assert loaded.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    ipaddress.ip_address("192.168.1.20")

    first = cert.read_bytes()
    assert self_signed_certificate(tmp_path, ["inspect.lan"]) == (cert, key)
    assert cert.read_bytes() == first  # reused: nothing new to cover
    self_signed_certificate(tmp_path, ["new-name.lan"])
    assert cert.read_bytes() != first
    assert "new-name.lan" in _sans(cert)


def test_local_names_are_plain_strings() -> None:
    names = local_names()
    assert names and all(isinstance(name, str) and name for name in names)


async def test_tls_handshake(tmp_path: Path, unused_tcp_port: int) -> None:
    cert, key = self_signed_certificate(tmp_path, [])
    app = web.Application()

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hi")

    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    port = unused_tcp_port
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context(cert, key))
    await site.start()
    try:
        client_ctx = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession() as session:
            for host in ("localhost", "127.0.0.1"):
                async with session.get(f"https://{host}:{port}/", ssl=client_ctx) as response:
                    assert await response.text() == "hi"
    finally:
        await runner.cleanup()
