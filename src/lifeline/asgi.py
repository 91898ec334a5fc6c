"""Entry point for uvicorn: ``uvicorn lifeline.asgi:app`` (what ``lifeline serve`` runs)."""

from lifeline.app import create_app

app = create_app(freeze_heap=True)
