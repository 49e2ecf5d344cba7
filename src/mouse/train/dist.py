"""Rank helpers for runs under ``torchrun``: only rank 0 writes files, logs and pushes.

The rank and world size come from the environment variables that ``torchrun`` sets (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``), so these helpers work before (and without) ``torch.distributed``
being initialised. A plain ``python`` / ``mouse-train`` process is rank 0 of a world of size 1.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = [
    "all_reduce_mean_",
    "cleanup_distributed",
    "get_local_rank",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_main_process",
    "print0",
]


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as e:
        raise ValueError(f"environment variable {name}={value!r} must be an integer") from e


def get_rank() -> int:
    """Global rank of this process (``RANK``; 0 when not launched by torchrun)."""
    return _env_int("RANK", 0)


def get_world_size() -> int:
    """Number of processes in the job (``WORLD_SIZE``; 1 when not launched by torchrun)."""
    return _env_int("WORLD_SIZE", 1)


def get_local_rank() -> int:
    """Rank of this process on its node (``LOCAL_RANK``; 0 when not launched by torchrun)."""
    return _env_int("LOCAL_RANK", 0)


def is_main_process() -> bool:
    """True on global rank 0: the only process that writes the run directory, logs and pushes."""
    return get_rank() == 0


def print0(*args: Any, **kwargs: Any) -> None:
    """``print`` on rank 0 only (flushes, so lines interleave sanely with the progress bar)."""
    if is_main_process():
        kwargs.setdefault("flush", True)
        print(*args, **kwargs)


# -------------------------------------------------------------------------------- data parallelism
def init_distributed(device: Any) -> bool:
    """Join the ``torchrun`` process group (NCCL on CUDA, else Gloo) when ``WORLD_SIZE > 1``.

    Returns True when running data parallel. A no-op for a single process or an existing group.
    """
    import torch
    import torch.distributed as dist

    if get_world_size() <= 1:
        return False
    if not dist.is_initialized():
        backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return True


def all_reduce_mean_(tensors: list[Any]) -> None:
    """Average ``tensors`` in place over all ranks with one collective (no-op for one process).

    Data parallelism by gradient averaging (every rank holds the full model and a different batch):
    call it on the gradients after ``backward``, before clipping.
    """
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    if not tensors or not dist.is_initialized() or dist.get_world_size() == 1:
        return
    flat = _flatten_dense_tensors(tensors)
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for tensor, reduced in zip(tensors, _unflatten_dense_tensors(flat, tensors)):
        tensor.copy_(reduced)


def cleanup_distributed() -> None:
    """Leave the process group if this process joined one."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
