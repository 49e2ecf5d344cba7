"""`mouse-collect`: collect a step-record dataset from a task family and a policy (Hydra console script).

    mouse-collect task=darkroom num_tasks=200 steps_per_task=400 policy=annealed seed=0 output=DIR
    mouse-collect task=bandit policy=ucb output=DIR hub.repo_id=ORG/NAME

Config: ``conf/collect.yaml`` (groups ``task/`` and ``policy/``), schema
:class:`mouse.data.config.CollectConfig`. A relative ``output`` resolves against the directory the
command was started in; with no ``output`` but a ``hub.repo_id`` the dataset is written to the run
directory (``outputs/collect/<date>/<time>/dataset``) before the push.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from mouse.data.config import collect_config, register_configs

log = logging.getLogger("mouse.collect")

register_configs()


def run(cfg: DictConfig) -> Path:
    """Validate the composed config, collect, save and (optionally) push; return the dataset path."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import to_absolute_path

    from mouse.data.collect import collect_dataset
    from mouse.data.storage import push_dataset_to_hub

    c = collect_config(cfg)
    if c.output is None and c.hub.repo_id is None:
        raise ValueError("mouse-collect needs output=DIR (a dataset directory) or hub.repo_id=ORG/NAME")
    if c.output is not None:
        output = Path(to_absolute_path(c.output))
    else:
        output = Path(HydraConfig.get().runtime.output_dir) / "dataset"
    c = dataclasses.replace(c, output=str(output))
    log.info(
        "collecting %s: %d %s tasks x %d steps, policy %s, seed %d -> %s",
        c.split,
        c.num_tasks,
        c.task.name,
        c.steps_per_task,
        c.policy.name,
        c.seed,
        output,
    )
    path = collect_dataset(c)
    log.info("wrote %s", path)
    if c.hub.repo_id:
        url = push_dataset_to_hub(path, c.hub.repo_id, private=c.hub.private)
        log.info("pushed to %s", url)
    return path


@hydra.main(config_path="pkg://mouse.conf", config_name="collect", version_base=None)
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
