"""Multi-armed bandits: one state, K arms, every pull is one transition, episodes of `horizon` pulls.

A task is a vector of arm means drawn from `numpy.random.default_rng(task_id)`: U[0, 1] for both
reward distributions (as in DPT, Lee et al. 2023); "bernoulli" pays 1 w.p. the mean, "gaussian" pays
mean + `reward_std` * N(0, 1). obs_discrete is always 0 and there is no continuous observation.
"""

from __future__ import annotations

import numpy as np

from mouse.tasks.checks import check_choice, check_float, check_int
from mouse.tasks.core import TabularTask
from mouse.tasks.tabular import TabularFamily

REWARD_DISTS = ("bernoulli", "gaussian")


class BanditFamily(TabularFamily):
    """K-armed bandit tasks: task_id in [0, num_tasks_pool) seeds the arm means."""

    name = "bandit"

    def __init__(
        self,
        num_arms: int = 5,
        reward_dist: str = "bernoulli",
        reward_std: float = 0.3,
        horizon: int = 100,
        num_tasks_pool: int = 1000,
        gamma: float = 1.0,
    ) -> None:
        num_arms = check_int("bandit", "num_arms", num_arms, 2)
        reward_dist = check_choice("bandit", "reward_dist", reward_dist, REWARD_DISTS)
        reward_std = check_float("bandit", "reward_std", reward_std, 0.0, float("inf"))
        horizon = check_int("bandit", "horizon", horizon, 1)
        num_tasks_pool = check_int("bandit", "num_tasks_pool", num_tasks_pool, 1)
        gamma = check_float("bandit", "gamma", gamma, 0.0, 1.0)
        self.params = {
            "num_arms": num_arms,
            "reward_dist": reward_dist,
            "reward_std": reward_std,
            "horizon": horizon,
            "num_tasks_pool": num_tasks_pool,
            "gamma": gamma,
        }
        self.num_arms, self.reward_dist, self.reward_std = num_arms, reward_dist, reward_std
        self.horizon, self.num_tasks_pool, self.gamma = horizon, num_tasks_pool, gamma
        self.num_states = 1
        self.num_actions = num_arms
        self.obs_continuous_dim = 0

    def all_task_ids(self) -> list[int]:
        return list(range(self.num_tasks_pool))

    def arm_means(self, task_id: int) -> np.ndarray:
        """The arm means [K] float64 of task `task_id`."""
        return np.random.default_rng(self._check_task_id(task_id)).uniform(0.0, 1.0, self.num_arms)

    def make_task(self, task_id: int) -> TabularTask:
        means = self.arm_means(task_id)
        return TabularTask(
            P=np.ones((1, self.num_arms, 1)),
            R=means[None, :],
            terminal=np.zeros(1, dtype=bool),
            start=np.ones(1),
            horizon=self.horizon,
            obs_continuous=np.zeros((1, 0), dtype=np.float32),
            task_id=int(task_id),
            reward_noise=self.reward_dist,
            reward_std=self.reward_std if self.reward_dist == "gaussian" else 0.0,
            params={**self.params, "means": means.tolist()},
        )
