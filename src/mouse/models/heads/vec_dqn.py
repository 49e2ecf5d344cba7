"""Vector-DQN helpers: values encoded as rotation angles of per-action vectors.

A vector head outputs one vector ``v_a`` per action, ``[..., A, D]`` with D even, read as D/2 planes
of consecutive coordinates ``(v[2k], v[2k+1])`` (the interleaved RoPE layout). A reward ``r`` acts on
a vector by rotating every plane by the same angle ``theta = r`` (:func:`rope_rotate`), so a Bellman
backup is a rotation. The score of action ``a`` is its summed angular lead over every action ``i``
(:func:`vec_dqn_scores`)::

    score_a = sum_i atan2(<rot90(v^_i), v^_a>, <v^_i, v^_a>),   v^ = v / |v|,   rot90 = rope_rotate(., pi/2)

For D = 2 this is ``sum_i wrap(phi_a - phi_i)`` with ``wrap`` onto ``(-pi, pi]``; for D > 2 the sine
and cosine terms are summed over the planes before the ``atan2``. The self term is 0.
"""

from __future__ import annotations

from functools import lru_cache

import torch

__all__ = ["rope_rotate", "vec_dqn_scores"]


def _check_even(x: torch.Tensor, name: str) -> int:
    d = x.shape[-1] if x.dim() else 1
    if d % 2 != 0:
        raise ValueError(f"{name} must have an even last dimension (pairs of coordinates), got {d}.")
    return d // 2


def rope_rotate(x: torch.Tensor, theta: torch.Tensor | float) -> torch.Tensor:
    """Rotate every consecutive pair ``(x[2k], x[2k+1])`` of ``x [..., D]`` by ``theta``.

    ``theta`` (radians) broadcasts against ``x.shape[:-1]``: one angle per vector, the same for all
    of its D/2 planes. Returns a tensor of the same shape and dtype; norms are preserved.
    """
    _check_even(x, "x")
    theta = torch.as_tensor(theta, dtype=x.dtype, device=x.device)
    cos, sin = torch.cos(theta).unsqueeze(-1), torch.sin(theta).unsqueeze(-1)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


@lru_cache(maxsize=32)
def _pair_constants(a: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(select [2P], signs [P, A])`` for the ``P = A(A-1)/2`` action pairs ``i < j``: the flat
    positions of ``(i, j)`` then ``(j, i)`` in a row-major ``A x A`` matrix, and ``signs[p]`` = +1
    at ``j``, -1 at ``i`` (the angle of pair ``p`` counts for ``j`` and against ``i``)."""
    i, j = torch.triu_indices(a, a, 1)
    signs = torch.zeros(i.numel(), a, dtype=dtype)
    pair = torch.arange(i.numel())
    signs[pair, j] = 1.0
    signs[pair, i] = -1.0
    return torch.cat((i * a + j, j * a + i)).to(device), signs.to(device)


# on CPU, positions are scored in chunks whose A x A Gram matrices (~1 MiB) stay in cache: the
# elementwise passes are memory-bound, and this runs them ~2x faster than one pass over the batch
_CPU_CHUNK_GRAM_ELEMENTS = 1 << 18


def _scores(v: torch.Tensor) -> torch.Tensor:
    """:func:`vec_dqn_scores` of contiguous ``v [N, A, D]`` -> ``[N, A]``."""
    a, d = v.shape[-2:]
    # (I - rot90)(x, y) = (x + y, y - x) is the complex product (1 - i)(x + iy), one cheap pass
    w = torch.view_as_real(torch.view_as_complex(v.unflatten(-1, (d // 2, 2))) * (1 - 1j)).flatten(-2)
    gram = torch.bmm(v, w.transpose(1, 2)).flatten(1)  # [N, A*A]: row i, column a
    select, signs = _pair_constants(a, v.dtype, v.device)
    g_ij, g_ji = gram.index_select(1, select).chunk(2, dim=1)
    angle = torch.atan2(g_ij - g_ji, g_ij + g_ji)  # [N, P]: the lead of j over i
    return angle @ signs


def vec_dqn_scores(vecs: torch.Tensor) -> torch.Tensor:
    """Scores ``[..., A]`` of action vectors ``[..., A, D]`` (module docstring):
    ``score_a = sum_i atan2(<rot90(v^_i), v^_a>, <v^_i, v^_a>)``.

    Computed from one batched Gram matrix ``G_ia = <v_i, v_a> + <rot90(v_i), v_a>
    = <v_i, (I - rot90) v_a>``: the sine term is antisymmetric and the cosine term symmetric in
    ``(i, a)``, so for ``i < a`` the angle is ``atan2(G_ia - G_ai, G_ia + G_ai)``, its negative is the
    ``(a, i)`` angle, and only A(A-1)/2 ``atan2`` are evaluated per position. ``atan2`` does not
    change when both arguments are scaled by ``1 / (|v_i| |v_a|) > 0``, so the normalisation is
    implicit (a zero vector scores 0 against every action, as a normalised zero vector does).
    ``rot90`` is exact, ``(x, y) -> (-y, x)`` per plane. Differentiable; float32 or wider.
    """
    _check_even(vecs, "vecs")
    if vecs.dim() < 2:
        raise ValueError(f"vecs must have shape [..., A, D], got {list(vecs.shape)}.")
    *lead, a, d = vecs.shape
    v = vecs.to(torch.promote_types(vecs.dtype, torch.float32)).reshape(-1, a, d).contiguous()
    chunk = max(1, _CPU_CHUNK_GRAM_ELEMENTS // max(1, a * a))
    if v.device.type == "cpu" and v.shape[0] > chunk:
        scores = torch.cat([_scores(part) for part in v.split(chunk)])
    else:
        scores = _scores(v)
    return scores.reshape(*lead, a)
