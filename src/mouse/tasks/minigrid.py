"""Random-goal room (MiniGrid): an image-observation family built on the `minigrid` package.

A `size` x `size` room (walls included) with one green goal cell. A task is a layout: the goal cell and
the agent's start cell and direction, fixed for every episode of the task. Task ids index a seeded
permutation of all distinct layouts, so no two ids share one (train and test layouts never overlap).
Actions are restricted to minigrid's first three: 0 turn left, 1 turn right, 2 forward (pickup, drop,
toggle and done do nothing in an empty room). The observation is minigrid's egocentric 7 x 7 x 3
symbolic view (`obs["image"]`, uint8, flattened to P = 147). Rewards are minigrid's: on reaching the
goal (terminal) `1 - 0.9 * step_count / max_steps`, 0 otherwise; `max_steps` = `horizon` (truncated).
The oracle return is exact: a breadth-first search over (x, y, direction) gives the fewest actions d.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from gymnasium import spaces
from minigrid.core.constants import DIR_TO_VEC, OBJECT_TO_IDX
from minigrid.core.grid import Grid
from minigrid.core.mission import MissionSpace
from minigrid.core.world_object import Goal, Wall
from minigrid.minigrid_env import MiniGridEnv
from minigrid.wrappers import ImgObsWrapper

from mouse.tasks.checks import check_choice, check_float, check_int
from mouse.tasks.core import TaskFamily
from mouse.tasks.gym import VECTORIZATIONS, GymVecEnv, ObsLayout

LEFT, RIGHT, FORWARD = 0, 1, 2  # minigrid's Actions.left / right / forward
NUM_ACTIONS = 3
VIEW = 7  # minigrid's default agent_view_size
MAX_SIZE = 32


@dataclass(frozen=True)
class MiniGridTask:
    """One room layout: `goal` and `start` cells as (x, y) (minigrid's column, row), `start_dir` in
    0..3 (minigrid: 0 right / +x, 1 down / +y, 2 left, 3 up)."""

    task_id: int
    goal: tuple[int, int]
    start: tuple[int, int]
    start_dir: int
    seed: int = 0  # the layout's index among all layouts of the room size


def _mission() -> str:
    return "get to the green goal square"


class RandomGoalRoomEnv(MiniGridEnv):
    """A `MiniGridEnv` whose `_gen_grid` builds one fixed layout (walls, goal, agent start); 3 actions."""

    def __init__(
        self, size: int, goal: tuple[int, int], start: tuple[int, int], start_dir: int, max_steps: int
    ):
        self.goal, self.start, self.start_dir = tuple(goal), tuple(start), int(start_dir)
        super().__init__(
            mission_space=MissionSpace(mission_func=_mission),
            grid_size=size,
            max_steps=max_steps,
            see_through_walls=True,  # an empty room hides nothing; skips minigrid's visibility pass
        )
        self.action_space = spaces.Discrete(NUM_ACTIONS)
        self.padded_encoding: np.ndarray | None = None  # built by the first reset; the room never changes
        self.views: dict[tuple[int, int, int], np.ndarray] = {}  # pose -> view, kept across episodes

    def _gen_grid(self, width: int, height: int) -> None:
        self.grid = Grid(width, height)
        self.grid.wall_rect(0, 0, width, height)
        self.put_obj(Goal(), *self.goal)
        self.agent_pos, self.agent_dir = self.start, self.start_dir
        self.mission = _mission()
        if self.padded_encoding is None:  # the room's encoding [x, y, 3], wall-padded as minigrid slices
            pad = self.agent_view_size - 1
            self.padded_encoding = np.empty((width + 2 * pad, height + 2 * pad, 3), dtype=np.uint8)
            self.padded_encoding[:] = Wall().encode()
            self.padded_encoding[pad : pad + width, pad : pad + height] = self.grid.encode()

    def view(self) -> np.ndarray:
        """The egocentric view [7, 7, 3] uint8 of the current pose, equal to minigrid's `gen_obs()["image"]`
        (see-through walls, nothing carried) but computed with numpy from the static room encoding."""
        key = (int(self.agent_pos[0]), int(self.agent_pos[1]), int(self.agent_dir))
        if key not in self.views:
            top_x, top_y, _, _ = self.get_view_exts()
            pad, size = self.agent_view_size - 1, self.agent_view_size
            window = self.padded_encoding[pad + top_x : pad + top_x + size, pad + top_y : pad + top_y + size]
            image = np.rot90(window, k=-(self.agent_dir + 1), axes=(0, 1)).copy()  # minigrid's rotate_left
            image[size // 2, size - 1] = (OBJECT_TO_IDX["empty"], 0, 0)  # the agent's own cell
            self.views[key] = image
        return self.views[key].copy()

    def gen_obs(self) -> dict:
        """minigrid's observation dict, with the image from `view()` (the room is static and empty)."""
        return {"image": self.view(), "direction": self.agent_dir, "mission": self.mission}


def make_room_env(size: int, task: MiniGridTask, max_steps: int) -> ImgObsWrapper:
    """The env of `task`, observing only the 7 x 7 x 3 uint8 view (`ImgObsWrapper`)."""
    return ImgObsWrapper(RandomGoalRoomEnv(size, task.goal, task.start, task.start_dir, max_steps))


def shortest_actions(size: int, goal: tuple[int, int], start: tuple[int, int], start_dir: int) -> list[int]:
    """A shortest action sequence (0 left, 1 right, 2 forward) from (start, start_dir) onto `goal` in an
    empty `size` x `size` room, by breadth-first search over (x, y, direction)."""
    begin = (*start, start_dir)
    parent: dict[tuple[int, int, int], tuple[tuple[int, int, int], int] | None] = {begin: None}
    queue = deque([begin])
    while queue:
        state = queue.popleft()
        x, y, d = state
        if (x, y) == tuple(goal):
            plan = []
            while parent[state] is not None:
                state, action = parent[state]
                plan.append(action)
            return plan[::-1]
        dx, dy = (int(v) for v in DIR_TO_VEC[d])
        fx, fy = x + dx, y + dy
        moves = [(LEFT, (x, y, (d - 1) % 4)), (RIGHT, (x, y, (d + 1) % 4))]
        if 1 <= fx <= size - 2 and 1 <= fy <= size - 2:  # forward into a wall stays put: never shorter
            moves.append((FORWARD, (fx, fy, d)))
        for action, nxt in moves:
            if nxt not in parent:
                parent[nxt] = (state, action)
                queue.append(nxt)
    raise ValueError(f"minigrid: goal {goal} is unreachable from {start} in a {size}x{size} room")


class MiniGridFamily(TaskFamily):
    """Random-goal rooms; task id i is the i-th layout of a permutation seeded by `seed`.

    `num_tasks_pool` None = every distinct layout ((size-2)^2 goals x ((size-2)^2 - 1) starts x 4
    directions: 960 at size 6). `horizon` None = 2 * (size - 2)^2 (32 at size 6, where the longest
    shortest path is 9 actions)."""

    name = "minigrid"

    def __init__(
        self,
        size: int = 6,
        horizon: int | None = None,
        num_tasks_pool: int | None = None,
        seed: int = 0,
        gamma: float = 1.0,
        vectorization: str = "sync",
    ) -> None:
        size = check_int("minigrid", "size", size, 4, MAX_SIZE)
        inner = size - 2
        total = inner**2 * (inner**2 - 1) * 4
        horizon = 2 * inner**2 if horizon is None else check_int("minigrid", "horizon", horizon, 1)
        pool = total if num_tasks_pool is None else check_int("minigrid", "num_tasks_pool", num_tasks_pool, 1)
        if pool > total:
            raise ValueError(
                f"minigrid: num_tasks_pool={pool} exceeds the {total} distinct layouts of a size-{size} room; "
                f"use num_tasks_pool <= {total} (or null for all of them) or a larger size"
            )
        seed = check_int("minigrid", "seed", seed, 0)
        gamma = check_float("minigrid", "gamma", gamma, 0.0, 1.0)
        vectorization = check_choice("minigrid", "vectorization", str(vectorization), VECTORIZATIONS)
        self.size, self.horizon, self.num_tasks_pool, self.seed = size, horizon, pool, seed
        self.gamma, self.vectorization = gamma, vectorization
        self.params = {
            "size": size,
            "horizon": horizon,
            "num_tasks_pool": pool,
            "seed": seed,
            "gamma": gamma,
            "vectorization": vectorization,
        }
        self.num_actions = NUM_ACTIONS
        self.obs_image_shape = (VIEW, VIEW, 3)
        self.obs_image_size = VIEW * VIEW * 3
        self.obs_image_max = 10  # symbolic ids: object 0..10, colour 0..5, state 0..2
        self._layouts = np.random.default_rng(seed).permutation(total)[:pool]

    def all_task_ids(self) -> list[int]:
        return list(range(self.num_tasks_pool))

    def make_task(self, task_id: int) -> MiniGridTask:
        """Layout `task_id`: goal, start cell (never the goal) and start direction."""
        task_id = self._check_task_id(task_id)
        cells = (self.size - 2) ** 2
        layout = int(self._layouts[task_id])
        direction, code = layout % 4, layout // 4
        goal, rest = divmod(code, cells - 1)
        start = rest + (rest >= goal)  # the cells other than the goal, in order

        def cell(k: int) -> tuple[int, int]:
            return (1 + k % (self.size - 2), 1 + k // (self.size - 2))

        return MiniGridTask(task_id, cell(goal), cell(start), direction, seed=layout)

    def shortest_path(self, task_id: int) -> list[int]:
        """A shortest action sequence of task `task_id` (see `shortest_actions`)."""
        t = self.make_task(task_id)
        return shortest_actions(self.size, t.goal, t.start, t.start_dir)

    def make_vec_env(self, task_ids: Sequence[int], seed: int) -> GymVecEnv:
        tasks = [self.make_task(int(i)) for i in task_ids]
        fns = [_RoomFactory(self.size, t, self.horizon) for t in tasks]
        layout = ObsLayout("obs_image", self.obs_image_size, self.obs_image_shape)
        return GymVecEnv(fns, tasks, seed, self.horizon, layout, NUM_ACTIONS, self.vectorization, self.name)

    def oracle_returns(self, task_ids: Sequence[int], gamma: float = 1.0) -> np.ndarray:
        """Exact optimal return [N]: gamma^(d-1) * (1 - 0.9 d / horizon) for the fewest actions d (0 if
        d > horizon)."""
        out = []
        for i in task_ids:
            d = len(self.shortest_path(int(i)))
            out.append(gamma ** (d - 1) * (1.0 - 0.9 * d / self.horizon) if d <= self.horizon else 0.0)
        return np.asarray(out, dtype=np.float64)


@dataclass(frozen=True)
class _RoomFactory:
    """A picklable env factory (async workers build their env from it)."""

    size: int
    task: MiniGridTask
    max_steps: int

    def __call__(self) -> ImgObsWrapper:
        return make_room_env(self.size, self.task, self.max_steps)
