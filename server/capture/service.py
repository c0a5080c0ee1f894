"""Evidence capture: the media engine's recordings and snapshots become evidence items, tied to
their case, order, tracking number, unit, stage and operator, with the grade data the model and
the agent produced while they were recorded.

What is recorded and what the record says are one :class:`CaptureTarget`: a case's call (its
media room is the case id) or one camera of a site (its media room ``camera:<id>``; the item is
filed under the case the operator names, or under ``site:<site id>``).

A clip of a case's call carries what was said while it ran: the captions that overlap it are in
its record (``details["transcript"]``), so the clip's hash and log entry cover them too. Every
clip's record says where its files have gaps (``details["gaps"]``: a track with no frames, or
video waiting for a keyframe, from :attr:`media.RecordedFile.gaps`)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import secrets
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av

from evidence import EvidenceArchive, EvidenceItem, EvidenceRecord, ItemKind, LogisticsStage, Use
from media import CaptureHandle, RecordedFile
from server.capture.drawing import Stamp, stamped_copy
from server.capture.ports import CaptureConfig, FrameSource, RoomRecorder, TranscriptSource
from server.cases import Case, CaseKind, CaseService
from server.errors import Conflict, NotFound
from signaling import Identity

__all__ = ["CaptureInfo", "CaptureService", "CaptureTarget", "FiledHook"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CaptureTarget:
    """What a capture records (a media room) and what its evidence record is tied to."""

    room_id: str
    #: The record's case id: the case, or ``site:<site id>`` for site evidence filed under none.
    case_id: str
    use: Use
    order_id: str | None = None
    tracking_number: str | None = None
    unit_id: str | None = None
    sku: str | None = None
    #: The logistics stage used when the operator names none.
    default_stage: str | None = None
    #: Put first in every record's note (which site and camera), so the signed record says it.
    label: str = ""
    site_id: str | None = None
    camera_id: str | None = None
    #: Record only these publishers of the room (a camera, not the viewers' talk-back).
    publishers: tuple[str, ...] | None = None
    #: The record carries the grading model's view of the room itself (a returns QC station's
    #: clip: the camera room is graded like a call), when no case gives one.
    graded: bool = False

    @classmethod
    def for_case(cls, case: Case) -> CaptureTarget:
        """A case's call: its own media room, its references, return receipt by default."""
        return cls(
            room_id=case.id,
            case_id=case.id,
            use=Use.SUPPORT if case.kind is CaseKind.SUPPORT else Use.RETURN,
            order_id=case.order_id,
            tracking_number=case.tracking_number,
            unit_id=case.unit_id,
            sku=case.sku,
            default_stage=(
                LogisticsStage.RETURN_RECEIPT.value if case.kind is CaseKind.RETURN else None
            ),
        )

    def to_manifest(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_manifest(cls, data: Mapping[str, Any]) -> CaptureTarget:
        fields = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        fields["use"] = Use(fields["use"])
        if fields.get("publishers") is not None:
            fields["publishers"] = tuple(fields["publishers"])
        return cls(**fields)


#: Called after an item is filed for a target (e.g. to link it to its site and camera).
FiledHook = Callable[[CaptureTarget, EvidenceItem, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class CaptureInfo:
    id: str
    case_id: str
    started_at: float
    preroll_s: float
    stage: str | None
    note: str
    operator: str
    site_id: str | None = None
    camera_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "case_id": self.case_id,
            "started_at": _dt(self.started_at).isoformat(),
            "preroll_s": self.preroll_s,
            "stage": self.stage,
        }
        if self.site_id is not None:
            body["site_id"] = self.site_id
            body["camera_id"] = self.camera_id
        return body


@dataclass(slots=True)
class _Active:
    target: CaptureTarget
    case: Case | None
    info: CaptureInfo
    handle: CaptureHandle


#: Written beside a recording while it runs, so one cut off by a crash can be filed at restart.
MANIFEST = "capture.json"


#: A recording's codecs list video first: these first entries mean "has the camera's video".
_VIDEO_FIRST = frozenset({("vp8",), ("vp9",), ("h264",), ("av1",)})


def _named(files: list[tuple[Path, bool]]) -> list[tuple[str, Path]]:
    """Evidence file names that say what is in them: the camera's video (with its sound) first
    as ``video-1.webm``, then sound-only recordings (the agent's microphone) as ``audio-1.webm``."""
    ordered = sorted(files, key=lambda entry: not entry[1])
    counts = {True: 0, False: 0}
    named = []
    for path, video in ordered:
        counts[video] += 1
        named.append((f"{'video' if video else 'audio'}-{counts[video]}{path.suffix}", path))
    return named


def _gaps(named: list[tuple[str, Path]], files: list[RecordedFile]) -> list[dict[str, Any]]:
    """A clip record's ``details["gaps"]``: where each file has a track with nothing in it,
    in that file's own timeline (seconds from its start), in file then time order. An empty
    list says the files were checked and have none (a record without the key predates it)."""
    by_path = {f.path: f for f in files}
    return [{"file": name, **gap.to_json()} for name, path in named for gap in by_path[path].gaps]


def _probe_video(paths: list[Path]) -> list[tuple[Path, bool]]:
    return [(path, _has_video(path)) for path in paths]


def _has_video(path: Path) -> bool:
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.video)
    except av.FFmpegError:
        return False


def _recordings_in(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in (".webm", ".mkv"))


def _newest_change(paths: list[Path]) -> float:
    return max(p.stat().st_mtime for p in paths)


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _spoken(segment: Mapping[str, Any], clip_start: float) -> dict[str, Any] | None:
    """One caption as a clip's record keeps it: who spoke (role and name, not the participant
    id), in which language, the words and their English translation, and when: UTC, and
    seconds from the clip's start (negative for words begun before the clip). None for a
    segment with no words or no time."""
    text = str(segment.get("text") or "").strip()
    try:
        started = float(segment["started_at"])
        ended = max(started, float(segment.get("ended_at") or started))
    except (KeyError, TypeError, ValueError):
        return None
    if not text or not math.isfinite(ended):
        return None
    translation = segment.get("translation")
    return {
        "role": str(segment.get("role") or ""),
        "name": str(segment.get("name") or ""),
        "language": str(segment.get("language") or ""),
        "text": text,
        "translation": str(translation) if translation else None,
        "started_at": _dt(started).isoformat(),
        "ended_at": _dt(ended).isoformat(),
        "offset_s": round(started - clip_start, 3),
        "end_offset_s": round(ended - clip_start, 3),
    }


class CaptureService:
    """Starts and stops recordings and files the results in the evidence archive."""

    def __init__(
        self,
        config: CaptureConfig,
        media: RoomRecorder,
        archive: EvidenceArchive,
        grading: FrameSource,
        *,
        on_filed: FiledHook | None = None,
        transcripts: TranscriptSource | None = None,
    ) -> None:
        """``transcripts``: the captions of cases' calls, put in their clips' records (without
        it, clips carry no transcript)."""
        self._config = config
        self._media = media
        self._archive = archive
        self._grading = grading
        self._on_filed = on_filed
        self._transcripts = transcripts
        self._spool = config.spool_dir
        self._active: dict[str, _Active] = {}

    # -- the agent's actions ------------------------------------------------------------------

    async def start(
        self, case: Case, operator: Identity, *, stage: str | None, note: str
    ) -> CaptureInfo:
        """Record the call from the last keyframe ``preroll_s`` back until :meth:`stop`."""
        target = CaptureTarget.for_case(case)
        return await self.start_target(target, operator, stage=stage, note=note, case=case)

    async def start_target(
        self,
        target: CaptureTarget,
        operator: Identity,
        *,
        stage: str | None,
        note: str,
        case: Case | None = None,
        preroll_seconds: float | None = None,
    ) -> CaptureInfo:
        """Record ``target``'s media room (from the pre-roll) until :meth:`stop_target`.
        ``case``: whose grading data the record carries, if any. ``preroll_seconds``: reach back
        less than the configured pre-roll (a station clip starts a few seconds before its scan).
        """
        capture_id = secrets.token_hex(6)
        directory = self._spool / capture_id
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        preroll = self._config.preroll_s
        if preroll_seconds is not None:
            preroll = min(preroll, max(0.0, preroll_seconds))
        handle = await self._media.start_capture(
            target.room_id,
            directory,
            name="clip",
            participants=target.publishers,
            preroll_seconds=preroll_seconds,
        )
        info = CaptureInfo(
            id=capture_id,
            case_id=target.case_id,
            started_at=handle.requested_at - preroll,
            preroll_s=preroll,
            stage=self._stage(target, stage),
            note=note,
            operator=operator.name,
            site_id=target.site_id,
            camera_id=target.camera_id,
        )
        manifest = {**info.to_json(), "started_at": info.started_at, "note": note}
        manifest["operator"] = operator.name
        manifest["target"] = target.to_manifest()
        await asyncio.to_thread((directory / MANIFEST).write_text, json.dumps(manifest), "utf-8")
        self._active[capture_id] = _Active(target, case, info, handle)
        logger.info("capture %s started", capture_id, extra={"case_id": target.case_id})
        return info

    async def stop(self, case: Case, capture_id: str, operator: Identity) -> EvidenceItem:
        return await self.stop_target(CaptureTarget.for_case(case), capture_id, operator, case)

    async def stop_target(
        self,
        target: CaptureTarget,
        capture_id: str,
        operator: Identity,
        case: Case | None = None,
    ) -> EvidenceItem:
        active = self._active.get(capture_id)
        if active is None or active.target.room_id != target.room_id:
            what = "camera" if target.camera_id is not None else "case"
            raise NotFound(f"no running capture {capture_id!r} for this {what}")
        del self._active[capture_id]
        files = await self._media.stop_capture(active.handle)
        return await self._file_clip(
            active.target, case or active.case, files, active.info, operator.audit_actor
        )

    async def save_last(
        self, case: Case, seconds: float, operator: Identity, *, stage: str | None, note: str
    ) -> EvidenceItem:
        target = CaptureTarget.for_case(case)
        return await self.save_last_target(
            target, seconds, operator, stage=stage, note=note, case=case
        )

    async def save_last_target(
        self,
        target: CaptureTarget,
        seconds: float,
        operator: Identity,
        *,
        stage: str | None,
        note: str,
        case: Case | None = None,
    ) -> EvidenceItem:
        capture_id = secrets.token_hex(6)
        directory = self._spool / capture_id
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        files = await self._media.save_last(
            target.room_id, seconds, directory, name="last", participants=target.publishers
        )
        now = time.time()
        info = CaptureInfo(
            capture_id, target.case_id, now - seconds, seconds, self._stage(target, stage), note,
            operator.name, target.site_id, target.camera_id,
        )  # fmt: skip
        return await self._file_clip(target, case, files, info, operator.audit_actor)

    async def snapshot(
        self,
        case: Case,
        operator: Identity,
        *,
        frame_id: str | None,
        stage: str | None,
        note: str,
    ) -> EvidenceItem:
        """One of the sharpest frames the grading kept (``frame_id``), or the newest frame."""
        target = CaptureTarget.for_case(case)
        return await self.snapshot_target(
            target, operator, frame_id=frame_id, stage=stage, note=note, case=case
        )

    async def snapshot_target(
        self,
        target: CaptureTarget,
        operator: Identity,
        *,
        frame_id: str | None = None,
        stage: str | None,
        note: str,
        case: Case | None = None,
    ) -> EvidenceItem:
        """The newest frame of ``target``'s room, or (with ``frame_id``) one of the sharpest
        frames the grading kept for ``case``."""
        taken_at = time.time()
        jpeg: bytes | None
        if frame_id is not None:
            frames = self._grading.frames(case.id) if case is not None else []
            frame = next((f for f in frames if str(int(f.ts * 1000)) == frame_id), None)
            if frame is None:
                raise NotFound(f"no frame {frame_id!r}: pick one of the case's best frames")
            jpeg, taken_at = frame.jpeg, frame.ts
        else:
            jpeg = await self._media.snapshot(target.room_id, target.publishers)
            if jpeg is None:
                raise Conflict("no video frame has arrived yet: nothing to photograph")
        return await self.file_still(
            target,
            case,
            jpeg,
            name="snapshot.jpg",
            kind=ItemKind.SNAPSHOT,
            operator=operator,
            taken_at=taken_at,
            stage=stage,
            note=note,
            stamp_label="snapshot",
        )

    async def newest_frame(self, target: CaptureTarget) -> bytes:
        """A JPEG of the newest frame the server received from ``target``'s room, at the size
        it was sent (not a screenshot of anyone's page)."""
        jpeg = await self._media.snapshot(target.room_id, target.publishers)
        if jpeg is None:
            raise Conflict("no video frame has arrived yet: nothing to show")
        return jpeg

    async def file_still(
        self,
        target: CaptureTarget,
        case: Case | None,
        image: bytes,
        *,
        name: str,
        kind: ItemKind,
        operator: Identity,
        taken_at: float,
        stage: str | None,
        note: str,
        stamp_label: str,
        details: Mapping[str, Any] | None = None,
        extra_files: Sequence[tuple[str, bytes]] = (),
        grading: Mapping[str, Any] | None = None,
        location: tuple[float, float] | None = None,
    ) -> EvidenceItem:
        """File one still (a snapshot, a photo, a frozen or marked-up frame) with a stamped copy
        beside it: the same picture with the time (UTC and the merchant's), the case, order,
        tracking number and unit printed on it. Both files' SHA-256 are in the record, which
        says which is the copy of which; ``extra_files`` (the strokes, a drawing) go with them.
        ``grading``: the model's view of this still, instead of the call's."""
        stem, _, _ = name.rpartition(".")
        stamp = Stamp(
            taken_at=_dt(taken_at),
            local_tz=self._config.stamp_timezone,
            case_id=target.case_id,
            order_id=target.order_id,
            tracking_number=target.tracking_number,
            unit_id=target.unit_id,
            location=location,
            label=stamp_label,
        )
        stamped = await asyncio.to_thread(stamped_copy, image, stamp)
        stamped_name = f"{stem}-stamped.jpg"
        files = [(name, image), (stamped_name, stamped), *extra_files]
        body = dict(details or {})
        body["stamp"] = {
            "original": {"file": name, "sha256": hashlib.sha256(image).hexdigest()},
            "stamped": {"file": stamped_name, "sha256": hashlib.sha256(stamped).hexdigest()},
            "lines": stamp.lines(),
        }
        directory = self._spool / secrets.token_hex(6)

        def write() -> list[tuple[str, Path]]:
            directory.mkdir(parents=True, exist_ok=True)
            written = []
            for file_name, data in files:
                path = directory / file_name
                path.write_bytes(data)
                written.append((file_name, path))
            return written

        record = self._record(
            target, case, kind.value, operator.name, taken_at, taken_at,
            self._stage(target, stage), note,
        )  # fmt: skip
        record = replace(
            record,
            grading=dict(grading) if grading is not None else record.grading,
            details=body,
        )
        try:
            named = await asyncio.to_thread(write)
            item = await self._archive.add_item(named, record, actor=operator.audit_actor)
        finally:
            await asyncio.to_thread(shutil.rmtree, directory, True)
        await self._filed(target, item, operator.name)
        return item

    # -- filing ---------------------------------------------------------------------------------

    async def _filed(self, target: CaptureTarget, item: EvidenceItem, operator: str) -> None:
        if self._on_filed is None:
            return
        try:
            await self._on_filed(target, item, operator)
        except Exception:
            logger.exception("could not link evidence item %s", item.item_id)

    async def _file_clip(
        self,
        target: CaptureTarget,
        case: Case | None,
        files: list[RecordedFile],
        info: CaptureInfo,
        actor: str,
    ) -> EvidenceItem:
        usable = [f for f in files if f.frames > 0 and f.path.exists()]
        directory = self._spool / info.id
        try:
            if not usable:
                problems = "; ".join(f.error for f in files if f.error) or "no frames arrived"
                raise Conflict(f"nothing was recorded: {problems}")
            started = min(f.started_at for f in usable)
            ended = max(f.ended_at for f in usable)
            record = self._record(
                target, case, "clip", info.operator, started, ended, info.stage, info.note
            )
            named = _named([(f.path, f.codecs[:1] in _VIDEO_FIRST) for f in usable])
            record = replace(record, details={"gaps": _gaps(named, usable)})
            record = await self._with_transcript(record, target, case, started, ended)
            item = await self._archive.add_item(named, record, actor=actor)
        finally:
            await asyncio.to_thread(shutil.rmtree, directory, True)
        logger.info(
            "capture %s filed as %s", info.id, item.item_id, extra={"case_id": target.case_id}
        )
        await self._filed(target, item, info.operator)
        return item

    async def _with_transcript(
        self,
        record: EvidenceRecord,
        target: CaptureTarget,
        case: Case | None,
        started: float,
        ended: float,
    ) -> EvidenceRecord:
        """``record`` with the captions of the case's call that overlap ``started``..``ended``
        in its details; as it is without speech, or for a camera's clip (its sound is not the
        call's)."""
        if self._transcripts is None or case is None or target.room_id != case.id:
            return record
        try:
            segments = await self._transcripts.transcript(case.id, since=started, until=ended)
        except Exception:
            # The clip matters more than its words: file it anyway (the timeline keeps them).
            logger.exception("clip of case %s filed without its transcript", case.id)
            return record
        said = [line for line in (_spoken(s, started) for s in segments) if line is not None]
        if not said:
            return record
        said.sort(key=lambda line: float(line["offset_s"]))
        return replace(record, details={**(record.details or {}), "transcript": said})

    def _stage(self, target: CaptureTarget, stage: str | None) -> str | None:
        if stage:
            return LogisticsStage(stage).value
        return target.default_stage

    def _record(
        self,
        target: CaptureTarget,
        case: Case | None,
        kind: str,
        operator: str,
        started: float,
        ended: float,
        stage: str | None,
        note: str,
    ) -> EvidenceRecord:
        grading: dict[str, Any] = {}
        live = self._grading.latest(case.id) if case is not None else None
        if live is None and case is None and target.graded:
            live = self._grading.latest(target.room_id)
        stored: Mapping[str, Any] = (case.grading if case is not None else None) or {}
        model = live if live is not None else stored.get("model")
        if model:
            grading["model"] = {
                key: model.get(key)
                for key in (
                    "grade", "confidence", "status", "grade_probs", "damage", "codes", "labels",
                    "model_version", "started_at", "updated_at", "frames",
                )
            }  # fmt: skip
        if stored.get("final_grade"):
            grading["agent"] = {
                "grade": stored.get("final_grade"),
                "source": stored.get("source"),
                "facts": (stored.get("derived") or {}).get("facts"),
            }
            grading["grade"] = stored.get("final_grade")
        return EvidenceRecord(
            case_id=target.case_id,
            use=target.use,
            operator=operator,
            started_at=_dt(started),
            ended_at=_dt(max(started, ended)),
            kind=ItemKind(kind),
            order_id=target.order_id,
            tracking_number=target.tracking_number,
            unit_id=target.unit_id,
            sku=target.sku,
            logistics_stage=LogisticsStage(stage) if stage else None,
            grading=grading or None,
            privacy_notice_version=self._config.privacy_notice_version,
            note=" · ".join(part for part in (target.label, note) if part),
            retention_class=self._config.retention_class,
        )

    async def recover(self, cases: CaseService) -> list[EvidenceItem]:
        """File recordings a crash cut off (their manifest is still in the spool): the files
        play up to the last frames written, and the item says it was recovered."""
        if not await asyncio.to_thread(self._spool.is_dir):
            return []
        items = []
        for manifest in await asyncio.to_thread(lambda: sorted(self._spool.glob(f"*/{MANIFEST}"))):
            directory = manifest.parent
            try:
                data = json.loads(await asyncio.to_thread(manifest.read_text, "utf-8"))
                case = await cases.get_case(str(data["case_id"]))
                if "target" in data:
                    target = CaptureTarget.from_manifest(data["target"])
                elif case is not None:
                    target = CaptureTarget.for_case(case)
                else:
                    continue
                media = await asyncio.to_thread(_recordings_in, directory)
                if not media or (case is None and target.site_id is None):
                    continue
                stat = await asyncio.to_thread(_newest_change, media)
                note = (
                    data.get("note") or ""
                ) + " (recovered after the server stopped during the recording)"
                record = self._record(
                    target, case, "clip", str(data["operator"]), float(data["started_at"]), stat,
                    data.get("stage"), note.strip(),
                )  # fmt: skip
                record = await self._with_transcript(
                    record, target, case, float(data["started_at"]), stat
                )
                named = _named(await asyncio.to_thread(_probe_video, media))
                item = await self._archive.add_item(named, record, actor="recovery")
                items.append(item)
                await self._filed(target, item, str(data["operator"]))
                logger.warning("filed an interrupted recording of %s", target.case_id)
            except Exception:
                logger.exception("could not recover the recording in %s", directory)
                continue
            await asyncio.to_thread(shutil.rmtree, directory, True)
        return items

    async def aclose(self) -> None:
        """File every running capture (a shutdown must not lose what was recorded)."""
        for capture_id, active in list(self._active.items()):
            del self._active[capture_id]
            try:
                files = await self._media.stop_capture(active.handle)
                await self._file_clip(
                    active.target, active.case, files, active.info, active.info.operator
                )
                logger.info("capture %s filed at shutdown", capture_id)
            except Exception:
                logger.exception("capture %s could not be filed", capture_id)
