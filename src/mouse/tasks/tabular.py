"""`TabularFamily`: a task family whose tasks are finite `TabularTask` MDPs (exact Q*, exact baselines)."""

from __future__ import annotations

import abc
from collections.abc import Sequence

import numpy as np

from mouse.tasks.core import TabularTask, TaskFamily
from mouse.tasks.vec_env import TabularVecEnv


class TabularFamily(TaskFamily):
    """Tabular tasks sharing states, actions and horizon. Subclasses set `num_states` and implement
    `make_task`; the discrete observation is the state id (`obs_discrete_size = num_states`)."""

    num_states: int
    has_q_star = True

    @property
    def obs_discrete_size(self) -> int:  # type: ignore[override]
        return int(self.num_states)

    @abc.abstractmethod
    def make_task(self, task_id: int) -> TabularTask:
        """The task with this id (deterministic); unknown id -> ValueError."""

    def make_vec_env(self, task_ids: Sequence[int], seed: int) -> TabularVecEnv:
        return TabularVecEnv([self.make_task(int(i)) for i in task_ids], seed=seed, gamma=self.gamma)

    def oracle_returns(self, task_ids: Sequence[int], gamma: float = 1.0) -> np.ndarray:
        """Exact expected return [N] of an optimal policy over one episode of each task."""
        return np.array([self.make_task(int(i)).optimal_return(gamma) for i in task_ids])

    def random_returns(self, task_ids: Sequence[int], gamma: float = 1.0) -> np.ndarray:
        """Exact expected return [N] of the uniform random policy over one episode of each task."""
        return np.array([self.make_task(int(i)).random_return(gamma) for i in task_ids])
