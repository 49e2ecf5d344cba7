"""`mouse-eval`: in-context evaluation of a checkpoint on held-out tasks (Hydra console script).

    mouse-eval checkpoint=<run dir | checkpoint dir | Hub id> [task=darkroom] [num_tasks=64] [episodes=10]

Writes ``results.json`` (learning curves of model, oracle and random with 95% CIs, normalised score,
steps/s, the context policy) and ``curves.png`` to the run dir (``outputs/eval/<date>/<time>/`` or
``output=``), and prints the table. Config: ``conf/eval.yaml``, schema
:class:`mouse.eval.config.EvalConfig`; the work is :func:`mouse.eval.run_eval`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from mouse.cli.common import hydra_output_dir, to_config, user_errors
from mouse.eval.config import EvalConfig, register_configs
from mouse.eval.run import run_eval

register_configs()


@hydra.main(config_path="pkg://mouse.conf", config_name="eval", version_base=None)
def main(cfg: DictConfig) -> None:
    """Console entry point (``mouse-eval``)."""
    with user_errors("mouse-eval"):
        report = run_eval(to_config(cfg, EvalConfig), hydra_output_dir())
    print(report.summary())


if __name__ == "__main__":
    main()
