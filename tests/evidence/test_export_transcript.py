"""A clip's transcript in a dispute bundle: the summary shows what was said (escaped), the README
says where it is, and the offline verifier checks it like the rest of the record."""

from __future__ import annotations

import html
import json
import re
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from evidence import EvidenceArchive, EvidenceItem, export_bundle

from .conftest import T0, make_files, make_record
from .test_export import fails, run_verify

CLIP_START = T0 - timedelta(minutes=2)

#: What ``server.capture`` writes into a clip's ``details["transcript"]``.
TRANSCRIPT: list[dict[str, Any]] = [
    {
        "role": "customer",
        "name": "Mia <script>alert(1)</script>",
        "language": "de",
        "text": "Mein Telefon <script>alert('x')</script> funktioniert nicht.",
        "translation": "My phone does not work & the box is <b>crushed</b>.",
        "started_at": (CLIP_START - timedelta(seconds=1.5)).isoformat(),
        "ended_at": (CLIP_START + timedelta(seconds=2)).isoformat(),
        "offset_s": -1.5,
        "end_offset_s": 2.0,
    },
    {
        "role": "agent",
        "name": "Alex",
        "language": "en",
        "text": "Could you hold the screen to the camera?",
        "translation": None,
        "started_at": (CLIP_START + timedelta(seconds=65.25)).isoformat(),
        "ended_at": (CLIP_START + timedelta(seconds=68)).isoformat(),
        "offset_s": 65.25,
        "end_offset_s": 68.0,
    },
]


async def bundle_of(
    archive: EvidenceArchive, tmp_path: Path
) -> tuple[Path, Path, EvidenceItem, EvidenceItem]:
    spoken = await archive.add_item(
        make_files(tmp_path / "a", "a", snapshot=False),
        make_record(details={"transcript": TRANSCRIPT}),
        actor="agent-7",
    )
    silent = await archive.add_item(
        make_files(tmp_path / "b", "b", snapshot=False), make_record(), actor="agent-7"
    )
    path = await export_bundle(
        archive,
        [spoken.item_id, silent.item_id],
        actor="reviewer",
        reason="carrier claim",
        dest_dir=tmp_path / "out",
    )
    target = tmp_path / "bundle"
    with zipfile.ZipFile(path) as zf:
        zf.extractall(target)
    return path, target, spoken, silent


def section(summary: str, item_id: str) -> str:
    match = re.search(rf"<section><h2>Item {item_id}</h2>.*?</section>", summary, re.S)
    assert match is not None, f"no section for {item_id}"
    return match.group(0)


def rows_of(table_html: str) -> list[list[str]]:
    return [
        [html.unescape(cell) for cell in re.findall(r"<td>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", table_html, re.S)
        if "<td>" in row
    ]


async def test_the_summary_shows_what_was_said_escaped_and_the_bundle_verifies(
    archive: EvidenceArchive, tmp_path: Path
) -> None:
    path, target, spoken, silent = await bundle_of(archive, tmp_path)

    summary = (target / "summary.html").read_text()
    assert "<script" not in summary and "<b>crushed" not in summary
    said = section(summary, spoken.item_id)
    assert said.count("<h3>What was said</h3>") == 1
    table = said.split("<h3>What was said</h3>", 1)[1].split("<h3>", 1)[0]
    assert re.findall(r"<th>(.*?)</th>", table) == [
        "Time",
        "Speaker",
        "Language",
        "Original words",
        "English translation",
    ]
    assert rows_of(table) == [
        [
            "-0:01.5",
            "Mia <script>alert(1)</script> (customer)",
            "de",
            "Mein Telefon <script>alert('x')</script> funktioniert nicht.",
            "My phone does not work & the box is <b>crushed</b>.",
        ],
        ["1:05.2", "Alex (agent)", "en", "Could you hold the screen to the camera?", "—"],
    ]
    assert "What was said" not in section(summary, silent.item_id)

    readme = (target / "README.txt").read_text()
    assert "details.transcript" in readme and "record.json" in readme
    record = json.loads((target / "items" / spoken.item_id / "record.json").read_bytes())
    assert record["record"]["details"]["transcript"] == TRANSCRIPT

    code, out = run_verify(path, "--expect-key-id", archive.key_id)
    assert code == 0, out
    assert fails(out) == [] and out.rstrip().endswith("RESULT: OK (2 item(s) verified)")


async def test_an_edited_transcript_fails_verification(
    archive: EvidenceArchive, tmp_path: Path
) -> None:
    _, target, spoken, _ = await bundle_of(archive, tmp_path)
    record = target / "items" / spoken.item_id / "record.json"
    record.write_bytes(record.read_bytes().replace(b"funktioniert nicht", b"funktioniert gut"))

    code, out = run_verify(target)
    assert code == 1
    failed = fails(out)
    assert len(failed) == 3
    assert failed[0].startswith(f"FAIL: items/{spoken.item_id}/record.json: SHA-256 is ")
    assert f"item {spoken.item_id}: record.json hashes to leaf" in failed[1]
    assert f"item {spoken.item_id}: inclusion proof" in failed[2]
