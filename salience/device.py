"""Device selection shared by the API and the CLI."""

from __future__ import annotations

import torch

from salience.errors import SalienceError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then MPS, then CPU; anything else is passed to ``torch.device``."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise SalienceError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise SalienceError(
            f"device {device!r} requested but CUDA is not available; use --device cpu"
        )
    return resolved


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (CUDA runs asynchronously), so that a timing
    taken next covers it; nothing to wait for elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
