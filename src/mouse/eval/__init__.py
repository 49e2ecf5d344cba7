"""In-context evaluation: batched KV-cache rollouts in held-out tasks, baselines, curves and plots.

``evaluate(model, spec, num_tasks, episodes)`` is the trainer's hook; ``mouse-eval`` (mouse.cli.eval)
is the command line. ``evaluate_actor`` runs any :class:`Actor` (e.g. a scripted policy) the same way.
The actors live in ``mouse.rollout`` (the stream engine) and are re-exported here.
"""

from mouse.eval.checkpoint import LoadedCheckpoint, check_compatible, load_checkpoint, resolve_checkpoint
from mouse.eval.evaluate import (
    CONTEXT_POLICY,
    EvalResult,
    evaluate,
    evaluate_actor,
    evaluate_model,
    select_tasks,
    split_task_ids,
)
from mouse.eval.metrics import Curve, curve, normalized_score
from mouse.eval.plot import plot_curves
from mouse.eval.rollout import RolloutResult, rollout
from mouse.rollout import Actor, ModelActor, OracleActor, PolicyActor, RandomActor, StreamPolicyActor

__all__ = [
    "Actor",
    "CONTEXT_POLICY",
    "Curve",
    "EvalResult",
    "LoadedCheckpoint",
    "ModelActor",
    "OracleActor",
    "PolicyActor",
    "RandomActor",
    "RolloutResult",
    "StreamPolicyActor",
    "check_compatible",
    "curve",
    "evaluate",
    "evaluate_actor",
    "evaluate_model",
    "load_checkpoint",
    "normalized_score",
    "plot_curves",
    "resolve_checkpoint",
    "rollout",
    "select_tasks",
    "split_task_ids",
]
