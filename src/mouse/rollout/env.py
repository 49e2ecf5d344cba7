"""The vectorised environment interface the stream engine steps (`mouse.tasks.TabularVecEnv` implements it).

An environment is N streams stepped in lockstep that never reset on their own: the engine asks for a
reset where a stream's newest record ended an episode. Observations are whatever the environment
uses natively (a discrete id for tabular tasks, a vector or an image for a gymnasium env); the engine
never looks inside them, it only hands them back to the environment (`record_fields`, `q_star`).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

OBS_FIELDS = ("obs_discrete", "obs_continuous", "obs_image")


@runtime_checkable
class VecEnv(Protocol):
    """N reset-free streams stepped together.

    - ``reset() -> obs``: start an episode in every stream (observations of all N streams).
    - ``reset_where(mask [N] bool) -> obs``: start an episode where ``mask``; returns the CURRENT
      observations of all N streams (the new start where ``mask``, unchanged elsewhere).
    - ``step(actions [N] int64, active [N] bool) -> (obs, reward [N] float32, done [N] int64, time [N]
      int64)``: advance the ``active`` streams by one transition; inactive streams keep their state and
      report reward 0 and done 0. ``done`` is 0 alive, 1 terminal, 2 truncated; ``time`` the step index
      within the episode of the new record. Stepping a stream whose episode ended is an error.
    - ``record_fields(obs) -> dict``: the record's observation fields of ``obs``, some of
      ``obs_discrete`` int64 [N], ``obs_continuous`` float32 [N, C], ``obs_image`` uint8 [N, P]
      (always the same keys, in the same order, for one environment).

    Optional: ``q_star(obs, time) -> [N, A] float32`` exact optimal action values (all -inf where no
    action is taken), for families that have them; a column recorder stores them when present.
    ``close()`` releases worker processes (callers use :func:`close_env` when done). Environments made
    by a task family also carry ``tasks``, one entry per stream, for behaviour policies.
    """

    num_envs: int
    num_actions: int

    def reset(self) -> Any: ...

    def reset_where(self, mask: np.ndarray) -> Any: ...

    def step(
        self, actions: np.ndarray, active: np.ndarray
    ) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]: ...

    def record_fields(self, obs: Any) -> dict[str, np.ndarray]: ...


def has_q_star(env: Any) -> bool:
    """Whether `env` exposes exact optimal action values (``q_star(obs, time)``)."""
    return callable(getattr(env, "q_star", None))


def close_env(env: Any) -> None:
    """Release ``env``'s resources (worker processes of an async gymnasium vector env) if it has any."""
    close = getattr(env, "close", None)
    if callable(close):
        close()
