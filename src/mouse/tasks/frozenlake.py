"""Procedural FrozenLake: gymnasium's FrozenLake dynamics on a random map per task.

Maps come from `gymnasium.envs.toy_text.frozen_lake.generate_random_map(size, p=1 - hole_prob,
seed=task_id)` (gymnasium's `p` is the probability that a tile is FROZEN; maps are regenerated until
the goal is reachable). Transitions are read from `FrozenLakeEnv(desc=map, is_slippery=slippery).P`,
so they match gymnasium exactly: 4 actions (0 left, 1 down, 2 right, 3 up); slippery moves go in the
intended or either perpendicular direction w.p. 1/3 each. Holes and the goal are terminal (done=1);
reward 1 on entering the goal. Start at the top-left cell.
"""

from __future__ import annotations

import numpy as np
from gymnasium.envs.toy_text.frozen_lake import FrozenLakeEnv, generate_random_map

from mouse.tasks.checks import check_float, check_int
from mouse.tasks.core import TabularTask
from mouse.tasks.grid import grid_coords, grid_next_cells
from mouse.tasks.tabular import TabularFamily

FROZENLAKE_DELTAS = [(0, -1), (1, 0), (0, 1), (-1, 0)]  # left, down, right, up (gymnasium's order)
MAX_HOLE_PROB = 0.5  # beyond this random maps rarely have a path and generation could loop for long


def frozenlake_map(size: int, hole_prob: float, seed: int) -> list[str]:
    """The map of task `seed`: rows of 'S', 'F', 'H', 'G' (gymnasium semantics, p = frozen prob)."""
    return generate_random_map(size=size, p=1.0 - hole_prob, seed=seed)


class FrozenLakeFamily(TabularFamily):
    """FrozenLake tasks: task_id in [0, num_tasks_pool) seeds the map."""

    name = "frozenlake"

    def __init__(
        self,
        size: int = 4,
        hole_prob: float = 0.2,
        slippery: bool = False,
        horizon: int | None = None,
        num_tasks_pool: int = 1000,
        gamma: float = 0.99,
    ) -> None:
        size = check_int("frozenlake", "size", size, 2)
        hole_prob = check_float("frozenlake", "hole_prob", hole_prob, 0.0, MAX_HOLE_PROB)
        if not isinstance(slippery, bool | np.bool_):
            raise ValueError(f"frozenlake: slippery must be true or false, got {slippery!r}")
        slippery = bool(slippery)
        horizon = 4 * size * size if horizon is None else check_int("frozenlake", "horizon", horizon, 1)
        num_tasks_pool = check_int("frozenlake", "num_tasks_pool", num_tasks_pool, 1)
        gamma = check_float("frozenlake", "gamma", gamma, 0.0, 1.0)
        self.params = {
            "size": size,
            "hole_prob": hole_prob,
            "slippery": slippery,
            "horizon": horizon,
            "num_tasks_pool": num_tasks_pool,
            "gamma": gamma,
        }
        self.size, self.hole_prob, self.slippery = size, hole_prob, slippery
        self.horizon, self.num_tasks_pool, self.gamma = horizon, num_tasks_pool, gamma
        self.num_states = size * size
        self.num_actions = 4
        self.obs_continuous_dim = 2
        self.next_cells = grid_next_cells(size, FROZENLAKE_DELTAS)
        self._coords = grid_coords(size)

    def all_task_ids(self) -> list[int]:
        return list(range(self.num_tasks_pool))

    def make_task(self, task_id: int) -> TabularTask:
        seed = self._check_task_id(task_id)
        desc = frozenlake_map(self.size, self.hole_prob, seed)
        env = FrozenLakeEnv(desc=desc, is_slippery=self.slippery)
        nS, A = self.num_states, self.num_actions
        P = np.zeros((nS, A, nS))
        R_tr = np.zeros((nS, A, nS))
        for s in range(nS):
            for a in range(A):
                for prob, s2, reward, _ in env.P[s][a]:
                    P[s, a, s2] += prob
                    R_tr[s, a, s2] = reward
        cells = np.array([list(row) for row in desc]).reshape(-1)
        return TabularTask(
            P=P,
            R=(P * R_tr).sum(-1),
            terminal=np.isin(cells, ["H", "G"]),
            start=(cells == "S").astype(np.float64),
            horizon=self.horizon,
            obs_continuous=self._coords,
            task_id=seed,
            params={**self.params, "map": desc},
            R_transition=R_tr,
        )
