"""Pages of the service: jinja2 templates, static ES modules and CSS, and their routes.

``web`` imports nothing else of the project: the app factory hands it a :class:`PageBackend`
that answers the questions a page render needs (who is the staff member behind this request,
what a customer join token or a camera token points at, whether a site exists).
"""

from __future__ import annotations

from .pages import (
    BACKEND_KEY,
    CAMERA_COOKIE,
    JOIN_COOKIE,
    LANG_COOKIE,
    STATIC_DIR,
    TEMPLATES_DIR,
    CameraView,
    JoinView,
    PageBackend,
    SiteView,
    StaffView,
    setup_pages,
)

__all__ = [
    "BACKEND_KEY",
    "CAMERA_COOKIE",
    "JOIN_COOKIE",
    "LANG_COOKIE",
    "STATIC_DIR",
    "TEMPLATES_DIR",
    "CameraView",
    "JoinView",
    "PageBackend",
    "SiteView",
    "StaffView",
    "setup_pages",
]
