"""deploy/Caddyfile, as Caddy itself adapts and validates it: TLS for the public host, the
WebSocket and WHIP paths proxied, metrics kept off the internet."""

from __future__ import annotations

from typing import Any

from ._deploy import caddy_config, env_example, walk


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


def test_websocket_and_whip_are_proxied_and_metrics_are_not() -> None:
    assert _handlers_for("/ws") == ["reverse_proxy"]
    assert _handlers_for("/whip/*") == ["reverse_proxy"]
    assert _handlers_for("/metrics") == ["static_response"]


def test_the_admin_api_is_off() -> None:
    assert caddy_config()["admin"] == {"disabled": True}
