"""Vector-DQN helpers: values encoded as rotation angles of per-action vectors.

A vector head outputs one vector ``[..., A, D]`` per action (D even). The vector is read as D/2
planar pairs ``(x_i, y_i) = (v[..., i], v[..., i + D/2])`` (the half-split layout Llama's RoPE
uses). A reward ``r`` acts on a vector by rotating every pair by the same angle ``theta = r``
(:func:`rope_rotate`), so a Bellman backup is a rotation and the action score is the signed
angle sum ``sum_i atan2(y_i, x_i)`` (:func:`vec_dqn_scores`).
"""

from __future__ import annotations

import torch

__all__ = ["rope_rotate", "vec_dqn_scores"]


def _check_even(x: torch.Tensor, name: str) -> int:
    d = x.shape[-1]
    if d % 2 != 0:
        raise ValueError(f"{name} must have an even last dimension (pairs of coordinates), got {d}.")
    return d // 2


def rope_rotate(x: torch.Tensor, theta: torch.Tensor | float) -> torch.Tensor:
    """Rotate every planar pair of ``x [..., D]`` by ``theta`` (radians, broadcast to ``x.shape[:-1]``).

    Returns a tensor of the same shape and dtype; norms are preserved.
    """
    half = _check_even(x, "x")
    theta = torch.as_tensor(theta, dtype=x.dtype, device=x.device)
    cos, sin = torch.cos(theta).unsqueeze(-1), torch.sin(theta).unsqueeze(-1)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


def vec_dqn_scores(vecs: torch.Tensor) -> torch.Tensor:
    """Score ``[..., A]`` of action vectors ``[..., A, D]``: the sum over pairs of ``atan2(y_i, x_i)``."""
    half = _check_even(vecs, "vecs")
    return torch.atan2(vecs[..., half:], vecs[..., :half]).sum(dim=-1)
