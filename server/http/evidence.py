"""REST routes of evidence: capture from a call (agents), and the archive (reviewers): search,
view, download, export a dispute bundle, legal hold, deletion. Every read of stored evidence is
an entry in the transparency log, with who and why.

A read that writes a log entry is a POST (with an ``Origin`` check in front), never a GET, so a
link on another site cannot make a reviewer's browser write one. Reading a file takes two
steps: ``POST .../files/{name}/read`` logs the download and answers a read ticket URL; the
``<video>`` element or the download then GETs that URL, with HTTP ranges, as often as it needs
while the ticket lasts. A ticket names the reader, the item and the file, expires after
:data:`TICKET_TTL_S`, and is signed with the reader's own credential (their session cookie or
bearer token): it is worth nothing to anyone else, on any node, and needs no shared state.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from pydantic import Field, StringConstraints, ValidationError

from evidence import export_bundle
from server.errors import Forbidden, InvalidRequest
from server.http._request import ADMIN, case_id_of, credential_of, read_body, require
from server.http.keys import (
    CASES_KEY,
    CREDENTIALS_KEY,
    EVIDENCE_KEY,
    REDACTION_KEY,
    SETTINGS_KEY,
)
from server.http.openapi import ApiRoute
from server.http.replies import JsonReply, Out, reply
from server.http.wire import Body, ItemListResponse, ItemResponse, Stage, item_json
from server.timefmt import iso_time
from signaling import Identity, Role

__all__ = ["TICKET_TTL_S", "routes"]

REVIEWERS = frozenset({Role.REVIEWER, Role.ADMIN})
CAPTURE_READERS = frozenset({Role.AGENT, Role.REVIEWER, Role.ADMIN})
#: How long a read ticket opens its file: long enough to watch a clip and seek in it, short
#: enough that a URL copied out of the page (or a proxy log) soon opens nothing.
TICKET_TTL_S = 15 * 60
_TICKET_PURPOSE = b"inspect/evidence-read/v1"
#: Wall-clock seconds, for ticket expiry (a module attribute, so tests can move time).
clock = time.time
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=500)]


class ReasonBody(Body):
    reason: Reason


class ExportBody(Body):
    item_ids: Annotated[list[str], Field(min_length=1, max_length=200)]
    reason: Reason
    #: Share redacted copies: each item's faces (and, with ``redact_text``, text) blurred in a
    #: derived item that links to its original; the bundle holds the copies.
    redact: bool = False
    redact_text: bool = False


class RedactionBody(Body):
    reason: Reason
    faces: bool = True
    text: bool = False
    method: Literal["blur", "pixelate"] | None = None


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


class FileReadResponse(Out):
    #: The file, as the item names it.
    name: str
    #: Where to GET it (HTTP ranges) until ``expires_at``: this reader only.
    url: str
    expires_at: str


class TreeHeadResponse(Out):
    #: The format of the signed head (``inspectd-sth/1``).
    version: str
    tree_size: int
    root_hash: str
    timestamp: int
    key_id: str
    signature: str


def _ticket_signature(
    credential: str, identity: Identity, item_id: str, name: str, expires: int
) -> str:
    message = "\n".join((identity.subject, item_id, name, str(expires))).encode("utf-8")
    key = hmac.new(credential.encode("utf-8"), _TICKET_PURPOSE, hashlib.sha256).digest()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _issue_ticket(
    request: web.Request, identity: Identity, item_id: str, name: str
) -> tuple[str, int]:
    credential = credential_of(request)
    if credential is None:  # require() let the request in, so it carried one
        raise Forbidden("a read ticket needs a session or a bearer token")
    expires = int(clock()) + TICKET_TTL_S
    return f"{expires}.{_ticket_signature(credential, identity, item_id, name, expires)}", expires


def _check_ticket(request: web.Request, identity: Identity, item_id: str, name: str) -> None:
    ticket = request.query.get("ticket", "")
    if not ticket:
        raise InvalidRequest(
            "ticket: open the file with POST .../files/{name}/read and a reason first (logged)",
            fields=("ticket",),
        )
    credential = credential_of(request)
    expires_text, _, signature = ticket.partition(".")
    if credential is None or not expires_text.isdigit() or len(expires_text) > 12:
        raise Forbidden("this read ticket is not valid")
    expires = int(expires_text)
    expected = _ticket_signature(credential, identity, item_id, name, expires)
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii", "replace")):
        raise Forbidden("this read ticket is not valid for you, this item or this file")
    if expires <= clock():
        raise Forbidden("this read ticket has expired: open the item again")


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


async def view_item(request: web.Request) -> JsonReply[ItemDetailResponse]:
    """The item, its integrity and custody trail; logs "item.viewed" with the reason."""
    identity = await require(request, REVIEWERS)
    body = await read_body(request, ReasonBody)
    archive = request.app[EVIDENCE_KEY]
    item_id = request.match_info["item"]
    item = await archive.get(item_id, actor=identity.audit_actor, reason=body.reason)
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


async def read_file(request: web.Request) -> JsonReply[FileReadResponse]:
    """Logs "item.downloaded" with the reason and answers the file's read ticket URL."""
    identity = await require(request, REVIEWERS)
    body = await read_body(request, ReasonBody)
    item_id, name = request.match_info["item"], request.match_info["name"]
    await request.app[EVIDENCE_KEY].file_path(
        item_id, name, actor=identity.audit_actor, reason=body.reason
    )
    ticket, expires = _issue_ticket(request, identity, item_id, name)
    url = f"/api/evidence/{item_id}/files/{name}?{urlencode({'ticket': ticket})}"
    return reply(FileReadResponse, {"name": name, "url": url, "expires_at": iso_time(expires)})


async def get_file(request: web.Request) -> web.StreamResponse:
    """The file behind a read ticket (logged when the ticket was issued), with HTTP ranges."""
    identity = await require(request, REVIEWERS)
    item_id, name = request.match_info["item"], request.match_info["name"]
    _check_ticket(request, identity, item_id, name)
    path = await request.app[EVIDENCE_KEY].stored_path(item_id, name)
    return web.FileResponse(path, headers={"Cache-Control": "private, no-store"})


class _SentFileResponse(web.FileResponse):
    """A file the handler sends itself, because the file is removed as soon as it is sent:
    aiohttp's own ``prepare()`` after the handler must not open it again."""

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return None
        return await super().prepare(request)


async def export(request: web.Request) -> web.StreamResponse:
    """The bundle is built in a temporary directory and streamed from there (it holds up to
    200 items of any length: never read into memory), then the directory is removed."""
    identity = await require(request, REVIEWERS)
    body = await read_body(request, ExportBody)
    archive = request.app[EVIDENCE_KEY]
    item_ids = list(body.item_ids)
    if body.redact or body.redact_text:
        redaction = request.app[REDACTION_KEY]
        item_ids = [
            (
                await redaction.redact(
                    item_id, actor=identity.audit_actor, reason=body.reason,
                    faces=body.redact, text=body.redact_text,
                )
            ).item_id
            for item_id in dict.fromkeys(item_ids)
        ]  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="bundle-", dir=request.app[SETTINGS_KEY].data_dir))
    try:
        bundle = await export_bundle(
            archive,
            item_ids,
            actor=identity.audit_actor,
            reason=body.reason,
            dest_dir=workdir,
            credentials=request.app.get(CREDENTIALS_KEY),
        )
        response = _SentFileResponse(
            bundle,
            headers={
                "Content-Type": "application/zip",
                "Content-Disposition": f'attachment; filename="{bundle.name}"',
                "Cache-Control": "private, no-store",
            },
        )
        # prepare() sends the whole file (and ends the body): only then may the directory go,
        # also when the client went away meanwhile.
        await response.prepare(request)
    finally:
        await archive.run_io(shutil.rmtree, workdir, True)
    return response


async def redact(request: web.Request) -> JsonReply[ItemResponse]:
    """A redacted copy of the item, filed as a new item that links to it (the original is
    untouched and is logged as viewed, with the reason)."""
    identity = await require(request, REVIEWERS)
    body = await read_body(request, RedactionBody)
    item = await request.app[REDACTION_KEY].redact(
        request.match_info["item"],
        actor=identity.audit_actor,
        reason=body.reason,
        faces=body.faces,
        text=body.text,
        method=body.method,
    )
    return reply(ItemResponse, {"item": item_json(item)}, status=201)


async def _set_hold(
    request: web.Request, identity: Identity, *, held: bool
) -> JsonReply[ItemResponse]:
    body = await read_body(request, ReasonBody)
    archive = request.app[EVIDENCE_KEY]
    item_id = request.match_info["item"]
    change = archive.hold if held else archive.release
    await change(item_id, actor=identity.audit_actor, reason=body.reason)
    return reply(ItemResponse, {"item": item_json(await archive.peek(item_id))})


async def hold(request: web.Request) -> JsonReply[ItemResponse]:
    """Any reviewer may put a hold: keeping evidence is always safe."""
    return await _set_hold(request, await require(request, REVIEWERS), held=True)


async def release(request: web.Request) -> JsonReply[ItemResponse]:
    """Only an admin releases a hold, so one reviewer alone cannot release and then delete."""
    return await _set_hold(request, await require(request, ADMIN), held=False)


async def delete(request: web.Request) -> web.Response:
    identity = await require(request, REVIEWERS)
    body = await read_body(request, ReasonBody)
    await request.app[EVIDENCE_KEY].delete(
        request.match_info["item"], actor=identity.audit_actor, reason=body.reason
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
        R("POST", "/api/evidence/{item}/redactions", redact,
          "A redacted copy for sharing: faces (and text) blurred in a new item linked to the "
          "original (clips up to INSPECT_REDACT_MAX_CLIP_S)", "reviewer, admin",
          body=(RedactionBody,), response=ItemResponse, status=201,
          errors=(400, 401, 403, 404, 413, 415, 503), tag="evidence"),
        R("POST", "/api/evidence/{item}/view", view_item,
          "An item, its integrity and custody trail (logged with the reason)", "reviewer, admin",
          body=(ReasonBody,), response=ItemDetailResponse, errors=(400, 401, 403, 404, 415),
          tag="evidence"),
        R("POST", "/api/evidence/{item}/files/{name}/read", read_file,
          "Log a download of an item's file (with the reason) and get its read ticket URL",
          "reviewer, admin", body=(ReasonBody,), response=FileReadResponse,
          errors=(400, 401, 403, 404, 415), tag="evidence"),
        R("GET", "/api/evidence/{item}/files/{name}", get_file,
          "An item's file through a read ticket (?ticket=, from .../read; HTTP ranges)",
          "reviewer, admin (the ticket's reader)", errors=(400, 401, 403, 404),
          content_type="application/octet-stream", tag="evidence"),
        R("POST", "/api/evidence/{item}/hold", hold, "Put an item on legal hold",
          "reviewer, admin", body=(ReasonBody,), response=ItemResponse,
          errors=(400, 401, 403, 404), tag="evidence"),
        R("POST", "/api/evidence/{item}/release", release, "Release a legal hold", "admin",
          body=(ReasonBody,), response=ItemResponse, errors=(400, 401, 403, 404),
          tag="evidence"),
        R("DELETE", "/api/evidence/{item}", delete,
          "Delete an item (not on hold, retention over); its log entries stay",
          "reviewer, admin", body=(ReasonBody,), status=204, errors=(400, 401, 403, 404, 409),
          tag="evidence"),
    ]  # fmt: skip
