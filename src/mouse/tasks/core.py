"""Tabular tasks with exact finite-horizon values, and the task-family interface.

A `TabularTask` is a finite MDP with a fixed episode horizon H. Its optimal action values are
time dependent: `q_star(gamma)[t, s, a]` is the value of taking `a` in `s` when `t` transitions of
the episode have already happened (so `H - t` transitions remain), computed exactly by backward
induction (finite-horizon value iteration, Bellman 1957; Puterman 1994 §4.5).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

REWARD_NOISES = ("none", "bernoulli", "gaussian")


def _readonly(x: np.ndarray, dtype: Any) -> np.ndarray:
    out = np.array(x, dtype=dtype, copy=True)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class TabularTask:
    """One finite-horizon MDP, all fields numpy arrays (read-only after construction).

    P [nS, A, nS] float64 transition probabilities; R [nS, A] float64 mean reward of taking a in s;
    `reward_noise` "none" (reward = its mean), "bernoulli" (R is the success probability, reward in
    {0, 1}) or "gaussian" (mean + `reward_std` * N(0, 1)); `terminal` [nS] bool absorbing states
    (entering one ends the episode, done=1); `start` [nS] start distribution; `horizon` H (the episode
    is truncated after H transitions, done=2); `obs_continuous` [nS, C] float32 features (C may be 0).
    `R_transition` [nS, A, nS] (optional): reward of the transition (s, a, s') when it depends on the
    next state (slippery FrozenLake); then `R` must equal its expectation under P.
    """

    P: np.ndarray
    R: np.ndarray
    terminal: np.ndarray
    start: np.ndarray
    horizon: int
    obs_continuous: np.ndarray
    task_id: int = 0
    reward_noise: str = "none"
    reward_std: float = 0.0
    params: dict = field(default_factory=dict)
    R_transition: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "P", _readonly(self.P, np.float64))
        set_(self, "R", _readonly(self.R, np.float64))
        set_(self, "terminal", _readonly(self.terminal, bool))
        set_(self, "start", _readonly(self.start, np.float64))
        set_(self, "obs_continuous", _readonly(self.obs_continuous, np.float32))
        if self.R_transition is not None:
            set_(self, "R_transition", _readonly(self.R_transition, np.float64))
        self._validate()

    def _validate(self) -> None:
        if self.P.ndim != 3 or self.P.shape[0] != self.P.shape[2]:
            raise ValueError(f"TabularTask.P must have shape [nS, A, nS], got {self.P.shape}")
        nS, A = self.num_states, self.num_actions
        for name, arr, shape in (
            ("R", self.R, (nS, A)),
            ("terminal", self.terminal, (nS,)),
            ("start", self.start, (nS,)),
        ):
            if arr.shape != shape:
                raise ValueError(f"TabularTask.{name} must have shape {shape}, got {arr.shape}")
        if self.obs_continuous.ndim != 2 or self.obs_continuous.shape[0] != nS:
            raise ValueError(f"TabularTask.obs_continuous must be [{nS}, C], got {self.obs_continuous.shape}")
        if (self.P < 0).any() or not np.allclose(self.P.sum(-1), 1.0, atol=1e-8):
            raise ValueError("TabularTask.P: every P[s, a, :] must be a probability vector (>= 0, sums to 1)")
        if (self.start < 0).any() or not np.isclose(self.start.sum(), 1.0, atol=1e-8):
            raise ValueError("TabularTask.start must be a probability vector (>= 0, sums to 1)")
        if (self.start[self.terminal] > 0).any():
            raise ValueError("TabularTask.start puts mass on a terminal state; episodes must start alive")
        if not isinstance(self.horizon, int | np.integer) or self.horizon < 1:
            raise ValueError(f"TabularTask.horizon must be an int >= 1, got {self.horizon!r}")
        if self.reward_noise not in REWARD_NOISES:
            raise ValueError(f"TabularTask.reward_noise={self.reward_noise!r}; allowed: {REWARD_NOISES}")
        if self.reward_noise == "bernoulli" and ((self.R < 0) | (self.R > 1)).any():
            raise ValueError("TabularTask.R must lie in [0, 1] with reward_noise='bernoulli' (success probs)")
        if self.reward_std < 0:
            raise ValueError(f"TabularTask.reward_std must be >= 0, got {self.reward_std}")
        if not np.isfinite(self.R).all():
            raise ValueError("TabularTask.R must be finite")
        if self.R_transition is not None:
            if self.R_transition.shape != self.P.shape:
                raise ValueError(
                    f"TabularTask.R_transition must have shape {self.P.shape}, got {self.R_transition.shape}"
                )
            if not np.allclose((self.P * self.R_transition).sum(-1), self.R, atol=1e-8):
                raise ValueError("TabularTask.R must equal the expectation of R_transition under P")

    @property
    def num_states(self) -> int:
        return int(self.P.shape[0])

    @property
    def num_actions(self) -> int:
        return int(self.P.shape[1])

    @property
    def obs_continuous_dim(self) -> int:
        return int(self.obs_continuous.shape[1])

    def q_star64(self, gamma: float) -> np.ndarray:
        """Float64 Q* [H, nS, A] (cached); see `q_star`."""
        key = ("q64", float(gamma))
        if key not in self._cache:
            q = value_iteration(self, gamma, dtype=np.float64)
            q.setflags(write=False)
            self._cache[key] = q
        return self._cache[key]

    def q_star(self, gamma: float) -> np.ndarray:
        """Optimal action values [H, nS, A] float32 (cached); rows of terminal states are all -inf."""
        key = ("q32", float(gamma))
        if key not in self._cache:
            q = self.q_star64(gamma).astype(np.float32)
            q.setflags(write=False)
            self._cache[key] = q
        return self._cache[key]

    def optimal_return(self, gamma: float = 1.0) -> float:
        """Expected (discounted) return of an optimal policy over one episode from the start dist."""
        v0 = self.q_star64(gamma)[0].max(-1)  # start states are never terminal: finite
        return float((self.start * np.where(self.start > 0, v0, 0.0)).sum())

    def random_return(self, gamma: float = 1.0) -> float:
        """Expected (discounted) return of the uniform random policy over one episode."""
        v0 = _backward_values(self, gamma, np.float64, optimal=False)[0].mean(-1)
        return float((self.start * np.where(self.start > 0, v0, 0.0)).sum())


def _backward_values(task: TabularTask, gamma: float, dtype: Any, optimal: bool) -> np.ndarray:
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    H, nS, A = task.horizon, task.num_states, task.num_actions
    alive = ~task.terminal
    q = np.empty((H, nS, A), dtype=np.float64)
    P2 = task.P.reshape(nS * A, nS)
    v_next = np.zeros(nS)  # value after the last transition (truncation) is 0
    for t in range(H - 1, -1, -1):
        q[t] = task.R + gamma * (P2 @ (v_next * alive)).reshape(nS, A)
        v_next = q[t].max(-1) if optimal else q[t].mean(-1)
    q[:, task.terminal, :] = -np.inf
    return q.astype(dtype, copy=False)


def value_iteration(task: TabularTask, gamma: float, dtype: Any = np.float32) -> np.ndarray:
    """Exact time-dependent optimal values Q*_t(s, a) [H, nS, A] by backward induction.

    Q*_{H-1}(s, a) = R(s, a); Q*_t(s, a) = R(s, a) + gamma * sum_s' P(s'|s, a) (1 - terminal(s'))
    max_a' Q*_{t+1}(s', a'). Terminal states take no action: their rows are -inf. Acting greedily on
    `q[t, s]` maximises the expected discounted return of the remaining H - t transitions.
    """
    return _backward_values(task, gamma, dtype, optimal=True)


class TaskFamily(abc.ABC):
    """A distribution of tasks sharing actions, observation kinds and horizon; tasks are named by int ids.

    Subclasses set `name`, `params` (plain dict of the resolved family parameters), `num_actions`,
    `horizon`, `gamma` and the observation sizes (0 = that modality is absent): `obs_discrete_size`
    (ids), `obs_continuous_dim` (C), `obs_image_size` (P, flattened uint8 pixels; `obs_image_shape` the
    unflattened [H, W, channels]; `obs_image_max` its largest value). They implement `all_task_ids` and `make_vec_env` (N streams, one per
    task id, as a `mouse.rollout.VecEnv`). `has_q_star`: the family's envs give exact optimal values
    (`q_star` columns, the Q* oracle). `oracle_returns` / `random_returns` give per-task reference
    returns where the family knows them (None otherwise: evaluation then reports raw returns).
    """

    name: str
    params: dict
    num_actions: int
    horizon: int
    gamma: float
    obs_discrete_size: int = 0
    obs_continuous_dim: int = 0
    obs_image_size: int = 0
    obs_image_shape: tuple[int, ...] = ()
    obs_image_max: int = 255  # largest image value (255 for pixels; small for symbolic grids)
    has_q_star: bool = False

    @abc.abstractmethod
    def all_task_ids(self) -> list[int]:
        """Every task id of the family (the pool splits are drawn from)."""

    @abc.abstractmethod
    def make_vec_env(self, task_ids: Sequence[int], seed: int) -> Any:
        """One reset-free stream per id of `task_ids`, stepped together (a `mouse.rollout.VecEnv` with a
        `tasks` list, one entry per stream, handed to behaviour policies); `seed` fixes its randomness."""

    def oracle_returns(self, task_ids: Sequence[int], gamma: float = 1.0) -> np.ndarray | None:
        """Expected return [N] of an optimal policy over one episode of each task; None: unknown."""
        return None

    def random_returns(self, task_ids: Sequence[int], gamma: float = 1.0) -> np.ndarray | None:
        """Expected return [N] of the uniform random policy over one episode; None: unknown (evaluation
        then measures random in the same envs)."""
        return None

    def _check_task_id(self, task_id: int) -> int:
        ids = self.all_task_ids()
        if not isinstance(task_id, int | np.integer) or not (ids[0] <= task_id <= ids[-1]):
            raise ValueError(
                f"{self.name}: task_id {task_id!r} is outside the valid range [{ids[0]}, {ids[-1]}]"
            )
        return int(task_id)

    def split(self, seed: int, test_fraction: float) -> tuple[list[int], list[int]]:
        """Deterministic train/test partition of `all_task_ids()` from `seed` (sorted id lists)."""
        ids = np.asarray(self.all_task_ids())
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
        n_test = int(round(test_fraction * len(ids)))
        if not 1 <= n_test <= len(ids) - 1:
            raise ValueError(
                f"test_fraction={test_fraction} of {len(ids)} {self.name} tasks leaves an empty train or test "
                "split; choose a fraction that keeps at least one task on each side"
            )
        perm = np.random.default_rng(seed).permutation(len(ids))
        test = np.sort(ids[perm[:n_test]])
        train = np.sort(ids[perm[n_test:]])
        return [int(i) for i in train], [int(i) for i in test]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"make_family({self.name!r}, {args})"
