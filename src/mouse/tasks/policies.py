"""Behaviour policies batched over N streams: the `Policy` interface, random, expert and annealed.

Every policy returns, per stream, the executed action, `behavior_logits` = log of the distribution
the action was drawn from (for V-trace) and `teacher_logits` = log of the policy's clean action
distribution (-inf where it would not act; the target of in-context distillation).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import numpy as np

from mouse.tasks.checks import check_float, check_int
from mouse.tasks.core import TabularTask, TaskFamily

ActOutput = tuple[np.ndarray, np.ndarray, np.ndarray]


def log_probs(p: np.ndarray) -> np.ndarray:
    """log p as float32 with log 0 = -inf (no warning)."""
    with np.errstate(divide="ignore"):
        return np.log(p).astype(np.float32)


def sample_actions(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One action [N] int64 per row of `probs` [N, A] by a cumulative sum and one uniform draw per row."""
    cum = np.cumsum(probs, axis=-1)
    u = rng.random(len(probs)) * cum[:, -1]
    return np.minimum((u[:, None] >= cum).sum(-1), probs.shape[1] - 1).astype(np.int64)


def uniform_over(mask: np.ndarray) -> np.ndarray:
    """Uniform distribution over the true entries of each row of `mask` [N, A] (all actions if none)."""
    mask = np.where(mask.any(-1, keepdims=True), mask, True)
    return mask / mask.sum(-1, keepdims=True)


def argmax_set(values: np.ndarray, rtol: float = 1e-9) -> np.ndarray:
    """[N, A] bool: the entries within `rtol` (relative, at least absolute) of each row's maximum."""
    best = values.max(-1, keepdims=True)
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & (values >= best - rtol * np.maximum(1.0, np.abs(best)))


def mix_epsilon(clean: np.ndarray, epsilon: np.ndarray) -> np.ndarray:
    """(1 - eps) * clean + eps * uniform, per row; `epsilon` [N]."""
    eps = np.asarray(epsilon, dtype=np.float64)[:, None]
    return (1.0 - eps) * clean + eps / clean.shape[1]


def act_from(clean: np.ndarray, epsilon: np.ndarray, rng: np.random.Generator) -> ActOutput:
    """Draw from the ε-mixed `clean` distribution; returns (action, behavior_logits, teacher_logits)."""
    behavior = mix_epsilon(clean, epsilon)
    return sample_actions(behavior, rng), log_probs(behavior), log_probs(clean)


class Policy(abc.ABC):
    """A behaviour policy over N parallel streams (each may be in a different task).

    `reset(tasks, rng, num_steps=None)` at the start of the streams (draws per-stream state);
    `act(obs [N] int64, time [N] int64, rng) -> (action [N] int64, behavior_logits [N, A] float32,
    teacher_logits [N, A] float32)`; `observe(obs, action, reward, next_obs, done, active=None)` after a
    transition (only rows where `active` is true took one); `on_episode_end(mask)` when streams reset.
    Rows of finished streams (terminal or time == H) are computed but meaningless.
    """

    name: str = "policy"
    obs_key: str | None = "obs_discrete"  # the record field `act` reads (None: the env's first obs field)

    def __init__(self, family: TaskFamily) -> None:
        self.family = family
        self.num_actions = family.num_actions
        self.tasks: list[TabularTask] = []

    def reset(
        self, tasks: Sequence[TabularTask], rng: np.random.Generator, num_steps: int | None = None
    ) -> None:
        """Start N fresh streams in `tasks`; `num_steps` (records per stream) if the caller knows it."""
        self.tasks = list(tasks)

    @abc.abstractmethod
    def act(self, obs: np.ndarray, time: np.ndarray, rng: np.random.Generator) -> ActOutput:
        """Choose actions at the current records."""

    def observe(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        done: np.ndarray,
        active: np.ndarray | None = None,
    ) -> None:
        """Update per-stream memory with one transition per active stream (default: no memory)."""
        return None

    def on_episode_end(self, mask: np.ndarray) -> None:
        """Streams where `mask` [N] is true start a new episode (default: nothing to do)."""
        return None

    @staticmethod
    def _active_rows(active: np.ndarray | None, n: int) -> np.ndarray:
        """Indices of the `n` streams that took a transition (all of them when `active` is None)."""
        return np.arange(n) if active is None else np.flatnonzero(np.asarray(active, dtype=bool))


class RandomPolicy(Policy):
    """Uniform over all actions; teacher = behaviour = uniform."""

    name = "random"
    obs_key = None  # any observation: only the batch size is read

    def act(self, obs: np.ndarray, time: np.ndarray, rng: np.random.Generator) -> ActOutput:
        clean = np.full((len(obs), self.num_actions), 1.0 / self.num_actions)
        return act_from(clean, np.zeros(len(obs)), rng)


class _QPolicy(Policy):
    """Shared by expert and annealed: the greedy distribution on the tasks' exact Q* (ties uniform)."""

    def reset(
        self, tasks: Sequence[TabularTask], rng: np.random.Generator, num_steps: int | None = None
    ) -> None:
        super().reset(tasks, rng, num_steps)
        self._q = np.stack([t.q_star64(self.family.gamma) for t in tasks])  # [N, H, nS, A]
        self._horizon = self._q.shape[1]

    def greedy(self, obs: np.ndarray, time: np.ndarray) -> np.ndarray:
        """Uniform over the optimal actions [N, A] at (obs, time); uniform over all where none is valid."""
        t = np.clip(time, 0, self._horizon - 1)
        return uniform_over(argmax_set(self._q[np.arange(len(obs)), t, obs]))


class ExpertPolicy(_QPolicy):
    """ε-greedy on Q*: teacher = the greedy distribution, behaviour = its mixture with ε uniform."""

    name = "expert"

    def __init__(self, family: TaskFamily, epsilon: float = 0.0) -> None:
        super().__init__(family)
        self.epsilon = check_float("expert policy", "epsilon", epsilon, 0.0, 1.0)

    def act(self, obs: np.ndarray, time: np.ndarray, rng: np.random.Generator) -> ActOutput:
        return act_from(self.greedy(obs, time), np.full(len(obs), self.epsilon), rng)


class AnnealedPolicy(_QPolicy):
    """Learning-history imitation (AD-ε, Zisman et al. 2024): ε-greedy on Q* with ε decaying linearly
    from 1 in a stream's first episode to 0 in episode `episodes` - 1 (then 0).

    `episodes` defaults to num_steps // (horizon + 1) from `reset`. The clean (teacher) distribution is
    the ε_k-greedy one itself: the improving learning history is what is imitated.
    """

    name = "annealed"

    def __init__(self, family: TaskFamily, episodes: int | None = None) -> None:
        super().__init__(family)
        self.episodes = None if episodes is None else check_int("annealed policy", "episodes", episodes, 1)

    def reset(
        self, tasks: Sequence[TabularTask], rng: np.random.Generator, num_steps: int | None = None
    ) -> None:
        super().reset(tasks, rng, num_steps)
        if self.episodes is None and num_steps is None:
            raise ValueError("annealed policy: set `episodes` or pass num_steps to reset() to derive it")
        episodes = self.episodes or max(1, num_steps // (self.family.horizon + 1))
        self._num_episodes = episodes
        self._episode = np.zeros(len(tasks), dtype=np.int64)

    def current_epsilon(self) -> np.ndarray:
        """ε [N] of each stream's current episode."""
        if self._num_episodes == 1:
            return np.zeros(len(self._episode))
        return np.clip(1.0 - self._episode / (self._num_episodes - 1), 0.0, 1.0)

    def act(self, obs: np.ndarray, time: np.ndarray, rng: np.random.Generator) -> ActOutput:
        behavior = mix_epsilon(self.greedy(obs, time), self.current_epsilon())
        return act_from(behavior, np.zeros(len(obs)), rng)

    def on_episode_end(self, mask: np.ndarray) -> None:
        self._episode += np.asarray(mask, dtype=np.int64)


class EpsilonNoise:
    """Per-stream ε ~ U[epsilon_min, epsilon_max] drawn at reset, mixed into executed actions only."""

    def __init__(self, owner: str, epsilon_min: float, epsilon_max: float) -> None:
        self.epsilon_min = check_float(owner, "epsilon_min", epsilon_min, 0.0, 1.0)
        self.epsilon_max = check_float(owner, "epsilon_max", epsilon_max, 0.0, 1.0)
        if self.epsilon_min > self.epsilon_max:
            raise ValueError(f"{owner}: epsilon_min={epsilon_min} must be <= epsilon_max={epsilon_max}")
        self.epsilon = np.zeros(0)

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        self.epsilon = rng.uniform(self.epsilon_min, self.epsilon_max, n)
        return self.epsilon
