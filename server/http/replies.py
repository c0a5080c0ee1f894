"""JSON replies built from the response models the OpenAPI document names.

A handler with a JSON body returns ``JsonReply[M]`` made by :func:`reply`: the body is validated
by ``M`` (whose models forbid unknown keys) and written from it, so the documented schema and
what the handler sends cannot drift apart. ``tests/server/http/test_routes.py`` compares each
route's declared ``response`` with its handler's return annotation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict

__all__ = ["JsonReply", "Out", "reply"]

M = TypeVar("M", bound=BaseModel)


class Out(BaseModel):
    """Base of response models: a key the model does not name is an error, never dropped."""

    model_config = ConfigDict(extra="forbid")


class JsonReply(web.Response, Generic[M]):
    """A JSON response whose body was written by the response model ``M``."""

    model: type[BaseModel]


def reply(model: type[M], data: M | Mapping[str, Any], *, status: int = 200) -> JsonReply[M]:
    """``data`` validated by ``model`` and sent as JSON. Keys absent from ``data`` stay absent
    (optional fields are not filled in with nulls)."""
    value = data if isinstance(data, model) else model.model_validate(data)
    body = value.model_dump(mode="json", exclude_unset=True)
    response: JsonReply[M] = JsonReply(
        body=json.dumps(body).encode(), status=status, content_type="application/json"
    )
    response.model = model
    return response
