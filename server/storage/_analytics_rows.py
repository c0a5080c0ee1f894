"""Sums of return cases as :class:`~server.storage.analytics.ReturnGroup` values, from the
rows either backend's SQL returns: one group per key and currency, the carrier field split in
Python ("UPS, Amazon" counts under both)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from .analytics import BUCKETS, ReturnGroup, split_carriers

__all__ = ["COUNTS", "HIST", "SUMMED", "VALUES", "group_rows"]

HIST: Final = tuple(f"h{k:02d}" for k in range(BUCKETS))
#: The counted measures, then order value by grade A..D (ten-thousandths), then the histogram.
COUNTS: Final = ("returns", "compared", "mismatched", "damaged")
VALUES: Final = ("value_a", "value_b", "value_c", "value_d")
SUMMED: Final = (*COUNTS, *VALUES, *HIST)


def group_rows(
    rows: Iterable[Sequence[Any]], *, bucketed: bool, split: bool, carrier: str | None
) -> list[ReturnGroup]:
    """Rows of (key, currency, carrier field, [bucket,] sums...) as one group per key and
    currency: the carrier field split into a group per carrier (``split``: the dimension is
    carrier), rows of other carriers left out (``carrier``: filtered by one). ``bucketed``
    rows (from the cases) carry a decision-time bucket; rollup rows their histogram."""
    wanted = carrier.casefold() if carrier is not None else None
    measured = len(COUNTS) + len(VALUES)
    totals: dict[tuple[str, str], list[int]] = {}
    # (the carriers of a field, whether the filter's is among them): fields repeat a lot
    carriers: dict[str, tuple[list[str], bool]] = {}
    for row in rows:
        names: list[str] = []
        if split or wanted is not None:
            known = carriers.get(row[2])
            if known is None:
                parts = split_carriers(row[2])
                known = carriers[row[2]] = (parts, wanted in {n.casefold() for n in parts})
            names = known[0]
            if wanted is not None and not known[1]:
                continue
        for key in (names or [""]) if split else [str(row[0])]:
            total = totals.get((key, row[1]))
            if total is None:
                total = totals[(key, row[1])] = [0] * len(SUMMED)
            if bucketed:
                for index in range(measured):
                    total[index] += row[4 + index] or 0
                if row[3] >= 0:
                    total[measured + row[3]] += row[4]
            else:
                for index in range(len(SUMMED)):
                    total[index] += row[3 + index] or 0
    return [
        ReturnGroup(
            key=key,
            currency=str(currency),
            returns=total[0],
            compared=total[1],
            mismatched=total[2],
            damaged=total[3],
            value=(total[4], total[5], total[6], total[7]),
            decisions=tuple(total[measured:]),
        )
        for (key, currency), total in totals.items()
    ]
