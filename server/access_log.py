"""The HTTP access log, without the secrets some paths carry.

A customer's join link and a phone camera's page put their token in the path
(``/join/<token>``, ``/camera/<token>``); aiohttp's access log would write it down. This logger
writes ``/join/***`` instead, and masks ``token=`` query values.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

__all__ = ["MaskingAccessLogger", "mask_path"]

_SECRET_PATH = re.compile(r"^(/(?:join|camera)/)[^/?#]+")
_SECRET_QUERY = re.compile(r"((?:^|[?&])(?:token|camera_token|access_token)=)[^&#]*", re.I)


def mask_path(path: str) -> str:
    """``path`` (with its query) with tokens replaced by ``***``."""
    return _SECRET_QUERY.sub(r"\1***", _SECRET_PATH.sub(r"\1***", path))


class MaskingAccessLogger(AbstractAccessLogger):
    """One line per request, as aiohttp's default format, with :func:`mask_path` applied to the
    request line and the Referer (a page loaded from a join link sends it as the Referer)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        referer = request.headers.get("Referer", "-")
        if referer != "-":
            parts = urlsplit(referer)
            referer = urlunsplit(parts._replace(path=mask_path(parts.path), query=""))
        self.logger.info(
            '%s "%s %s HTTP/%d.%d" %d %s %.3fs "%s" "%s"',
            request.remote or "-",
            request.method,
            mask_path(request.path_qs),
            request.version.major,
            request.version.minor,
            response.status,
            response.body_length,
            time,
            referer,
            request.headers.get("User-Agent", "-"),
        )
