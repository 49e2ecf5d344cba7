"""Atomic checkpoints: ``<run_dir>/checkpoints/step-N/`` plus a ``last`` pointer.

A checkpoint folder holds the model (``config.json`` + ``model.safetensors``, loadable by
``mouse.models.load_model``), any extra text files the trainer adds (``dataset_spec.json``,
``train_config.yaml``) and the trainer state in two files, so nothing is ever unpickled on resume:

- ``trainer_state.safetensors``: every tensor (optimizer moments, RNG states, ...);
- ``trainer_state.json``: the rest (step, scheduler, data loader position, W&B run id, ...), with each
  tensor replaced by ``{"__tensor__": key}`` into the safetensors file.

Writes are atomic: a checkpoint is assembled in a hidden ``.tmp-*`` folder, fsynced, then renamed to
``step-N``; ``last`` is a relative symlink swapped with ``os.replace``. A kill at any moment leaves
the previous checkpoint and pointer intact (a stale ``.tmp-*`` folder is removed by the next save).

Finding checkpoints (:func:`list_checkpoints`, :func:`find_last_checkpoint`) and reading their files
live in the leaf module :mod:`mouse.checkpoint_io`, shared with evaluation; they are re-exported here.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from mouse.checkpoint_io import LAST, find_last_checkpoint, list_checkpoints

__all__ = [
    "STATE_JSON",
    "STATE_TENSORS",
    "save_checkpoint",
    "find_last_checkpoint",
    "list_checkpoints",
    "prune_checkpoints",
    "encode_state",
    "decode_state",
    "save_state",
    "load_state",
    "capture_rng_state",
    "restore_rng_state",
]

STATE_JSON = "trainer_state.json"
STATE_TENSORS = "trainer_state.safetensors"


# ---------------------------------------------------------------------------------------------- state codec
def encode_state(obj: Any, tensors: dict[str, torch.Tensor], prefix: str = "t") -> Any:
    """Turn a nested state (dicts, lists, tuples, tensors, numpy arrays, scalars) into plain JSON.

    Tensors move into ``tensors`` (key = their path) and are replaced by ``{"__tensor__": key}``;
    tuples, numpy arrays and dicts with non-string keys get tagged wrappers so :func:`decode_state`
    restores them exactly. Anything else (e.g. a function) raises ``TypeError`` naming its path.
    """
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": prefix}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: encode_state(v, tensors, f"{prefix}.{k}") for k, v in obj.items()}
        return {"__items__": [[k, encode_state(v, tensors, f"{prefix}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [encode_state(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode_state(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix!r} in a checkpoint (not plain data)")


def decode_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`encode_state`."""
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        if set(obj) == {"__ndarray__", "dtype"}:
            return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
        if set(obj) == {"__tuple__"}:
            return tuple(decode_state(v, tensors) for v in obj["__tuple__"])
        if set(obj) == {"__items__"}:
            return {k: decode_state(v, tensors) for k, v in obj["__items__"]}
        return {k: decode_state(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_state(v, tensors) for v in obj]
    return obj


def save_state(directory: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` as ``trainer_state.json`` + ``trainer_state.safetensors`` in ``directory``."""
    directory = Path(directory)
    tensors: dict[str, torch.Tensor] = {}
    encoded = encode_state(state, tensors)
    save_file(tensors, str(directory / STATE_TENSORS))
    (directory / STATE_JSON).write_text(json.dumps(encoded, indent=1, allow_nan=True) + "\n")


def load_state(directory: str | Path) -> dict[str, Any]:
    """Read the state written by :func:`save_state` (safetensors + JSON only; nothing is unpickled)."""
    directory = Path(directory)
    for name in (STATE_JSON, STATE_TENSORS):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"checkpoint {directory} has no {name}: it is not a trainer checkpoint")
    tensors = load_file(str(directory / STATE_TENSORS))
    return decode_state(json.loads((directory / STATE_JSON).read_text()), tensors)


def capture_rng_state() -> dict[str, Any]:
    """The Python, NumPy and torch (CPU and every CUDA device) global RNG states."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------------- folders
def prune_checkpoints(root: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints (0 keeps all); never the one ``last`` names.

    Returns the deleted folders.
    """
    if keep_last < 0:
        raise ValueError(f"keep_last={keep_last} must be >= 0 (0 keeps every checkpoint)")
    if keep_last == 0:
        return []
    root = Path(root)
    pinned = find_last_checkpoint(root)
    found = list_checkpoints(root)
    removed = []
    for _, path in found[: max(0, len(found) - keep_last)]:
        if pinned is not None and path.name == pinned.name:
            continue
        shutil.rmtree(path)
        removed.append(path)
    return removed


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for file in path.rglob("*"):
        if file.is_file():
            with file.open("rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(path)


def save_checkpoint(
    root: str | Path,
    step: int,
    *,
    write_model: Callable[[Path], None],
    state: dict[str, Any],
    extra_files: dict[str, str] | None = None,
    keep_last: int = 0,
) -> Path:
    """Atomically write ``root/step-<step>/`` and point ``root/last`` at it; returns the folder.

    ``write_model(folder)`` writes the model files (e.g. ``model.save_pretrained``); ``state`` is the
    trainer state (see :func:`save_state`); ``extra_files`` maps file names to text content.
    Then prunes to ``keep_last`` checkpoints (0 keeps all).
    """
    if step < 0:
        raise ValueError(f"checkpoint step={step} must be >= 0")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):  # left by a save that was killed
        shutil.rmtree(stale, ignore_errors=True)

    name = f"step-{step}"
    tmp = root / f".tmp-{name}-{os.getpid()}"
    tmp.mkdir()
    write_model(tmp)
    for file_name, text in (extra_files or {}).items():
        (tmp / file_name).write_text(text)
    save_state(tmp, state)
    _fsync_tree(tmp)

    final = root / name
    if final.exists():  # the same step saved again (e.g. a resumed run): swap, then drop the old one
        old = root / f".tmp-old-{name}-{os.getpid()}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old)
    else:
        os.rename(tmp, final)

    link_tmp = root / f".tmp-link-{os.getpid()}"
    if link_tmp.is_symlink() or link_tmp.exists():
        link_tmp.unlink()
    os.symlink(name, link_tmp)
    os.replace(link_tmp, root / LAST)
    _fsync_dir(root)
    prune_checkpoints(root, keep_last)
    return final
