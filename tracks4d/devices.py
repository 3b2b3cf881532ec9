"""Where things run: the one place a device name is resolved."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(name: str) -> str:
    """'auto' → 'cuda' when a GPU is usable, else 'cpu'; anything else as given."""
    if str(name) != "auto":
        return str(name)
    return "cuda" if torch.cuda.is_available() else "cpu"
