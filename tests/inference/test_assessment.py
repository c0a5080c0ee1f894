from __future__ import annotations

import json

from inference import FrameQuality, Prediction, ReadCode, SessionAssessment, match_codes

GOOD = FrameQuality(sharpness=500.0, brightness=120.0, contrast=40.0, usable=True)
SOFT = FrameQuality(sharpness=30.0, brightness=120.0, contrast=40.0, usable=True)
BLURRY = FrameQuality(sharpness=5.0, brightness=120.0, contrast=10.0, usable=False, reason="blurry")
DAMAGE = ("scratch", "dent")


def pred(grades: tuple[float, ...], damage: tuple[float, float] = (0.0, 0.0)) -> Prediction:
    return Prediction(grades, damage, ("A", "B", "C", "D"), DAMAGE, "m-1", 1, 1.0, 2.0)


def assessment() -> SessionAssessment:
    return SessionAssessment("ABCD", DAMAGE, stream_id="s1", clock=lambda: 100.0)


def test_not_sure_until_enough_confident_frames() -> None:
    view = assessment()
    assert view.snapshot()["grade"] is None
    view.add_prediction(pred((0.1, 0.8, 0.05, 0.05)), GOOD)
    assert view.status() == ("not_sure", ["too_few_frames"])
    view.add_prediction(pred((0.1, 0.8, 0.05, 0.05)), GOOD)
    view.add_prediction(pred((0.1, 0.8, 0.05, 0.05)), GOOD)
    snap = view.snapshot()
    assert (snap["grade"], snap["status"], snap["reasons"]) == ("B", "sure", [])
    assert snap["confidence"] == 0.8


def test_one_odd_frame_does_not_flip_the_grade() -> None:
    view = assessment()
    for _ in range(5):
        view.add_prediction(pred((0.05, 0.85, 0.05, 0.05)), GOOD)
    view.add_prediction(pred((0.0, 0.0, 0.0, 1.0)), GOOD)
    assert view.snapshot()["grade"] == "B"
    for _ in range(6):  # but a persistent change wins
        view.add_prediction(pred((0.0, 0.0, 0.0, 1.0)), GOOD)
    assert view.snapshot()["grade"] == "D"


def test_sharper_frames_count_more() -> None:
    view = assessment()
    view.add_prediction(pred((1.0, 0.0, 0.0, 0.0)), GOOD)
    view.add_prediction(pred((0.0, 0.0, 1.0, 0.0)), SOFT)
    probs = view.grade_probs()
    assert probs["A"] > probs["C"]


def test_low_confidence_and_poor_quality_are_not_sure() -> None:
    view = assessment()
    for _ in range(4):
        view.add_prediction(pred((0.3, 0.3, 0.2, 0.2)), GOOD)
    assert view.status() == ("not_sure", ["low_confidence"])
    sure = assessment()
    for _ in range(3):
        sure.add_prediction(pred((0.9, 0.1, 0.0, 0.0)), GOOD)
    for _ in range(4):
        sure.add_skipped(BLURRY)
    assert sure.status() == ("not_sure", ["poor_quality"])
    frames = sure.snapshot()["frames"]
    assert (frames["analysed"], frames["skipped"], frames["skip_reasons"]) == (3, 4, {"blurry": 4})


def test_damage_reported_once_seen_with_its_peak() -> None:
    view = assessment()
    view.add_prediction(pred((1, 0, 0, 0), (0.2, 0.1)), GOOD, ts=1.0)
    assert view.snapshot()["damage"] == []
    view.add_prediction(pred((1, 0, 0, 0), (0.95, 0.1)), GOOD, ts=2.0)
    view.add_prediction(pred((1, 0, 0, 0), (0.9, 0.1)), GOOD, ts=3.0)
    (scratch,) = view.snapshot()["damage"]
    assert scratch["label"] == "scratch" and scratch["max_prob"] == 0.95
    assert scratch["first_seen"] == 2.0 and 0.5 < scratch["prob"] < 0.95


def test_codes_deduplicated_and_linked() -> None:
    view = assessment()
    refs = {"order_id": "ORD-1"}
    qr = ReadCode("QRCode", "ord1", ((0, 0), (1, 0), (1, 1), (0, 1)))
    new = view.add_codes([qr], match_codes([qr], refs), ts=5.0)
    assert len(new) == 1
    assert view.add_codes([qr], match_codes([qr], refs), ts=6.0) == []
    snap = view.snapshot()
    (entry,) = snap["codes"]
    assert (entry["count"], entry["first_seen"], entry["last_seen"]) == (2, 5.0, 6.0)
    assert entry["matches"] == [{"ref": "order_id", "value": "ORD-1", "exact": True}]
    assert snap["linked_refs"] == {"order_id": "ORD-1"}
    assert json.loads(json.dumps(snap)) == snap
