"""`mouse-eval`: in-context evaluation of a checkpoint on held-out tasks (Hydra console script).

    mouse-eval checkpoint=<run dir | checkpoint dir | Hub id> [task=darkroom] [num_tasks=64] [episodes=10]

Writes ``results.json`` (learning curves of model, oracle and random with 95% CIs, normalised score,
steps/s, the context policy) and ``curves.png`` to the run dir (``outputs/eval/<date>/<time>/`` or
``output=``), and prints the table. Config: ``conf/eval.yaml``, schema :class:`EvalConfig`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import hydra
from omegaconf import MISSING, DictConfig

# Optional[...] (not ``X | None``): OmegaConf reads these annotations at runtime.
# ruff: noqa: UP007, UP045

log = logging.getLogger("mouse.eval")


@dataclass
class EvalConfig:
    """Typed schema of ``conf/eval.yaml`` (a misspelt key fails at start, naming it)."""

    checkpoint: str = MISSING  # run dir (uses checkpoints/last), checkpoint dir, or Hub model id
    task: Optional[Any] = None  # conf/task group (task=darkroom); None = the checkpoint's dataset family
    split: str = "test"  # test (held out) | train | all
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


def register_configs() -> None:
    """Store :class:`EvalConfig` as ``eval_schema`` in Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="eval_schema", node=EvalConfig)


def validate_config(cfg: Any) -> None:
    """Cross-field checks before loading anything; ValueError naming the key, value and allowed range."""
    from mouse.eval.evaluate import SPLITS

    checks = [
        ("episodes", cfg.episodes >= 1, ">= 1"),
        ("seeds", cfg.seeds >= 1, ">= 1"),
        ("batch_size", cfg.batch_size >= 1, ">= 1"),
        ("temperature", cfg.temperature >= 0, ">= 0 (0 = greedy)"),
        ("num_tasks", cfg.num_tasks is None or cfg.num_tasks >= 1, ">= 1 or null (all)"),
        ("context_steps", cfg.context_steps is None or cfg.context_steps >= 1, ">= 1 or null"),
        ("split", cfg.split in SPLITS, f"one of {SPLITS}"),
    ]
    for key, ok, allowed in checks:
        if not ok:
            raise ValueError(f"eval config: {key}={cfg[key]!r} is invalid; it must be {allowed}")
    if cfg.keep_steps is not None and (
        cfg.keep_steps < 1 or (cfg.context_steps is not None and cfg.keep_steps > cfg.context_steps)
    ):
        raise ValueError(f"eval config: keep_steps={cfg.keep_steps} must be in [1, context_steps]")


def resolve_family(task: Any, spec: Any, split: str):
    """The task family and task ids to evaluate.

    ``task`` None: the checkpoint dataset's family and the ids of its ``split``. ``task`` a ``conf/task``
    node (``name`` + family parameters + ``test_fraction``/``split_seed``): that family; if it equals the
    dataset's family (same parameters), the dataset's own split, else
    ``family.split(task.split_seed, task.test_fraction)``.
    """
    from mouse.data.config import task_config, task_kwargs
    from mouse.eval.evaluate import split_task_ids
    from mouse.tasks import make_family

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


def run(cfg: Any, run_dir: str | Path) -> Any:
    """Evaluate ``cfg.checkpoint`` as configured; write results.json (+ curves.png) under the output dir."""
    import torch

    from mouse.eval.checkpoint import check_compatible, load_checkpoint
    from mouse.eval.evaluate import evaluate_model, select_tasks
    from mouse.eval.plot import plot_curves

    validate_config(cfg)
    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    ckpt = load_checkpoint(cfg.checkpoint, device=device)
    family, ids = resolve_family(cfg.task, ckpt.spec, cfg.split)
    check_compatible(ckpt.model, family)
    task_ids = select_tasks(ids, cfg.num_tasks)
    context_steps = cfg.context_steps or ckpt.seq_len or getattr(ckpt.model, "max_context_steps", None)
    log.info(
        "evaluating %s on %s %s: %d tasks x %d seeds, %d episodes, temperature %s, context %s steps",
        ckpt.path, family.name, cfg.split, len(task_ids), cfg.seeds, cfg.episodes, cfg.temperature, context_steps,
    )  # fmt: skip
    result = evaluate_model(
        ckpt.model, family, task_ids, cfg.episodes, temperature=cfg.temperature, seed=cfg.seed,
        split=cfg.split, device=device, seeds=cfg.seeds, batch_size=cfg.batch_size,
        context_steps=context_steps, keep_steps=cfg.keep_steps,
    )  # fmt: skip
    result.extra.update(
        checkpoint=str(cfg.checkpoint),
        checkpoint_dir=str(ckpt.path),
        num_tasks_requested=cfg.num_tasks,
        context_source="context_steps"
        if cfg.context_steps
        else ("train_config.yaml" if ckpt.seq_len else "model"),
    )
    out_dir = Path(cfg.output) if cfg.output else Path(run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / "results.json"
    results_path.write_text(json.dumps(result.to_dict(), indent=1) + "\n")
    print(result.table())
    print(f"score (mean over episodes): {result.score_mean:.3f}   rollout: {result.steps_per_s:.0f} steps/s")
    print(f"results: {results_path}")
    if cfg.plot:
        print(f"plot: {plot_curves(result, out_dir / 'curves.png')}")
    return result


register_configs()


@hydra.main(config_path="pkg://mouse.conf", config_name="eval", version_base=None)
def main(cfg: DictConfig) -> None:
    """Console entry point (``mouse-eval``)."""
    from hydra.core.hydra_config import HydraConfig

    try:
        run(cfg, HydraConfig.get().runtime.output_dir)
    except (FileNotFoundError, ValueError, KeyError) as err:  # bad input: one line, no traceback
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"mouse-eval: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
