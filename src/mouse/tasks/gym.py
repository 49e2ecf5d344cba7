"""Any gymnasium environment with discrete actions as a MOUSE task family (`GymFamily`, "gym"), and
`GymVecEnv`, the reset-free vector env over `gymnasium.vector` that the stream engine steps.

A task is a seed plus optional per-task constructor kwargs and per-task attributes of the unwrapped
env, all drawn deterministically from (family `seed`, task id): e.g. CartPole with
`attr_ranges={"force_mag": [5, 15]}` is a distribution of CartPoles with different push forces.
Observations map onto the step-record fields by their space: `Discrete(n)` -> `obs_discrete` (n ids),
a small numeric `Box` (<= 256 values) -> `obs_continuous` (flattened float32), a `uint8` 2-D/3-D `Box`
-> `obs_image` (flattened, shape kept in `obs_image_shape`). A `Dict` space needs `obs_key`.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from mouse.tasks.checks import check_choice, check_float, check_int
from mouse.tasks.core import TaskFamily

VECTORIZATIONS = ("sync", "async")
MAX_CONTINUOUS_DIM = 256  # a float Box with more values than this is not a "low-dimensional" observation
HOLD = -1  # the action GymVecEnv sends to a stream that must not move this tick


# ----------------------------------------------------------------------------- observation spaces
@dataclass(frozen=True)
class ObsLayout:
    """How one env's observation becomes a record field: `field` is obs_discrete | obs_continuous |
    obs_image, `size` its width (ids, C or P), `shape` the unflattened image shape (H, W, channels)."""

    field: str
    size: int
    shape: tuple[int, ...] = ()


def obs_layout(space: spaces.Space, env_id: str) -> ObsLayout:
    """The record field of observation `space`; anything unsupported raises one ValueError naming it."""
    if isinstance(space, spaces.Discrete):
        return ObsLayout("obs_discrete", int(space.n))
    if isinstance(space, spaces.Box):
        size = int(np.prod(space.shape))
        if space.dtype == np.uint8 and len(space.shape) in (2, 3):
            shape = tuple(int(d) for d in space.shape)
            return ObsLayout("obs_image", size, shape if len(shape) == 3 else (*shape, 1))
        if np.issubdtype(space.dtype, np.number) and 1 <= size <= MAX_CONTINUOUS_DIM:
            return ObsLayout("obs_continuous", size)
        raise ValueError(
            f"gym: {env_id} observation space {space} is not supported: a numeric Box needs 1..{MAX_CONTINUOUS_DIM}"
            " values (obs_continuous) or must be a uint8 image Box with 2 or 3 dims (obs_image)"
        )
    if isinstance(space, spaces.Dict):
        raise ValueError(
            f"gym: {env_id} has a Dict observation space with keys {list(space.spaces)}; set obs_key to "
            "one key whose space is Discrete, a small numeric Box or a uint8 image Box"
        )
    raise ValueError(
        f"gym: {env_id} observation space {space} is not supported; supported: Discrete, a numeric Box of "
        f"<= {MAX_CONTINUOUS_DIM} values, a uint8 image Box, or a Dict with obs_key"
    )


def check_discrete_actions(space: spaces.Space, env_id: str) -> int:
    """The number of actions of a `Discrete(n)` action space (start 0); anything else raises ValueError."""
    if not isinstance(space, spaces.Discrete) or int(space.start) != 0:
        raise ValueError(
            f"gym: {env_id} has action space {space}; MOUSE needs Discrete(n) actions numbered from 0"
        )
    return int(space.n)


class SelectKey(gymnasium.ObservationWrapper):
    """Keep one entry `key` of a Dict observation (e.g. a MiniGrid-style {"image", "mission"} dict)."""

    def __init__(self, env: gymnasium.Env, key: str) -> None:
        super().__init__(env)
        if not isinstance(env.observation_space, spaces.Dict) or key not in env.observation_space.spaces:
            keys = list(getattr(env.observation_space, "spaces", {}))
            raise ValueError(f"gym: obs_key {key!r} is not a key of the observation space (keys: {keys})")
        self.key = key
        self.observation_space = env.observation_space[key]

    def observation(self, observation: dict) -> Any:
        return observation[self.key]


class HoldWrapper(gymnasium.Wrapper):
    """`step(HOLD)` leaves the env untouched (its last observation, reward 0, not done): how one stream
    of a vector env that steps all sub-envs sits out a tick."""

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        obs, info = self.env.reset(**kwargs)
        self.last_obs = obs
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        if int(action) == HOLD:
            return self.last_obs, 0.0, False, False, {}
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.last_obs = obs
        return obs, reward, terminated, truncated, info


def _holding(make: Callable[[], gymnasium.Env]) -> gymnasium.Env:
    return HoldWrapper(make())


# ----------------------------------------------------------------------------- the vector env
class GymVecEnv:
    """N reset-free streams over a `gymnasium.vector` Sync/AsyncVectorEnv with autoreset disabled (the
    `mouse.rollout.VecEnv` protocol).

    `reset() / reset_where(mask)` -> native batched observations ([N] ids, [N, *box] values or pixels);
    `step(actions [N] int64, active [N] bool) -> (obs, reward [N] float32, done [N] int64, time [N]
    int64)`: done 1 = terminated, 2 = truncated (the env's own limit or `time == horizon`); terminated
    wins when both. `record_fields(obs)` flattens them to `layout.field`. Episode k of stream i resets
    with a seed drawn from a generator seeded by (tasks[i].seed, `seed`, i): same arguments, same streams.

    The gymnasium vector env always steps every sub-env, so a stream that sits out a tick is sent
    `HOLD` (`HoldWrapper`). The engine only leaves out streams whose newest record ended an episode,
    and resets exactly those right after the step; gymnasium (autoreset disabled) refuses to step a
    finished sub-env, so `step` resets such a stream's sub-env first (with that episode's seed) and
    keeps the new start aside: the stream still reports its final observation until `reset_where`
    hands the start out. A finished stream is never stepped; asking to is a ValueError.
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gymnasium.Env]],
        tasks: Sequence[Any],
        seed: int,
        horizon: int,
        layout: ObsLayout,
        num_actions: int,
        vectorization: str = "sync",
        name: str = "gym",
    ) -> None:
        if len(env_fns) == 0 or len(env_fns) != len(tasks):
            raise ValueError(
                f"{name}: GymVecEnv needs one env factory per task, got {len(env_fns)} / {len(tasks)}"
            )
        check_choice(name, "vectorization", vectorization, VECTORIZATIONS)
        self.name, self.tasks, self.layout = name, list(tasks), layout
        self.num_envs, self.num_actions, self.horizon = len(env_fns), int(num_actions), int(horizon)
        fns = [functools.partial(_holding, fn) for fn in env_fns]
        if vectorization == "sync":
            self.vec = SyncVectorEnv(fns, autoreset_mode=AutoresetMode.DISABLED)
        else:
            self.vec = AsyncVectorEnv(fns, autoreset_mode=AutoresetMode.DISABLED)
        self._episode_rngs = [
            np.random.default_rng(np.random.SeedSequence([int(getattr(t, "seed", 0)), int(seed), i]))
            for i, t in enumerate(self.tasks)
        ]
        n = self.num_envs
        self.time = np.zeros(n, dtype=np.int64)
        self.finished = np.zeros(n, dtype=bool)
        self._pending = np.zeros(n, dtype=bool)  # sub-env already reset, its start not yet handed out
        self._obs: np.ndarray | None = None
        self._pending_obs: np.ndarray | None = None

    def _episode_seeds(self, mask: np.ndarray) -> list[int | None]:
        return [int(self._episode_rngs[i].integers(2**31)) if m else None for i, m in enumerate(mask)]

    def _restart(self, mask: np.ndarray) -> None:
        """Reset the sub-envs where `mask` and keep their start observations aside (pending)."""
        seeds = self._episode_seeds(mask)
        if mask.all():
            obs, _ = self.vec.reset(seed=seeds)
        else:
            obs, _ = self.vec.reset(seed=seeds, options={"reset_mask": mask.copy()})
        obs = np.asarray(obs)
        if self._pending_obs is None:
            self._pending_obs = obs.copy()
            self._obs = obs.copy()
        self._pending_obs[mask] = obs[mask]
        self._pending |= mask

    def _check_mask(self, mask: np.ndarray, what: str) -> np.ndarray:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (self.num_envs,):
            raise ValueError(f"{self.name}: {what} must have shape ({self.num_envs},), got {mask.shape}")
        return mask

    def reset(self) -> np.ndarray:
        """Start an episode in every stream; the start observations of all N streams."""
        self._pending[:] = False
        self._restart(np.ones(self.num_envs, dtype=bool))
        return self.reset_where(np.ones(self.num_envs, dtype=bool))

    def reset_where(self, mask: np.ndarray) -> np.ndarray:
        """Start an episode where `mask` [N] bool; the current observations of all N streams."""
        mask = self._check_mask(mask, "reset_where mask")
        if self._obs is None:
            raise ValueError(f"{self.name}: call reset() before reset_where()")
        fresh = mask & ~self._pending
        if fresh.any():
            self._restart(fresh)
        self._obs[mask] = self._pending_obs[mask]
        self._pending &= ~mask
        self.time[mask], self.finished[mask] = 0, False
        return self._obs.copy()

    def step(
        self, actions: np.ndarray, active: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Advance the `active` streams one transition; the others keep their state (reward 0, done 0)."""
        if self._obs is None:
            raise ValueError(f"{self.name}: call reset() before step()")
        actions = np.asarray(actions)
        active = np.ones(self.num_envs, bool) if active is None else self._check_mask(active, "active")
        if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(
                f"{self.name}: step actions must be integers of shape ({self.num_envs},), got "
                f"{actions.dtype} {actions.shape}"
            )
        bad = np.flatnonzero(active & ((actions < 0) | (actions >= self.num_actions)))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"{self.name}: action {int(actions[i])} of stream {i} is outside [0, {self.num_actions})"
            )
        ended = np.flatnonzero(active & self.finished)
        if ended.size:
            raise ValueError(
                f"{self.name}: stream {int(ended[0])} has finished its episode; call reset_where before stepping it"
            )
        reward = np.zeros(self.num_envs, dtype=np.float32)
        done = np.zeros(self.num_envs, dtype=np.int64)
        if active.any():
            waiting = ~active & self.finished & ~self._pending
            if waiting.any():  # gymnasium will not step a finished sub-env: restart it now, hand out later
                self._restart(waiting)
            obs, rew, terminated, truncated, _ = self.vec.step(np.where(active, actions, HOLD))
            self.time = self.time + active
            code = np.where(terminated, 1, np.where(truncated | (self.time >= self.horizon), 2, 0))
            done = np.where(active, code, 0).astype(np.int64)
            reward = np.where(active, rew, 0.0).astype(np.float32)
            self._obs[active] = np.asarray(obs)[active]
            self.finished |= done != 0
        return self._obs.copy(), reward, done, self.time.copy()

    def record_fields(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        """`{layout.field: ...}`: obs_discrete int64 [N], obs_continuous float32 [N, C] or obs_image
        uint8 [N, P] (flattened, channels last)."""
        obs = np.asarray(obs)
        if self.layout.field == "obs_discrete":
            return {"obs_discrete": obs.astype(np.int64).reshape(self.num_envs)}
        dtype = np.float32 if self.layout.field == "obs_continuous" else np.uint8
        return {self.layout.field: obs.reshape(self.num_envs, -1).astype(dtype, copy=False)}

    def close(self) -> None:
        """Close the gymnasium vector env (stops async worker processes)."""
        self.vec.close()


# ----------------------------------------------------------------------------- the family
@dataclass(frozen=True)
class GymTask:
    """One gym task: its id, the env seed derived from (family seed, id), and the per-task
    `gymnasium.make` kwargs and unwrapped-env attributes drawn for it."""

    task_id: int
    seed: int
    kwargs: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)


def make_gym_env(
    env_id: str, kwargs: Mapping[str, Any], attrs: Mapping[str, Any], horizon: int, obs_key: str | None
) -> gymnasium.Env:
    """`gymnasium.make(env_id, max_episode_steps=horizon, **kwargs)` with `attrs` set on `env.unwrapped`
    (each must already exist there) and, with `obs_key`, only that entry of a Dict observation."""
    env = gymnasium.make(env_id, max_episode_steps=horizon, **kwargs)
    for name, value in attrs.items():
        if not hasattr(env.unwrapped, name):
            raise ValueError(
                f"gym: {env_id} has no attribute {name!r} on env.unwrapped ({type(env.unwrapped).__name__}); "
                "attr_ranges / attr_choices can only set existing attributes"
            )
        setattr(env.unwrapped, name, value)
    return SelectKey(env, obs_key) if obs_key is not None else env


def _plain(value: Any) -> Any:
    """Plain Python containers (JSON-able params) from dicts/lists such as OmegaConf's."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _ranges(name: str, ranges: Any) -> dict[str, list[float]]:
    """{key: [lo, hi]} with lo <= hi finite numbers, sorted by key; else ValueError naming the entry."""
    out = {}
    for key, r in sorted(dict(ranges or {}).items()):
        ok = isinstance(r, list | tuple) and len(r) == 2
        ok = ok and all(isinstance(x, numbers.Real) and not isinstance(x, bool) for x in r)
        if not ok or not (np.isfinite(r).all() and r[0] <= r[1]):
            raise ValueError(f"gym: {name}[{key!r}] must be [lo, hi] with finite lo <= hi, got {r!r}")
        out[str(key)] = [float(r[0]), float(r[1])]
    return out


class GymFamily(TaskFamily):
    """Tasks of one gymnasium env id (discrete actions). Task ids 0..num_tasks_pool-1; task i's env
    seed, `kwargs_ranges` kwargs and `attr_ranges` / `attr_choices` attributes are drawn from
    (`seed`, i). `horizon` caps episodes (None: the env spec's max_episode_steps). `reference_return`
    (e.g. 500 for CartPole-v1) is the per-task oracle reference for normalised scores."""

    name = "gym"

    def __init__(
        self,
        env_id: str = "CartPole-v1",
        env_kwargs: dict | None = None,
        num_tasks_pool: int = 1000,
        seed: int = 0,
        kwargs_ranges: dict | None = None,
        attr_ranges: dict | None = None,
        attr_choices: dict | None = None,
        obs_key: str | None = None,
        horizon: int | None = None,
        gamma: float = 1.0,
        vectorization: str = "sync",
        reference_return: float | None = None,
    ) -> None:
        if not isinstance(env_id, str) or not env_id:
            raise ValueError(f"gym: env_id must be a registered gymnasium id, got {env_id!r}")
        env_kwargs = _plain(dict(env_kwargs or {}))
        kwargs_ranges = _ranges("kwargs_ranges", kwargs_ranges)
        attr_ranges = _ranges("attr_ranges", attr_ranges)
        attr_choices = {str(k): _plain(v) for k, v in sorted(dict(attr_choices or {}).items())}
        for key, choices in attr_choices.items():
            if not isinstance(choices, list) or not choices:
                raise ValueError(f"gym: attr_choices[{key!r}] must be a non-empty list, got {choices!r}")
        clash = sorted(set(kwargs_ranges) & set(env_kwargs)) or sorted(set(attr_ranges) & set(attr_choices))
        if clash:
            raise ValueError(
                f"gym: {clash} are set twice (env_kwargs/kwargs_ranges or attr_ranges/attr_choices)"
            )
        num_tasks_pool = check_int("gym", "num_tasks_pool", num_tasks_pool, 1)
        seed = check_int("gym", "seed", seed, 0)
        gamma = check_float("gym", "gamma", gamma, 0.0, 1.0)
        vectorization = check_choice("gym", "vectorization", str(vectorization), VECTORIZATIONS)
        if reference_return is not None:
            reference_return = check_float("gym", "reference_return", reference_return, -np.inf, np.inf)
        if obs_key is not None and not isinstance(obs_key, str):
            raise ValueError(f"gym: obs_key must be a string key of a Dict observation, got {obs_key!r}")

        probe_kwargs = {**env_kwargs, **{k: lo for k, (lo, _) in kwargs_ranges.items()}}
        try:
            probe = gymnasium.make(env_id, **probe_kwargs)
        except gymnasium.error.Error as exc:
            raise ValueError(f"gym: cannot make {env_id!r}: {exc}") from None
        try:
            missing = [k for k in (*attr_ranges, *attr_choices) if not hasattr(probe.unwrapped, k)]
            if missing:
                raise ValueError(
                    f"gym: {env_id} has no attribute(s) {missing} on env.unwrapped "
                    f"({type(probe.unwrapped).__name__}); attr_ranges / attr_choices set existing attributes"
                )
            self.num_actions = check_discrete_actions(probe.action_space, env_id)
            obs_space = SelectKey(probe, obs_key).observation_space if obs_key else probe.observation_space
            self.layout = obs_layout(obs_space, env_id)
            spec_horizon = probe.spec.max_episode_steps if probe.spec is not None else None
        finally:
            probe.close()
        if horizon is None and spec_horizon is None:
            raise ValueError(f"gym: {env_id} has no max_episode_steps in its spec; set horizon")
        horizon = check_int("gym", "horizon", spec_horizon if horizon is None else horizon, 1)

        self.env_id, self.env_kwargs, self.obs_key = env_id, env_kwargs, obs_key
        self.num_tasks_pool, self.seed, self.horizon, self.gamma = num_tasks_pool, seed, horizon, gamma
        self.kwargs_ranges, self.attr_ranges, self.attr_choices = kwargs_ranges, attr_ranges, attr_choices
        self.vectorization, self.reference_return = vectorization, reference_return
        self.params = {
            "env_id": env_id,
            "env_kwargs": env_kwargs,
            "num_tasks_pool": num_tasks_pool,
            "seed": seed,
            "kwargs_ranges": kwargs_ranges,
            "attr_ranges": attr_ranges,
            "attr_choices": attr_choices,
            "obs_key": obs_key,
            "horizon": horizon,
            "gamma": gamma,
            "vectorization": vectorization,
            "reference_return": reference_return,
        }
        if self.layout.field == "obs_discrete":
            self.obs_discrete_size = self.layout.size
        elif self.layout.field == "obs_continuous":
            self.obs_continuous_dim = self.layout.size
        else:
            self.obs_image_size, self.obs_image_shape = self.layout.size, self.layout.shape

    def all_task_ids(self) -> list[int]:
        return list(range(self.num_tasks_pool))

    def make_task(self, task_id: int) -> GymTask:
        """Task `task_id`: env seed, then kwargs, then attributes drawn (sorted by name) from (seed, id)."""
        task_id = self._check_task_id(task_id)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, task_id]))
        env_seed = int(rng.integers(2**31))
        kwargs = {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in self.kwargs_ranges.items()}
        attrs = {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in self.attr_ranges.items()}
        attrs |= {k: c[int(rng.integers(len(c)))] for k, c in self.attr_choices.items()}
        return GymTask(task_id, env_seed, kwargs, attrs)

    def make_vec_env(self, task_ids: Sequence[int], seed: int) -> GymVecEnv:
        tasks = [self.make_task(int(i)) for i in task_ids]
        fns = [
            functools.partial(
                make_gym_env,
                self.env_id,
                {**self.env_kwargs, **t.kwargs},
                t.attrs,
                self.horizon,
                self.obs_key,
            )
            for t in tasks
        ]
        return GymVecEnv(
            fns, tasks, seed, self.horizon, self.layout, self.num_actions, self.vectorization, self.name
        )

    def oracle_returns(self, task_ids: Sequence[int], gamma: float = 1.0) -> np.ndarray | None:
        """`reference_return` (as configured, undiscounted) for every task; None when not set."""
        if self.reference_return is None:
            return None
        return np.full(len(task_ids), self.reference_return, dtype=np.float64)
