"""``mouse-train``: the Hydra training application (configs in the package, ``mouse.conf``).

mouse-train                                     # the default recipe (Dark Room, a few CPU minutes)
mouse-train backbone=qwen3 loss.dqn.weight=1    # any config key on the command line
mouse-train --cfg job                           # print the composed config
mouse-train -m optim.lr=1e-4,3e-4               # a sweep: one run dir and W&B run per job
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from mouse.train.config import register_configs

register_configs()


@hydra.main(config_path="pkg://mouse.conf", config_name="train", version_base=None)
def main(cfg: DictConfig) -> float | None:
    """Train, then return the final eval ``score_mean`` (else the final loss) for sweepers."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from mouse.train.trainer import run_training

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    # W&B group of a sweep's jobs: the sweep folder, e.g. multirun/2026-01-31/12-00-00 → 2026-01-31-12-00-00
    sweep = Path(hydra_cfg.sweep.dir)
    sweep_group = "-".join(sweep.parts[-2:]) if hydra_cfg.mode == RunMode.MULTIRUN else None
    result = run_training(cfg, run_dir, sweep_group=sweep_group)
    return result.eval_metrics.get("eval/score_mean", result.final_metrics.get("train/loss"))


if __name__ == "__main__":
    main()
