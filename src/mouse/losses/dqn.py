"""Two-head one-step DQN loss (Mnih et al. 2015) with an optional CQL penalty (Kumar et al. 2020).

Kept on purpose (beyond the seed's formula, which pairs every ``t`` with ``t+1`` alike): a pair whose
record ``t`` is terminal/truncated took no action and is masked out of the loss, the reward
normalisation and the metrics; on a window with no such pair the values are the seed's formula.
Standard deviations (``normalize_reward_std``, ``dqn_q_values_std``) are Bessel-corrected, as
``torch.std``. Metric names carry the ``dqn_`` prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict

from mouse.losses.base import (
    LossConfig,
    check_positive,
    check_range,
    check_reward_transform,
    check_shape,
    masked_mean,
    masked_stats,
    metrics_or_raise,
    require_key,
    transformed_reward_pairs,
)

__all__ = ["DqnLossConfig", "dqn_loss"]


@dataclass(frozen=True)
class DqnLossConfig(LossConfig):
    """Symmetric two-head one-step TD at PREDICTION (see :func:`dqn_loss`).

    ``tau`` is the Polyak rate the trainer passes to ``model.polyak_update`` for the target head.
    """

    weight: float = 0.0
    gamma: float = 0.99  # discount of a transition that did not end the episode
    gamma_terminal: float = 0.0  # discount of a transition into a terminal record (done=1)
    gamma_truncated: float = 0.0  # discount of a transition into a truncated record (done=2)
    tau: float = 0.01  # Polyak rate of the target head
    normalize_reward_mean: bool = False  # subtract the per-row mean reward
    normalize_reward_std: bool = False  # divide by the per-row reward std (Bessel-corrected, + eps)
    normalize_reward_eps: float = 1e-8
    normalize_reward_std_target: float = 1.0  # std of the normalised rewards
    use_xformed_reward: bool = False  # TD reward from step_stream['xformed_reward']
    cql_weight: float = 0.0  # CQL penalty coefficient; 0 = off
    cql_scale_q_eps: float = 1.0  # CQL scale = |td_target| + cql_scale_q_eps
    reward_scale: float = 1.0  # TD reward = r * reward_scale + reward_shift
    reward_shift: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("gamma", "gamma_terminal", "gamma_truncated", "tau"):
            check_range(self, name, 0.0, 1.0)
        check_reward_transform(self)
        check_positive(self, "cql_weight", strict=False)
        check_positive(self, "cql_scale_q_eps", strict=False)


def dqn_loss(
    step_stream: TensorDict, out: TensorDict, cfg: DqnLossConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """One-step TD loss on ``out['dqn']`` against the detached ``out['dqn_target']`` (both [B, S, A]).

    Pairs record ``t`` with ``t+1`` (the transition out of ``t`` is stored at ``t+1``)::

        r'        = normalise(r[t+1]) * reward_scale + reward_shift      (per-row mean/std, optional)
        discount  = gamma (alive) | gamma_terminal (done[t+1]=1) | gamma_truncated (done[t+1]=2)
        td_target = r' + discount * max_a Q_target(s_{t+1}, a)
        loss      = mean_pairs (Q(s_t, a_{t+1}) - td_target)^2
                    + cql_weight * (|td_target| + cql_scale_q_eps) * (logsumexp_a Q(s_t) - Q(s_t, a_{t+1}))

    Pairs whose record ``t`` is terminal/truncated (``done[t] != 0``) take no action and are masked
    out of the loss, the reward normalisation and the metrics (counted in ``dqn_masked_pairs``).
    Metrics: dqn_loss (the TD part), dqn_cql_penalty, dqn_q_values_{mean,std,min,max} (of the
    taken actions; std Bessel-corrected), dqn_q_values_target (mean TD target), dqn_pairs,
    dqn_masked_pairs.
    """
    q = require_key(out, "dqn", "dqn", "Build the model with a dqn head (dqn_head_kwargs.num_layers > 0).")
    q_target = require_key(out, "dqn_target", "dqn", "The dqn loss needs the target head's output too.")
    if q.dim() != 3:
        raise ValueError(f"out['dqn'] must have shape [B, S, A], got {list(q.shape)}.")
    check_shape(q, (*step_stream.batch_size, None), "out['dqn'] (vs step_stream batch_size [B, S])")
    check_shape(q_target, tuple(q.shape), "out['dqn_target'] (same as out['dqn'])")
    pairs, reward = transformed_reward_pairs(step_stream, "dqn", cfg, q.dtype)
    term, trunc = pairs.terminal.to(q.dtype), pairs.truncated.to(q.dtype)
    discount = cfg.gamma * (1.0 - term - trunc) + cfg.gamma_terminal * term + cfg.gamma_truncated * trunc
    with torch.no_grad():
        td_target = reward + discount * q_target[:, 1:].detach().amax(dim=-1)

    q_now = q[:, :-1]
    q_taken = q_now.gather(-1, pairs.action.unsqueeze(-1)).squeeze(-1)  # [B, S-1]
    td_loss = masked_mean((q_taken - td_target) ** 2, pairs.valid)
    cql_penalty = torch.logsumexp(q_now, dim=-1) - q_taken
    loss = td_loss
    if cfg.cql_weight > 0:
        scale = td_target.abs() + cfg.cql_scale_q_eps
        loss = loss + cfg.cql_weight * masked_mean(scale * cql_penalty, pairs.valid)

    valid = pairs.valid
    stats = masked_stats(q_taken, valid)
    named = {
        "dqn_loss": td_loss,
        "dqn_cql_penalty": masked_mean(cql_penalty.detach(), valid),
        **{f"dqn_q_values_{k}": v for k, v in stats.items()},
        "dqn_q_values_target": masked_mean(td_target, valid),
        "dqn_pairs": valid.sum(),
        "dqn_masked_pairs": (~valid).sum(),
    }
    metrics = metrics_or_raise(
        named,
        "dqn_pairs",
        "dqn loss: every pair in the window starts on a terminal/truncated record (done[t] != 0); "
        "no action was taken from any record, so there is nothing to learn from.",
    )
    return loss, metrics
