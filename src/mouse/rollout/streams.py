"""Task families through the stream engine: dataset collection and teacher learning curves.

`collect_streams` = engine + `PolicyActor` + `ColumnRecorder` (q_star, behavior/teacher logits);
`rollout_returns` = engine + `PolicyActor` + `ReturnRecorder`. The records follow the step-record
contract of `mouse.rollout.engine`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mouse.rollout.actors import PolicyActor
from mouse.rollout.engine import run_streams
from mouse.rollout.env import VecEnv, close_env
from mouse.rollout.recorders import ColumnRecorder, ReturnRecorder
from mouse.tasks.checks import check_int
from mouse.tasks.core import TaskFamily
from mouse.tasks.policies import Policy


def _streams(family: TaskFamily, task_ids: Sequence[int], seed: int) -> tuple[VecEnv, np.random.Generator]:
    """The env of one stream per task id and the policy's generator (which also seeded the env)."""
    rng = np.random.default_rng(seed)
    env = family.make_vec_env([int(i) for i in task_ids], seed=int(rng.integers(2**63)))
    return env, rng


def collect_streams(
    family: TaskFamily,
    task_ids: Sequence[int],
    policy: Policy,
    steps_per_task: int,
    seed: int,
    show_progress: bool = False,
) -> dict[str, np.ndarray]:
    """One reset-free stream of `steps_per_task` records per task id, all streams run in parallel.

    Returns flat stream-major columns over N*T records: stream_id, task_id, action, reward, done, time,
    obs_discrete (int64 [N*T]; reward float32), obs_continuous (float32 [N*T, C], only if C > 0),
    q_star, behavior_logits, teacher_logits (float32 [N*T, A]). stream_id is the position in
    `task_ids`. The same arguments give identical arrays.
    """
    steps = check_int("collect_streams", "steps_per_task", steps_per_task, 1)
    if len(task_ids) == 0:
        raise ValueError("collect_streams: task_ids is empty; pass at least one task id")
    env, rng = _streams(family, task_ids, seed)
    columns = ColumnRecorder(q_star=family.has_q_star)
    try:
        run_streams(
            env, PolicyActor(policy, num_steps=steps), [columns], rng=rng, num_records=steps,
            num_actions=family.num_actions, show_progress=show_progress, desc="collect",
        )  # fmt: skip
    finally:
        close_env(env)
    n = len(task_ids)
    return {
        "stream_id": np.repeat(np.arange(n, dtype=np.int64), steps),
        "task_id": np.repeat(np.asarray(task_ids, dtype=np.int64), steps),
        **columns.columns(),
    }


def rollout_returns(
    family: TaskFamily, task_ids: Sequence[int], policy: Policy, num_episodes: int, seed: int
) -> np.ndarray:
    """Per-episode undiscounted returns [N, E] of `policy` run reset-free for E episodes in each task.

    The same streams as `collect_streams(family, task_ids, policy, E * (H + 1) + 1, seed)` (an episode
    takes at most H + 1 records), stopped once every stream has completed E episodes.
    """
    num_episodes = check_int("rollout_returns", "num_episodes", num_episodes, 1)
    steps = num_episodes * (family.horizon + 1) + 1
    if len(task_ids) == 0:
        raise ValueError("rollout_returns: task_ids is empty; pass at least one task id")
    env, rng = _streams(family, task_ids, seed)
    returns = ReturnRecorder(num_episodes)
    try:
        stats = run_streams(
            env, PolicyActor(policy, num_steps=steps), [returns], rng=rng, num_records=steps,
            episodes=num_episodes, num_actions=family.num_actions,
        )  # fmt: skip
    finally:
        close_env(env)
    return returns.result(stats).returns
