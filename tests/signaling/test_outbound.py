"""The builders of server-to-client messages write exactly what docs/protocol.md documents."""

from __future__ import annotations

import json

from signaling import (
    CaseSummary,
    ChatRecord,
    QueueEntry,
    Role,
    SignalingErrorCode,
    SiteSummary,
    outbound,
)

SUMMARY = CaseSummary(
    case_id="c1", kind="return", state="waiting", customer_name="Ada", waiting_since=5.0
)


def test_an_error_has_its_fields_in_the_documented_order() -> None:
    message = outbound.error(SignalingErrorCode.NOT_FOUND, "no such case", "join")
    assert json.dumps(message) == (
        '{"type": "error", "code": "not_found", "message": "no such case", "ref": "join"}'
    )
    assert outbound.error(SignalingErrorCode.REPLACED, "opened elsewhere")["ref"] is None


def test_joined_puts_the_participant_first_and_the_room_details_last() -> None:
    me = outbound.participant_info("p1", Role.AGENT, "Bo")
    record = ChatRecord(3, "m1", "hi", 7.0, {"participant_id": "p2"})
    message = outbound.joined(
        me,
        case=SUMMARY,
        ice_servers=[{"urls": "stun:x"}],
        chat=[record],
        last_seq=3,
        participants=[{"participant_id": "p2"}],
        details=outbound.call_details(grading=False, preroll_s=None),
    )
    assert list(message) == [
        "type",
        "participant_id",
        "role",
        "name",
        "case",
        "ice_servers",
        "chat",
        "chat_more",
        "last_seq",
        "participants",
        "grading",
        "preroll_s",
    ]
    assert message["chat"] == [record.to_json()] and message["case"] == SUMMARY.to_json()


def test_a_camera_is_named_only_where_there_is_one() -> None:
    assert outbound.participant_info("p1", Role.CAMERA, "Dock", "cam1")["camera_id"] == "cam1"
    assert "camera_id" not in outbound.participant_info("p1", Role.CUSTOMER, "Ada")
    assert outbound.answer("v=0") == {"type": "answer", "sdp": "v=0"}
    assert outbound.renegotiate({"video": 2}, "cam1") == {
        "type": "renegotiate",
        "tracks": {"video": 2},
        "camera_id": "cam1",
    }


def test_the_queue_lists_each_case_with_its_wait() -> None:
    entry = QueueEntry("c1", 5.0, {"customer_name": "Ada", "case_id": "stale"})
    assert outbound.queue([entry]) == {
        "type": "queue",
        "cases": [{"customer_name": "Ada", "case_id": "c1", "waiting_since": 5.0}],
    }


def test_site_messages() -> None:
    site = SiteSummary("s1", "Warehouse", ({"id": "cam1", "name": "Dock", "kind": "phone"},))
    assert outbound.site(None) == {"type": "site", "site": None}
    assert outbound.site(site)["site"]["cameras"][0]["id"] == "cam1"
    assert outbound.camera_page_details(site, site.cameras[0]) == {
        "site": {"site_id": "s1", "name": "Warehouse"},
        "camera": {"id": "cam1", "name": "Dock", "kind": "phone"},
    }
    assert outbound.camera_status("cam1", {"online": True}) == {
        "type": "camera",
        "camera_id": "cam1",
        "status": {"online": True},
    }
