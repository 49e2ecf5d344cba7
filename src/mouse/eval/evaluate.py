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
from mouse.rollout import Actor, ModelActor, OracleActor, RandomActor, close_env

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
    returns: dict[str, np.ndarray]  # "model", "random" and, where known, "oracle", "teacher" -> [R, E]
    runs: list[tuple[int, int]]  # (task_id, seed index) per row of returns
    steps_per_s: float  # agent stream records per second over the batch (rollout wall clock)
    seconds: float  # agent rollout wall clock
    context: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    oracle: str | None = "q_star"  # how the oracle row was obtained (ORACLE_KINDS); None: no oracle
    teacher: str | None = None  # the behaviour policy the teacher row ran (the dataset's), None: none

    def curve(self, who: str) -> Curve:
        return curve(self.returns[who])

    @property
    def normalized(self) -> bool:
        """Whether scores are defined: the family gave an oracle reference (Q*, BFS, a known maximum)."""
        return "oracle" in self.returns

    @property
    def score(self) -> tuple[list[float], list[float]]:
        """Normalised score and its 95% CI half-width per episode index (NaN where oracle == random, or
        everywhere when there is no oracle: see :attr:`normalized`)."""
        if not self.normalized:
            nan = [float("nan")] * self.episodes
            return nan, list(nan)
        return normalized_score(self.returns["model"], self.returns["oracle"], self.returns["random"])

    @property
    def who(self) -> list[str]:
        """The rows present, in table order: model, teacher, oracle, random."""
        return [k for k in ("model", "teacher", "oracle", "random") if k in self.returns]

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
        """Flat metrics: ``return_ep{k}``, ``<who>_return_ep{k}`` for teacher/oracle/random (k = 1..E),
        ``return_mean``, ``steps_per_s`` and, when :attr:`normalized`, ``score_ep{k}`` and ``score_mean``;
        the trainer logs them under ``eval/``."""
        score = self.score[0]
        out: dict[str, float] = {}
        for k in range(self.episodes):
            out[f"return_ep{k + 1}"] = self.curve("model").mean[k]
            if self.normalized:
                out[f"score_ep{k + 1}"] = score[k]
            for who in self.who[1:]:
                out[f"{who}_return_ep{k + 1}"] = self.curve(who).mean[k]
        out["return_mean"] = float(np.mean(self.curve("model").mean))
        if self.normalized:
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
            "normalized": self.normalized,
            "oracle_kind": self.oracle,
            "teacher_policy": self.teacher,
            **{who: self.curve(who).to_dict() for who in self.who},
            "score": {"mean": score, "ci95": score_ci} if self.normalized else None,
            "score_mean": self.score_mean if self.normalized else None,
            "steps_per_s": float(self.steps_per_s),
            "rollout_seconds": float(self.seconds),
            "context": dict(self.context),
            "runs": [{"task_id": int(t), "seed": int(s)} for t, s in self.runs],
            "returns": {k: v.tolist() for k, v in self.returns.items()},
            **self.extra,
        }
        return _nan_to_none(data)

    def table(self) -> str:
        """A plain-text learning-curve table: episode | model | teacher | oracle | random | score (the
        rows present; returns are raw, the score column only when :attr:`normalized`)."""
        who, score = self.who, self.score[0]
        curves = [self.curve(w) for w in who]
        head = f"{'episode':>7} | " + " | ".join(f"{w:>15}" for w in who)
        lines = [head + (f" | {'score':>6}" if self.normalized else "")]
        lines.append("-" * len(lines[0]))
        for k in range(self.episodes):
            cells = [f"{c.mean[k]:7.3f} ± {c.ci95[k]:5.3f}" for c in curves]
            line = f"{k + 1:>7} | " + " | ".join(cells)
            lines.append(line + (f" | {score[k]:6.3f}" if self.normalized else ""))
        if not self.normalized:
            lines.append(f"(raw returns: task family {self.family!r} gives no oracle reference, so no score)")
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
    teacher: bool = True,
) -> EvalResult:
    """Evaluate ``model`` in context on the tasks of the dataset ``spec`` (the trainer's eval hook).

    Tasks: ``task_ids`` if given, else ``spec.test_task_ids`` (``split="test"``), ``spec.train_task_ids``
    ("train") or both ("all"); the first ``num_tasks`` of them (None = all). ``context_steps`` (None =
    ``model.max_context_steps``) bounds the context; a trainer passes its ``seq_len``. ``teacher``: also
    run the dataset's behaviour policy (:func:`dataset_teacher`) on the same runs.
    """
    from mouse.tasks import make_family

    family = make_family(spec.task_family, **dict(spec.task_params))
    ids = select_tasks(split_task_ids(spec, split) if task_ids is None else task_ids, num_tasks)
    return evaluate_model(
        model, family, ids, episodes, temperature=temperature, seed=seed, split=split, device=device,
        seeds=seeds, batch_size=batch_size, context_steps=context_steps, keep_steps=keep_steps,
        teacher=dataset_teacher(spec, family) if teacher else None, teacher_steps=spec.steps_per_task or None,
    )  # fmt: skip


def dataset_teacher(spec: Any, family: Any) -> Any:
    """The behaviour policy that collected the dataset ``spec`` (``make_policy(spec.policy, family,
    **spec.policy_params)``), ready to run on ``family``; None when the spec names no policy or the
    policy cannot run there (a different family). Pass ``teacher_steps=spec.steps_per_task`` with it so
    its schedule spans the collected stream."""
    from mouse.tasks import POLICIES, make_policy

    if spec is None or spec.policy not in POLICIES or spec.task_family != family.name:
        return None
    try:
        policy = make_policy(spec.policy, family, **dict(spec.policy_params))
    except ValueError as err:
        log.warning("not running the dataset's teacher %r on %s: %s", spec.policy, family.name, err)
        return None
    return policy


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
    teacher: Any = None,
    teacher_steps: int | None = None,
) -> EvalResult:
    """Evaluate ``model`` (KV-cache :class:`ModelActor`) and the baselines on ``family``'s ``task_ids``
    (``teacher``, ``teacher_steps``: a behaviour policy run beside them, see :func:`evaluate_actor`).

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
                actor, family, task_ids, episodes, seeds=seeds, seed=seed, batch_size=batch_size,
                split=split, teacher=teacher, teacher_steps=teacher_steps,
            )  # fmt: skip
    finally:
        model.train(was_training)
    return result


ORACLE_KINDS = ("q_star", "reference")  # greedy on exact Q* through the engine | family.oracle_returns
_WHO_SEED = ("model", "oracle", "random", "teacher")  # each actor's generator index (fixed: same seeds)


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
    teacher: Any = None,
    teacher_steps: int | None = None,
) -> EvalResult:
    """Run ``actor`` (a :class:`ModelActor`, a scripted policy...) and the baselines on ``family``.

    Every actor meets the same runs (``task_ids`` x ``seeds``), batches and env seeds (each batch is one
    ``family.make_vec_env``). Baselines: random (run); the oracle (greedy on Q*, run, when the family has
    exact values; else the family's ``oracle_returns`` reference per task, constant over episodes; else
    none, and the result reports raw returns); ``teacher`` (a behaviour ``Policy``, e.g. the dataset's
    exploring teacher, run through a :class:`PolicyActor` with its cross-episode memory) when given; its
    schedule spans ``teacher_steps`` records (the collected stream; None: these episodes' records).
    """
    from mouse.rollout import PolicyActor

    if seeds < 1:
        raise ValueError(f"seeds (env seeds per task) must be >= 1, got {seeds}")
    if batch_size < 1:
        raise ValueError(f"batch_size (max environments per batch) must be >= 1, got {batch_size}")
    if not task_ids:
        raise ValueError(f"no tasks to evaluate for family {family.name!r}: task_ids is empty")
    runs = [(t, s) for s in range(seeds) for t in task_ids]
    oracle_kind = "q_star" if family.has_q_star else None
    reference = None if family.has_q_star else family.oracle_returns(task_ids, 1.0)
    if reference is not None:
        oracle_kind = "reference"
        reference = dict(zip(task_ids, np.asarray(reference, dtype=np.float64).tolist()))
    who: list[tuple[str, Any]] = [("model", actor)]
    if family.has_q_star:
        who.append(("oracle", OracleActor()))
    who.append(("random", RandomActor()))
    if teacher is not None:
        steps = teacher_steps or episodes * (family.horizon + 1) + 1
        who.append(("teacher", PolicyActor(teacher, name="teacher", num_steps=steps)))
    returns: dict[str, list[np.ndarray]] = {key: [] for key, _ in who}
    if reference is not None:
        returns["oracle"] = []
    records, seconds = 0, 0.0
    for s in range(seeds):
        for b in range(math.ceil(len(task_ids) / batch_size)):
            ids = task_ids[b * batch_size : (b + 1) * batch_size]
            env_seed = int(np.random.SeedSequence([seed, s, b]).generate_state(1)[0])
            for key, actor_b in who:
                rng = np.random.default_rng([seed, s, b, 1 + _WHO_SEED.index(key)])
                env = family.make_vec_env(ids, env_seed)
                try:
                    res = rollout(actor_b, env, episodes, family.num_actions, rng=rng)
                finally:
                    close_env(env)
                returns[key].append(res.returns)
                if key == "model":
                    records += res.num_records
                    seconds += res.seconds
            if reference is not None:
                returns["oracle"].append(np.repeat(np.array([[reference[t]] for t in ids]), episodes, axis=1))
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
        oracle=oracle_kind,
        teacher=None if teacher is None else str(getattr(teacher, "name", type(teacher).__name__)),
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
