"""In-context rollouts for evaluation: the stream engine with a `ReturnRecorder` over tabular tasks.

N tasks run in lockstep for E episodes each (`mouse.rollout.engine` has the step-record contract);
environments finish their E episodes at different ticks (e.g. FrozenLake terminals), the batch keeps
ticking until all have, and transitions after an environment's E-th episode are not counted.
"""

from __future__ import annotations

import numpy as np

from mouse.rollout import Actor, ReturnRecorder, RolloutResult, run_streams
from mouse.tasks import TabularVecEnv

__all__ = ["RolloutResult", "rollout"]


def rollout(
    actor: Actor,
    tasks: list,
    episodes: int,
    env_seed: int,
    num_actions: int,
    rng: np.random.Generator | None = None,
    record_actions: bool = False,
    gamma: float | None = None,
) -> RolloutResult:
    """Run ``actor`` for ``episodes`` episodes in each of ``tasks`` (one ``TabularVecEnv``, seed ``env_seed``).

    ``num_actions`` is the family's action count (actors choose in ``[0, num_actions)``); ``rng`` seeds
    the actor's own randomness (random baseline); ``gamma`` is the discount of the env's Q* (None = the
    tasks' own). Returns a :class:`RolloutResult` with ``returns [N, E]``.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if not tasks:
        raise ValueError("rollout needs at least one task, got an empty list")
    env = TabularVecEnv(tasks, seed=env_seed, gamma=gamma)
    returns = ReturnRecorder(episodes, record_actions=record_actions)
    rng = rng if rng is not None else np.random.default_rng(env_seed)
    stats = run_streams(env, actor, [returns], rng=rng, episodes=episodes, num_actions=num_actions)
    return returns.result(stats)
