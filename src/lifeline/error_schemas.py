"""The error answers every API route may give, declared once for the OpenAPI document.

Every error is ``{"detail": …}`` (rendered by the one handler in app.py); a claim conflict adds
``claimed_by``. A 422 is either FastAPI's list of field errors or a single message naming the
field (a bad cursor, a reused Idempotency-Key).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    detail: str


class FieldError(BaseModel):
    model_config = ConfigDict(extra="allow")

    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorBody(BaseModel):
    detail: str | list[FieldError]


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


API_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("The body could not be read (not JSON, not UTF-8)"),
    401: _error("Missing, unknown or revoked credentials"),
    403: _error("Authenticated, but this role or person may not do this"),
    404: _error("No such thing in the caller's account"),
    409: _error("Conflicts with the current state"),
    413: _error("Request body too large"),
    422: {"model": ValidationErrorBody, "description": "Invalid input; the field is named"},
}
