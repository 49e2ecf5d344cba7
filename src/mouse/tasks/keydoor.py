"""Dark Key-to-Door (Laskin et al. 2022, Algorithm Distillation): pick up a hidden key, then open a hidden door.

The Dark Room grid (`size` x `size`, start at the centre, the same 5 actions: 0 up, 1 down, 2 left,
3 right, 4 stay; moves into a wall stay put). A task is an ordered pair of distinct cells (key, door).
The state is (cell, has_key): state id = has_key * size**2 + cell, so 2 * size**2 states; the
continuous observation is (row, col, has_key) float32. Rewards are paid on the transition that enters a
cell (staying on a cell enters it again): +1 on entering the key cell without the key (has_key becomes 1),
+1 on entering the door cell with the key, which is terminal (done=1). Entering the door without the key
pays nothing. Episodes are truncated after `horizon` transitions, so the best return is 2.

Task ids: with C = size**2 cells, id = key * (C - 1) + (door if door < key else door - 1), a bijection
from the C * (C - 1) ordered pairs onto 0 .. C * (C - 1) - 1 (`task_cells` / `task_id_of`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mouse.tasks.checks import check_float, check_int
from mouse.tasks.core import TabularTask, TaskFamily
from mouse.tasks.darkroom import DARKROOM_DELTAS
from mouse.tasks.grid import grid_coords, grid_next_cells, shortest_path_lengths
from mouse.tasks.policies import ActOutput, EpsilonNoise, Policy, act_from, argmax_set, uniform_over
from mouse.tasks.tabular import TabularFamily


class KeyDoorFamily(TabularFamily):
    """Dark Key-to-Door tasks. `cell_moves` [C, A] int64 is the intended next cell of each action (the
    Dark Room moves); `start_cell` the centre. P differs per task (has_key flips on the key cell)."""

    name = "keydoor"

    def __init__(self, size: int = 9, horizon: int = 50, gamma: float = 1.0) -> None:
        size = check_int("keydoor", "size", size, 2)
        horizon = check_int("keydoor", "horizon", horizon, 1)
        gamma = check_float("keydoor", "gamma", gamma, 0.0, 1.0)
        self.params = {"size": size, "horizon": horizon, "gamma": gamma}
        self.size, self.horizon, self.gamma = size, horizon, gamma
        self.num_cells = size * size
        self.num_states = 2 * self.num_cells
        self.num_actions = len(DARKROOM_DELTAS)
        self.obs_continuous_dim = 3
        self.cell_moves = grid_next_cells(size, DARKROOM_DELTAS)
        self.cell_moves.setflags(write=False)
        self.start_cell = (size // 2) * size + size // 2
        coords = grid_coords(size)
        has_key = np.repeat(np.array([0.0, 1.0], dtype=np.float32), self.num_cells)[:, None]
        self._obs = np.concatenate([np.concatenate([coords, coords]), has_key], axis=1)  # [2C, 3]
        # next state of every (state, action) before the key flips has_key: the key layer is kept
        self._moves = np.concatenate([self.cell_moves, self.cell_moves + self.num_cells])  # [2C, A]

    def all_task_ids(self) -> list[int]:
        return list(range(self.num_cells * (self.num_cells - 1)))

    def task_cells(self, task_id: int) -> tuple[int, int]:
        """(key cell, door cell) of task `task_id` (cell = row * size + col); out of range -> ValueError."""
        key, j = divmod(self._check_task_id(task_id), self.num_cells - 1)
        return key, (j if j < key else j + 1)

    def task_id_of(self, key: int, door: int) -> int:
        """The task id of the (key, door) cell pair; the inverse of `task_cells`."""
        key = check_int("keydoor", "key", key, 0, self.num_cells - 1)
        door = check_int("keydoor", "door", door, 0, self.num_cells - 1)
        if key == door:
            raise ValueError(f"keydoor: key and door must be different cells, both are {key}")
        return key * (self.num_cells - 1) + (door if door < key else door - 1)

    def make_task(self, task_id: int) -> TabularTask:
        key, door = self.task_cells(task_id)
        C, nS = self.num_cells, self.num_states
        nxt = self._moves.copy()
        got_key = nxt[:C] == key  # entering the key cell without the key picks it up
        nxt[:C][got_key] = C + key
        R = np.zeros((nS, self.num_actions))
        R[:C][got_key] = 1.0
        R[C:][self.cell_moves == door] = 1.0  # entering the door with the key
        P = np.zeros((nS, self.num_actions, nS))
        np.put_along_axis(P, nxt[:, :, None], 1.0, axis=-1)
        terminal = np.zeros(nS, dtype=bool)
        terminal[C + door] = True
        start = np.zeros(nS)
        start[self.start_cell] = 1.0
        return TabularTask(
            P=P,
            R=R,
            terminal=terminal,
            start=start,
            horizon=self.horizon,
            obs_continuous=self._obs,
            task_id=int(task_id),
            params={**self.params, "key": key, "door": door},
        )


def _draw_nearest(dist: np.ndarray, nearest: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One column [M] int64 per row of `dist` [M, C], uniform among those equal to the row's `nearest`."""
    ties = np.cumsum(dist == nearest[:, None], axis=-1)
    u = rng.random(len(dist)) * ties[:, -1]
    return (u[:, None] >= ties).sum(-1).astype(np.int64)


class KeyDoorExplorer(Policy):
    """Find the key, then the door, remembering both across episodes (reset-free), with per-stream ε.

    Without the key: go to the key if it is known, else to the nearest cell not yet entered without the
    key (such a cell that paid nothing is not the key; the unentered start is 0 moves away, so the first
    action tests it by staying). With the key: go to the door if known, else to the nearest cell not yet
    entered while holding the key (the key cell counts as entered: it is never the door). Each stream
    commits to a target drawn uniformly among the nearest candidates and keeps it while it is still one of
    the nearest. Clean distribution: uniform over the actions whose intended next cell is on a shortest
    path to the target. ε ~ U[epsilon_min, epsilon_max] per stream is mixed into the executed action only.
    Reads `obs_discrete` (the state id). Memory: `visited` [N, 2, C] bool (entered without / with the
    key), `key`, `door`, `target` [N] int64 cells (-1: unknown / none).
    """

    name = "explorer"
    obs_key = "obs_discrete"

    def __init__(self, family: TaskFamily, epsilon_min: float = 0.0, epsilon_max: float = 0.3) -> None:
        super().__init__(family)
        if not isinstance(family, KeyDoorFamily):
            raise ValueError(f"the key-to-door explorer needs the keydoor family, got {family.name!r}")
        self.noise = EpsilonNoise("keydoor explorer", epsilon_min, epsilon_max)
        self.num_cells = family.num_cells
        self.cell_moves = np.asarray(family.cell_moves)  # [C, A]
        self._dist = shortest_path_lengths(self.cell_moves)  # [C, C] moves between cells

    def reset(
        self, tasks: Sequence[TabularTask], rng: np.random.Generator, num_steps: int | None = None
    ) -> None:
        super().reset(tasks, rng, num_steps)
        n = len(tasks)
        self.visited = np.zeros((n, 2, self.num_cells), dtype=bool)
        self.key = np.full(n, -1, dtype=np.int64)
        self.door = np.full(n, -1, dtype=np.int64)
        self.target = np.full(n, -1, dtype=np.int64)
        self.noise.draw(n, rng)

    def decode(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(cell [N] int64, has_key [N] int64) of state ids `obs` [N]."""
        has_key, cell = np.divmod(np.asarray(obs, dtype=np.int64), self.num_cells)
        return cell, has_key

    def candidates(self, has_key: np.ndarray) -> np.ndarray:
        """[N, C] bool: the cells each stream may target in its key state (the known key / door alone)."""
        rows = np.arange(len(has_key))
        known = np.where(has_key == 1, self.door, self.key)
        cand = ~self.visited[rows, has_key]
        found = np.flatnonzero(known >= 0)
        cand[found] = False
        cand[found, known[found]] = True
        return cand

    def update_targets(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Commit each stream at states `obs` [N] to its target cell [N] int64 (-1: no candidate left)."""
        cell, has_key = self.decode(obs)
        rows = np.arange(len(cell))
        dist = np.where(self.candidates(has_key), self._dist[cell], np.inf)  # [N, C]
        nearest = dist.min(-1)
        reachable = np.isfinite(nearest)
        keep = (self.target >= 0) & (dist[rows, np.maximum(self.target, 0)] == nearest)
        draw = np.flatnonzero(reachable & ~keep)
        if len(draw):
            self.target[draw] = _draw_nearest(dist[draw], nearest[draw], rng)
        self.target[~reachable] = -1
        return self.target

    def clean_distribution(self, obs: np.ndarray) -> np.ndarray:
        """The clean action distribution [N, A] at states `obs` [N] toward the committed targets."""
        cell, _ = self.decode(obs)
        has_target = self.target >= 0
        score = self._dist[self.cell_moves[cell], np.maximum(self.target, 0)[:, None]]  # [N, A]
        return uniform_over(argmax_set(-score) & has_target[:, None])

    def act(self, obs: np.ndarray, time: np.ndarray, rng: np.random.Generator) -> ActOutput:
        self.update_targets(obs, rng)
        return act_from(self.clean_distribution(obs), self.noise.epsilon, rng)

    def observe(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        done: np.ndarray,
        active: np.ndarray | None = None,
    ) -> None:
        rows = self._active_rows(active, len(obs))
        _, had_key = self.decode(np.asarray(obs)[rows])
        cell, _ = self.decode(np.asarray(next_obs)[rows])
        paid = np.asarray(reward)[rows] > 0
        self.visited[rows, had_key, cell] = True
        got = paid & (had_key == 0)
        self.key[rows[got]] = cell[got]
        self.visited[rows[got], 1, cell[got]] = True  # the key cell is never the door
        opened = paid & (had_key == 1)
        self.door[rows[opened]] = cell[opened]
