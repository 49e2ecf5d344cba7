"""Run one ``mouse-train`` job under ``torchrun`` and leave per-rank evidence for tests/test_distributed.py.

    torchrun --standalone --nproc-per-node=2 tests/dist_driver.py OUT MODE [overrides...]

MODE ``train``: train; ``nan``: rank 1's sp loss turns NaN at step 2 (every rank must stop). Each rank
writes ``OUT/rank<r>.json`` (outcome, step, a fingerprint of every window it drew) and
``OUT/params<r>.pt`` (its parameters at the end).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_module

from mouse.cli.common import to_config
from mouse.losses import LOSSES
from mouse.train.config import TrainConfig, register_configs
from mouse.train.trainer import NonFiniteLossError, Trainer


def main() -> None:
    out, mode, overrides = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    rank = int(os.environ["RANK"])
    torch.set_num_threads(1)
    register_configs()
    with initialize_config_module(config_module="mouse.conf", version_base=None):
        cfg = to_config(compose(config_name="train", overrides=overrides), TrainConfig)

    windows: list[list[int]] = []
    original_step = Trainer.train_step

    def recording_step(self: Trainer, batch):  # the windows this rank trains on
        windows.append(
            batch["obs_discrete"].flatten().tolist()[:64] + batch["action"].flatten().tolist()[:64]
        )
        return original_step(self, batch)

    Trainer.train_step = recording_step
    if mode == "nan" and rank == 1:
        spec, calls = LOSSES["sp"], {"n": 0}

        def nan_at_step_2(step_stream, model_out, loss_cfg):
            calls["n"] += 1
            loss, metrics = spec.fn(step_stream, model_out, loss_cfg)
            return (loss * float("nan") if calls["n"] == 2 else loss), metrics

        LOSSES["sp"] = dataclasses.replace(spec, fn=nan_at_step_2)

    trainer = Trainer(cfg, out / "run")
    outcome = "finished"
    try:
        trainer.run()
    except NonFiniteLossError as err:
        outcome = f"stopped: {err}"
    torch.save(
        {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}, out / f"params{rank}.pt"
    )
    record = {"outcome": outcome, "step": trainer.step, "windows": windows}
    (out / f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main()
