"""Rank helpers for runs under ``torchrun``: only rank 0 writes files, logs and pushes.

The rank and world size come from the environment variables that ``torchrun`` sets (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``), so these helpers work before (and without) ``torch.distributed``
being initialised. A plain ``python`` / ``mouse-train`` process is rank 0 of a world of size 1.
Besides: joining / leaving the process group, a :func:`barrier`, and :func:`reduce_metrics` (one
step's metrics over micro-batches and ranks in one collective). Model wrapping (DDP, FSDP2) lives in
:mod:`mouse.train.parallel`.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = [
    "COUNT_SUFFIXES",
    "barrier",
    "cleanup_distributed",
    "get_local_rank",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "metric_reduction",
    "print0",
    "reduce_metrics",
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
_OWNED_GROUP = False  # True when init_distributed created the process group (cleanup_distributed ends it)

# Metric names (after the ``train/<loss>_`` prefix) that count positions: summed over micro-batches and
# ranks. ``..._max`` / ``..._min`` take the max / min; every other metric is averaged.
COUNT_SUFFIXES = ("_pairs", "_rows", "_entries", "_positions", "_masked")


def init_distributed(device: Any) -> bool:
    """Join the ``torchrun`` process group (NCCL on CUDA, else Gloo) when ``WORLD_SIZE > 1``.

    Returns True when running data parallel. On CUDA the process's current device becomes ``device``.
    A no-op for a single process; an existing group (made by the caller) is used as is and left open
    by :func:`cleanup_distributed`.
    """
    import torch
    import torch.distributed as dist

    global _OWNED_GROUP
    if get_world_size() <= 1:
        return False
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        _OWNED_GROUP = True
    return True


def is_distributed() -> bool:
    """True inside a process group of more than one rank."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    """Wait until every rank arrives (no-op for one process)."""
    import torch.distributed as dist

    if is_distributed():
        dist.barrier()


def metric_reduction(name: str) -> str:
    """How :func:`reduce_metrics` combines metric ``name``: ``"sum"``, ``"max"``, ``"min"`` or ``"mean"``."""
    if name.endswith(COUNT_SUFFIXES):
        return "sum"
    if name.endswith("_max"):
        return "max"
    if name.endswith("_min"):
        return "min"
    return "mean"


def reduce_metrics(names: list[str], rows: Any) -> dict[str, float]:
    """Combine one step's metrics over its micro-batches and every rank, with one collective.

    ``rows``: float tensor ``[M, len(names)]``, one row per micro-batch (the same ``M`` and ``names`` on
    every rank). Counts (:data:`COUNT_SUFFIXES`) are summed, ``*_max`` / ``*_min`` maxed / minned, the
    rest averaged over the ``M x world_size`` micro-batches (each holds the same number of windows).
    A NaN on any rank makes the mean NaN on every rank. Returns plain floats (one host transfer).
    """
    import torch
    import torch.distributed as dist

    rows = rows.detach().to(torch.float64)
    if rows.ndim != 2 or rows.shape[1] != len(names):
        raise ValueError(f"rows must be [micro_batches, {len(names)}], got {list(rows.shape)}")
    if is_distributed():
        gathered = [torch.empty_like(rows) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, rows.contiguous())
        rows = torch.cat(gathered)
    reduced = {
        "sum": rows.sum(0),
        "max": rows.amax(0),
        "min": rows.amin(0),
        "mean": rows.mean(0),
    }
    values = torch.stack([reduced[metric_reduction(name)][i] for i, name in enumerate(names)]).tolist()
    return dict(zip(names, values))


def cleanup_distributed() -> None:
    """Leave the process group if :func:`init_distributed` created it."""
    import torch.distributed as dist

    global _OWNED_GROUP
    if _OWNED_GROUP and dist.is_initialized():
        dist.destroy_process_group()
    _OWNED_GROUP = False
