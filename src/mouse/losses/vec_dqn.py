"""Vector-DQN loss: a Bellman backup as a RoPE rotation of action vectors, fitted by cosine similarity.

A value is encoded as the rotation angle of a per-action vector (see
:mod:`mouse.models.heads.vec_dqn`): a reward ``r`` rotates every consecutive pair ``(2k, 2k+1)`` by
``theta = r``, so the target for ``(s_t, a)`` is the greedy next-state vector (argmax of
:func:`~mouse.models.heads.vec_dqn.vec_dqn_scores`) rotated by the (scaled) reward.

Kept on purpose (beyond the seed's formula, which pairs every ``t`` with ``t+1`` alike): a pair whose
record ``t`` is terminal/truncated took no action and is masked out of the loss, the reward
normalisation and the metrics; a transition that ends the episode (``done[t+1] != 0``) has no
next-state value to bootstrap from, so its rotated vector is the zero-angle reference
(:func:`zero_angle_vectors`). On a window with no terminal/truncated record the loss is the seed's
formula. Metric names carry the ``vec_dqn_`` prefix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tensordict import TensorDict

from mouse.losses.base import (
    LossConfig,
    check_range,
    check_reward_transform,
    check_shape,
    masked_mean,
    metrics_or_raise,
    transformed_reward_pairs,
)
from mouse.models.heads.vec_dqn import rope_rotate, vec_dqn_scores

__all__ = ["VecDqnLossConfig", "vec_dqn_loss", "zero_angle_vectors"]


@dataclass(frozen=True)
class VecDqnLossConfig(LossConfig):
    """Vector-DQN cosine-similarity loss at PREDICTION (see :func:`vec_dqn_loss`)."""

    weight: float = 0.0
    tau: float = 0.01  # Polyak rate of the target head
    reward_scale: float = 1.0  # rotation angle theta = r * reward_scale + reward_shift
    reward_shift: float = 0.0
    normalize_reward_mean: bool = False  # subtract the per-row mean reward
    normalize_reward_std: bool = False  # divide by the per-row reward std (Bessel-corrected, + eps)
    normalize_reward_eps: float = 1e-8
    normalize_reward_std_target: float = 1.0
    use_xformed_reward: bool = False  # rotate by step_stream['xformed_reward'] instead of 'reward'

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self, "tau", 0.0, 1.0)
        check_reward_transform(self)


def zero_angle_vectors(like: torch.Tensor) -> torch.Tensor:
    """Unit vectors shaped like ``like [..., D]`` whose every pair ``(2k, 2k+1)`` has angle 0:
    ``1 / sqrt(D/2)`` at the even coordinates, 0 at the odd ones."""
    half = like.shape[-1] // 2
    ref = torch.zeros_like(like)
    ref[..., 0::2] = 1.0 / math.sqrt(half)
    return ref


def _select_action(vecs: torch.Tensor, action: torch.Tensor, start: int) -> torch.Tensor:
    """``vecs[b, start + s, action[b, s]]`` for ``vecs [B, S, A, D]`` and ``action [B, n]`` -> ``[B, n, D]``.

    The values of a ``gather`` over the action dimension, read as whole rows of D from the
    flattened (not sliced) tensor: faster on CPU, and the backward fills one zero gradient."""
    b, s, a, d = vecs.shape
    n = action.shape[1]
    bad = (action < 0) | (action >= a)
    if bool(bad.any()):  # an index_select would read another row's vector: refuse, naming the range
        raise ValueError(f"vec_dqn: action {int(action[bad][0])} is outside [0, A={a}).")
    batch = torch.arange(b, device=vecs.device)[:, None] * s
    rows = (batch + torch.arange(start, start + n, device=vecs.device)) * a + action
    return vecs.reshape(b * s * a, d).index_select(0, rows.reshape(-1)).view(b, n, d)


def vec_dqn_loss(
    step_stream: TensorDict, online_vecs: torch.Tensor, target_vecs: torch.Tensor, cfg: VecDqnLossConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """``mean_pairs (1 - cos(online[t, a_{t+1}], rope_rotate(target[t+1, a*], theta)))``.

    ``online_vecs``/``target_vecs`` are ``[B, S, A, D]`` (D even); ``a* = argmax_a
    vec_dqn_scores(target[t+1])`` and ``theta = normalise(r[t+1]) * reward_scale + reward_shift``.
    The target is detached. When the transition out of ``t`` ends the episode (``done[t+1] != 0``)
    there is no next-state value: the rotated vector is the zero-angle reference
    (:func:`zero_angle_vectors`) instead of the greedy target vector. Pairs whose record ``t`` is
    terminal/truncated take no action and are masked out (counted in ``vec_dqn_masked_pairs``).
    Metrics: vec_dqn_loss, vec_dqn_score_abs_{min,max,mean} (``|score| / pi`` of the online
    vectors at the last position, all actions), vec_dqn_pairs, vec_dqn_masked_pairs.
    """
    if online_vecs.dim() != 4:
        raise ValueError(
            f"vec_dqn online vectors must have shape [B, S, A, D], got {list(online_vecs.shape)}."
        )
    check_shape(online_vecs, (*step_stream.batch_size, None, None), "vec_dqn online vectors vs [B, S]")
    check_shape(target_vecs, tuple(online_vecs.shape), "vec_dqn target vectors (same as online)")
    if online_vecs.shape[-1] % 2:
        raise ValueError(f"vec_dqn vectors need an even last dimension D, got {online_vecs.shape[-1]}.")
    pairs, theta = transformed_reward_pairs(step_stream, "vec_dqn", cfg, online_vecs.dtype)  # theta [B, S-1]

    with torch.no_grad():
        nxt = target_vecs.detach()
        # scores of the whole window (contiguous, no copy); the pairs need positions 1..S-1
        greedy = vec_dqn_scores(nxt).argmax(dim=-1)[:, 1:]  # [B, S-1]
        nxt_vec = _select_action(nxt, greedy, start=1)  # [B, S-1, D]
        ended = (pairs.done != 0).unsqueeze(-1)
        nxt_vec = torch.where(ended, zero_angle_vectors(nxt_vec), nxt_vec)
        target = rope_rotate(nxt_vec, theta)  # [B, S-1, D]

    online = _select_action(online_vecs, pairs.action, start=0)  # [B, S-1, D]
    cos = F.cosine_similarity(online, target, dim=-1, eps=1e-8)
    loss = masked_mean(1.0 - cos, pairs.valid)

    score = vec_dqn_scores(online_vecs[:, -1].detach()).abs() / math.pi  # [B, A]
    named = {
        "vec_dqn_loss": loss,
        "vec_dqn_score_abs_min": score.amin(),
        "vec_dqn_score_abs_max": score.amax(),
        "vec_dqn_score_abs_mean": score.mean(),
        "vec_dqn_pairs": pairs.valid.sum(),
        "vec_dqn_masked_pairs": (~pairs.valid).sum(),
    }
    metrics = metrics_or_raise(
        named,
        "vec_dqn_pairs",
        "vec_dqn loss: every pair in the window starts on a terminal/truncated record (done[t] != 0); "
        "there is nothing to learn from.",
    )
    return loss, metrics
