"""Reading a checkpoint folder: the file names and readers that training and evaluation share.

A leaf module (stdlib + omegaconf; no other ``mouse`` module), so :mod:`mouse.train.checkpoint`
(which writes checkpoints) and :mod:`mouse.eval.checkpoint` (which loads them) both use it without
depending on each other. A run directory holds ``checkpoints/step-N/`` folders and a ``last``
symlink; one checkpoint folder holds

    config.json          the model constructor kwargs (``Model.save_pretrained``)
    model.safetensors    the weights
    dataset_spec.json    the training DatasetSpec as a JSON object (optional)
    train_config.yaml    the resolved training config (optional; ``trainer.seq_len`` = trained context)
    README.md            the model card (optional)

Everything read here is data: JSON is parsed with :mod:`json`, the YAML with OmegaConf's loader and
converted with ``resolve=False``, so an ``${...}`` interpolation stays the literal string it is and no
resolver ever runs; nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

__all__ = [
    "CHECKPOINT_FILES",
    "CONFIG_FILE",
    "DATASET_SPEC_FILE",
    "LAST",
    "MODEL_CARD_FILE",
    "MODEL_FILES",
    "TRAIN_CONFIG_FILE",
    "WEIGHTS_FILE",
    "find_last_checkpoint",
    "list_checkpoints",
    "previous_valid_checkpoint",
    "safetensors_is_complete",
    "read_dataset_spec",
    "read_json_object",
    "read_model_config",
    "read_train_config",
    "trained_seq_len",
]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
DATASET_SPEC_FILE = "dataset_spec.json"
TRAIN_CONFIG_FILE = "train_config.yaml"
MODEL_CARD_FILE = "README.md"
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE)
# Every file of a checkpoint folder that leaves the machine (pushed to / fetched from the Hub);
# the trainer state (trainer_state.*) stays local.
CHECKPOINT_FILES = (CONFIG_FILE, WEIGHTS_FILE, MODEL_CARD_FILE, TRAIN_CONFIG_FILE, DATASET_SPEC_FILE)
LAST = "last"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def list_checkpoints(root: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root`` (a ``checkpoints/`` folder) as ``(step, path)``, oldest first.

    Only real ``step-N`` folders count: hidden ``.tmp-*`` folders of an unfinished save and the
    ``last`` symlink are skipped. A missing ``root`` gives ``[]``.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _STEP_DIR.match(path.name)
        if match and path.is_dir() and not path.is_symlink():
            found.append((int(match.group(1)), path))
    return sorted(found)


def find_last_checkpoint(root: str | os.PathLike) -> Path | None:
    """The checkpoint ``root/last`` points to (else the newest ``step-N``), or None if there is none."""
    root = Path(root)
    last = root / LAST
    if last.is_symlink() and last.resolve().is_dir():
        return root / os.readlink(last)
    found = list_checkpoints(root)
    if last.is_symlink():  # dangling: its target is gone (a kill between writing and pruning?)
        fallback = found[-1][1] if found else None
        warnings.warn(
            f"{last} points to {os.readlink(last)!r}, which does not exist; "
            + (f"using the newest checkpoint {fallback} instead" if fallback else "no checkpoint is left"),
            RuntimeWarning,
            stacklevel=2,
        )
        return fallback
    return found[-1][1] if found else None


def safetensors_is_complete(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a safetensors file whose header parses and whose tensor data is all there.

    Reads only the 8-byte header length and the JSON header (stdlib; no tensor is loaded).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return False
            n = int.from_bytes(head, "little")
            if n <= 0 or 8 + n > size:
                return False
            header = json.loads(f.read(n))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    if not isinstance(header, dict):
        return False
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2):
            return False
        end = max(end, int(offsets[1]))
    return 8 + n + end <= size


def previous_valid_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint older than ``folder`` when it is ``checkpoints/step-N``.

    ``folder`` may also be ``checkpoints/last`` (the symlink is followed). Complete: ``config.json``
    is present and ``model.safetensors`` passes :func:`safetensors_is_complete`. None when ``folder``
    is not a step folder or no older complete checkpoint exists.
    """
    folder = Path(folder)
    if folder.name == LAST and folder.is_symlink():
        folder = folder.parent / os.readlink(folder)
    match = _STEP_DIR.match(folder.name)
    if not match:
        return None
    step = int(match.group(1))
    for other_step, other in reversed(list_checkpoints(folder.parent)):
        if other_step < step and (other / CONFIG_FILE).is_file():
            if safetensors_is_complete(other / WEIGHTS_FILE):
                return other
    return None


def read_json_object(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """Parse the JSON object in ``path``; ``ValueError`` naming the file and ``what`` it should hold.

    A missing or unreadable file, invalid JSON and a JSON value that is not an object all raise
    ``ValueError("<path>: cannot read the <what>: ...")`` / ``"<path>: expected a JSON object ..."``.
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read the {what}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object ({what}), got {type(data).__name__}.")
    return data


def read_model_config(folder: str | os.PathLike) -> dict[str, Any]:
    """The model constructor kwargs in ``folder/config.json`` (``ValueError`` if unreadable)."""
    return read_json_object(Path(folder) / CONFIG_FILE, "model config")


def read_dataset_spec(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The training dataset spec dict in ``folder/dataset_spec.json``, or None when the file is absent."""
    path = Path(folder) / DATASET_SPEC_FILE
    return read_json_object(path, "dataset spec") if path.is_file() else None


def read_train_config(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The training config in ``folder/train_config.yaml`` as a plain dict, or None when absent.

    Read as data: interpolations are never resolved (``${x}`` stays the string ``"${x}"``). A file
    that is not a YAML mapping raises ``ValueError`` naming it.
    """
    path = Path(folder) / TRAIN_CONFIG_FILE
    if not path.is_file():
        return None
    from omegaconf import DictConfig, OmegaConf

    try:
        loaded = OmegaConf.load(path)
    except Exception as err:  # yaml and OmegaConf raise several types; name the file
        raise ValueError(f"{path}: cannot read the training config: {type(err).__name__}: {err}") from err
    if not isinstance(loaded, DictConfig):
        raise ValueError(f"{path}: expected a YAML mapping (the training config), got a list.")
    config = OmegaConf.to_container(loaded, resolve=False)
    assert isinstance(config, dict)
    return {str(k): v for k, v in config.items()}


def trained_seq_len(train_config: dict[str, Any] | None) -> int | None:
    """The trained context in steps (``trainer.seq_len`` of a training config), or None if unknown.

    A ``seq_len`` that is not an integer (e.g. an unresolved ``${...}`` string) raises ``ValueError``.
    """
    if not isinstance(train_config, dict):
        return None
    trainer = train_config.get("trainer")
    seq_len = trainer.get("seq_len") if isinstance(trainer, dict) else None
    if seq_len is None:
        return None
    try:
        return int(seq_len)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"the training config's trainer.seq_len must be an integer, got {seq_len!r}"
        ) from err
