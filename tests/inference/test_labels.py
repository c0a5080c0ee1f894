"""Text on labels: the real OCR models on drawn labels with known values, the fields found by
their printed names, the IMEI check digit, and matching to the case."""

from __future__ import annotations

import numpy as np
import pytest

from inference.labels import (
    LabelFields,
    LabelReader,
    TextLine,
    imei_valid,
    label_fields,
    match_label,
)
from tests.fakes.labels import VARIANTS, draw_label, imei_with_check_digit

BOX = ((0, 0), (10, 0), (10, 10), (0, 10))


def _lines(*texts: str) -> list[TextLine]:
    return [TextLine(text, 0.99, BOX) for text in texts]


@pytest.fixture(scope="module")
def reader() -> LabelReader:
    return LabelReader(threads=2)


def test_the_imei_check_digit_is_luhns() -> None:
    # 49015420323751 is the IMEI example of 3GPP TS 23.003 (check digit 8).
    assert imei_with_check_digit("49015420323751") == "490154203237518"
    assert imei_valid("490154203237518")
    assert not imei_valid("490154203237519")  # one digit misread
    assert not imei_valid("49015420323751")  # 14 digits
    assert not imei_valid("49015420323751A")


def test_fields_are_found_by_their_printed_names() -> None:
    fields = label_fields(
        _lines(
            "ACME Devices Inc.",
            "MODEL: SM-9186",
            "S/N: 2HAFCFGWPBBB",
            "IMEI:490154203237518",
            "Serial No. AB-1234-XY",
            "IMEI 490154203237519",  # fails its check digit: dropped
            "353918057024867",  # 15 digits alone, check digit good: an IMEI
            "Order 123456789012345",  # 15 digits alone, check digit bad: nothing
        )
    )
    assert fields.models == ("SM-9186",)
    assert fields.serials == ("2HAFCFGWPBBB", "AB-1234-XY")
    assert fields.imeis == ("490154203237518", "353918057024867")
    assert not label_fields(_lines("Made in XX", "Keep dry"))


def test_only_whole_values_match_the_case() -> None:
    fields = LabelFields(serials=("2HAF-CFGW-PBBB",), imeis=("490154203237518",))
    refs = {"unit_id": "2hafcfgwpbbb", "order_id": "ORD-1", "serial": None}
    matched = match_label(fields, refs)
    assert [(m.kind, m.ref) for m in matched] == [("serial", "unit_id")]
    one_off = LabelFields(serials=("2HAFCFGWPBB8",))
    assert match_label(one_off, refs) == [], "a serial one character off is another unit"
    assert match_label(fields, {"imei": "490154203237518"})[0].kind == "imei"


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_model_reads_serial_imei_and_model_off_a_drawn_label(
    reader: LabelReader, variant: str
) -> None:
    label = draw_label(seed=7, variant=variant)
    fields = reader.fields(label.image)
    assert label.serial in fields.serials, (variant, fields.as_dict())
    assert label.imei in fields.imeis, (variant, fields.as_dict())
    assert label.model in fields.models, (variant, fields.as_dict())
    line = next(line for line in fields.lines if label.serial in line.text)
    assert line.score > 0.8 and len(line.box) == 4


def test_a_picture_without_text_reads_nothing_and_a_bad_one_is_refused(
    reader: LabelReader,
) -> None:
    assert reader.read(np.full((240, 320, 3), 200, np.uint8)) == []
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        reader.read(np.zeros((240, 320), np.uint8))
