"""Recorders: what the stream engine keeps of each tick (dataset columns, episode returns, ...).

A recorder is told ``start(env, num_records)`` once, then ``record(tick)`` with each :class:`Tick`
(record t of every stream, t = 0, 1, ...), and is read afterwards by its own method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from mouse.rollout.actors import ActorOutput
from mouse.rollout.env import has_q_star

if TYPE_CHECKING:
    from tensordict import TensorDict

_NEG_INF = np.float32(-np.inf)


@dataclass
class Tick:
    """Record ``t`` of every stream, as the recorders see it.

    ``fields``: the record as numpy arrays (``action, reward, done, time`` and the environment's
    observation fields); ``record``: the same as the TensorDict [N] the actor received; ``obs``: the
    environment's native observations at t; ``stepped [N]`` bool: the record holds a transition (False
    on reset records); ``episode [N]`` int64: the episode index of the record (episodes the stream
    completed before t); ``out``: the actor's choice out of record t, None when the run stopped at t
    without asking the actor.
    """

    t: int
    obs: Any
    fields: dict[str, np.ndarray]
    record: TensorDict
    stepped: np.ndarray
    episode: np.ndarray
    out: ActorOutput | None


@dataclass
class RunStats:
    """``ticks`` = records per stream; ``records`` = records the actor acted on (N x acting ticks);
    ``seconds`` = wall clock of the loop."""

    ticks: int
    records: int
    seconds: float

    @property
    def records_per_s(self) -> float:
        return self.records / max(self.seconds, 1e-9)


@runtime_checkable
class Recorder(Protocol):
    def start(self, env: Any, num_records: int | None) -> None:
        """A run begins on ``env``; ``num_records`` is the records-per-stream limit (None: unbounded)."""

    def record(self, tick: Tick) -> None:
        """Record ``tick`` (record t of every stream and, unless the run stopped there, the choice out of it)."""


class ColumnRecorder:
    """Dataset columns: every field of every record, stream-major.

    Keeps ``action, reward, done, time``, the environment's observation fields, ``q_star`` (when the
    environment has exact values and ``q_star`` is not False) and the actor's ``behavior_logits`` /
    ``teacher_logits`` (when it reports them). On done records (no action taken) ``q_star`` and
    ``teacher_logits`` are all -inf and ``behavior_logits`` 0. Needs a records-per-stream limit.
    """

    def __init__(self, q_star: bool | None = None) -> None:
        self.q_star = q_star

    def start(self, env: Any, num_records: int | None) -> None:
        if num_records is None:
            raise ValueError("ColumnRecorder needs a records-per-stream limit (num_records)")
        self.env, self.steps, self.count = env, int(num_records), 0
        self._with_q = has_q_star(env) if self.q_star is None else bool(self.q_star)
        self.cols: dict[str, np.ndarray] = {}

    def _column(self, key: str, value: np.ndarray) -> np.ndarray:
        """The [N, T, ...] column of `key`, allocated from the first value's dtype and shape."""
        if key not in self.cols:
            self.cols[key] = np.empty((value.shape[0], self.steps, *value.shape[1:]), value.dtype)
        return self.cols[key]

    def record(self, tick: Tick) -> None:
        t, rec = tick.t, tick.fields
        for key, value in rec.items():
            self._column(key, value)[:, t] = value
        finished = rec["done"] != 0
        if self._with_q:
            q = np.asarray(self.env.q_star(tick.obs, rec["time"]), dtype=np.float32)
            self._column("q_star", q)[:, t] = q  # all -inf on finished records
        out = tick.out
        if out is not None and out.behavior_logits is not None:
            beh = np.asarray(out.behavior_logits, dtype=np.float32)
            self._column("behavior_logits", beh)[:, t] = np.where(finished[:, None], 0.0, beh)
        if out is not None and out.teacher_logits is not None:
            tea = np.asarray(out.teacher_logits, dtype=np.float32)
            self._column("teacher_logits", tea)[:, t] = np.where(finished[:, None], _NEG_INF, tea)
        self.count = t + 1

    def columns(self) -> dict[str, np.ndarray]:
        """Flat stream-major columns over N*T records (T = records recorded per stream)."""
        out = {}
        for key, col in self.cols.items():
            col = col[:, : self.count]
            out[key] = col.reshape(col.shape[0] * self.count, *col.shape[2:])
        return out


@dataclass
class RolloutResult:
    """Undiscounted return and length of every episode, plus throughput.

    ``returns [N, E]`` float64 and ``lengths [N, E]`` int64 (transitions per episode); ``num_records`` =
    records fed to the actor (N x ticks); ``num_steps`` = env transitions counted in the E episodes;
    ``actions [N, ticks]`` int64 (the actions the actor returned each tick; ``-1`` where the record was
    done, so no action was taken) when ``record_actions``.
    """

    returns: np.ndarray
    lengths: np.ndarray
    num_records: int
    num_steps: int
    seconds: float
    actions: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    @property
    def records_per_s(self) -> float:
        return self.num_records / max(self.seconds, 1e-9)


class ReturnRecorder:
    """Per-episode undiscounted returns and lengths of the first ``episodes`` episodes of each stream.

    Transitions after a stream's E-th episode are not counted. With ``record_actions``, also the action
    the actor returned at each tick (-1 on done records).
    """

    def __init__(self, episodes: int, record_actions: bool = False) -> None:
        if episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes}")
        self.episodes, self.record_actions = int(episodes), record_actions

    def start(self, env: Any, num_records: int | None) -> None:
        n = int(env.num_envs)
        self.returns = np.zeros((n, self.episodes), dtype=np.float64)
        self.lengths = np.zeros((n, self.episodes), dtype=np.int64)
        self.completed = np.zeros(n, dtype=np.int64)
        self.num_steps = 0
        self._taken: list[np.ndarray] = []

    def record(self, tick: Tick) -> None:
        rec, episode = tick.fields, tick.episode
        counted = tick.stepped & (episode < self.episodes)  # transitions of the first E episodes
        idx = np.nonzero(counted)[0]
        self.returns[idx, episode[idx]] += rec["reward"][idx]
        self.lengths[idx, episode[idx]] += 1
        self.num_steps += int(counted.sum())
        self.completed = tick.episode + (rec["done"] != 0)
        if self.record_actions and tick.out is not None:
            self._taken.append(np.where(rec["done"] != 0, -1, tick.out.action))

    def result(self, stats: RunStats) -> RolloutResult:
        """The :class:`RolloutResult`; raises if a stream completed fewer than ``episodes`` episodes."""
        short = np.flatnonzero(self.completed < self.episodes)
        if len(short):
            i = int(short[0])
            raise ValueError(
                f"stream {i} completed {int(self.completed[i])} episodes, fewer than episodes={self.episodes}"
            )
        acts = np.stack(self._taken, axis=1) if self.record_actions else None
        return RolloutResult(self.returns, self.lengths, stats.records, self.num_steps, stats.seconds, acts)
