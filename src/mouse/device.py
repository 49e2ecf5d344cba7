"""Device names of every command (``trainer.device``, ``mouse-eval device=``): parse and resolve.

``auto`` means ``cuda:<LOCAL_RANK>`` when CUDA is available, else ``cpu``; ``cpu``, ``cuda``,
``cuda:N`` and ``mps`` are taken as given (a CUDA device without CUDA is an error, never a silent CPU).
"""

from __future__ import annotations

import os
from enum import StrEnum

import torch

__all__ = ["DeviceKind", "parse_device", "resolve_device"]


class DeviceKind(StrEnum):
    """The kind part of a device name (``cuda:1`` is kind ``cuda``, index 1)."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


def parse_device(name: str, key: str = "trainer.device") -> tuple[DeviceKind, int | None]:
    """``"cuda:1"`` → ``(DeviceKind.cuda, 1)``; ValueError naming ``key`` and the choices otherwise."""
    kind, _, index = str(name).partition(":")
    try:
        parsed: DeviceKind | None = DeviceKind(kind)
    except ValueError:
        parsed = None
    if parsed is None or (index and not (parsed is DeviceKind.cuda and index.isdigit())):
        raise ValueError(f"{key}={name!r} is not a device; use one of auto, cpu, cuda, cuda:N, mps")
    return parsed, int(index) if index else None


def resolve_device(name: str, key: str = "trainer.device") -> torch.device:
    """The ``torch.device`` for ``name``: ``auto`` → ``cuda:<LOCAL_RANK>`` if CUDA is available, else
    ``cpu``; a CUDA name without CUDA raises ValueError naming ``key``."""
    kind, _ = parse_device(name, key)
    if kind is DeviceKind.auto:
        if torch.cuda.is_available():
            return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
        return torch.device("cpu")
    if kind is DeviceKind.cuda and not torch.cuda.is_available():
        raise ValueError(f"{key}={name!r} but CUDA is not available; use {key}=cpu or auto")
    return torch.device(name)
