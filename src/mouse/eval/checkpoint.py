"""Find and load what `mouse-eval` evaluates: a run dir, a checkpoint dir or a Hub model id.

A checkpoint dir holds ``config.json`` + ``model.safetensors`` (``Model.save_pretrained``); the trainer
adds ``dataset_spec.json`` (the training DatasetSpec: task family, params, train/test task ids) and
``train_config.yaml`` (the resolved training config; ``trainer.seq_len`` is the trained context).
A run dir holds ``checkpoints/last`` (a symlink to ``checkpoints/step-N``). Finding and reading those
files is :mod:`mouse.checkpoint_io` (shared with training); Hub downloads are :mod:`mouse.hub`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mouse.checkpoint_io import (
    CONFIG_FILE,
    MODEL_FILES,
    find_last_checkpoint,
    read_dataset_spec,
    read_train_config,
    trained_seq_len,
)
from mouse.hub import HUB_FILES, download_model, is_hub_id

_FIX = "pass a run dir (with checkpoints/last), a checkpoint dir (config.json + model.safetensors) or a Hub model id"


@dataclass
class LoadedCheckpoint:
    """A loaded model with what its checkpoint says about training (``spec``/``train_config`` may be None)."""

    path: Path  # the local checkpoint dir the model was read from
    model: Any
    spec: Any  # mouse.data.DatasetSpec | None
    train_config: dict | None
    seq_len: int | None  # the trained context in steps (train_config trainer.seq_len), if known


def _check_model_files(path: Path, ref: str) -> Path:
    missing = [f for f in MODEL_FILES if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"checkpoint dir {ref!r} lacks {missing}; {_FIX}")
    return path


def resolve_checkpoint(ref: str | Path) -> Path:
    """The local checkpoint dir for ``ref`` (run dir -> its ``checkpoints/last``; Hub id -> a download).

    A Hub id (:func:`mouse.hub.is_hub_id`) downloads only the checkpoint files (``mouse.hub.HUB_FILES``).
    Raises FileNotFoundError naming ``ref`` and the accepted forms when nothing loadable is found.
    """
    ref_str = str(ref)
    path = Path(ref_str).expanduser()
    if path.exists():
        if not path.is_dir():
            raise FileNotFoundError(f"checkpoint {ref_str!r} is a file, not a directory; {_FIX}")
        if (path / CONFIG_FILE).is_file():
            return _check_model_files(path, ref_str)
        if (path / "checkpoints").is_dir():
            last = find_last_checkpoint(path / "checkpoints")
            if last is None:
                raise FileNotFoundError(
                    f"run dir {ref_str!r} has no checkpoint yet (checkpoints/ is empty); train longer or {_FIX}"
                )
            return resolve_checkpoint(last)
        raise FileNotFoundError(
            f"{ref_str!r} is neither a checkpoint dir (no config.json) nor a run dir (no checkpoints/); {_FIX}"
        )
    if not is_hub_id(ref_str):
        raise FileNotFoundError(
            f"checkpoint {ref_str!r} does not exist and is not a Hub model id (owner/name); {_FIX}"
        )
    return _check_model_files(download_model(ref_str, files=HUB_FILES), ref_str)


def load_checkpoint(ref: str | Path, device: str = "cpu") -> LoadedCheckpoint:
    """Resolve ``ref``, load the model (``mouse.models.load_model``) and its dataset spec / train config.

    ``dataset_spec.json`` and ``train_config.yaml`` are read as data (:mod:`mouse.checkpoint_io`:
    interpolations are never resolved); either may be absent (None).
    """
    from mouse.data import DatasetSpec
    from mouse.models import load_model

    path = resolve_checkpoint(ref)
    model = load_model(str(path)).to(device)
    model.eval()
    spec_dict = read_dataset_spec(path)
    spec = DatasetSpec.from_dict(spec_dict) if spec_dict is not None else None
    train_config = read_train_config(path)
    return LoadedCheckpoint(
        path=path, model=model, spec=spec, train_config=train_config, seq_len=trained_seq_len(train_config)
    )


def check_compatible(model: Any, family: Any) -> None:
    """Raise ValueError if the model's embedder/heads cannot cover ``family`` (actions, obs ids, dims, time).

    Reads ``model.config["embedding_kwargs"]``: ``max_num_actions >= family.num_actions``; with discrete
    observations ``max_num_obs_discrete >= family.obs_discrete_size``; with continuous / image
    observations ``max_num_obs_continuous >= family.obs_continuous_dim`` / ``max_num_obs_image >=
    family.obs_image_size``; with a time token
    ``max_num_time_steps > family.horizon`` (times run 0..horizon).
    """
    emb = dict(getattr(model, "config", {}).get("embedding_kwargs", {}))
    max_actions = int(getattr(model, "max_num_actions", emb.get("max_num_actions", 0)))
    problems = []
    if max_actions < family.num_actions:
        problems.append(f"it has {max_actions} actions but {family.name} needs {family.num_actions}")
    if emb.get("include_obs_discrete"):
        size = int(family.obs_discrete_size)
        if size == 0:
            problems.append(f"it reads discrete observations but {family.name} has none")
        elif int(emb.get("max_num_obs_discrete", 0)) < size:
            problems.append(
                f"its obs table has {emb.get('max_num_obs_discrete')} ids but {family.name} has {size} states"
            )
    for kind, key, width in (
        ("continuous", "obs_continuous", int(family.obs_continuous_dim)),
        ("image", "obs_image", int(family.obs_image_size)),
    ):
        if not emb.get(f"include_{key}"):
            continue
        if width == 0:
            problems.append(f"it reads {kind} observations but {family.name} has none")
        elif int(emb.get(f"max_num_{key}", 0)) < width:
            problems.append(
                f"it reads {emb.get(f'max_num_{key}')} {kind} obs values but {family.name} has {width}"
            )
    if emb.get("include_time_token") and int(emb.get("max_num_time_steps", 0)) <= family.horizon:
        problems.append(
            f"its time table has {emb.get('max_num_time_steps')} entries but {family.name} episodes "
            f"reach time {family.horizon}"
        )
    if problems:
        raise ValueError(
            f"the checkpoint's model cannot act in task family {family.name!r} {dict(family.params)}: "
            + "; ".join(problems)
            + ". Evaluate it on the family it was trained for (drop task=) or a smaller variant."
        )
