"""A time-stamping authority on loopback for the tests: Debian's ``openssl ts`` signs the
replies (EC P-256 keys: ``openssl ts`` cannot sign with Ed25519), behind an aiohttp handler
that speaks RFC 3161 over HTTP. ``down = True`` makes it answer 503, as an outage would.
:meth:`LocalTsa.client` reaches it as the server does (an ``evidence.TimestampAuthority``)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from pathlib import Path

import aiohttp
from aiohttp import web

_EXTENSIONS = """
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[v3_tsa]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation
extendedKeyUsage = critical, timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""

# No "certs" line: with it openssl writes a SET OF certificates out of DER order, which strict
# parsers refuse; the reply then carries the TSA's certificate alone, the root comes apart.
_TSA_CONFIG = """
[tsa]
default_tsa = tsa_config1

[tsa_config1]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.crt
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_alg = sha256
"""


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


class LocalTsa:
    """``await tsa.start()`` makes the keys and certificates and serves ``tsa.url``."""

    def __init__(self) -> None:
        if shutil.which("openssl") is None:
            raise RuntimeError("openssl is not installed (Debian package openssl)")
        self._dir = Path(tempfile.mkdtemp(prefix="inspect-tsa-"))
        self._lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.down = False
        self.requests = 0

    @property
    def root_pem(self) -> bytes:
        return (self._dir / "ca.crt").read_bytes()

    def _make_keys(self) -> None:
        d = self._dir
        (d / "ext.cnf").write_text(_EXTENSIONS)
        (d / "tsa.cnf").write_text(_TSA_CONFIG.format(dir=d))
        (d / "serial").write_text("01\n")
        for key in ("ca.key", "tsa.key"):
            _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                     "-out", key, cwd=d)  # fmt: skip
        _openssl("req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", "3650",
                 "-subj", "/CN=inspectd test TSA root", "-extensions", "v3_ca",
                 "-config", "ext.cnf", "-out", "ca.crt", cwd=d)  # fmt: skip
        _openssl("req", "-new", "-key", "tsa.key", "-subj", "/CN=inspectd test TSA",
                 "-config", "ext.cnf", "-out", "tsa.csr", cwd=d)  # fmt: skip
        _openssl("x509", "-req", "-in", "tsa.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "3650", "-sha256", "-extfile", "ext.cnf",
                 "-extensions", "v3_tsa", "-out", "tsa.crt", cwd=d)  # fmt: skip

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.down:
            return web.Response(status=503, text="time-stamping authority down")
        if request.content_type != "application/timestamp-query":
            return web.Response(status=415)
        query = await request.read()
        async with self._lock:  # openssl rewrites its serial file
            with tempfile.TemporaryDirectory(dir=self._dir) as work:
                asked, answer = Path(work) / "q.tsq", Path(work) / "r.tsr"
                asked.write_bytes(query)
                proc = await asyncio.create_subprocess_exec(
                    "openssl", "ts", "-reply", "-queryfile", str(asked), "-config",
                    str(self._dir / "tsa.cnf"), "-out", str(answer), cwd=self._dir,
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
                )  # fmt: skip
                _, errors = await proc.communicate()
                if proc.returncode != 0 or not answer.exists():
                    return web.Response(status=500, text=errors.decode(errors="replace"))
                body = answer.read_bytes()
        return web.Response(body=body, content_type="application/timestamp-reply")

    async def start(self) -> LocalTsa:
        await asyncio.to_thread(self._make_keys)
        app = web.Application()
        app.router.add_post("/tsa", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/tsa"
        return self

    def client(self) -> TsaClient:
        return TsaClient(self.url)

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        shutil.rmtree(self._dir, ignore_errors=True)


class TsaError(Exception):
    """The authority did not answer with a reply."""


class TsaClient:
    """An RFC 3161 client over HTTP (``evidence.TimestampAuthority``), as the server's."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def timestamp(self, query: bytes) -> bytes:
        headers = {"Content-Type": "application/timestamp-query"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(self.url, data=query, headers=headers) as response,
        ):
            if response.status != 200:
                raise TsaError(f"the authority answered {response.status}")
            return await response.read()
