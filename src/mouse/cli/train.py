"""``mouse-train``: the Hydra training application (configs in the package, ``mouse.conf``).

mouse-train                                     # the default recipe (Dark Room, a few CPU minutes)
mouse-train backbone=qwen3 loss.dqn.weight=1    # any config key on the command line
mouse-train --cfg job                           # print the composed config
mouse-train -m optim.lr=1e-4,3e-4               # a sweep: one run dir and W&B run per job
mouse-train mode=online data=bandit loss=vtrace  # online: the model learns from its own actors
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from mouse.cli.common import hydra_output_dir, sweep_group, to_config, user_errors
from mouse.train.config import ModeKind, TrainConfig, register_configs
from mouse.train.trainer import run_training

register_configs()


@hydra.main(config_path="pkg://mouse.conf", config_name="train", version_base=None)
def main(cfg: DictConfig) -> float | None:
    """Train, then return the final eval ``score_mean`` (else its ``return_mean``, else the final loss)
    for sweepers."""
    with user_errors("mouse-train"):
        config = to_config(cfg, TrainConfig)
        trainer_cls = None
        if config.mode.kind is ModeKind.online:
            from mouse.online.trainer import OnlineTrainer as trainer_cls
        result = run_training(config, hydra_output_dir(), sweep_group=sweep_group(), trainer_cls=trainer_cls)
    m = result.eval_metrics
    return m.get("eval/score_mean", m.get("eval/return_mean", result.final_metrics.get("train/loss")))


if __name__ == "__main__":
    main()
