"""tracks4d as a web service: ``create_app(Settings())`` builds the FastAPI app; ``tracks4d serve`` runs it."""

from .app import create_app
from .settings import Settings

__all__ = ["create_app", "Settings"]
