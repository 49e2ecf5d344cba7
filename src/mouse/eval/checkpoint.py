"""Find and load what `mouse-eval` evaluates: a run dir, a checkpoint dir or a Hub model id.

A checkpoint dir holds ``config.json`` + ``model.safetensors`` (``Model.save_pretrained``); the trainer
adds ``dataset_spec.json`` (the training DatasetSpec: task family, params, train/test task ids) and
``train_config.yaml`` (the resolved training config; ``trainer.seq_len`` is the trained context).
A run dir holds ``checkpoints/last`` (a symlink to ``checkpoints/step-N``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_FILES = ("config.json", "model.safetensors")
SPEC_FILE = "dataset_spec.json"
TRAIN_CONFIG_FILE = "train_config.yaml"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_FIX = "pass a run dir (with checkpoints/last), a checkpoint dir (config.json + model.safetensors) or a Hub model id"


@dataclass
class LoadedCheckpoint:
    """A loaded model with what its checkpoint says about training (``spec``/``train_config`` may be None)."""

    path: Path  # the local checkpoint dir the model was read from
    model: Any
    spec: Any  # mouse.data.DatasetSpec | None
    train_config: dict | None
    seq_len: int | None  # the trained context in steps (train_config trainer.seq_len), if known


def resolve_checkpoint(ref: str | Path) -> Path:
    """The local checkpoint dir for ``ref`` (run dir -> its ``checkpoints/last``; Hub id -> a download).

    Raises FileNotFoundError naming ``ref`` and the accepted forms when nothing loadable is found.
    """
    ref_str = str(ref)
    path = Path(ref_str).expanduser()
    if path.exists():
        if not path.is_dir():
            raise FileNotFoundError(f"checkpoint {ref_str!r} is a file, not a directory; {_FIX}")
        if (path / "config.json").is_file():
            missing = [f for f in MODEL_FILES if not (path / f).is_file()]
            if missing:
                raise FileNotFoundError(f"checkpoint dir {ref_str!r} lacks {missing}; {_FIX}")
            return path
        if (path / "checkpoints").is_dir():
            from mouse.train.checkpoint import find_last_checkpoint

            last = find_last_checkpoint(path / "checkpoints")
            if last is None:
                raise FileNotFoundError(
                    f"run dir {ref_str!r} has no checkpoint yet (checkpoints/ is empty); train longer or {_FIX}"
                )
            return resolve_checkpoint(last)
        raise FileNotFoundError(
            f"{ref_str!r} is neither a checkpoint dir (no config.json) nor a run dir (no checkpoints/); {_FIX}"
        )
    if not _HUB_ID.match(ref_str):
        raise FileNotFoundError(
            f"checkpoint {ref_str!r} does not exist and is not a Hub model id (owner/name); {_FIX}"
        )
    return _download(ref_str)


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    patterns = [*MODEL_FILES, SPEC_FILE, TRAIN_CONFIG_FILE]
    try:
        return Path(snapshot_download(repo_id=repo_id, allow_patterns=patterns))
    except Exception as err:  # offline, missing repo, no access: one message with the cause
        raise FileNotFoundError(
            f"checkpoint {repo_id!r} is not a local path and could not be fetched from the Hub "
            f"({type(err).__name__}: {err}); {_FIX}"
        ) from err


def load_checkpoint(ref: str | Path, device: str = "cpu") -> LoadedCheckpoint:
    """Resolve ``ref``, load the model (``mouse.models.load_model``) and its dataset spec / train config."""
    from mouse.models import load_model

    path = resolve_checkpoint(ref)
    model = load_model(str(path)).to(device)
    model.eval()
    spec = None
    if (path / SPEC_FILE).is_file():
        from mouse.data import DatasetSpec

        spec = DatasetSpec.from_dict(json.loads((path / SPEC_FILE).read_text()))
    train_config = None
    if (path / TRAIN_CONFIG_FILE).is_file():
        from omegaconf import OmegaConf

        train_config = OmegaConf.to_container(OmegaConf.load(path / TRAIN_CONFIG_FILE), resolve=True)
    seq_len = None
    if isinstance(train_config, dict):
        seq_len = (train_config.get("trainer") or {}).get("seq_len")
        seq_len = int(seq_len) if seq_len is not None else None
    return LoadedCheckpoint(path=path, model=model, spec=spec, train_config=train_config, seq_len=seq_len)


def check_compatible(model: Any, family: Any) -> None:
    """Raise ValueError if the model's embedder/heads cannot cover ``family`` (actions, obs ids, dims, time).

    Reads ``model.config["embedding_kwargs"]``: ``max_num_actions >= family.num_actions``; with discrete
    observations ``max_num_obs_discrete >= family.num_states``; with continuous observations
    ``max_num_obs_continuous >= family.obs_continuous_dim``; with a time token
    ``max_num_time_steps > family.horizon`` (times run 0..horizon).
    """
    emb = dict(getattr(model, "config", {}).get("embedding_kwargs", {}))
    max_actions = int(getattr(model, "max_num_actions", emb.get("max_num_actions", 0)))
    problems = []
    if max_actions < family.num_actions:
        problems.append(f"it has {max_actions} actions but {family.name} needs {family.num_actions}")
    if emb.get("include_obs_discrete") and int(emb.get("max_num_obs_discrete", 0)) < family.num_states:
        problems.append(
            f"its obs table has {emb.get('max_num_obs_discrete')} ids but {family.name} has {family.num_states} states"
        )
    if emb.get("include_obs_continuous"):
        dim = int(family.obs_continuous_dim)
        if dim == 0:
            problems.append(f"it reads continuous observations but {family.name} has none")
        elif int(emb.get("max_num_obs_continuous", 0)) < dim:
            problems.append(
                f"it reads {emb.get('max_num_obs_continuous')} continuous obs dims but {family.name} has {dim}"
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
