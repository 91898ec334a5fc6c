"""The API's route table, read from the application itself, for tests that must cover every route.

A route added later is picked up by these tests without anyone remembering to list it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel
from starlette.responses import StreamingResponse

API_PREFIX = "/api/v1"
_unique = itertools.count(1)


@dataclass(frozen=True)
class ApiRoute:
    method: str
    path: str
    path_params: tuple[str, ...]
    query_params: tuple[str, ...]
    body_model: type[BaseModel] | None
    streaming: bool

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    def url(self, **ids: str) -> str:
        return self.path.format(**ids)


def _walk(dependant: Dependant) -> list[Dependant]:
    return [dependant, *(d for sub in dependant.dependencies for d in _walk(sub))]


def _is_streaming(route: APIRoute) -> bool:
    """Server-sent events and other endless bodies: an in-process client would wait forever."""
    response_class = getattr(route.response_class, "value", route.response_class)
    if not isinstance(response_class, type):
        return False
    return issubclass(response_class, StreamingResponse) or any(
        "EventSource" in cls.__name__ for cls in response_class.__mro__
    )


def api_routes(app: FastAPI) -> list[ApiRoute]:
    """Every HTTP route under /api/v1, one entry per method (WebSocket routes are not HTTP)."""
    found: list[ApiRoute] = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not context.path.startswith(API_PREFIX):
            continue
        parts = _walk(route.dependant)
        path_params = tuple(dict.fromkeys(p.name for d in parts for p in d.path_params))
        query_params = tuple(dict.fromkeys(q.alias for d in parts for q in d.query_params))
        body = route.body_field.field_info.annotation if route.body_field else None
        for method in sorted(route.methods or ()):
            found.append(
                ApiRoute(
                    method=method,
                    path=context.path,
                    path_params=path_params,
                    query_params=query_params,
                    body_model=body if isinstance(body, type) else None,
                    streaming=_is_streaming(route),
                )
            )
    assert found, "no API routes found: has the prefix moved?"
    return found


# Values that satisfy each known body field; anything else is derived from its JSON schema.
_FIELD_SAMPLES: dict[str, Any] = {
    "intent": "escalate",
    "role": "engineer",
    "email_notifications": "always",
    "password": "a long enough password",
    "current_password": "correct horse battery",
    "reminder_minutes": 15,
    "event_types": ["handoff.escalated"],
    "since": "2026-01-01T00:00:00Z",
    "steps": [{"after_minutes": 0, "notify": {"roles": ["engineer"]}, "channels": ["push"]}],
}


def _from_schema(schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    if "$ref" in schema:
        return _from_schema(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"]
            return _from_schema(options[0], defs)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "string":
        return "x" * max(1, int(schema.get("minLength", 1)))
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return {}
    return "x"


def sample_body(model: type[BaseModel]) -> dict[str, Any]:
    """A valid body for ``model`` with only its required fields (and known-meaningful ones)."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    body: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        if name == "email":
            body[name] = f"sample{next(_unique)}@sample.example"
        elif name in _FIELD_SAMPLES and name in schema.get("required", []):
            body[name] = _FIELD_SAMPLES[name]
        elif name in schema.get("required", []):
            body[name] = _from_schema(prop, defs)
    model.model_validate(body)  # the sample must pass validation, or the test proves nothing
    return body
