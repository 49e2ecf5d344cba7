"""Dark Room (Laskin et al. 2022, Algorithm Distillation; Lee et al. 2023, DPT): find a hidden goal cell.

`size` x `size` grid, start at the centre, 5 actions (0 up, 1 down, 2 left, 3 right, 4 stay; moves into
a wall stay put), reward 1 on every transition that ends on the goal (staying there keeps earning), no
terminal states, truncation after `horizon` transitions. A task is a goal cell: task_id = row*size + col.
"""

from __future__ import annotations

import numpy as np

from mouse.tasks.checks import check_float, check_int
from mouse.tasks.core import TabularTask
from mouse.tasks.grid import grid_coords, grid_next_cells
from mouse.tasks.tabular import TabularFamily

DARKROOM_DELTAS = [(-1, 0), (1, 0), (0, -1), (0, 1), (0, 0)]  # up, down, left, right, stay


class DarkRoomFamily(TabularFamily):
    """Dark Room tasks; all share P, only the goal (and so R) differs."""

    name = "darkroom"

    def __init__(self, size: int = 9, horizon: int = 20, gamma: float = 1.0) -> None:
        size = check_int("darkroom", "size", size, 2)
        horizon = check_int("darkroom", "horizon", horizon, 1)
        gamma = check_float("darkroom", "gamma", gamma, 0.0, 1.0)
        self.params = {"size": size, "horizon": horizon, "gamma": gamma}
        self.size, self.horizon, self.gamma = size, horizon, gamma
        self.num_states = size * size
        self.num_actions = len(DARKROOM_DELTAS)
        self.obs_continuous_dim = 2
        self.next_cells = grid_next_cells(size, DARKROOM_DELTAS)
        self.start_cell = (size // 2) * size + size // 2
        P = np.zeros((self.num_states, self.num_actions, self.num_states))
        np.put_along_axis(P, self.next_cells[:, :, None], 1.0, axis=-1)
        P.setflags(write=False)
        self._P = P
        self._coords = grid_coords(size)

    def all_task_ids(self) -> list[int]:
        return list(range(self.num_states))

    def make_task(self, task_id: int) -> TabularTask:
        goal = self._check_task_id(task_id)
        start = np.zeros(self.num_states)
        start[self.start_cell] = 1.0
        return TabularTask(
            P=self._P,
            R=(self.next_cells == goal).astype(np.float64),
            terminal=np.zeros(self.num_states, dtype=bool),
            start=start,
            horizon=self.horizon,
            obs_continuous=self._coords,
            task_id=goal,
            params={**self.params, "goal": goal},
        )
