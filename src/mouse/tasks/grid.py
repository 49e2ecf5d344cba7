"""Grid geometry shared by the grid-world families and their exploring teachers."""

from __future__ import annotations

import numpy as np


def grid_next_cells(size: int, deltas: list[tuple[int, int]]) -> np.ndarray:
    """Intended next cell [size*size, A] int64 of each action (row/col deltas, clipped at the walls)."""
    rows, cols = np.divmod(np.arange(size * size), size)
    out = np.empty((size * size, len(deltas)), dtype=np.int64)
    for a, (dr, dc) in enumerate(deltas):
        out[:, a] = np.clip(rows + dr, 0, size - 1) * size + np.clip(cols + dc, 0, size - 1)
    return out


def grid_coords(size: int) -> np.ndarray:
    """(row, col) of every cell as float32 [size*size, 2] (the continuous observation)."""
    rows, cols = np.divmod(np.arange(size * size), size)
    return np.stack([rows, cols], axis=-1).astype(np.float32)


def shortest_path_lengths(next_cells: np.ndarray) -> np.ndarray:
    """All-pairs number of moves [nS, nS] float64 (inf if unreachable) under a deterministic move table."""
    nS = next_cells.shape[0]
    dist = np.full((nS, nS), np.inf)
    np.fill_diagonal(dist, 0.0)
    for _ in range(nS):
        new = np.minimum(dist, 1.0 + dist[next_cells].min(axis=1))  # d(s, g) = 1 + min_a d(next(s, a), g)
        if np.array_equal(new, dist):
            break
        dist = new
    return dist


def path_lengths_from(
    next_cells: np.ndarray,
    sources: np.ndarray,
    blocked: np.ndarray | None = None,
    until: np.ndarray | None = None,
) -> np.ndarray:
    """Moves [N, nS] float64 from each source cell (`sources` [N] int) to every cell, never entering a
    `blocked` cell ([N, nS] bool per row; inf where blocked or unreachable), by breadth-first layers.

    With `until` ([N, nS] bool) the search stops once every row has reached one of its `until` cells:
    cells farther than a row's nearest `until` cell may then be left inf.
    """
    nS = next_cells.shape[0]
    sources = np.asarray(sources, dtype=np.int64)
    n = len(sources)
    step = np.zeros((nS, nS), dtype=np.float32)  # step[s, s2] = 1: some action moves s to s2
    step[np.arange(nS)[:, None], next_cells] = 1.0
    allowed = np.ones((n, nS), dtype=bool) if blocked is None else ~np.asarray(blocked, dtype=bool)
    reach = np.zeros((n, nS), dtype=bool)
    reach[np.arange(n), sources] = True
    dist = np.where(reach, 0.0, np.inf)
    for k in range(1, nS):
        if until is not None and (reach & until).any(-1).all():
            break
        new = ((reach.astype(np.float32) @ step) > 0) & allowed & ~reach
        if not new.any():
            break
        dist[new] = k
        reach |= new
    return dist
