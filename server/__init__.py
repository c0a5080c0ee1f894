"""inspectd's application: the composition root (``create_app``), the HTTP edge, the service's
own domains (cases, sites, capture, accounts), storage, and the cluster code."""

from __future__ import annotations

from server.app import create_app, running_service
from server.settings import Settings

__all__ = ["Settings", "create_app", "running_service"]
