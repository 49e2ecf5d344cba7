"""In-context evaluation: the agent, the oracle and random on the same held-out tasks and env seeds.

A *run* is one task under one env seed; ``R = num_tasks x seeds`` runs, ``E`` episodes each. Runs go
through the engine in batches of ``batch_size`` environments; batch ``b`` of seed index ``s`` uses env seed
``SeedSequence([seed, s, b])`` for every actor, so the agent and both baselines meet the same tasks and
seeds. Statistics (mean, 95% CI, normalised score) are over the R runs per episode index.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mouse.eval.metrics import Curve, curve, normalized_score
from mouse.eval.rollout import rollout
from mouse.rollout import Actor, ModelActor, OracleActor, RandomActor

CONTEXT_POLICY = (
    "sliding_window_reprefill: the model attends to at most context_steps records; when the stream "
    "outgrows it, the most recent keep_steps records are re-prefilled from position 0 and decoding "
    "continues with the KV cache (see mouse.rollout.actors.ModelActor)"
)
SPLITS = ("test", "train", "all")
log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    """Per-run returns ``[R, E]`` of the agent ("model"), "oracle" and "random", plus the run settings."""

    family: str
    task_params: dict
    split: str
    task_ids: list[int]
    seeds: int
    episodes: int
    temperature: float
    seed: int
    returns: dict[str, np.ndarray]  # {"model", "oracle", "random"} -> [R, E] float64
    runs: list[tuple[int, int]]  # (task_id, seed index) per row of returns
    steps_per_s: float  # agent stream records per second over the batch (rollout wall clock)
    seconds: float  # agent rollout wall clock
    context: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def curve(self, who: str) -> Curve:
        return curve(self.returns[who])

    @property
    def score(self) -> tuple[list[float], list[float]]:
        """Normalised score and its 95% CI half-width per episode index (NaN where oracle == random)."""
        return normalized_score(self.returns["model"], self.returns["oracle"], self.returns["random"])

    @property
    def score_mean(self) -> float:
        """Mean normalised score over all episode indices (NaN if any index is undefined)."""
        return float(np.mean(self.score[0]))

    def score_over(self, first: int, last: int) -> float:
        """Mean normalised score over episodes ``first..last`` (1-based, inclusive, clipped to E)."""
        if not 1 <= first <= self.episodes:
            raise ValueError(f"first episode must be in [1, {self.episodes}], got {first}")
        return float(np.mean(self.score[0][first - 1 : min(last, self.episodes)]))

    def metrics(self) -> dict[str, float]:
        """Flat metrics: ``return_ep{k}``, ``score_ep{k}``, ``oracle_return_ep{k}``, ``random_return_ep{k}``
        (k = 1..E), ``score_mean`` and ``steps_per_s``; the trainer logs them under ``eval/``."""
        model, oracle, random = self.curve("model"), self.curve("oracle"), self.curve("random")
        score = self.score[0]
        out: dict[str, float] = {}
        for k in range(self.episodes):
            out[f"return_ep{k + 1}"] = model.mean[k]
            out[f"score_ep{k + 1}"] = score[k]
            out[f"oracle_return_ep{k + 1}"] = oracle.mean[k]
            out[f"random_return_ep{k + 1}"] = random.mean[k]
        out["score_mean"] = self.score_mean
        out["steps_per_s"] = float(self.steps_per_s)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The ``results.json`` content (plain JSON; NaN written as null)."""
        score, score_ci = self.score
        data = {
            "schema_version": 1,
            "task": {
                "family": self.family,
                "params": dict(self.task_params),
                "split": self.split,
                "task_ids": [int(t) for t in self.task_ids],
                "num_tasks": len(self.task_ids),
                "seeds": self.seeds,
                "num_runs": len(self.runs),
            },
            "episodes": self.episodes,
            "temperature": self.temperature,
            "seed": self.seed,
            "episode": list(range(1, self.episodes + 1)),
            "model": self.curve("model").to_dict(),
            "oracle": self.curve("oracle").to_dict(),
            "random": self.curve("random").to_dict(),
            "score": {"mean": score, "ci95": score_ci},
            "score_mean": self.score_mean,
            "steps_per_s": float(self.steps_per_s),
            "rollout_seconds": float(self.seconds),
            "context": dict(self.context),
            "runs": [{"task_id": int(t), "seed": int(s)} for t, s in self.runs],
            "returns": {k: v.tolist() for k, v in self.returns.items()},
            **self.extra,
        }
        return _nan_to_none(data)

    def table(self) -> str:
        """A plain-text learning-curve table: episode | model | oracle | random | score."""
        model, oracle, random = self.curve("model"), self.curve("oracle"), self.curve("random")
        score = self.score[0]
        lines = [f"{'episode':>7} | {'model':>15} | {'oracle':>15} | {'random':>15} | {'score':>6}"]
        lines.append("-" * len(lines[0]))
        for k in range(self.episodes):
            cells = [f"{c.mean[k]:7.3f} ± {c.ci95[k]:5.3f}" for c in (model, oracle, random)]
            lines.append(f"{k + 1:>7} | " + " | ".join(cells) + f" | {score[k]:6.3f}")
        return "\n".join(lines)


def evaluate(
    model: torch.nn.Module,
    spec: Any,
    num_tasks: int | None,
    episodes: int,
    temperature: float = 0.0,
    seed: int = 0,
    split: str = "test",
    device: str | torch.device = "cpu",
    task_ids: list[int] | None = None,
    *,
    seeds: int = 1,
    batch_size: int = 64,
    context_steps: int | None = None,
    keep_steps: int | None = None,
) -> EvalResult:
    """Evaluate ``model`` in context on the tasks of the dataset ``spec`` (the trainer's eval hook).

    Tasks: ``task_ids`` if given, else ``spec.test_task_ids`` (``split="test"``), ``spec.train_task_ids``
    ("train") or both ("all"); the first ``num_tasks`` of them (None = all). ``context_steps`` (None =
    ``model.max_context_steps``) bounds the context; a trainer passes its ``seq_len``.
    """
    from mouse.tasks import make_family

    family = make_family(spec.task_family, **dict(spec.task_params))
    ids = select_tasks(split_task_ids(spec, split) if task_ids is None else task_ids, num_tasks)
    return evaluate_model(
        model, family, ids, episodes, temperature=temperature, seed=seed, split=split, device=device,
        seeds=seeds, batch_size=batch_size, context_steps=context_steps, keep_steps=keep_steps,
    )  # fmt: skip


def evaluate_model(
    model: torch.nn.Module,
    family: Any,
    task_ids: list[int],
    episodes: int,
    *,
    temperature: float = 0.0,
    seed: int = 0,
    split: str = "test",
    device: str | torch.device = "cpu",
    seeds: int = 1,
    batch_size: int = 64,
    context_steps: int | None = None,
    keep_steps: int | None = None,
) -> EvalResult:
    """Evaluate ``model`` (KV-cache :class:`ModelActor`) and the baselines on ``family``'s ``task_ids``.

    Checks that the model covers the family first. The model's training mode and the caller's torch RNG
    state are restored afterwards (sampling at ``temperature > 0`` is seeded by ``seed``).
    """
    from mouse.eval.checkpoint import check_compatible

    check_compatible(model, family)
    if context_steps is None:
        context_steps = getattr(model, "max_context_steps", None)
    _check_context(model, context_steps)
    actor = ModelActor(model, temperature, context_steps, keep_steps, use_cache=True, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            result = evaluate_actor(
                actor, family, task_ids, episodes, seeds=seeds, seed=seed, batch_size=batch_size, split=split
            )
    finally:
        model.train(was_training)
    return result


def evaluate_actor(
    actor: Actor,
    family: Any,
    task_ids: list[int],
    episodes: int,
    *,
    seeds: int = 1,
    seed: int = 0,
    batch_size: int = 64,
    split: str = "test",
) -> EvalResult:
    """Run ``actor`` (a :class:`ModelActor`, a scripted policy...) and the oracle/random baselines.

    Every actor meets the same runs (``task_ids`` x ``seeds``), batches and env seeds.
    """
    if seeds < 1:
        raise ValueError(f"seeds (env seeds per task) must be >= 1, got {seeds}")
    if batch_size < 1:
        raise ValueError(f"batch_size (max environments per batch) must be >= 1, got {batch_size}")
    if not task_ids:
        raise ValueError(f"no tasks to evaluate for family {family.name!r}: task_ids is empty")
    tasks = {t: family.make_task(t) for t in task_ids}
    runs = [(t, s) for s in range(seeds) for t in task_ids]
    returns: dict[str, list[np.ndarray]] = {"model": [], "oracle": [], "random": []}
    records, seconds = 0, 0.0
    for s in range(seeds):
        for b in range(math.ceil(len(task_ids) / batch_size)):
            ids = task_ids[b * batch_size : (b + 1) * batch_size]
            batch = [tasks[t] for t in ids]
            env_seed = int(np.random.SeedSequence([seed, s, b]).generate_state(1)[0])
            for key, who in (("model", actor), ("oracle", OracleActor()), ("random", RandomActor())):
                rng = np.random.default_rng([seed, s, b, 1 + ("model", "oracle", "random").index(key)])
                res = rollout(who, batch, episodes, env_seed, family.num_actions, rng=rng, gamma=family.gamma)
                returns[key].append(res.returns)
                if key == "model":
                    records += res.num_records
                    seconds += res.seconds
    context: dict[str, Any] = {"policy": "none (scripted actor)"}
    if isinstance(actor, ModelActor):
        context = {
            "policy": CONTEXT_POLICY,
            "context_steps": actor.context_steps,
            "keep_steps": actor.keep_steps,
            "reprefills": actor.reprefills,
        }
    return EvalResult(
        family=family.name,
        task_params=dict(family.params),
        split=split,
        task_ids=list(task_ids),
        seeds=seeds,
        episodes=episodes,
        temperature=float(getattr(actor, "temperature", 0.0)),
        seed=seed,
        returns={k: np.concatenate(v, axis=0) for k, v in returns.items()},
        runs=runs,
        steps_per_s=records / max(seconds, 1e-9),
        seconds=seconds,
        context=context,
    )


def split_task_ids(spec: Any, split: str) -> list[int]:
    """The task ids of ``split`` ("test" = held out, "train", "all") in the dataset ``spec``."""
    if split == "test":
        return list(spec.test_task_ids)
    if split == "train":
        return list(spec.train_task_ids)
    if split == "all":
        return list(spec.train_task_ids) + list(spec.test_task_ids)
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def select_tasks(task_ids: list[int], num_tasks: int | None) -> list[int]:
    """The first ``num_tasks`` of ``task_ids`` (None = all).

    Asking for more tasks than the split holds evaluates all of them and logs a warning (the count
    actually used is in ``EvalResult.task_ids`` / results.json); use ``seeds`` for more runs per task.
    """
    task_ids = [int(t) for t in task_ids]
    if num_tasks is None:
        return task_ids
    if num_tasks < 1:
        raise ValueError(f"num_tasks must be >= 1 or None (all), got {num_tasks}")
    if num_tasks > len(task_ids):
        log.warning(
            "num_tasks=%d but the split holds only %d tasks: evaluating all %d (use seeds= for more runs)",
            num_tasks, len(task_ids), len(task_ids),
        )  # fmt: skip
    return task_ids[:num_tasks]


def _check_context(model: Any, context_steps: int | None) -> None:
    limit = getattr(model, "max_context_steps", None)
    if context_steps is not None and limit is not None and context_steps > limit:
        raise ValueError(
            f"context_steps={context_steps} exceeds the model's max_context_steps={limit} "
            f"(max_position_embeddings / tokens_per_step); pass context_steps<={limit}"
        )


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_nan_to_none(v) for v in obj]
    return obj
