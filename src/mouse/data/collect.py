"""Collect a dataset from a task family and a behaviour policy (`mouse-collect`), and a cached default.

`collect_dataset(cfg, output)` builds the family, splits its task ids (train/test from
`task.split_seed`), runs `mouse.rollout.collect_streams` over `num_tasks` tasks of the chosen split and
saves the columns with a full `DatasetSpec`. Same settings, same bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from mouse.data.config import CollectConfig, collect_config, policy_kwargs, task_kwargs
from mouse.data.spec import FORMAT_VERSION, DatasetSpec
from mouse.data.storage import SPEC_FILE, save_dataset
from mouse.hub import check_push_target, push_dataset_to_hub

log = logging.getLogger("mouse.collect")


def stream_task_ids(pool: list[int], num_tasks: int, seed: int) -> np.ndarray:
    """int64 [num_tasks]: a seeded permutation of `pool`, cycled when num_tasks > len(pool)."""
    perm = np.random.default_rng([seed, 0x7A5C]).permutation(np.asarray(pool, dtype=np.int64))
    return np.resize(perm, num_tasks)


def observation_sizes(family: Any, fields: set[str]) -> dict[str, Any]:
    """The ``DatasetSpec`` observation sizes of ``family`` for the record ``fields`` present (0 = absent)."""
    sizes: dict[str, Any] = {
        "obs_discrete_size": int(family.obs_discrete_size) if "obs_discrete" in fields else 0,
        "obs_continuous_dim": int(family.obs_continuous_dim) if "obs_continuous" in fields else 0,
        "obs_image_size": int(family.obs_image_size) if "obs_image" in fields else 0,
    }
    if sizes["obs_image_size"] and family.obs_image_shape:
        sizes["obs_image_shape"] = tuple(int(d) for d in family.obs_image_shape)
    return sizes


def collect_columns(cfg: CollectConfig | dict) -> tuple[dict[str, np.ndarray], DatasetSpec]:
    """Collect the step-record columns and their spec for `cfg` (not written anywhere)."""
    from mouse.rollout import collect_streams
    from mouse.tasks import make_family, make_policy

    cfg = collect_config(cfg)
    family = make_family(cfg.task.name, **task_kwargs(cfg.task))
    policy_params = policy_kwargs(cfg.policy)
    policy = make_policy(cfg.policy.name, family, **policy_params)
    train_ids, test_ids = family.split(cfg.task.split_seed, cfg.task.test_fraction)
    pool = train_ids if cfg.split == "train" else test_ids
    task_ids = stream_task_ids(pool, cfg.num_tasks, cfg.seed)
    columns = collect_streams(
        family, task_ids.tolist(), policy, cfg.steps_per_task, seed=cfg.seed, show_progress=cfg.show_progress
    )
    sizes = observation_sizes(family, set(columns))
    spec = DatasetSpec(
        num_actions=int(family.num_actions),
        horizon=int(family.horizon),
        gamma=float(family.gamma),
        **sizes,
        task_family=family.name,
        task_params=dict(family.params),
        policy=cfg.policy.name,
        policy_params=policy_params,
        split=cfg.split,
        split_seed=cfg.task.split_seed,
        train_task_ids=train_ids,
        test_task_ids=test_ids,
        seed=cfg.seed,
        steps_per_task=cfg.steps_per_task,
    )
    return columns, spec


def collect_dataset(cfg: CollectConfig | dict, output: str | os.PathLike | None = None) -> Path:
    """Collect and save a dataset directory at `output` (default: `cfg.output`); return its path."""
    cfg = collect_config(cfg)
    output = output if output is not None else cfg.output
    if output is None:
        raise ValueError("collect needs an output directory: set output=DIR")
    if Path(output).exists() and not cfg.overwrite:  # fail before the collection work
        raise FileExistsError(f"dataset directory {output} already exists; pass overwrite=true to replace it")
    columns, spec = collect_columns(cfg)
    return save_dataset(columns, spec, output, overwrite=cfg.overwrite)


def settings_hash(cfg: CollectConfig | dict) -> str:
    """Short sha256 of the collection settings that determine the data (not output/hub/progress)."""
    cfg = collect_config(cfg)
    d = dataclasses.asdict(cfg)
    for key in ("output", "overwrite", "show_progress", "hub"):
        d.pop(key)
    d["format_version"] = FORMAT_VERSION
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    """`$MOUSE_CACHE_DIR/datasets`, else `~/.cache/mouse/datasets`."""
    root = os.environ.get("MOUSE_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "mouse") / "datasets"


def ensure_dataset(cfg: CollectConfig | dict, cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of a dataset collected with exactly `cfg`'s settings, collecting it on first use.

    The dataset lives in `<cache_dir>/<settings hash>` (default cache: `default_cache_dir()`). It is
    collected into a private temporary directory and renamed into place, so concurrent callers never
    see a partial dataset: if another process wins the race, its (identical) dataset is used.
    """
    cfg = dataclasses.replace(collect_config(cfg), output=None, overwrite=False)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / settings_hash(cfg)
    if (target / SPEC_FILE).exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        collect_dataset(cfg, output=tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / SPEC_FILE).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def run_collect(cfg: CollectConfig, run_dir: str | os.PathLike) -> tuple[Path, str | None]:
    """What ``mouse-collect`` does: check, collect, save to ``cfg.output`` (relative to the working
    directory; default ``<run_dir>/dataset`` when only ``hub.repo_id`` is set) and push when
    ``hub.repo_id`` is set. Returns the dataset path and the Hub URL (None without a push)."""
    cfg = collect_config(cfg)
    if cfg.output is None and cfg.hub.repo_id is None:
        raise ValueError("mouse-collect needs output=DIR (a dataset directory) or hub.repo_id=ORG/NAME")
    if cfg.hub.repo_id is not None:
        check_push_target(cfg.hub.repo_id, "hub.repo_id")
    output = Path(cfg.output).expanduser().resolve() if cfg.output is not None else Path(run_dir) / "dataset"
    cfg = dataclasses.replace(cfg, output=str(output))
    log.info(
        "collecting %s: %d %s tasks x %d steps, policy %s, seed %d -> %s",
        cfg.split, cfg.num_tasks, cfg.task.name, cfg.steps_per_task, cfg.policy.name, cfg.seed, output,
    )  # fmt: skip
    path = collect_dataset(cfg)
    log.info("wrote %s", path)
    url = None
    if cfg.hub.repo_id:
        url = push_dataset_to_hub(path, cfg.hub.repo_id, private=cfg.hub.private)  # mouse.hub
        log.info("pushed to %s", url)
    return path, url
