"""Claim deadlines of a case's carriers and marketplaces, from evidence's rule table."""

from __future__ import annotations

from pathlib import Path

from aiohttp import ClientSession

from server.app import running_service
from server.settings import Settings
from signaling import Role


async def test_claim_deadlines_show_on_the_case(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var", port=0, grading=False)
    async with running_service(settings) as service, ClientSession() as session:
        token, _ = await service.state.accounts.create_api_token("t", role=Role.ADMIN)
        headers = {"Authorization": f"Bearer {token}"}
        body = {
            "kind": "return",
            "customer_name": "C",
            "carrier": "UPS, Amazon A-to-z",
            "delivered_at": "2026-11-01T12:00:00+00:00",
        }
        async with session.post(f"{service.base_url}/api/cases", json=body, headers=headers) as r:
            assert r.status == 201, await r.text()
            case_id = (await r.json())["case"]["id"]
        async with session.get(f"{service.base_url}/api/cases/{case_id}", headers=headers) as r:
            case = (await r.json())["case"]
        deadlines = case["claim_deadlines"]
        assert [d["name"] for d in deadlines] == ["UPS", "Amazon A-to-z Guarantee"]
        assert deadlines[0]["deadline"].startswith("2026-12-31")  # 60 days after delivery
        assert all(d["deadline"] > "2026-11-01" for d in deadlines)
        assert [d["deadline"] for d in deadlines] == sorted(d["deadline"] for d in deadlines)
        assert case["carrier"] == "UPS, Amazon A-to-z"
