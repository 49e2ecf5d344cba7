"""Small contract-valid synthetic step-record columns for tests and benchmarks (no task family needed).

The numbers are random, not an environment's: observations are random ids, `q_star` random finite
values (all -inf on terminal/truncated records), rewards random. Only the record structure (streams,
episodes, reset records, done codes, time steps) is meaningful.
"""

from __future__ import annotations

import numpy as np

from mouse.data.spec import DatasetSpec


def synthetic_columns(
    num_streams: int = 4,
    steps_per_stream: int | list[int] = 50,
    num_actions: int = 5,
    horizon: int = 7,
    obs_discrete_size: int = 9,
    obs_continuous_dim: int = 0,
    terminal_prob: float = 0.1,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], DatasetSpec]:
    """Columns (contract dtypes, stream-major) and a matching `DatasetSpec`.

    `steps_per_stream` is one length for all streams or one per stream. Episodes end truncated
    (done=2) after `horizon` transitions or terminal (done=1) with probability `terminal_prob` per step.
    """
    rng = np.random.default_rng(seed)
    lengths = (
        [int(steps_per_stream)] * num_streams if np.isscalar(steps_per_stream) else list(steps_per_stream)
    )
    if len(lengths) != num_streams:
        raise ValueError(f"steps_per_stream has {len(lengths)} lengths, expected num_streams={num_streams}")
    times, dones = [], []
    for length in lengths:
        t_parts, d_parts, total = [], [], 0
        while total < length:
            # an episode: reset record then `ell` transitions, the last one terminal or truncated
            ell = horizon
            ends = rng.random(horizon) < terminal_prob
            if ends.any():
                ell = int(np.argmax(ends)) + 1
            done = np.zeros(ell + 1, dtype=np.int64)
            done[-1] = 1 if ell < horizon else 2
            t_parts.append(np.arange(ell + 1, dtype=np.int64))
            d_parts.append(done)
            total += ell + 1
        times.append(np.concatenate(t_parts)[:length])
        dones.append(np.concatenate(d_parts)[:length])
    time = np.concatenate(times)
    done = np.concatenate(dones)
    n = len(time)
    reset = time == 0
    stream_id = np.repeat(np.arange(num_streams, dtype=np.int64), lengths)
    task_id = np.repeat(rng.integers(0, 1000, size=num_streams).astype(np.int64), lengths)
    action = np.where(reset, 0, rng.integers(0, num_actions, size=n)).astype(np.int64)
    reward = np.where(reset, 0.0, rng.random(n)).astype(np.float32)
    q_star = rng.normal(size=(n, num_actions)).astype(np.float32)
    q_star[done > 0] = -np.inf
    behavior = np.log(rng.dirichlet(np.ones(num_actions), size=n)).astype(np.float32)
    teacher = np.where(rng.random((n, num_actions)) < 0.5, 0.0, -np.inf).astype(np.float32)
    teacher[np.arange(n), q_star.argmax(axis=1)] = 0.0
    cols = {
        "stream_id": stream_id,
        "task_id": task_id,
        "action": action,
        "reward": reward,
        "done": done,
        "time": time,
        "q_star": q_star,
        "behavior_logits": behavior,
        "teacher_logits": teacher,
    }
    if obs_discrete_size:
        cols["obs_discrete"] = rng.integers(0, obs_discrete_size, size=n).astype(np.int64)
    if obs_continuous_dim:
        cols["obs_continuous"] = rng.uniform(-1, 1, size=(n, obs_continuous_dim)).astype(np.float32)
    spec = DatasetSpec(
        num_actions=num_actions,
        horizon=horizon,
        gamma=0.9,
        obs_discrete_size=obs_discrete_size,
        obs_continuous_dim=obs_continuous_dim,
        task_family="synthetic",
        task_params={"terminal_prob": terminal_prob},
        policy="random",
        seed=seed,
        steps_per_task=lengths[0] if len(set(lengths)) == 1 else 0,
    )
    return cols, spec
