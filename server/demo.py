"""``inspectd serve --demo``: a demo agent and a demo return case, so a newcomer sees a call
within a minute of ``make run``."""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from aiohttp import web

from server.app import STATE_KEY
from server.cases import CaseKind, NewCase
from signaling import Role

__all__ = ["seed_demo"]

logger = logging.getLogger(__name__)

DEMO_FILE = "demo.json"
DEMO_USERNAME = "agent"
DEMO_ORDER = "DEMO-1001"
OPEN_STATES = ("created", "waiting", "in_call")


def _read(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def _write(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)


async def seed_demo(app: web.Application) -> list[str]:
    """Create what is missing of the demo and return the lines to print."""
    state = app[STATE_KEY]
    settings = state.settings
    path = settings.data_dir / DEMO_FILE
    demo = _read(path)
    if "password" not in demo:
        demo["username"] = DEMO_USERNAME
        demo["password"] = secrets.token_urlsafe(9)
        await state.accounts.create_user(
            DEMO_USERNAME, demo["password"], name="Demo Agent", role=Role.AGENT
        )
        _write(path, demo)
        logger.info("demo agent created")
    case = await state.cases.get_case(str(demo.get("case_id", "")))
    if case is None or case.state.value not in OPEN_STATES:
        case = await state.cases.create(
            NewCase(
                kind=CaseKind.RETURN,
                customer_name="Demo Customer",
                customer_contact="demo@example.com",
                order_id=DEMO_ORDER,
                sku="HEADPHONES-BT-200",
                reason="Arrived with a scratched ear cup",
                tracking_number="1Z999AA10123456784",
            ),
            actor="demo",
        )
        demo["case_id"] = case.id
        _write(path, demo)
    link = state.accounts.issue_join_token(case.id)
    await state.cases.note_join_link(case.id, actor="demo", expires_at=link.expires_at)
    base = settings.base_url
    return [
        "",
        "Demo ready. Open the two links in two browser windows:",
        f"  Agent console : {base}/agent   (log in as {demo['username']} / {demo['password']})",
        f"  Customer link : {base}/join#t={link.token}",
        "  (On a phone, run with --tls-self-signed --host 0.0.0.0: cameras need HTTPS.)",
        "",
    ]
