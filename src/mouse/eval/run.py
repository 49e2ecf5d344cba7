"""What ``mouse-eval`` does, as one library call: :func:`run_eval` (typed config in, files out)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from mouse.device import resolve_device
from mouse.eval.checkpoint import check_compatible, load_checkpoint
from mouse.eval.config import EvalConfig, resolve_family, validate_config
from mouse.eval.evaluate import EvalResult, dataset_teacher, evaluate_model, select_tasks
from mouse.eval.plot import plot_curves

__all__ = ["EvalReport", "run_eval"]

log = logging.getLogger("mouse.eval")


@dataclass
class EvalReport:
    """Where one evaluation went: the result, ``results.json`` and ``curves.png`` (None: no plot)."""

    result: EvalResult
    results_path: Path
    plot_path: Path | None

    def summary(self) -> str:
        """The learning-curve table, the mean score and where the files went (what mouse-eval prints)."""
        r = self.result
        lines = [
            r.table(),
            f"score (mean over episodes): {r.score_mean:.3f}   rollout: {r.steps_per_s:.0f} steps/s"
            if r.normalized
            else f"return (mean over episodes): {r.metrics()['return_mean']:.3f}   rollout: {r.steps_per_s:.0f} steps/s",
        ]
        lines.append(f"results: {self.results_path}")
        if self.plot_path is not None:
            lines.append(f"plot: {self.plot_path}")
        return "\n".join(lines)


def run_eval(cfg: EvalConfig, run_dir: str | Path) -> EvalReport:
    """Evaluate ``cfg.checkpoint`` as configured; write results.json (+ curves.png) to ``cfg.output``
    (default ``run_dir``). Every check runs before the checkpoint's weights are used."""
    validate_config(cfg)
    device = resolve_device(cfg.device, key="device")
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
        split=str(cfg.split), device=device, seeds=cfg.seeds, batch_size=cfg.batch_size,
        context_steps=context_steps, keep_steps=cfg.keep_steps,
        teacher=dataset_teacher(ckpt.spec, family) if cfg.teacher else None,
        teacher_steps=(ckpt.spec.steps_per_task or None) if ckpt.spec is not None else None,
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
    plot_path = plot_curves(result, out_dir / "curves.png") if cfg.plot else None
    return EvalReport(result, results_path, Path(plot_path) if plot_path is not None else None)
