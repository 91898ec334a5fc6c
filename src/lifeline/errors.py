"""Domain errors, each carrying its HTTP status; one handler in app.py renders them."""

from __future__ import annotations

from typing import Any


class LifelineError(Exception):
    status_code = 400

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail, **self.extra}


class Unauthorized(LifelineError):
    status_code = 401


class Forbidden(LifelineError):
    status_code = 403


class NotFound(LifelineError):
    status_code = 404


class Conflict(LifelineError):
    status_code = 409


class Unprocessable(LifelineError):
    status_code = 422


class TooManyRequests(LifelineError):
    status_code = 429
