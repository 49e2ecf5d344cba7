"""Reset-free stream collection following THE step-record contract (DESIGN.md).

Record t holds obs_t with the action, reward and done of the transition that arrived at t. A stream
starts with a reset record (action 0, reward 0, done 0, time 0). A terminal (done=1) or truncated
(done=2) record takes no action: q_star and teacher_logits are all -inf and behavior_logits 0 there,
and the next record is the reset record of the next episode. q_star / *_logits at t describe the choice
made out of obs_t, whose transition is stored at t+1. An episode of H transitions takes H+1 records.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from mouse.tasks.checks import check_int
from mouse.tasks.core import TaskFamily
from mouse.tasks.policies import Policy
from mouse.tasks.vec_env import TabularVecEnv

_NEG_INF = np.float32(-np.inf)


def collect_streams(
    family: TaskFamily,
    task_ids: Sequence[int],
    policy: Policy,
    steps_per_task: int,
    seed: int,
    show_progress: bool = False,
) -> dict[str, np.ndarray]:
    """One reset-free stream of `steps_per_task` records per task id, all streams run in parallel.

    Returns flat stream-major columns over N*T records: stream_id, task_id, action, done, time,
    obs_discrete (int64 [N*T]), reward (float32 [N*T]), obs_continuous (float32 [N*T, C], only if C > 0),
    q_star, behavior_logits, teacher_logits (float32 [N*T, A]). stream_id is the position in
    `task_ids`. The same arguments give identical arrays.
    """
    steps = check_int("collect_streams", "steps_per_task", steps_per_task, 1)
    if len(task_ids) == 0:
        raise ValueError("collect_streams: task_ids is empty; pass at least one task id")
    tasks = [family.make_task(int(i)) for i in task_ids]
    rng = np.random.default_rng(seed)
    env = TabularVecEnv(tasks, seed=int(rng.integers(2**63)), gamma=family.gamma)
    policy.reset(tasks, rng, num_steps=steps)
    n, a = len(tasks), family.num_actions
    cols = {
        "action": np.zeros((n, steps), np.int64),
        "reward": np.zeros((n, steps), np.float32),
        "done": np.zeros((n, steps), np.int64),
        "time": np.zeros((n, steps), np.int64),
        "obs_discrete": np.zeros((n, steps), np.int64),
        "q_star": np.empty((n, steps, a), np.float32),
        "behavior_logits": np.empty((n, steps, a), np.float32),
        "teacher_logits": np.empty((n, steps, a), np.float32),
    }
    obs, time = env.reset(), np.zeros(n, np.int64)
    cols["obs_discrete"][:, 0] = obs
    for t in tqdm(range(steps), desc="collect", disable=not show_progress, unit="record"):
        finished = cols["done"][:, t] != 0
        action, behavior, teacher = policy.act(obs, time, rng)
        cols["q_star"][:, t] = env.q_star(obs, time)  # all -inf on finished records
        cols["behavior_logits"][:, t] = np.where(finished[:, None], 0.0, behavior)
        cols["teacher_logits"][:, t] = np.where(finished[:, None], _NEG_INF, teacher)
        if t == steps - 1:
            break
        active = ~finished
        next_obs, reward, done, next_time = env.step(action, active=active)
        policy.observe(obs, action, reward, next_obs, done, active=active)
        if finished.any():
            next_obs = env.reset_where(finished)
            next_time = np.where(finished, 0, next_time)
            policy.on_episode_end(finished)
        cols["action"][:, t + 1] = np.where(active, action, 0)
        cols["reward"][:, t + 1] = reward  # 0 on inactive rows
        cols["done"][:, t + 1] = done
        cols["time"][:, t + 1] = next_time
        cols["obs_discrete"][:, t + 1] = next_obs
        obs, time = next_obs, next_time
    out = {
        "stream_id": np.repeat(np.arange(n, dtype=np.int64), steps),
        "task_id": np.repeat(np.asarray(task_ids, dtype=np.int64), steps),
    }
    for key, col in cols.items():
        out[key] = col.reshape(n * steps, *col.shape[2:])
        if key == "obs_discrete" and family.obs_continuous_dim > 0:
            out["obs_continuous"] = env.obs_continuous_table()[out["stream_id"], out["obs_discrete"]]
    return out


def episode_returns(reward: np.ndarray, done: np.ndarray, num_episodes: int) -> np.ndarray:
    """Undiscounted return of each of the first `num_episodes` complete episodes [N, E] float64.

    `reward`, `done` are [N, T] stream columns in record order; raises if a stream has fewer episodes.
    """
    ends = np.cumsum(done != 0, axis=1)  # episodes completed up to and including record t
    episode = ends - (done != 0)  # episode index that record t's transition belongs to
    out = np.zeros((reward.shape[0], num_episodes))
    mask = episode < num_episodes
    rows = np.broadcast_to(np.arange(reward.shape[0])[:, None], reward.shape)
    np.add.at(out, (rows[mask], episode[mask]), reward[mask])
    short = np.flatnonzero(ends[:, -1] < num_episodes)
    if len(short):
        raise ValueError(
            f"episode_returns: stream {int(short[0])} completed {int(ends[short[0], -1])} episodes, "
            f"fewer than num_episodes={num_episodes}"
        )
    return out


def rollout_returns(
    family: TaskFamily, task_ids: Sequence[int], policy: Policy, num_episodes: int, seed: int
) -> np.ndarray:
    """Per-episode undiscounted returns [N, E] of `policy` run reset-free for E episodes in each task."""
    num_episodes = check_int("rollout_returns", "num_episodes", num_episodes, 1)
    steps = num_episodes * (family.horizon + 1) + 1  # an episode takes at most H + 1 records
    cols = collect_streams(family, task_ids, policy, steps, seed)
    n = len(task_ids)
    return episode_returns(cols["reward"].reshape(n, steps), cols["done"].reshape(n, steps), num_episodes)


def oracle_returns(family: TaskFamily, task_ids: Sequence[int], gamma: float = 1.0) -> np.ndarray:
    """Exact expected return [N] of an optimal policy over one episode of each task."""
    return np.array([family.make_task(int(i)).optimal_return(gamma) for i in task_ids])


def random_returns(family: TaskFamily, task_ids: Sequence[int], gamma: float = 1.0) -> np.ndarray:
    """Exact expected return [N] of the uniform random policy over one episode of each task."""
    return np.array([family.make_task(int(i)).random_return(gamma) for i in task_ids])
