"""Checks the trainer runs before any heavy work, each failing with one line that names the config key,
the value and the fix: settings against the dataset (:func:`check_fits_data`), the window against the
backbone's positions (:func:`check_context`) and, on a resume, this run's model against the
checkpoint's (:func:`check_same_model`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from mouse.train import config as C

__all__ = ["check_context", "check_fits_data", "check_loss_columns", "check_same_model"]


def check_fits_data(cfg: C.TrainConfig, spec: Any) -> None:
    """``model.embedding.max_num_*`` overrides must cover the dataset (actions, time steps, observation
    ids and sizes); ValueError naming the key, both sizes and the fix."""
    data = spec.embedding_kwargs()
    for key, value in C.embedding_overrides(cfg).items():
        if key.startswith("max_num_") and key in data and value < data[key]:
            raise ValueError(
                f"model.embedding.{key}={value} is smaller than the dataset's {data[key]} "
                f"({spec.task_family}); raise it or leave it null to take the dataset's size"
            )


def check_loss_columns(cfg: C.TrainConfig, columns: Any, spec: Any) -> None:
    """Every active loss must find the dataset columns it reads (``mouse.losses.required_columns``);
    ValueError naming the loss, the column, the family and the fix otherwise (e.g. ``q_star`` in a
    family without exact values)."""
    from mouse.losses import required_columns

    for name, loss_cfg in C.loss_configs(cfg).items():
        for column in required_columns(name, loss_cfg):
            if column in columns:
                continue
            target = f" (target {loss_cfg.target})" if name == "sp" else ""
            why = {
                "q_star": "it has no exact optimal values",
                "teacher_logits": "its behaviour policy reported no teacher distribution",
                "behavior_logits": "its behaviour policy reported no behaviour logits",
            }.get(column, "it was collected without it")
            fix = {
                "q_star": "use loss.sp.target=teacher or next_action, or a family with exact Q*",
                "teacher_logits": "use loss.sp.target=next_action or collect with a policy that has a teacher",
            }.get(column, f"turn loss.{name} off (loss.{name}.weight=0) or collect data with that column")
            raise ValueError(
                f"loss.{name}{target} needs the dataset column {column!r}, which this "
                f"{spec.task_family or 'unnamed'} dataset does not have ({why}); {fix}"
            )


def check_context(cfg: C.TrainConfig, model: torch.nn.Module) -> None:
    """A training window must fit the backbone's positions: ``trainer.seq_len`` x tokens per step <=
    ``backbone.max_position_embeddings``; ValueError naming both keys otherwise."""
    limit = model.max_context_steps
    if limit is not None and cfg.trainer.seq_len > limit:
        raise ValueError(
            f"trainer.seq_len={cfg.trainer.seq_len} needs {cfg.trainer.seq_len * model.tokens_per_step} "
            f"positions ({model.tokens_per_step} token(s) per step) but backbone.max_position_embeddings="
            f"{cfg.backbone.max_position_embeddings} holds {limit} steps; lower trainer.seq_len or raise "
            "backbone.max_position_embeddings"
        )


def _config_key(path: tuple[str, ...]) -> str:
    """The mouse-train key of a ``Model`` kwargs path: ``("backbone_kwargs", "num_hidden_layers")`` →
    ``backbone.num_hidden_layers``; ``("sp_head_kwargs", "num_layers")`` → ``heads.sp.num_layers``."""
    head, *rest = path
    if head == "backbone_kwargs":
        prefix = "backbone"
    elif head == "embedding_kwargs":
        prefix = "model.embedding"
    elif head.endswith("_head_kwargs"):
        prefix = f"heads.{head.removesuffix('_head_kwargs')}"
    elif head == "action_head":
        prefix = "heads.action_head"
    else:
        prefix = f"model.{head}"
    return ".".join([prefix, *rest])


def _diff(a: Any, b: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _diff(a.get(k), b.get(k), (*path, str(k)))]
    return [] if a == b else [(path, a, b)]


def check_same_model(current: dict[str, Any], stored: dict[str, Any], folder: Path) -> None:
    """Resuming needs the checkpoint's architecture: ValueError naming each config key whose value
    differs between this run and ``folder/config.json`` (before any weight is read)."""
    diffs = _diff(json.loads(json.dumps(current)), stored)
    if diffs:
        parts = [f"{_config_key(p)}={now!r} (checkpoint: {then!r})" for p, now, then in diffs[:4]]
        raise ValueError(
            f"cannot resume from {folder}: this run's model differs from the checkpoint's in "
            f"{'; '.join(parts)}; resume with the checkpoint's settings (its train_config.yaml) or "
            "start a new run directory"
        )
