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
