"""The notification fixtures (a recording SMTP server, no periodic sweeps) for policy tests."""

from __future__ import annotations

from tests.notifications.conftest import settings, smtp

__all__ = ["settings", "smtp"]
