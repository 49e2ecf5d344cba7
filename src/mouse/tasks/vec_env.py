"""`TabularVecEnv`: N tabular tasks stepped in parallel with numpy (no Python loop over N per step)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mouse.tasks.core import TabularTask

_NOISE_CODES = {"none": 0, "bernoulli": 1, "gaussian": 2}


def _sparse_successors(task: TabularTask, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k successor table of one task: next states, cumulative probs, transition rewards [nS, A, k]."""
    order = np.argsort(-task.P, axis=-1, kind="stable")[..., :k]
    probs = np.take_along_axis(task.P, order, axis=-1)
    cum = np.cumsum(probs, axis=-1)
    cum[..., -1] = 1.0  # exact, so a uniform draw in [0, 1) never runs past the last successor
    if task.R_transition is not None:
        rew = np.take_along_axis(task.R_transition, order, axis=-1)
    else:
        rew = np.broadcast_to(task.R[..., None], order.shape)
    return order, cum, rew


class TabularVecEnv:
    """N tasks (same state and action counts) stepped together; streams never auto-reset.

    `reset() -> obs [N] int64`; `step(actions [N]) -> (next_obs [N] int64, reward [N] float32,
    done [N] int64 in {0, 1 terminal, 2 truncated}, time [N] int64)` where `time` (1..H) is the step
    index within the episode of the new record. Finished streams must be `reset_where` before they step.
    """

    def __init__(self, tasks: Sequence[TabularTask], seed: int, gamma: float | None = None) -> None:
        if len(tasks) == 0:
            raise ValueError("TabularVecEnv needs at least one task")
        shapes = {(t.num_states, t.num_actions, t.obs_continuous_dim) for t in tasks}
        if len(shapes) != 1:
            raise ValueError(
                f"TabularVecEnv: tasks disagree on (num_states, num_actions, C): {sorted(shapes)}"
            )
        self.tasks = list(tasks)
        self.num_envs = len(tasks)
        self.num_states, self.num_actions, self.obs_continuous_dim = shapes.pop()
        self.rng = np.random.default_rng(seed)
        gammas = {t.params.get("gamma", 1.0) for t in tasks}
        if gamma is None and len(gammas) > 1:
            raise ValueError(
                f"TabularVecEnv: tasks disagree on gamma {sorted(gammas)}; pass gamma explicitly"
            )
        self.gamma = float(gammas.pop() if gamma is None else gamma)
        k = max(int((t.P > 0).sum(-1).max()) for t in tasks)
        # tasks that share one P array (Dark Room, bandits) share one successor table
        tables: dict[int, int] = {}
        succ, cum, rew, index = [], [], [], []
        for t in tasks:
            key = id(t.P) if t.R_transition is None else id(t)
            if key not in tables:
                s, c, r = _sparse_successors(t, k)
                tables[key] = len(succ)
                succ.append(s)
                cum.append(c)
            index.append(tables[key])
            rew.append(r if t.R_transition is not None else t.R)
        self._table = np.asarray(index)
        self._succ, self._cum = np.stack(succ), np.stack(cum)  # [U, nS, A, k]
        self._transition_rewards = any(t.R_transition is not None for t in tasks)
        if self._transition_rewards:
            self._rew = np.stack([np.broadcast_to(r, (self.num_states, self.num_actions, k)) for r in rew])
        else:
            self._rew = np.stack(rew)  # [N, nS, A]
        self._noise = np.array([_NOISE_CODES[t.reward_noise] for t in tasks])
        self._std = np.array([t.reward_std for t in tasks])
        self._terminal = np.stack([t.terminal for t in tasks])  # [N, nS]
        start_cum = np.cumsum(np.stack([t.start for t in tasks]), axis=-1)
        start_cum[:, -1] = 1.0
        self._start_cum = start_cum
        self.horizon = np.array([t.horizon for t in tasks], dtype=np.int64)
        self._obs_cont = np.stack([t.obs_continuous for t in tasks])  # [N, nS, C]
        self._q: dict[float, np.ndarray] = {}
        self._rows = np.arange(self.num_envs)
        self.obs = np.zeros(self.num_envs, dtype=np.int64)
        self.time = np.zeros(self.num_envs, dtype=np.int64)

    def _sample_start(self, rows: np.ndarray) -> np.ndarray:
        u = self.rng.random(len(rows))
        return (u[:, None] >= self._start_cum[rows]).sum(-1).astype(np.int64)

    def reset(self) -> np.ndarray:
        """Start a new episode in every stream; returns the start observations [N] int64."""
        self.obs = self._sample_start(self._rows)
        self.time = np.zeros(self.num_envs, dtype=np.int64)
        return self.obs.copy()

    def reset_where(self, mask: np.ndarray) -> np.ndarray:
        """Start a new episode in the streams where `mask` [N] bool is true; returns all obs [N]."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (self.num_envs,):
            raise ValueError(f"reset_where: mask must have shape ({self.num_envs},), got {mask.shape}")
        rows = np.flatnonzero(mask)
        self.obs[rows] = self._sample_start(rows)
        self.time[rows] = 0
        return self.obs.copy()

    def finished(self) -> np.ndarray:
        """[N] bool: streams whose episode has ended (terminal state or time == H)."""
        return self._terminal[self._rows, self.obs] | (self.time >= self.horizon)

    def step(
        self, actions: np.ndarray, active: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Advance every stream (or only those where `active` [N] bool is true) by one transition.

        Inactive streams keep their state and report reward 0, done 0 and their current obs/time.
        """
        actions = np.asarray(actions)
        active = np.ones(self.num_envs, dtype=bool) if active is None else np.asarray(active, dtype=bool)
        if actions.shape != (self.num_envs,) or active.shape != (self.num_envs,):
            raise ValueError(
                f"step: actions and active must have shape ({self.num_envs},), got {actions.shape}, {active.shape}"
            )
        if not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(f"step: actions must be integers, got dtype {actions.dtype}")
        bad = active & ((actions < 0) | (actions >= self.num_actions))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"step: action {actions[i]} of stream {i} is outside [0, {self.num_actions - 1}]"
            )
        ended = active & self.finished()
        if ended.any():
            i = int(np.flatnonzero(ended)[0])
            raise ValueError(
                f"step: stream {i} has finished its episode; call reset_where before stepping it"
            )
        rows, s, a = self._rows, self.obs, np.where(active, actions, 0).astype(np.int64)
        tab = self._table
        u = self.rng.random(self.num_envs)
        k = (u[:, None] >= self._cum[tab, s, a]).sum(-1)
        next_obs = self._succ[tab, s, a, k]
        mean = self._rew[rows, s, a, k] if self._transition_rewards else self._rew[rows, s, a]
        u_bern = self.rng.random(self.num_envs)
        z = self.rng.standard_normal(self.num_envs)
        reward = np.select(
            [self._noise == 1, self._noise == 2],
            [(u_bern < mean).astype(np.float64), mean + self._std * z],
            mean,
        )
        time = self.time + 1
        done = np.where(self._terminal[rows, next_obs], 1, np.where(time >= self.horizon, 2, 0))
        self.obs = np.where(active, next_obs, self.obs).astype(np.int64)
        self.time = np.where(active, time, self.time).astype(np.int64)
        reward = np.where(active, reward, 0.0).astype(np.float32)
        done = np.where(active, done, 0).astype(np.int64)
        return self.obs.copy(), reward, done, self.time.copy()

    def obs_continuous(self, obs: np.ndarray) -> np.ndarray:
        """Continuous features [N, C] float32 of the observations `obs` [N]."""
        return self._obs_cont[self._rows, np.asarray(obs)]

    def record_fields(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        """The step-record observation fields of `obs` [N]: obs_discrete int64 [N], and obs_continuous
        float32 [N, C] when the tasks have continuous features (C > 0)."""
        fields = {"obs_discrete": np.asarray(obs, dtype=np.int64)}
        if self.obs_continuous_dim > 0:
            fields["obs_continuous"] = self.obs_continuous(obs)
        return fields

    def obs_continuous_table(self) -> np.ndarray:
        """Continuous features of every state of every task [N, nS, C] float32."""
        return self._obs_cont

    def q_star_table(self, gamma: float | None = None) -> np.ndarray:
        """Stacked Q* tables [N, H, nS, A] float32 (tasks must share H); gamma defaults to `self.gamma`."""
        gamma = self.gamma if gamma is None else float(gamma)
        if gamma not in self._q:
            if len(set(self.horizon.tolist())) != 1:
                raise ValueError("q_star: tasks of different horizons cannot be stacked")
            self._q[gamma] = np.stack([t.q_star(gamma) for t in self.tasks])
        return self._q[gamma]

    def q_star(self, obs: np.ndarray, time: np.ndarray, gamma: float | None = None) -> np.ndarray:
        """Q*_{time}(obs, .) [N, A] float32 of every stream; all -inf where time == H or obs is terminal."""
        obs, time = np.asarray(obs), np.asarray(time)
        if ((time < 0) | (time > self.horizon)).any():
            raise ValueError(f"q_star: time must lie in [0, H={int(self.horizon.max())}], got {time}")
        table = self.q_star_table(gamma)
        q = table[self._rows, np.minimum(time, self.horizon - 1), obs]
        return np.where((time >= self.horizon)[:, None], np.float32(-np.inf), q)
