"""deploy/Caddyfile, as Caddy itself adapts and validates it: TLS for the public host, the
WebSocket and WHIP paths proxied, metrics and the health check kept off the internet, link
tokens, cookies and bearer tokens kept out of its logs. Then the same config run by Caddy on
127.0.0.1 in front of a stand-in upstream, to show what it logs and what it passes on."""

from __future__ import annotations

import http.client
import http.server
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ._deploy import caddy_config, env_example, require_tool, walk

JOIN_TOKEN = "join-token-7f3a9c"
CAMERA_TOKEN = "camera-token-1b2d4e"
REFERER_TOKEN = "referer-token-5c6d7e"
COOKIE = "inspect_session=cookie-value-8a9b"
BEARER = "Bearer whip-token-2f4e6a"
SET_COOKIE = "inspect_session=set-cookie-value-3c5d"
SECRETS = [JOIN_TOKEN, CAMERA_TOKEN, REFERER_TOKEN, "cookie-value", "whip-token", "set-cookie"]
#: The same two paths in the spellings a client may send; none may reach inspectd.
PRIVATE = ["/metrics", "/healthz", "/metrics/", "/METRICS", "/%6Detrics", "//metrics"]
PRIVATE += ["/./metrics", "/static/../metrics", "/Healthz", "/healthz/", "/%68ealthz"]


def _public_routes() -> list[dict[str, Any]]:
    servers = caddy_config()["apps"]["http"]["servers"]
    public = [
        route
        for server in servers.values()
        if ":443" in server["listen"]
        for route in server["routes"]
    ]
    assert public, "no HTTPS server in the Caddyfile"
    return public


def _handlers_for(path: str) -> list[str]:
    """The handlers (subroutes flattened) of the route whose path matcher names ``path``."""
    for node in walk(_public_routes()):
        if not isinstance(node, dict) or "handle" not in node:
            continue
        paths = [p for matcher in node.get("match", []) for p in matcher.get("path", [])]
        if path in paths:
            return [
                handler["handler"]
                for handler in walk(node["handle"])
                if isinstance(handler, dict) and handler.get("handler") not in (None, "subroute")
            ]
    raise AssertionError(f"the Caddyfile has no route for {path}")


def test_caddy_serves_the_public_host_over_https() -> None:
    hosts = {
        host
        for route in _public_routes()
        for matcher in route.get("match", [])
        for host in matcher.get("host", [])
    }
    assert hosts == {env_example()["PUBLIC_HOST"]}


def test_websocket_and_whip_are_proxied_and_metrics_and_health_are_not() -> None:
    assert _handlers_for("/ws") == ["reverse_proxy"]
    assert _handlers_for("/whip/*") == ["reverse_proxy"]
    for path in ("/metrics", "/metrics/*", "/healthz", "/healthz/*"):
        assert _handlers_for(path) == ["static_response"], path


def test_every_log_masks_link_tokens_and_drops_credentials() -> None:
    logs = caddy_config()["logging"]["logs"]
    assert "default" in logs, "error entries go to the default log: it needs the filter too"
    access = [
        name for name, log in logs.items() if "http.log.access.log0" in log.get("include", [])
    ]
    assert access, "the site has no access log"
    for name, log in logs.items():
        encoder = log["encoder"]
        assert encoder["format"] == "filter", name
        fields = encoder["fields"]
        for header in ("uri", "headers>Referer"):
            rule = fields[f"request>{header}"]
            assert rule["filter"] == "regexp" and rule["value"] == "/${1}/***", (name, rule)
        for dropped in ("request>headers>Cookie", "request>headers>Authorization"):
            assert fields[dropped] == {"filter": "delete"}, (name, dropped)
        assert fields["resp_headers>Set-Cookie"] == {"filter": "delete"}, name


def test_the_admin_api_is_off() -> None:
    assert caddy_config()["admin"] == {"disabled": True}


@dataclass
class _Upstream:
    """A stand-in for inspectd on 127.0.0.1: records the paths it is asked for and answers
    200, except /camera/..., where it closes the connection unanswered so that Caddy logs an
    upstream error."""

    paths: list[str] = field(default_factory=list)
    port: int = 0


@pytest.fixture
def upstream() -> Iterator[_Upstream]:
    record = _Upstream()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            record.paths.append(self.path)
            if self.path.startswith("/camera/"):
                self.close_connection = True
                return
            self.send_response(200)
            self.send_header("Set-Cookie", SET_COOKIE)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    record.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield record
    finally:
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _loopback_config(upstream_port: int, port: int) -> dict[str, Any]:
    """The adapted Caddyfile with its routes and logs untouched, served over plain HTTP on
    127.0.0.1:port (no certificate, no ACME) in front of the stand-in upstream."""
    config = caddy_config()
    servers = config["apps"]["http"]["servers"]
    (public,) = [name for name, server in servers.items() if ":443" in server["listen"]]
    config["apps"]["http"]["servers"] = {public: servers[public]}
    servers[public]["listen"] = [f"127.0.0.1:{port}"]
    servers[public]["automatic_https"] = {"disable": True}
    config["apps"].pop("tls", None)
    for node in walk(config):
        if isinstance(node, dict) and node.get("handler") == "reverse_proxy":
            node["upstreams"] = [{"dial": f"127.0.0.1:{upstream_port}"}]
    return config


@pytest.fixture
def caddy(upstream: _Upstream, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """Caddy with the loopback config: (port, file with everything it logged)."""
    binary = require_tool("caddy")
    port = _free_port()
    config = tmp_path / "caddy.json"
    config.write_text(json.dumps(_loopback_config(upstream.port, port)), encoding="utf-8")
    log = tmp_path / "caddy.log"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    with log.open("wb") as output:
        process = subprocess.Popen(
            [binary, "run", "--config", str(config)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError(f"caddy did not start:\n{log.read_text()}") from None
                    time.sleep(0.05)
            yield port, log
        finally:
            process.terminate()
            process.wait(timeout=10)


def _get(port: int, path: str, **headers: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": env_example()["PUBLIC_HOST"], **headers})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _entries(log: Path) -> list[dict[str, Any]]:
    time.sleep(0.3)  # Caddy writes its log lines asynchronously
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line]


def test_link_tokens_and_credentials_never_reach_caddys_log(
    caddy: tuple[int, Path], upstream: _Upstream
) -> None:
    port, log = caddy
    headers = {"Referer": f"https://x/join/{REFERER_TOKEN}", "Cookie": COOKIE}
    assert _get(port, f"/join/{JOIN_TOKEN}", **headers, Authorization=BEARER) == 200
    assert _get(port, f"/camera/{CAMERA_TOKEN}?x=1", **headers) == 502
    assert upstream.paths == [f"/join/{JOIN_TOKEN}", f"/camera/{CAMERA_TOKEN}?x=1"]

    entries = _entries(log)
    text = log.read_text(encoding="utf-8")
    for secret in SECRETS:
        assert secret not in text, f"Caddy logged {secret}"
    uris = [(e["logger"], e["request"]["uri"]) for e in entries if "request" in e]
    assert ("http.log.access.log0", "/join/***") in uris
    assert ("http.log.access.log0", "/camera/***?x=1") in uris
    errors = [uri for logger, uri in uris if logger.startswith("http.log.error")]
    assert errors == ["/camera/***?x=1"], "the upstream failure is logged, token masked"
    referers = {
        r for e in entries for r in e.get("request", {}).get("headers", {}).get("Referer", [])
    }
    assert referers == {"https://x/join/***"}


def test_no_spelling_of_metrics_or_healthz_reaches_inspectd(
    caddy: tuple[int, Path], upstream: _Upstream
) -> None:
    port, _ = caddy
    answers = {path: _get(port, path) for path in PRIVATE}
    assert answers == dict.fromkeys(PRIVATE, 404)
    assert upstream.paths == []
    public = ["/", "/login", "/join/t", "/api/me", "/static/app.js", "/metricsx", "/healthzz"]
    assert {path: _get(port, path) for path in public} == dict.fromkeys(public, 200)
    assert upstream.paths == public
