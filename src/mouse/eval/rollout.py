"""In-context rollouts for evaluation: the stream engine with a `ReturnRecorder` over one vectorised env.

N streams run in lockstep for E episodes each (`mouse.rollout.engine` has the step-record contract);
streams finish their E episodes at different ticks (e.g. FrozenLake terminals), the batch keeps
ticking until all have, and transitions after a stream's E-th episode are not counted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mouse.rollout import Actor, ReturnRecorder, RolloutResult, run_streams

__all__ = ["RolloutResult", "rollout"]


def rollout(
    actor: Actor,
    env: Any,
    episodes: int,
    num_actions: int,
    rng: np.random.Generator,
    record_actions: bool = False,
) -> RolloutResult:
    """Run ``actor`` for ``episodes`` episodes in each stream of ``env`` (a ``VecEnv``, e.g.
    ``family.make_vec_env(task_ids, seed)``); ``num_actions`` is the family's action count (actors choose
    in ``[0, num_actions)``), ``rng`` seeds the actor's own randomness. Returns a
    :class:`RolloutResult` with ``returns [N, E]``."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    returns = ReturnRecorder(episodes, record_actions=record_actions)
    stats = run_streams(env, actor, [returns], rng=rng, episodes=episodes, num_actions=num_actions)
    return returns.result(stats)
