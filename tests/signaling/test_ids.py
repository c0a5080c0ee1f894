"""Room and subject ids: each scheme is built and read back in one place."""

from __future__ import annotations

import pytest

from signaling import RoomId, RoomKind, SubjectId, SubjectKind, camera_room, site_room


def test_each_kind_of_room_is_read_back_as_what_it_was_made() -> None:
    case, site, camera = RoomId.case("b7692799"), RoomId.site("s1"), RoomId.camera("cam-1")

    assert (case, site, camera) == ("b7692799", "site:s1", "camera:cam-1"), "same wire strings"
    assert [room.kind for room in (case, site, camera)] == [
        RoomKind.CASE,
        RoomKind.SITE,
        RoomKind.CAMERA,
    ]
    assert (case.case_id, case.site_id, case.camera_id) == ("b7692799", None, None)
    assert (site.case_id, site.site_id, site.camera_id) == (None, "s1", None)
    assert (camera.case_id, camera.site_id, camera.camera_id) == (None, None, "cam-1")
    assert camera_room("cam-1") == camera and site_room("s1") == site


def test_a_room_that_arrives_as_a_string_is_parsed() -> None:
    room = RoomId.parse("camera:dock:2")
    assert room.camera_id == "dock:2", "only the scheme is cut off"
    assert RoomId.parse(room) is room
    by_room: dict[str, int] = {RoomId.parse("abc"): 1}
    assert by_room["abc"] == 1, "hashes as the string it is"
    with pytest.raises(ValueError):
        RoomId.parse("")


def test_a_case_id_cannot_pass_for_another_kind_of_room() -> None:
    with pytest.raises(ValueError):
        RoomId.case("camera:cam-1")
    with pytest.raises(ValueError):
        RoomId.case("site:s1")


@pytest.mark.parametrize(
    ("subject", "kind", "key"),
    [
        (SubjectId.user("u1"), SubjectKind.USER, "u1"),
        (SubjectId.customer("c1"), SubjectKind.CUSTOMER, "c1"),
        (SubjectId.api_token("t1"), SubjectKind.API_TOKEN, "t1"),
        (SubjectId.camera_token("t2"), SubjectKind.CAMERA_TOKEN, "t2"),
        (SubjectId.camera("cam-1"), SubjectKind.CAMERA, "cam-1"),
        (SubjectId.station("cam-2"), SubjectKind.STATION, "cam-2"),
    ],
)
def test_each_kind_of_subject_is_read_back(subject: SubjectId, kind: SubjectKind, key: str) -> None:
    parsed = SubjectId.parse(str(subject))
    assert (parsed.kind, parsed.key) == (kind, key)


def test_subjects_keep_their_wire_strings() -> None:
    assert SubjectId.customer("c1") == "customer:c1"
    assert SubjectId.api_token("t1") == "token:t1"
    assert SubjectId.camera_token("t2") == "camera-token:t2"
    with pytest.raises(ValueError):
        SubjectId.user("token:t1")
