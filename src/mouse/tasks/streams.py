"""Episode returns of step-record streams, and the exact oracle / random returns of task families.

Streams themselves are run by the stream engine (`mouse.rollout`: `collect_streams`, `rollout_returns`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mouse.tasks.core import TaskFamily


def episode_returns(reward: np.ndarray, done: np.ndarray, num_episodes: int) -> np.ndarray:
    """Undiscounted return of each of the first `num_episodes` complete episodes [N, E] float64.

    `reward`, `done` are [N, T] stream columns in record order; raises if a stream has fewer episodes.
    """
    ends = np.cumsum(done != 0, axis=1)  # episodes completed up to and including record t
    episode = ends - (done != 0)  # episode index that record t's transition belongs to
    out = np.zeros((reward.shape[0], num_episodes))
    mask = episode < num_episodes
    rows = np.broadcast_to(np.arange(reward.shape[0])[:, None], reward.shape)
    np.add.at(out, (rows[mask], episode[mask]), reward[mask])
    short = np.flatnonzero(ends[:, -1] < num_episodes)
    if len(short):
        raise ValueError(
            f"episode_returns: stream {int(short[0])} completed {int(ends[short[0], -1])} episodes, "
            f"fewer than num_episodes={num_episodes}"
        )
    return out


def oracle_returns(family: TaskFamily, task_ids: Sequence[int], gamma: float = 1.0) -> np.ndarray | None:
    """Expected return [N] of an optimal policy over one episode of each task (exact for tabular
    families); None where the family knows no reference (`TaskFamily.oracle_returns`)."""
    return family.oracle_returns(task_ids, gamma)


def random_returns(family: TaskFamily, task_ids: Sequence[int], gamma: float = 1.0) -> np.ndarray | None:
    """Expected return [N] of the uniform random policy over one episode of each task (exact for
    tabular families); None where unknown (`TaskFamily.random_returns`)."""
    return family.random_returns(task_ids, gamma)
