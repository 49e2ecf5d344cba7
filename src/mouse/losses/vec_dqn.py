"""Vector-DQN loss: a Bellman backup as a RoPE rotation of action vectors, fitted by cosine similarity.

A value is encoded as the rotation angle of a per-action vector (see
:mod:`mouse.models.heads.vec_dqn`): a reward ``r`` rotates every planar pair by ``theta = r``, so
the target for ``(s_t, a)`` is the greedy next-state vector rotated by the (scaled) reward.
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
    normalize_reward_std: bool = False  # divide by the per-row reward std (+ eps)
    normalize_reward_eps: float = 1e-8
    normalize_reward_std_target: float = 1.0
    use_xformed_reward: bool = False  # rotate by step_stream['xformed_reward'] instead of 'reward'

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self, "tau", 0.0, 1.0)
        check_reward_transform(self)


def zero_angle_vectors(like: torch.Tensor) -> torch.Tensor:
    """Unit vectors shaped like ``like [..., D]`` whose every planar pair has angle 0 (score 0)."""
    half = like.shape[-1] // 2
    ref = torch.zeros_like(like)
    ref[..., :half] = 1.0 / math.sqrt(half)
    return ref


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
        nxt = target_vecs[:, 1:].detach()  # [B, S-1, A, D]
        greedy = vec_dqn_scores(nxt).argmax(dim=-1)  # [B, S-1]
        index = greedy[..., None, None].expand(*greedy.shape, 1, nxt.shape[-1])
        nxt_vec = nxt.gather(-2, index).squeeze(-2)  # [B, S-1, D]
        ended = (pairs.done != 0).unsqueeze(-1)
        nxt_vec = torch.where(ended, zero_angle_vectors(nxt_vec), nxt_vec)
        target = rope_rotate(nxt_vec, theta)

    index = pairs.action[..., None, None].expand(*pairs.action.shape, 1, online_vecs.shape[-1])
    online = online_vecs[:, :-1].gather(-2, index).squeeze(-2)  # [B, S-1, D]
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
