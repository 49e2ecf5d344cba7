"""Run several ``mouse-train`` jobs in one ``torchrun`` launch and leave per-rank evidence for
tests/test_distributed.py (one launch: the interpreter, torch and the process group start once).

    torchrun --standalone --nproc-per-node=2 tests/dist_driver.py OUT PLAN.json

``PLAN.json`` lists phases ``{"name", "run", "overrides", "nan", "own_dir"}``, run in order in the same
processes (the driver owns the Gloo process group; each Trainer joins it and leaves it open). ``run`` is
the run directory (under OUT); ``own_dir``: ranks > 0 get ``<run>_rank<r>`` instead (a fresh run never
reads it, so it must stay absent: only rank 0 writes); ``nan``: rank 1's sp loss turns NaN at its
second call. Per phase and rank the driver writes ``OUT/<name>/rank<r>.json`` (outcome, step, how
often a dataset was collected, a fingerprint of every window drawn), ``batches<r>.pt`` (the
micro-batches trained on) and ``params<r>.pt`` (the local parameters); FSDP phases add rank 0's
outputs of the sharded model on its first batch (``outputs.pt``) and each rank's share of the
parameters (``local_fraction``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from hydra import compose, initialize_config_module
from torch.distributed.tensor import DTensor

import mouse.data.collect as collect_module
from mouse.cli.common import to_config
from mouse.losses import LOSSES
from mouse.train.config import TrainConfig, register_configs
from mouse.train.trainer import NonFiniteLossError, Trainer


def run_phase(out: Path, phase: dict, rank: int) -> None:
    with initialize_config_module(config_module="mouse.conf", version_base=None):
        cfg = to_config(compose(config_name="train", overrides=phase["overrides"]), TrainConfig)
    folder = out / phase["name"]
    folder.mkdir(parents=True, exist_ok=True)
    run = out / phase["run"]
    if phase.get("own_dir") and rank > 0:
        run = out / f"{phase['run']}_rank{rank}"

    batches: list = []
    collected = {"n": 0}
    original_step, original_collect = Trainer.train_step, collect_module.collect_dataset
    original_sp = LOSSES["sp"]

    def recording_step(self: Trainer, batch):
        batches.extend(td.detach().cpu().clone() for td in (batch if isinstance(batch, list) else [batch]))
        return original_step(self, batch)

    def counting_collect(*args, **kwargs):
        collected["n"] += 1
        return original_collect(*args, **kwargs)

    Trainer.train_step = recording_step
    collect_module.collect_dataset = counting_collect
    if phase.get("nan") and rank == 1:
        calls = {"n": 0}

        def nan_at_second_call(step_stream, model_out, loss_cfg):
            calls["n"] += 1
            loss, metrics = original_sp.fn(step_stream, model_out, loss_cfg)
            return (loss * float("nan") if calls["n"] == 2 else loss), metrics

        LOSSES["sp"] = dataclasses.replace(original_sp, fn=nan_at_second_call)

    trainer = Trainer(cfg, run)
    outcome = "finished"
    try:
        trainer.run()
    except NonFiniteLossError as err:
        outcome = f"stopped: {err}"
    finally:
        Trainer.train_step, collect_module.collect_dataset = original_step, original_collect
        LOSSES["sp"] = original_sp

    record = {
        "outcome": outcome,
        "step": trainer.step,
        "collected": collected["n"],
        "windows": [
            b["obs_discrete"].flatten().tolist()[:64] + b["action"].flatten().tolist()[:64] for b in batches
        ],
    }
    params = dict(trainer.model.named_parameters())
    if any(isinstance(p, DTensor) for p in params.values()):  # FSDP: the sharded model
        local = sum(p.to_local().numel() for p in params.values())
        record["local_fraction"] = local / sum(p.numel() for p in params.values())
        trainer.model.eval()
        with torch.no_grad():  # every rank takes part in the forward (it gathers the layers)
            outputs, _ = trainer.model(batches[0])
        if rank == 0:
            torch.save({k: v.clone() for k, v in outputs.items()}, folder / "outputs.pt")
    else:
        torch.save({k: v.detach().clone() for k, v in params.items()}, folder / f"params{rank}.pt")
    torch.save(batches, folder / f"batches{rank}.pt")
    (folder / f"rank{rank}.json").write_text(json.dumps(record))
    dist.barrier()


def main() -> None:
    out, plan = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
    rank = int(os.environ["RANK"])
    torch.set_num_threads(1)
    register_configs()
    dist.init_process_group("gloo")
    try:
        for phase in plan:
            run_phase(out, phase, rank)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
