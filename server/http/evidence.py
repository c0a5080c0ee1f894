"""REST routes of evidence: capture from a call (agents), and the archive (reviewers): search,
view, download, export a dispute bundle, legal hold, deletion. Every read of stored evidence is
an entry in the transparency log, with who and why."""

from __future__ import annotations

import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from evidence import EvidenceItem, export_bundle
from server.errors import InvalidRequest
from server.http._request import CALL_TAKERS, case_id_of, json_response, read_body, require
from server.http.keys import CAPTURES_KEY, CASES_KEY, EVIDENCE_KEY, SETTINGS_KEY
from server.http.openapi import ApiRoute
from signaling.messages import Role

__all__ = ["evidence_routes", "item_json", "setup_evidence_reads"]

REVIEWERS = frozenset({Role.REVIEWER, Role.ADMIN})
_READ_WINDOW_S = 3600.0
#: (reader, item, file) -> when its download was last logged.
_RECENT_READS: web.AppKey[dict[tuple[str, str, str], float]] = web.AppKey(
    "inspect_evidence_reads", dict
)
CAPTURE_READERS = frozenset({Role.AGENT, Role.REVIEWER, Role.ADMIN})

Stage = Literal[
    "packing",
    "domestic_pickup",
    "export_customs",
    "international_transport",
    "import_customs",
    "last_mile",
    "return_receipt",
    "refurbishment_qc",
]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=500)]
Note = Annotated[str, StringConstraints(max_length=2000)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CaptureBody(_Body):
    stage: Stage | None = None
    note: Note = ""


class SaveLastBody(CaptureBody):
    seconds: Annotated[float, Field(gt=0, le=120)] = 30.0


class SnapshotBody(CaptureBody):
    frame_id: Annotated[str, StringConstraints(pattern=r"^\d{1,20}$")] | None = None


class ReasonBody(_Body):
    reason: Reason


class ExportBody(_Body):
    item_ids: Annotated[list[str], Field(min_length=1, max_length=200)]
    reason: Reason


class SearchQuery(_Body):
    order_id: str | None = None
    tracking_number: str | None = None
    case_id: str | None = None
    unit_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    grade: Literal["A", "B", "C", "D"] | None = None
    stage: Stage | None = None
    use: Literal["return", "walkthrough", "support", "packing"] | None = None
    limit: Annotated[int, Field(ge=1, le=500)] = 100


class CaptureOut(BaseModel):
    id: str
    case_id: str
    started_at: str
    preroll_s: float
    stage: str | None


class CaptureResponse(BaseModel):
    capture: CaptureOut


class ItemResponse(BaseModel):
    item: dict[str, Any]


class ItemListResponse(BaseModel):
    items: list[dict[str, Any]]


class ItemDetailResponse(BaseModel):
    item: dict[str, Any]
    integrity: dict[str, Any]
    custody: list[dict[str, Any]]


class TreeHeadResponse(BaseModel):
    tree_size: int
    root_hash: str
    timestamp: int
    key_id: str
    signature: str


def item_json(item: EvidenceItem) -> dict[str, Any]:
    """An item as the API shows it: the record, its files with their download URLs."""
    body = item.to_json()
    for entry in body["files"]:
        entry["url"] = f"/api/evidence/{item.item_id}/files/{entry['name']}"
    return body


def _reason(request: web.Request) -> str:
    reason = request.query.get("reason", "").strip()
    if len(reason) < 3:
        raise InvalidRequest(
            "reason: say why you open this evidence (?reason=...); it is logged", fields=("reason",)
        )
    return reason[:500]


# -- capture (agents) -------------------------------------------------------------------------


async def _case_for_capture(request: web.Request) -> Any:
    return await request.app[CASES_KEY].require(case_id_of(request))


async def start_capture(request: web.Request) -> web.Response:
    identity = await require(request, CALL_TAKERS)
    case = await _case_for_capture(request)
    body = await read_body(request, CaptureBody)
    info = await request.app[CAPTURES_KEY].start(case, identity, stage=body.stage, note=body.note)
    return json_response({"capture": info.to_json()}, status=201)


async def stop_capture(request: web.Request) -> web.Response:
    identity = await require(request, CALL_TAKERS)
    case = await _case_for_capture(request)
    item = await request.app[CAPTURES_KEY].stop(case, request.match_info["capture"], identity)
    return json_response({"item": item_json(item)}, status=201)


async def save_last(request: web.Request) -> web.Response:
    identity = await require(request, CALL_TAKERS)
    case = await _case_for_capture(request)
    body = await read_body(request, SaveLastBody)
    preroll = request.app[SETTINGS_KEY].preroll_s
    if body.seconds > preroll:
        raise InvalidRequest(
            f"seconds: at most {preroll:g} (the pre-roll kept in memory)", fields=("seconds",)
        )
    item = await request.app[CAPTURES_KEY].save_last(
        case, body.seconds, identity, stage=body.stage, note=body.note
    )
    return json_response({"item": item_json(item)}, status=201)


async def take_snapshot(request: web.Request) -> web.Response:
    identity = await require(request, CALL_TAKERS)
    case = await _case_for_capture(request)
    body = await read_body(request, SnapshotBody)
    item = await request.app[CAPTURES_KEY].snapshot(
        case, identity, frame_id=body.frame_id, stage=body.stage, note=body.note
    )
    return json_response({"item": item_json(item)}, status=201)


async def case_evidence(request: web.Request) -> web.Response:
    await require(request, CAPTURE_READERS)
    case = await request.app[CASES_KEY].require(case_id_of(request))
    items = await request.app[EVIDENCE_KEY].search(case_id=case.id, limit=500)
    return json_response({"items": [item_json(item) for item in items]})


# -- archive (reviewers) ----------------------------------------------------------------------


async def search(request: web.Request) -> web.Response:
    await require(request, REVIEWERS)
    try:
        query = SearchQuery.model_validate({k: v for k, v in request.query.items() if v})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidRequest(problems) from None
    items = await request.app[EVIDENCE_KEY].search(**query.model_dump())
    return json_response({"items": [item_json(item) for item in items]})


async def get_item(request: web.Request) -> web.Response:
    identity = await require(request, REVIEWERS)
    archive = request.app[EVIDENCE_KEY]
    item_id = request.match_info["item"]
    item = await archive.get(item_id, actor=identity.name, reason=_reason(request))
    integrity = await archive.verify(item_id)
    custody = await archive.log_entries(item_id)
    return json_response(
        {
            "item": item_json(item),
            "integrity": integrity.to_json(),
            "custody": [entry.to_json() for entry in custody],
        }
    )


async def get_file(request: web.Request) -> web.StreamResponse:
    identity = await require(request, REVIEWERS)
    archive = request.app[EVIDENCE_KEY]
    reason = _reason(request)
    item_id, name = request.match_info["item"], request.match_info["name"]
    # A video element asks again for every byte range while it plays: one download entry per
    # reader and file per hour. A range request with no logged read before it is logged too.
    key = (identity.subject, item_id, name)
    reads = request.app[_RECENT_READS]
    continuing = request.http_range.start not in (None, 0)
    if continuing and time.monotonic() - reads.get(key, -_READ_WINDOW_S) < _READ_WINDOW_S:
        path = await archive.stored_path(item_id, name)
    else:
        path = await archive.file_path(item_id, name, actor=identity.name, reason=reason)
        if len(reads) > 10_000:
            reads.clear()
        reads[key] = time.monotonic()
    return web.FileResponse(path, headers={"Cache-Control": "private, no-store"})


async def export(request: web.Request) -> web.StreamResponse:
    identity = await require(request, REVIEWERS)
    body = await read_body(request, ExportBody)
    archive = request.app[EVIDENCE_KEY]
    workdir = Path(tempfile.mkdtemp(prefix="bundle-", dir=request.app[SETTINGS_KEY].data_dir))
    try:
        bundle = await export_bundle(
            archive, body.item_ids, actor=identity.name, reason=body.reason, dest_dir=workdir
        )
        data = await archive.run_io(bundle.read_bytes)
    finally:
        await archive.run_io(shutil.rmtree, workdir, True)
    return web.Response(
        body=data,
        content_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{bundle.name}"'},
    )


async def _set_hold(request: web.Request, *, held: bool) -> web.Response:
    identity = await require(request, REVIEWERS)
    body = await read_body(request, ReasonBody)
    archive = request.app[EVIDENCE_KEY]
    item_id = request.match_info["item"]
    change = archive.hold if held else archive.release
    await change(item_id, actor=identity.name, reason=body.reason)
    return json_response({"item": item_json(await archive.peek(item_id))})


async def hold(request: web.Request) -> web.Response:
    return await _set_hold(request, held=True)


async def release(request: web.Request) -> web.Response:
    return await _set_hold(request, held=False)


async def delete(request: web.Request) -> web.Response:
    identity = await require(request, REVIEWERS)
    body = await read_body(request, ReasonBody)
    await request.app[EVIDENCE_KEY].delete(
        request.match_info["item"], actor=identity.name, reason=body.reason
    )
    return web.Response(status=204)


async def tree_head(request: web.Request) -> web.Response:
    archive = request.app[EVIDENCE_KEY]
    await archive.refresh()  # entries other nodes appended
    return json_response(archive.tree_head().to_json())


class ConsistencyQuery(_Body):
    first: Annotated[int, Field(ge=1, le=2**62)]
    second: Annotated[int, Field(ge=1, le=2**62)] | None = None


class ConsistencyResponse(BaseModel):
    first: int
    second: int
    proof: list[str]


async def consistency(request: web.Request) -> web.Response:
    """RFC 9162 consistency proof between two tree sizes: an auditor who kept an older signed
    tree head checks that the log only grew since."""
    try:
        query = ConsistencyQuery.model_validate(dict(request.query))
    except ValidationError as exc:
        raise InvalidRequest("first (and second): tree sizes, first <= second") from exc
    archive = request.app[EVIDENCE_KEY]
    await archive.refresh()  # entries other nodes appended
    second = query.second or archive.tree_head().tree_size
    if query.first > second or second > archive.tree_head().tree_size:
        raise InvalidRequest(
            f"tree sizes must satisfy 1 <= first <= second <= {archive.tree_head().tree_size}"
        )
    proof = archive.consistency_proof(query.first, second)
    return json_response(
        {"first": query.first, "second": second, "proof": [step.hex() for step in proof]}
    )


async def public_key(request: web.Request) -> web.Response:
    return web.Response(
        text=request.app[EVIDENCE_KEY].public_key_pem(), content_type="application/x-pem-file"
    )


def setup_evidence_reads(app: web.Application) -> None:
    """State the file route keeps (which reads were logged recently)."""
    app[_RECENT_READS] = {}


def evidence_routes() -> list[ApiRoute]:
    """The evidence endpoints, registered and documented with the rest of the API."""
    R = ApiRoute
    base = "/api/cases/{id}"
    return [
        R("POST", f"{base}/captures", start_capture,
          "Start recording the call (from the pre-roll)", "agent, admin", body=(CaptureBody,),
          response=CaptureResponse, status=201, errors=(400, 401, 403, 404, 409), tag="evidence"),
        R("POST", f"{base}/captures/{{capture}}/stop", stop_capture,
          "Stop a recording; the clip becomes an evidence item", "agent, admin",
          response=ItemResponse, status=201, errors=(401, 403, 404, 409), tag="evidence"),
        R("POST", f"{base}/captures/last", save_last, "Save the last N seconds of the call",
          "agent, admin", body=(SaveLastBody,), response=ItemResponse, status=201,
          errors=(400, 401, 403, 404, 409), tag="evidence"),
        R("POST", f"{base}/snapshots", take_snapshot,
          "Save a JPEG: one of the best frames or the newest frame", "agent, admin",
          body=(SnapshotBody,), response=ItemResponse, status=201,
          errors=(400, 401, 403, 404, 409), tag="evidence"),
        R("GET", f"{base}/evidence", case_evidence, "The case's evidence items",
          "agent, reviewer, admin", response=ItemListResponse, errors=(401, 403, 404),
          tag="evidence"),
        R("GET", "/api/evidence", search, "Search the archive", "reviewer, admin",
          query=SearchQuery, response=ItemListResponse, errors=(400, 401, 403), tag="evidence"),
        R("GET", "/api/evidence/tree-head", tree_head,
          "The signed tree head of the transparency log", "anyone", response=TreeHeadResponse,
          tag="evidence"),
        R("GET", "/api/evidence/consistency", consistency,
          "Consistency proof between two tree sizes (RFC 9162)", "anyone",
          query=ConsistencyQuery, response=ConsistencyResponse, errors=(400,), tag="evidence"),
        R("GET", "/api/evidence/public-key", public_key,
          "The Ed25519 public key that signs tree heads (PEM)", "anyone",
          content_type="application/x-pem-file", tag="evidence"),
        R("POST", "/api/evidence/export", export, "A dispute bundle (zip) with verify.py",
          "reviewer, admin", body=(ExportBody,), errors=(400, 401, 403, 404),
          content_type="application/zip", tag="evidence"),
        R("GET", "/api/evidence/{item}", get_item,
          "An item, its integrity and custody trail (logged, needs ?reason=)", "reviewer, admin",
          response=ItemDetailResponse, errors=(400, 401, 403, 404), tag="evidence"),
        R("GET", "/api/evidence/{item}/files/{name}", get_file,
          "An item's file (HTTP ranges; logged, needs ?reason=)", "reviewer, admin",
          errors=(400, 401, 403, 404), content_type="application/octet-stream", tag="evidence"),
        R("POST", "/api/evidence/{item}/hold", hold, "Put an item on legal hold",
          "reviewer, admin", body=(ReasonBody,), response=ItemResponse,
          errors=(400, 401, 403, 404), tag="evidence"),
        R("POST", "/api/evidence/{item}/release", release, "Release a legal hold",
          "reviewer, admin", body=(ReasonBody,), response=ItemResponse,
          errors=(400, 401, 403, 404), tag="evidence"),
        R("DELETE", "/api/evidence/{item}", delete,
          "Delete an item (not on hold, retention over); its log entries stay",
          "reviewer, admin", body=(ReasonBody,), status=204, errors=(400, 401, 403, 404, 409),
          tag="evidence"),
    ]  # fmt: skip
