"""`mouse-collect`: collect a step-record dataset from a task family and a policy (Hydra console script).

    mouse-collect task=darkroom num_tasks=200 steps_per_task=400 policy=annealed seed=0 output=DIR
    mouse-collect task=bandit policy=ucb output=DIR hub.repo_id=ORG/NAME

Config: ``conf/collect.yaml`` (groups ``task/`` and ``policy/``), schema
:class:`mouse.data.config.CollectConfig`. A relative ``output`` resolves against the directory the
command was started in; with no ``output`` but a ``hub.repo_id`` the dataset is written to the run
directory (``outputs/collect/<date>/<time>/dataset``) before the push.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from mouse.cli.common import hydra_output_dir, to_config, user_errors
from mouse.data.collect import run_collect
from mouse.data.config import CollectConfig, register_configs

register_configs()


@hydra.main(config_path="pkg://mouse.conf", config_name="collect", version_base=None)
def main(cfg: DictConfig) -> None:
    """Console entry point (``mouse-collect``)."""
    with user_errors("mouse-collect"):
        path, url = run_collect(to_config(cfg, CollectConfig), hydra_output_dir())
    print(f"dataset: {path}")
    if url:
        print(f"hub:     {url}")


if __name__ == "__main__":
    main()
