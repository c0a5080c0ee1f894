"""Container health check: ``GET /healthz`` on this node's own listener.

Exit status 0 when it answers 200, 1 otherwise (Docker ``HEALTHCHECK``, compose
``healthcheck``). The address, port and scheme come from the same ``INSPECT_*`` settings the
service reads, so the check follows ``INSPECT_PORT``, ``INSPECT_HOST`` and TLS (``--cert`` /
``INSPECT_TLS_CERT`` or a self-signed certificate: the check trusts its own listener).
"""

from __future__ import annotations

import ssl
import sys
import urllib.error
import urllib.request

from server.settings import SettingsError, load_settings

PATH = "/healthz"
TIMEOUT_S = 5.0


def health_url() -> str:
    settings = load_settings()
    host = settings.host
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if settings.tls else "http"
    return f"{scheme}://{host}:{settings.port}{PATH}"


def main() -> int:
    try:
        url = health_url()
    except SettingsError as exc:
        print(f"healthcheck: invalid setting {exc}", file=sys.stderr)
        return 1
    # Straight to the local listener: no HTTP(S)_PROXY, no certificate check of our own listener.
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if url.startswith("https:"):
        handlers.append(urllib.request.HTTPSHandler(context=ssl._create_unverified_context()))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(url, timeout=TIMEOUT_S) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"healthcheck: {url}: HTTP {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
