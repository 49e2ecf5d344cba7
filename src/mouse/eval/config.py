"""Typed config of ``mouse-eval`` (:class:`EvalConfig`) and the task resolution it needs.

``conf/eval.yaml`` starts its defaults list with ``eval_schema`` (the node stored here), so a misspelt
key, a wrong type or an unknown ``split`` fails at compose time naming the key; ``mouse-eval`` then
converts the composed node once into an :class:`EvalConfig`. :func:`validate_config` holds the
cross-field checks; :func:`resolve_family` picks the task family and held-out ids to evaluate.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Optional

from omegaconf import MISSING

from mouse.data.config import TaskConfig, task_config, task_kwargs
from mouse.device import parse_device
from mouse.eval.evaluate import split_task_ids
from mouse.tasks import make_family

# Optional[...] (not ``X | None``): OmegaConf reads these annotations at runtime.
# ruff: noqa: UP007, UP045

__all__ = ["EvalConfig", "EvalSplit", "register_configs", "resolve_family", "validate_config"]


class EvalSplit(StrEnum):
    """Which task ids of the dataset to evaluate: the held-out ones, the training ones, or both."""

    test = "test"
    train = "train"
    all = "all"


@dataclass
class EvalConfig:
    """Typed schema of ``conf/eval.yaml`` (``mouse-eval --cfg job`` prints it)."""

    checkpoint: str = MISSING  # run dir (uses checkpoints/last), checkpoint dir, or Hub model id
    task: Optional[Any] = None  # conf/task group (task=darkroom); None = the checkpoint's dataset family
    split: EvalSplit = EvalSplit.test  # test (held out) | train | all
    num_tasks: Optional[int] = None  # first N tasks of the split; None = all
    episodes: int = 10  # episodes per task (the in-context learning curve)
    seeds: int = 1  # env seeds per task (runs = tasks x seeds)
    temperature: float = 0.0  # 0 = greedy
    batch_size: int = 64  # environments per batch
    context_steps: Optional[int] = None  # None = trained seq_len (train_config.yaml), else model limit
    keep_steps: Optional[int] = None  # records kept on a context overflow; None = context_steps // 2
    seed: int = 0
    device: str = "auto"  # auto = cuda if available else cpu
    output: Optional[str] = None  # results folder; None = the Hydra run dir
    plot: bool = True
    teacher: bool = True  # also run the dataset's behaviour policy (the teacher curve) on the same runs


def register_configs() -> None:
    """Store :class:`EvalConfig` as ``eval_schema`` (plus the task group schemas) in Hydra's
    ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    from mouse.data.config import register_configs as register_data_configs

    register_data_configs()
    ConfigStore.instance().store(name="eval_schema", node=EvalConfig)


def validate_config(cfg: EvalConfig) -> None:
    """Cross-field checks before loading anything; ValueError naming the key, value and allowed range."""
    checks = [
        ("episodes", cfg.episodes >= 1, ">= 1"),
        ("seeds", cfg.seeds >= 1, ">= 1"),
        ("batch_size", cfg.batch_size >= 1, ">= 1"),
        ("temperature", cfg.temperature >= 0, ">= 0 (0 = greedy)"),
        ("num_tasks", cfg.num_tasks is None or cfg.num_tasks >= 1, ">= 1 or null (all)"),
        ("context_steps", cfg.context_steps is None or cfg.context_steps >= 1, ">= 1 or null"),
        ("split", cfg.split in tuple(EvalSplit), f"one of {[s.value for s in EvalSplit]}"),
    ]
    for key, ok, allowed in checks:
        if not ok:
            raise ValueError(f"eval config: {key}={getattr(cfg, key)!r} is invalid; it must be {allowed}")
    if cfg.keep_steps is not None and (
        cfg.keep_steps < 1 or (cfg.context_steps is not None and cfg.keep_steps > cfg.context_steps)
    ):
        raise ValueError(f"eval config: keep_steps={cfg.keep_steps} must be in [1, context_steps]")
    parse_device(cfg.device, key="device")
    if cfg.task is not None:
        task_config(cfg.task)


def resolve_family(task: TaskConfig | dict | None, spec: Any, split: str) -> tuple[Any, list[int]]:
    """The task family and task ids to evaluate.

    ``task`` None: the checkpoint dataset's family and the ids of its ``split``. ``task`` a task config
    (``name`` + family parameters + ``test_fraction``/``split_seed``): that family; if it equals the
    dataset's family (same parameters), the dataset's own split, else
    ``family.split(task.split_seed, task.test_fraction)``.
    """
    if task is None:
        if spec is None:
            raise ValueError(
                "the checkpoint has no dataset_spec.json, so its task family is unknown; pass task=<family> "
                "(e.g. task=darkroom)"
            )
        family = make_family(spec.task_family, **dict(spec.task_params))
        return family, split_task_ids(spec, split)
    tc = task_config(task)
    family = make_family(tc.name, **task_kwargs(tc))
    if spec is not None and spec.task_family == family.name:
        if make_family(spec.task_family, **dict(spec.task_params)).params == family.params:
            return family, split_task_ids(spec, split)
    train, test = family.split(tc.split_seed, tc.test_fraction)
    return family, {"train": train, "test": test, "all": sorted(train + test)}[split]
