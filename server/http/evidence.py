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
from pydantic import Field, StringConstraints, ValidationError

from evidence import export_bundle
from server.errors import InvalidRequest
from server.http._request import case_id_of, read_body, require
from server.http.keys import CASES_KEY, EVIDENCE_KEY, EVIDENCE_READS_KEY, SETTINGS_KEY
from server.http.openapi import ApiRoute
from server.http.replies import JsonReply, Out, reply
from server.http.wire import Body, ItemListResponse, ItemResponse, Stage, item_json
from signaling import Role

__all__ = ["routes"]

REVIEWERS = frozenset({Role.REVIEWER, Role.ADMIN})
CAPTURE_READERS = frozenset({Role.AGENT, Role.REVIEWER, Role.ADMIN})
_READ_WINDOW_S = 3600.0
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=500)]


class ReasonBody(Body):
    reason: Reason


class ExportBody(Body):
    item_ids: Annotated[list[str], Field(min_length=1, max_length=200)]
    reason: Reason


class SearchQuery(Body):
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


class ItemDetailResponse(Out):
    item: dict[str, Any]
    integrity: dict[str, Any]
    custody: list[dict[str, Any]]


class TreeHeadResponse(Out):
    #: The format of the signed head (``inspectd-sth/1``).
    version: str
    tree_size: int
    root_hash: str
    timestamp: int
    key_id: str
    signature: str


def _reason(request: web.Request) -> str:
    reason = request.query.get("reason", "").strip()
    if len(reason) < 3:
        raise InvalidRequest(
            "reason: say why you open this evidence (?reason=...); it is logged", fields=("reason",)
        )
    return reason[:500]


async def case_evidence(request: web.Request) -> JsonReply[ItemListResponse]:
    await require(request, CAPTURE_READERS)
    case = await request.app[CASES_KEY].require(case_id_of(request))
    items = await request.app[EVIDENCE_KEY].search(case_id=case.id, limit=500)
    return reply(ItemListResponse, {"items": [item_json(item) for item in items]})


# -- archive (reviewers) ----------------------------------------------------------------------


async def search(request: web.Request) -> JsonReply[ItemListResponse]:
    await require(request, REVIEWERS)
    try:
        query = SearchQuery.model_validate({k: v for k, v in request.query.items() if v})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidRequest(problems) from None
    items = await request.app[EVIDENCE_KEY].search(**query.model_dump())
    return reply(ItemListResponse, {"items": [item_json(item) for item in items]})


async def get_item(request: web.Request) -> JsonReply[ItemDetailResponse]:
    identity = await require(request, REVIEWERS)
    archive = request.app[EVIDENCE_KEY]
    item_id = request.match_info["item"]
    item = await archive.get(item_id, actor=identity.name, reason=_reason(request))
    integrity = await archive.verify(item_id)
    custody = await archive.log_entries(item_id)
    return reply(
        ItemDetailResponse,
        {
            "item": item_json(item),
            "integrity": integrity.to_json(),
            "custody": [entry.to_json() for entry in custody],
        },
    )


async def get_file(request: web.Request) -> web.StreamResponse:
    identity = await require(request, REVIEWERS)
    archive = request.app[EVIDENCE_KEY]
    reason = _reason(request)
    item_id, name = request.match_info["item"], request.match_info["name"]
    # A video element asks again for every byte range while it plays: one download entry per
    # reader and file per hour. A range request with no logged read before it is logged too.
    key = (identity.subject, item_id, name)
    reads = request.app[EVIDENCE_READS_KEY]
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


async def _set_hold(request: web.Request, *, held: bool) -> JsonReply[ItemResponse]:
    identity = await require(request, REVIEWERS)
    body = await read_body(request, ReasonBody)
    archive = request.app[EVIDENCE_KEY]
    item_id = request.match_info["item"]
    change = archive.hold if held else archive.release
    await change(item_id, actor=identity.name, reason=body.reason)
    return reply(ItemResponse, {"item": item_json(await archive.peek(item_id))})


async def hold(request: web.Request) -> JsonReply[ItemResponse]:
    return await _set_hold(request, held=True)


async def release(request: web.Request) -> JsonReply[ItemResponse]:
    return await _set_hold(request, held=False)


async def delete(request: web.Request) -> web.Response:
    identity = await require(request, REVIEWERS)
    body = await read_body(request, ReasonBody)
    await request.app[EVIDENCE_KEY].delete(
        request.match_info["item"], actor=identity.name, reason=body.reason
    )
    return web.Response(status=204)


async def tree_head(request: web.Request) -> JsonReply[TreeHeadResponse]:
    archive = request.app[EVIDENCE_KEY]
    await archive.refresh()  # entries other nodes appended
    return reply(TreeHeadResponse, archive.tree_head().to_json())


class ConsistencyQuery(Body):
    first: Annotated[int, Field(ge=1, le=2**62)]
    second: Annotated[int, Field(ge=1, le=2**62)] | None = None


class ConsistencyResponse(Out):
    first: int
    second: int
    proof: list[str]


async def consistency(request: web.Request) -> JsonReply[ConsistencyResponse]:
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
    return reply(
        ConsistencyResponse,
        {"first": query.first, "second": second, "proof": [step.hex() for step in proof]},
    )


async def public_key(request: web.Request) -> web.Response:
    return web.Response(
        text=request.app[EVIDENCE_KEY].public_key_pem(), content_type="application/x-pem-file"
    )


def routes() -> list[ApiRoute]:
    """The evidence endpoints, registered and documented with the rest of the API."""
    R = ApiRoute
    base = "/api/cases/{id}"
    return [
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
