"""The inspection of a case's call beyond the video: a frozen frame and what is drawn on it, and
the full-resolution photos the customer's phone sends. Each becomes evidence with its stamped
copy (:meth:`CaptureService.file_still`), each step is in the case's timeline, and the call's
pages hear of it through the room (``frozen``, ``unfrozen``, ``photo``).

A frozen frame is the newest frame the server received from the customer, at the size it was
sent, filed as a snapshot at once; its id is that item's id. Releasing it files the marked-up
frame (the drawing, the unmarked frame and the strokes) when anything was drawn. A photo is read
(:func:`server.capture.stills.read_still`: type, size, EXIF location stripped unless consented),
graded by the model, read for codes and label text, and filed as a ``photo`` item."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
from PIL import Image, ImageOps

from evidence import EvidenceArchive, EvidenceItem, ItemKind
from server.capture.drawing import render_markup, stroke_summary
from server.capture.service import CaptureService, CaptureTarget
from server.capture.stills import read_still
from server.cases import Case, CaseService, CaseState
from server.errors import Conflict, InvalidRequest, NotFound
from signaling import Identity, Stroke, outbound
from signaling.outbound import ServerMessageType

__all__ = [
    "FrozenFrame",
    "InspectionConfig",
    "InspectionService",
    "NoStillGrading",
    "PhotoMeta",
    "StillGrader",
]

logger = logging.getLogger(__name__)

#: Frozen frames whose JPEG this node keeps in memory for the two pages (the archive has all).
_KEPT_FRAMES = 64
#: What of the model's view of a photo its record and the agent's console carry.
_VIEW_KEYS = (
    "grade", "confidence", "status", "reasons", "grade_probs", "damage", "codes", "labels",
    "linked_refs", "quality", "model_version", "frames",
)  # fmt: skip

#: ``publish(case_id, message)``: send a message into a case's room (``staff``: its staff only).
Publish = Callable[[str, Mapping[str, Any]], Awaitable[None]]


class StillGrader(Protocol):
    """The model's view of one still image (``inference.GradingService`` fits it)."""

    async def assess_still(
        self, room_id: str, image: np.ndarray[Any, Any], still_id: str
    ) -> dict[str, Any]: ...


class NoStillGrading:
    """Where no model grades (``INSPECT_GRADING`` off): photos are filed without its view."""

    async def assess_still(
        self, room_id: str, image: np.ndarray[Any, Any], still_id: str
    ) -> dict[str, Any]:
        return {}


@dataclass(frozen=True, slots=True)
class InspectionConfig:
    #: The merchant lets customers share their location with photos (asked on the page).
    photo_location: bool = False


@dataclass(frozen=True, slots=True)
class FrozenFrame:
    """A frame the agent froze: ``frame_id`` is the id of the snapshot item it was filed as."""

    frame_id: str
    case_id: str
    width: int
    height: int

    def to_json(self) -> dict[str, Any]:
        return {
            "frame_id": self.frame_id,
            "item_id": self.frame_id,
            "case_id": self.case_id,
            "width": self.width,
            "height": self.height,
        }


@dataclass(frozen=True, slots=True)
class PhotoMeta:
    """What the customer's page says about a photo it sends."""

    source: Literal["camera", "gallery"]
    #: The agent's request it answers; ``None``: sent unasked.
    request_id: str | None = None
    #: How the page took it: ``take_photo`` (ImageCapture), ``frame`` (the track's largest
    #: frame, where the browser has no ImageCapture) or ``file`` (picked from the gallery).
    method: str = "take_photo"
    #: The customer agreed to share their location (only asked when the merchant enables it).
    location_consent: bool = False
    #: Where the browser said the phone was (with consent): latitude, longitude, accuracy (m).
    location: tuple[float, float, float | None] | None = None
    taken_at: float | None = None
    #: ``call`` (in the call) or ``intake`` (with the customer's answers, before the call).
    purpose: Literal["call", "intake"] = "call"


def _size(jpeg: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(jpeg)) as image:
        return image.size


def _rgb(data: bytes) -> np.ndarray[Any, Any]:
    """The picture as the model takes it: upright (EXIF orientation applied), RGB."""
    with Image.open(io.BytesIO(data)) as image:
        upright = ImageOps.exif_transpose(image)
        return np.asarray(upright.convert("RGB"))


def _as_jpeg(png: bytes) -> bytes:
    with Image.open(io.BytesIO(png)) as image:
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG", quality=92)
        return out.getvalue()


class InspectionService:
    """Freeze and markup, and photos, for the calls of this node's cases."""

    def __init__(
        self,
        captures: CaptureService,
        archive: EvidenceArchive,
        cases: CaseService,
        grader: StillGrader,
        *,
        publish: Publish,
        publish_staff: Publish,
        config: InspectionConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._captures = captures
        self._archive = archive
        self._cases = cases
        self._grader = grader
        self._publish = publish
        self._publish_staff = publish_staff
        self.config = config or InspectionConfig()
        self._clock = clock
        self._frames: OrderedDict[str, bytes] = OrderedDict()
        #: Frames released on this node (a second release of one is refused).
        self._released: OrderedDict[str, None] = OrderedDict()

    # -- freeze and markup ------------------------------------------------------------------------

    async def freeze(self, case: Case, operator: Identity) -> FrozenFrame:
        """Take the newest frame the customer sent, file it, and show it on both pages."""
        target = CaptureTarget.for_case(case)
        jpeg = await self._captures.newest_frame(target)
        width, height = await asyncio.to_thread(_size, jpeg)
        item = await self._captures.file_still(
            target,
            case,
            jpeg,
            name="frame.jpg",
            kind=ItemKind.SNAPSHOT,
            operator=operator,
            taken_at=self._clock(),
            stage=None,
            note="frozen in the call for markup",
            stamp_label="frozen frame",
            details={"frozen": True, "width": width, "height": height},
        )
        frame = FrozenFrame(item.item_id, case.id, width, height)
        self._keep(frame.frame_id, jpeg)
        await self._cases.record_action(
            case.id,
            "inspection.freeze",
            actor=operator.audit_actor,
            data={"frame_id": frame.frame_id, "width": width, "height": height},
        )
        by = {"role": operator.role.value, "name": operator.name}
        await self._publish(
            case.id,
            outbound.frozen(
                frame.frame_id, width=width, height=height, item_id=item.item_id, by=by
            ),
        )
        return frame

    async def frame_image(self, case: Case, frame_id: str) -> bytes:
        """The frozen frame's JPEG, for the two pages of the call."""
        kept = self._frames.get(frame_id)
        if kept is not None:
            return kept
        item = await self._frozen_item(case, frame_id)
        path = await self._archive.stored_path(item.item_id, "frame.jpg")
        data = await asyncio.to_thread(path.read_bytes)
        self._keep(frame_id, data)
        return data

    async def release(
        self, case: Case, frame_id: str, strokes: Sequence[Stroke], operator: Identity
    ) -> EvidenceItem | None:
        """Back to live video. With strokes, the marked-up frame is filed first: the drawing (a
        PNG, exact), its stamped copy, the unmarked frame and the strokes as JSON."""
        if frame_id in self._released:
            raise NotFound(f"frame {frame_id!r} is not frozen any more: freeze the picture again")
        frozen = await self._frozen_item(case, frame_id)
        ids = [stroke.id for stroke in strokes]
        if len(set(ids)) != len(ids):
            raise InvalidRequest("strokes: each stroke needs its own id", fields=("strokes",))
        item: EvidenceItem | None = None
        summary = stroke_summary(strokes)
        if strokes:
            jpeg = await self.frame_image(case, frame_id)
            drawn = await asyncio.to_thread(render_markup, jpeg, strokes)
            size = frozen.record.details or {}
            strokes_json = json.dumps(
                {"frame_id": frame_id, "strokes": [s.model_dump() for s in strokes]}, indent=1
            ).encode()
            item = await self._captures.file_still(
                CaptureTarget.for_case(case),
                case,
                drawn,
                name="markup.png",
                kind=ItemKind.MARKUP,
                operator=operator,
                taken_at=self._clock(),
                stage=None,
                note="frame marked up in the call",
                stamp_label="marked-up frame",
                details={
                    "derived_from": frame_id,
                    "width": size.get("width"),
                    "height": size.get("height"),
                    "strokes": summary,
                },
                extra_files=[("frame.jpg", jpeg), ("strokes.json", strokes_json)],
            )
        self._released[frame_id] = None
        while len(self._released) > 4 * _KEPT_FRAMES:
            self._released.popitem(last=False)
        self._frames.pop(frame_id, None)
        await self._cases.record_action(
            case.id,
            "inspection.unfreeze",
            actor=operator.audit_actor,
            data={
                "frame_id": frame_id,
                "item_id": item.item_id if item is not None else None,
                "strokes": summary,
            },
        )
        await self._publish(
            case.id, outbound.unfrozen(frame_id, item_id=item.item_id if item else None)
        )
        return item

    async def _frozen_item(self, case: Case, frame_id: str) -> EvidenceItem:
        try:
            item = await self._archive.peek(frame_id)
        except LookupError:
            item = None
        details = item.record.details if item is not None else None
        if (
            item is None
            or item.record.case_id != case.id
            or not isinstance(details, Mapping)
            or not details.get("frozen")
        ):
            raise NotFound(f"there is no frozen frame {frame_id!r} in this call")
        return item

    def _keep(self, frame_id: str, jpeg: bytes) -> None:
        self._frames[frame_id] = jpeg
        self._frames.move_to_end(frame_id)
        while len(self._frames) > _KEPT_FRAMES:
            self._frames.popitem(last=False)

    # -- photos -----------------------------------------------------------------------------------

    def require_call(self, case: Case, purpose: str = "call") -> None:
        """Photos are for a call that is on, or (``intake``) for the customer's answers before
        it, until they are sent: refused before any byte is sent, and again when the last one
        arrives."""
        if purpose == "intake":
            if case.state not in (CaseState.CREATED, CaseState.WAITING) or case.intake is not None:
                raise Conflict("the answers before the call were already sent: the photo was not")
            return
        if case.state is not CaseState.IN_CALL:
            raise Conflict(
                "this call is not on (it ended, or no agent has answered yet): the photo was "
                "not sent"
            )

    async def file_photo(
        self, case: Case, data: bytes, meta: PhotoMeta, customer: Identity
    ) -> tuple[EvidenceItem, dict[str, Any]]:
        """Read, grade and file a photo the customer's phone sent; the agent's console hears
        of it. Refused once the call has ended (the page says so; nothing is half filed)."""
        self.require_call(case, meta.purpose)
        consent = self.config.photo_location and meta.location_consent
        still = await asyncio.to_thread(read_still, data, keep_location=consent)
        image = await asyncio.to_thread(_rgb, still.data)
        still_id = f"photo-{case.id}-{int(self._clock() * 1000)}"
        view = await self._grader.assess_still(case.id, image, still_id)
        model = {key: view.get(key) for key in _VIEW_KEYS if key in view}
        location: dict[str, Any] | None = None
        if consent and meta.location is not None:
            lat, lon, accuracy = meta.location
            location = {
                "latitude": lat,
                "longitude": lon,
                "accuracy_m": accuracy,
                "from": "browser",
            }
        elif consent and still.location is not None:
            location = {**still.location.to_json(), "from": "exif"}
        height, width = image.shape[:2]
        details = {
            "source": meta.source,
            "requested": meta.request_id,
            "method": meta.method,
            "content_type": still.content_type,
            "bytes": len(still.data),
            "width": width,
            "height": height,
            "location": location,
            "location_consent": consent,
            "location_stripped": still.location_stripped,
            "purpose": meta.purpose,
        }
        taken_at = meta.taken_at if meta.taken_at is not None else self._clock()
        where = "from the gallery" if meta.source == "gallery" else "from the camera"
        asked = "asked for" if meta.request_id else "sent unasked"
        if meta.purpose == "intake":
            asked = "sent with the answers before the call"
        item = await self._captures.file_still(
            CaptureTarget.for_case(case),
            case,
            still.data,
            name=f"photo{still.extension}",
            kind=ItemKind.PHOTO,
            operator=customer,
            taken_at=min(taken_at, self._clock()),
            stage=None,
            note=f"photo {where}, {asked}",
            stamp_label=f"photo · {where}",
            details=details,
            grading={"model": model, **({"grade": model["grade"]} if model.get("grade") else {})},
            location=(location["latitude"], location["longitude"]) if location else None,
        )
        await self._cases.record_action(
            case.id,
            "inspection.photo_received",
            actor=customer.audit_actor,
            data={
                "item_id": item.item_id,
                "request_id": meta.request_id,
                "source": meta.source,
                "width": width,
                "height": height,
                "grade": model.get("grade"),
            },
        )
        by = {"role": customer.role.value, "name": customer.name}
        message = outbound.inspection(
            ServerMessageType.PHOTO,
            by,
            item_id=item.item_id,
            request_id=meta.request_id,
            source=meta.source,
            width=width,
            height=height,
            assessment=model,
            sha256=item.files[0].sha256 if item.files else None,
        )
        await self._publish_staff(case.id, message)
        return item, model

    async def still_file(
        self, case: Case, item_id: str, *, actor: str, reason: str, stamped: bool = False
    ) -> tuple[str, Any]:
        """A photo, frozen frame or marked-up frame of this case, for the agent's console: its
        file name and path (logged as a download by ``actor``)."""
        try:
            item = await self._archive.peek(item_id)
        except LookupError:
            raise NotFound(f"there is no still {item_id!r} in this case") from None
        if item.record.case_id != case.id or item.record.kind is ItemKind.CLIP:
            raise NotFound(f"there is no still {item_id!r} in this case")
        details = item.record.details or {}
        stamp = details.get("stamp") if isinstance(details, Mapping) else None
        name = item.files[0].name
        if isinstance(stamp, Mapping):
            key = "stamped" if stamped else "original"
            name = str(stamp[key]["file"])
        path = await self._archive.file_path(item_id, name, actor=actor, reason=reason)
        return name, path
