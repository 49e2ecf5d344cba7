"""The batched in-context rollout engine: N tasks in lockstep, E episodes each, one record per tick.

Each tick, every environment appends exactly one record to its stream (DESIGN.md step-record contract):
- the first record is the reset record (``action=0, reward=0, done=0, time=0``);
- after a record with ``done`` 0, the actor's action is applied and the resulting transition's record
  (next obs, that action, its reward, done in {0,1,2}, time) is appended;
- after a terminal (1) or truncated (2) record, the next episode's reset record is appended (no action
  is taken from a done record).
Environments finish their E episodes at different ticks (e.g. FrozenLake terminals); the batch keeps
ticking until all have, and records after an environment's E-th episode are not counted.
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass, field

import numpy as np
import torch
from tensordict import TensorDict

from mouse.eval.actors import Actor


@dataclass
class RolloutResult:
    """Undiscounted return and length of every episode, plus throughput.

    ``returns [N, E]`` float64 and ``lengths [N, E]`` int64 (transitions per episode); ``num_records`` =
    records fed to the actor (N x ticks); ``num_steps`` = env transitions counted in the E episodes;
    ``actions [N, ticks]`` int64 (the actions the actor returned each tick; ``-1`` where the record was
    done, so no action was taken) when ``record_actions``.
    """

    returns: np.ndarray
    lengths: np.ndarray
    num_records: int
    num_steps: int
    seconds: float
    actions: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    @property
    def records_per_s(self) -> float:
        return self.num_records / max(self.seconds, 1e-9)


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
    from mouse.tasks import TabularVecEnv

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if not tasks:
        raise ValueError("rollout needs at least one task, got an empty list")
    env = TabularVecEnv(tasks, seed=env_seed, gamma=gamma)
    n = len(tasks)
    with_continuous = int(env.obs_continuous_dim) > 0
    actor.reset(env, num_actions, rng if rng is not None else np.random.default_rng(env_seed))

    returns = np.zeros((n, episodes), dtype=np.float64)
    lengths = np.zeros((n, episodes), dtype=np.int64)
    episode = np.zeros(n, dtype=np.int64)  # index of the episode each env is in
    taken: list[np.ndarray] = []
    obs = np.asarray(env.reset())
    record = _record(env, obs, np.zeros(n, np.int64), np.zeros(n, np.float32), np.zeros(n, np.int64),
                     np.zeros(n, np.int64), with_continuous)  # fmt: skip
    num_records = num_steps = 0
    start = _time.perf_counter()
    while (episode < episodes).any():
        actions = np.asarray(actor.act(record), dtype=np.int64).reshape(n)
        num_records += n
        was_done = record["done"].numpy() != 0
        if record_actions:
            taken.append(np.where(was_done, -1, actions))
        alive = ~was_done
        bad = actions[alive][(actions[alive] < 0) | (actions[alive] >= num_actions)]
        if bad.size:
            raise ValueError(f"actor {actor.name!r} chose actions {bad.tolist()} outside [0, {num_actions})")
        applied = np.where(alive, actions, 0)  # the action stored in the next record (0 after a done one)
        # inactive (done) envs do not step and report reward 0, done 0 (TabularVecEnv.step)
        next_obs, reward, done, t = env.step(applied, active=alive)
        counted = alive & (episode < episodes)
        idx = np.nonzero(counted)[0]
        returns[idx, episode[idx]] += reward[idx]
        lengths[idx, episode[idx]] += 1
        num_steps += int(counted.sum())
        if was_done.any():  # reset records for the envs whose newest record ended an episode
            reset_obs = np.asarray(env.reset_where(was_done))
            next_obs = np.where(was_done, reset_obs, next_obs)
            t = np.where(was_done, 0, t)
        episode += (done != 0).astype(np.int64)
        record = _record(env, next_obs, applied, reward, done, t, with_continuous)
    seconds = _time.perf_counter() - start
    acts = np.stack(taken, axis=1) if record_actions else None
    return RolloutResult(returns, lengths, num_records, num_steps, seconds, acts)


def _record(env, obs, action, reward, done, time, with_continuous: bool) -> TensorDict:
    """One record per env: TensorDict [N] with the DESIGN.md keys (obs_continuous only if the family has it)."""
    n = obs.shape[0]
    data = {
        "obs_discrete": torch.as_tensor(np.asarray(obs, dtype=np.int64)),
        "action": torch.as_tensor(np.asarray(action, dtype=np.int64)),
        "reward": torch.as_tensor(np.asarray(reward, dtype=np.float32)),
        "done": torch.as_tensor(np.asarray(done, dtype=np.int64)),
        "time": torch.as_tensor(np.asarray(time, dtype=np.int64)),
    }
    if with_continuous:
        data["obs_continuous"] = torch.as_tensor(np.asarray(env.obs_continuous(obs), dtype=np.float32))
    return TensorDict(data, batch_size=[n])
