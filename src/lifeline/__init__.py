"""Lifeline: escalation and hand-off for AI-assisted engineering sessions."""

__version__ = "0.1.0"
