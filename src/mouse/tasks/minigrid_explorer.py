"""The exploring teacher of the `minigrid` random-goal room: look around until the goal is in view,
then take a shortest path to it, remembering what it has seen across episodes (reset-free).

A pose is (x, y, dir) of an interior cell, indexed `pose = cell * 4 + dir` with `cell = (y - 1) *
(size - 2) + (x - 1)`. `room_tables(size)` holds the deterministic dynamics of the empty room over poses
(`moves`), the fewest actions between any two poses (`dist`) and which interior cell each of the 49
cells of a pose's egocentric view shows (`view_cells`), so the explorer is vectorised over streams.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from minigrid.core.constants import DIR_TO_VEC, OBJECT_TO_IDX

from mouse.tasks.core import TaskFamily
from mouse.tasks.minigrid import FORWARD, LEFT, NUM_ACTIONS, RIGHT, VIEW, MiniGridFamily
from mouse.tasks.policies import ActOutput, EpsilonNoise, Policy, act_from, argmax_set, uniform_over

EMPTY, WALL, GOAL = OBJECT_TO_IDX["empty"], OBJECT_TO_IDX["wall"], OBJECT_TO_IDX["goal"]
AGENT_VIEW_CELL = (VIEW // 2) * VIEW + VIEW - 1  # the agent's own cell (3, 6) in the flattened 7 x 7 view


@dataclass(frozen=True)
class RoomTables:
    """Geometry of the empty `size` x `size` room over its P = 4 (size - 2)^2 poses (read-only arrays).

    `poses` [P, 3] int64 (x, y, dir); `moves` [P, 3] int64 the pose after each action (forward into a
    wall stays put); `dist` [P, P] int16 the fewest actions from one pose to another; `view_cells`
    [P, 49] int64 the interior cell at each view position (k = view_x * 7 + view_y, the flattening of
    minigrid's image[view_x, view_y]), -1 where the view shows a wall or the outside; `visible` [P, C]
    bool the interior cells each pose sees."""

    size: int
    poses: np.ndarray
    moves: np.ndarray
    dist: np.ndarray
    view_cells: np.ndarray
    visible: np.ndarray

    @property
    def inner(self) -> int:
        return self.size - 2

    def pose_index(self, x: int, y: int, direction: int) -> int:
        """The pose index of interior cell (x, y) facing `direction` (0 right, 1 down, 2 left, 3 up)."""
        return ((y - 1) * self.inner + (x - 1)) * 4 + direction

    def cell_xy(self, cell: int) -> tuple[int, int]:
        """(x, y) of interior cell index `cell`."""
        return 1 + cell % self.inner, 1 + cell // self.inner


@functools.lru_cache(maxsize=8)
def room_tables(size: int) -> RoomTables:
    """The (cached) `RoomTables` of a `size` x `size` room (size >= 4)."""
    inner = size - 2
    num_cells = inner * inner
    cell = np.repeat(np.arange(num_cells), 4)
    x, y, d = 1 + cell % inner, 1 + cell // inner, np.tile(np.arange(4), num_cells)
    poses = np.stack([x, y, d], axis=1).astype(np.int64)
    fwd = np.asarray(DIR_TO_VEC, dtype=np.int64)[d]  # [P, 2]
    fx, fy = x + fwd[:, 0], y + fwd[:, 1]
    inside = (fx >= 1) & (fx <= inner) & (fy >= 1) & (fy <= inner)
    index = np.arange(len(poses))
    moves = np.empty((len(poses), NUM_ACTIONS), dtype=np.int64)
    moves[:, LEFT] = cell * 4 + (d - 1) % 4
    moves[:, RIGHT] = cell * 4 + (d + 1) % 4
    moves[:, FORWARD] = np.where(inside, ((fy - 1) * inner + (fx - 1)) * 4 + d, index)

    # all-pairs BFS, pulling along predecessors: left is undone by right, forward by the pose behind
    pred_fwd = np.full(len(poses), -1, dtype=np.int64)
    pred_fwd[moves[inside, FORWARD]] = index[inside]
    has_pred = pred_fwd >= 0
    dist = np.full((len(poses), len(poses)), -1, dtype=np.int16)
    frontier = np.eye(len(poses), dtype=bool)
    reached = frontier.copy()
    step = 0
    while frontier.any():
        dist[frontier] = step
        step += 1
        new = frontier[:, moves[:, RIGHT]] | frontier[:, moves[:, LEFT]]  # pred of a left turn is a right
        new[:, has_pred] |= frontier[:, pred_fwd[has_pred]]
        frontier = new & ~reached
        reached |= frontier
    if (dist < 0).any():
        raise ValueError(f"minigrid explorer: some poses of a size-{size} room are unreachable")

    # view position (vx, vy) with the agent at (3, 6) shows world cell agent + f (6 - vy) + r (vx - 3)
    vx, vy = np.divmod(np.arange(VIEW * VIEW), VIEW)
    right = np.stack([-fwd[:, 1], fwd[:, 0]], axis=1)
    ahead, side = (VIEW - 1 - vy)[None, :], (vx - VIEW // 2)[None, :]
    wx = x[:, None] + fwd[:, :1] * ahead + right[:, :1] * side
    wy = y[:, None] + fwd[:, 1:] * ahead + right[:, 1:] * side
    in_room = (wx >= 1) & (wx <= inner) & (wy >= 1) & (wy <= inner)
    view_cells = np.where(in_room, (wy - 1) * inner + (wx - 1), -1)
    visible = np.zeros((len(poses), num_cells), dtype=bool)
    rows = np.broadcast_to(index[:, None], view_cells.shape)
    visible[rows[in_room], view_cells[in_room]] = True
    for array in (poses, moves, dist, view_cells, visible):
        array.setflags(write=False)
    return RoomTables(size, poses, moves, dist, view_cells, visible)


def _draw_nearest(dist: np.ndarray, nearest: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One column [M] int64 per row of `dist` [M, P], uniform among those equal to the row's `nearest`."""
    ties = np.cumsum(dist == nearest[:, None], axis=-1)
    u = rng.random(len(dist)) * ties[:, -1]
    return (u[:, None] >= ties).sum(-1).astype(np.int64)


class MiniGridExplorer(Policy):
    """Look for the goal, remember it, then walk a shortest path to it in every later episode.

    Per stream it knows the room (the family's size) and its start pose from the task entry (`start`,
    `start_dir`; it never reads the goal) and tracks its pose by replaying its executed actions through
    the room's dynamics (every episode restarts at the start pose). Each observation (`obs_image` [N, 147]
    uint8, minigrid's image[view_x, view_y, channel] flattened) marks the viewed interior cells as seen;
    the goal (object id 8) is known once a view shows it. Each view is checked against the tracked pose
    and the memory (walls, cells seen empty, the known goal): a mismatch is a ValueError.

    Goal known: the target is the goal cell. Otherwise the stream commits to a target pose drawn
    uniformly among the nearest (in actions) poses whose view shows an unseen interior cell, kept while
    it still shows one and is still among the nearest. The clean distribution is uniform over the
    actions that start a shortest path to the target; ε ~ U[epsilon_min, epsilon_max] per stream is
    mixed into the executed action only. Memory: `pose`, `goal` (cell), `target` (pose) [N] int64
    (-1: none), `seen` [N, C] bool.
    """

    name = "explorer"
    obs_key = "obs_image"

    def __init__(self, family: TaskFamily, epsilon_min: float = 0.0, epsilon_max: float = 0.3) -> None:
        super().__init__(family)
        if not isinstance(family, MiniGridFamily):
            raise ValueError(f"the minigrid explorer needs the minigrid family, got {family.name!r}")
        self.noise = EpsilonNoise("minigrid explorer", epsilon_min, epsilon_max)
        self.room = room_tables(family.size)

    def reset(self, tasks: Sequence[Any], rng: np.random.Generator, num_steps: int | None = None) -> None:
        super().reset(tasks, rng, num_steps)
        room = self.room
        for i, t in enumerate(tasks):
            if not (hasattr(t, "start") and hasattr(t, "start_dir")):
                raise ValueError(
                    f"minigrid explorer: task entry {i} ({type(t).__name__}) has no start / start_dir; "
                    "pass the env's tasks (MiniGridFamily.make_vec_env(...).tasks)"
                )
            (x, y), d = t.start, t.start_dir
            if not (1 <= x <= room.inner and 1 <= y <= room.inner and 0 <= d <= 3):
                raise ValueError(
                    f"minigrid explorer: task entry {i} starts at {(x, y)} facing {d}, outside the interior "
                    f"1..{room.inner} (directions 0..3) of the family's size-{room.size} room"
                )
        self.start_pose = np.array(
            [room.pose_index(int(t.start[0]), int(t.start[1]), int(t.start_dir)) for t in tasks],
            dtype=np.int64,
        )
        n = len(tasks)
        self.pose = self.start_pose.copy()
        self.seen = np.zeros((n, room.inner**2), dtype=bool)
        self.goal = np.full(n, -1, dtype=np.int64)
        self.target = np.full(n, -1, dtype=np.int64)
        self.noise.draw(n, rng)

    def current_pose(self) -> np.ndarray:
        """[N, 3] int64 tracked (x, y, dir) of every stream."""
        return self.room.poses[self.pose]

    def perceive(self, obs: np.ndarray) -> None:
        """Check the views `obs` [N, 147] against the tracked poses and memory, then mark their cells
        seen and record the goal of streams whose view shows it for the first time."""
        room, n = self.room, len(self.pose)
        obs = np.asarray(obs)
        if obs.shape != (n, VIEW * VIEW * 3):
            raise ValueError(
                f"minigrid explorer: expected obs_image of shape ({n}, {VIEW * VIEW * 3}), got {obs.shape}"
            )
        obj = obs.reshape(n, VIEW * VIEW, 3)[..., 0]  # [N, 49] object ids
        cells = room.view_cells[self.pose]  # [N, 49]
        interior = cells >= 0
        safe = np.where(interior, cells, 0)
        rows = np.arange(n)[:, None]
        known = (self.goal >= 0)[:, None]
        is_goal = interior & known & (cells == self.goal[:, None])
        is_goal[:, AGENT_VIEW_CELL] = False  # the agent's own cell reads empty (even on the goal)
        empty = interior & ~is_goal & (self.seen[rows, safe] | known)
        empty[:, AGENT_VIEW_CELL] = True
        ok = np.where(
            ~interior,
            obj == WALL,
            np.where(is_goal, obj == GOAL, np.where(empty, obj == EMPTY, (obj == EMPTY) | (obj == GOAL))),
        )
        bad = np.flatnonzero(~ok.all(-1))
        if len(bad):
            i = int(bad[0])
            raise ValueError(
                f"minigrid explorer: the view of stream {i} disagrees with its tracked pose "
                f"{tuple(int(v) for v in room.poses[self.pose[i]])} and what it has seen; the task entries "
                "handed to reset() must be the env's layouts and every executed action must be observed"
            )
        spotted = np.flatnonzero(((obj == GOAL) & interior).any(-1) & (self.goal < 0))
        if len(spotted):
            first = (obj[spotted] == GOAL).argmax(-1)
            self.goal[spotted] = cells[spotted, first]
        self.seen |= room.visible[self.pose]

    def update_targets(self, rng: np.random.Generator) -> np.ndarray:
        """Commit the streams that do not know the goal to a target pose [N] int64 (-1: none/goal known)."""
        room = self.room
        self.target[self.goal >= 0] = -1
        rows = np.flatnonzero(self.goal < 0)
        if len(rows):
            unseen = (~self.seen[rows]).astype(np.float32)
            shows_unseen = unseen @ room.visible.T.astype(np.float32) > 0  # [M, P]
            dist = np.where(shows_unseen, room.dist[self.pose[rows]], np.inf)
            nearest = dist.min(-1)
            reachable = np.isfinite(nearest)
            target = self.target[rows]
            keep = (target >= 0) & (dist[np.arange(len(rows)), np.maximum(target, 0)] == nearest)
            draw = np.flatnonzero(reachable & ~keep)
            if len(draw):
                target[draw] = _draw_nearest(dist[draw], nearest[draw], rng)
            target[~reachable] = -1
            self.target[rows] = target
        return self.target

    def clean_distribution(self) -> np.ndarray:
        """[N, A] uniform over the actions that start a shortest path to each stream's target (the goal
        cell when known, else its target pose); uniform over all actions with neither."""
        room = self.room
        nxt = room.moves[self.pose]  # [N, A]
        score = np.zeros(nxt.shape)
        found = np.flatnonzero(self.goal >= 0)
        if len(found):
            goal_poses = self.goal[found, None] * 4 + np.arange(4)  # [M, 4]
            score[found] = room.dist[nxt[found][:, :, None], goal_poses[:, None, :]].min(-1)
        aiming = np.flatnonzero(self.target >= 0)
        if len(aiming):
            score[aiming] = room.dist[nxt[aiming], self.target[aiming, None]]
        return uniform_over(argmax_set(-score))

    def act(self, obs: np.ndarray, time: np.ndarray, rng: np.random.Generator) -> ActOutput:
        self.perceive(obs)
        self.update_targets(rng)
        return act_from(self.clean_distribution(), self.noise.epsilon, rng)

    def observe(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        done: np.ndarray,
        active: np.ndarray | None = None,
    ) -> None:
        rows = self._active_rows(active, len(self.pose))
        self.pose[rows] = self.room.moves[self.pose[rows], np.asarray(action, dtype=np.int64)[rows]]
        terminal = rows[np.asarray(done)[rows] == 1]
        wrong = terminal[self.pose[terminal] // 4 != self.goal[terminal]]
        if len(wrong):
            i = int(wrong[0])
            raise ValueError(
                f"minigrid explorer: stream {i} ended its episode at pose "
                f"{tuple(int(v) for v in self.room.poses[self.pose[i]])}, which is not the goal it saw; "
                "the task entries handed to reset() must be the env's layouts"
            )

    def on_episode_end(self, mask: np.ndarray) -> None:
        mask = np.asarray(mask, dtype=bool)
        self.pose[mask] = self.start_pose[mask]  # the committed target is kept while it is nearest
