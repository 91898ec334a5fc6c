"""Policy tests use the notification fixtures (a recording SMTP server, no periodic sweeps)
and the pages' signed-in browser."""

from __future__ import annotations

from tests.notifications.conftest import settings, smtp
from tests.web.conftest import browser

__all__ = ["browser", "settings", "smtp"]
