"""V-trace off-policy actor-critic (Espeholt et al. 2018, "IMPALA", arXiv:1802.01561).

The functional API is time-major ``[T, B, ...]`` like the pytorch_seed_rl / torchbeast one:
:func:`entropy`, :func:`policy_gradient`, :func:`from_importance_weights`, :func:`from_logits`.
:func:`vtrace_loss` is the MOUSE loss: it applies the step-record alignment to a batch-major
``[B, S]`` window and calls the functional API.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from tensordict import TensorDict

from mouse.losses.base import (
    LossConfig,
    check_positive,
    check_range,
    check_shape,
    cut_masked_pairs,
    masked_mean,
    metrics_or_raise,
    require_key,
    transition_pairs,
)

__all__ = [
    "VTraceFromLogitsReturns",
    "VTraceReturns",
    "VtraceLossConfig",
    "action_log_probs",
    "entropy",
    "from_importance_weights",
    "from_logits",
    "policy_gradient",
    "vtrace_loss",
]


class VTraceReturns(NamedTuple):
    """V-trace targets ``vs`` and policy-gradient advantages, both ``[T, B]`` without gradient."""

    vs: torch.Tensor
    pg_advantages: torch.Tensor


class VTraceFromLogitsReturns(NamedTuple):
    """:func:`from_logits` result; every field ``[T, B]``."""

    vs: torch.Tensor
    pg_advantages: torch.Tensor
    log_rhos: torch.Tensor
    behavior_action_log_probs: torch.Tensor
    target_action_log_probs: torch.Tensor


def _plogp(logits: torch.Tensor) -> torch.Tensor:
    """Elementwise ``p log p`` of ``softmax(logits)`` over the last dim, 0 where p = 0."""
    log_p = F.log_softmax(logits, dim=-1)
    p = log_p.exp()
    return torch.where(p > 0, p * log_p, torch.zeros_like(p))


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """The entropy loss: ``sum p log p`` over every element (the negative policy entropy, summed)."""
    return _plogp(logits).sum()


def action_log_probs(policy_logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """``log softmax(policy_logits)[actions]``: ``[..., A]`` logits, ``[...]`` int64 actions -> ``[...]``."""
    return F.log_softmax(policy_logits, dim=-1).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


def policy_gradient(logits: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """Policy-gradient loss ``sum CE(logits, actions) * advantages`` (advantages detached)."""
    return (-action_log_probs(logits, actions) * advantages.detach()).sum()


@torch.no_grad()
def from_importance_weights(
    log_rhos: torch.Tensor,
    discounts: torch.Tensor,
    rewards: torch.Tensor,
    values: torch.Tensor,
    bootstrap_value: torch.Tensor,
    clip_rho_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
) -> VTraceReturns:
    """V-trace targets from log importance weights ``log(pi/mu)`` (IMPALA eq. 1 and section 4.2).

    All inputs ``[T, B]`` except ``bootstrap_value [B]`` (the value of the state after the last
    step). ``v_s = V(x_s) + sum_t gamma^(t-s) (prod c_i) rho_t delta_t`` with
    ``rho = min(rho_bar, pi/mu)``, ``c = min(1, pi/mu)``, ``delta_t = r_t + gamma_t V(x_{t+1}) - V(x_t)``;
    ``pg_advantages = min(rho_pg_bar, pi/mu) (r_t + gamma_t v_{t+1} - V(x_t))``. A threshold of
    ``None`` means no clipping. Computed without gradient.
    """
    if log_rhos.dim() != 2:
        raise ValueError(f"log_rhos must be time-major [T, B], got {list(log_rhos.shape)}.")
    for name, x in (("discounts", discounts), ("rewards", rewards), ("values", values)):
        check_shape(x, tuple(log_rhos.shape), f"{name} (same as log_rhos [T, B])")
    check_shape(bootstrap_value, (log_rhos.shape[1],), "bootstrap_value ([B])")
    rhos = log_rhos.exp()
    clipped_rhos = rhos if clip_rho_threshold is None else rhos.clamp(max=clip_rho_threshold)
    cs = rhos.clamp(max=1.0)
    values_next = torch.cat([values[1:], bootstrap_value.unsqueeze(0)], dim=0)
    deltas = clipped_rhos * (rewards + discounts * values_next - values)
    acc = torch.zeros_like(bootstrap_value)
    vs_minus_v = torch.empty_like(values)
    for t in range(values.shape[0] - 1, -1, -1):
        acc = deltas[t] + discounts[t] * cs[t] * acc
        vs_minus_v[t] = acc
    vs = values + vs_minus_v
    vs_next = torch.cat([vs[1:], bootstrap_value.unsqueeze(0)], dim=0)
    pg_rhos = rhos if clip_pg_rho_threshold is None else rhos.clamp(max=clip_pg_rho_threshold)
    pg_advantages = pg_rhos * (rewards + discounts * vs_next - values)
    return VTraceReturns(vs=vs, pg_advantages=pg_advantages)


def from_logits(
    behavior_policy_logits: torch.Tensor,
    target_policy_logits: torch.Tensor,
    values: torch.Tensor,
    bootstrap_value: torch.Tensor,
    actions: torch.Tensor,
    discounts: torch.Tensor,
    rewards: torch.Tensor,
    clip_rho_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
) -> VTraceFromLogitsReturns:
    """V-trace for softmax policies: logits ``[T, B, A]``, actions/values/discounts/rewards ``[T, B]``,
    ``bootstrap_value [B]``. ``vs`` and ``pg_advantages`` carry no gradient;
    ``target_action_log_probs`` does (for the policy-gradient term)."""
    if target_policy_logits.dim() != 3:
        raise ValueError(f"target_policy_logits must be [T, B, A], got {list(target_policy_logits.shape)}.")
    check_shape(
        behavior_policy_logits, tuple(target_policy_logits.shape), "behavior_policy_logits ([T, B, A])"
    )
    check_shape(actions, tuple(target_policy_logits.shape[:2]), "actions ([T, B])")
    target_lp = action_log_probs(target_policy_logits, actions)
    behavior_lp = action_log_probs(behavior_policy_logits, actions)
    log_rhos = target_lp - behavior_lp
    ret = from_importance_weights(
        log_rhos.detach(),
        discounts,
        rewards,
        values.detach(),
        bootstrap_value.detach(),
        clip_rho_threshold,
        clip_pg_rho_threshold,
    )
    return VTraceFromLogitsReturns(ret.vs, ret.pg_advantages, log_rhos, behavior_lp, target_lp)


# --------------------------------------------------------------------------------------------------
# the MOUSE loss
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VtraceLossConfig(LossConfig):
    """V-trace actor-critic loss (see :func:`vtrace_loss`); thresholds as in IMPALA."""

    weight: float = 0.0
    gamma: float = 0.99  # discount; a transition into a terminal record has discount 0
    clip_rho_threshold: float = 1.0  # rho-bar, > 0
    clip_pg_rho_threshold: float = 1.0  # rho-bar of the policy-gradient advantage, > 0
    baseline_weight: float = 0.5  # weight of the value (baseline) loss
    entropy_weight: float = 0.01  # weight of the entropy loss (sum p log p); >= 0
    reward_scale: float = 1.0  # rewards are multiplied by this

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self, "gamma", 0.0, 1.0)
        check_positive(self, "clip_rho_threshold")
        check_positive(self, "clip_pg_rho_threshold")
        check_positive(self, "baseline_weight", strict=False)
        check_positive(self, "entropy_weight", strict=False)
        check_range(self, "reward_scale", -math.inf, math.inf)


def vtrace_loss(
    step_stream: TensorDict, out: TensorDict, cfg: VtraceLossConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """IMPALA loss ``pg + baseline_weight * baseline + entropy_weight * entropy`` on a ``[B, S]`` window.

    Reads ``out['sp'] [B, S, A]`` (target policy logits), ``out['value'] [B, S]`` (scalar critic) and
    ``step_stream['behavior_logits'] [B, S, A]``. Transition ``t`` (``t < S-1``) is the action
    ``action[t+1]`` taken from record ``t`` with reward ``reward_scale * reward[t+1]``; its discount
    is ``gamma`` unless it entered a terminal record (``done[t+1] = 1`` -> 0; a truncated record
    bootstraps from its value). ``V(x_{S-1})`` is the (detached) bootstrap. Pairs whose record
    ``t`` is terminal/truncated take no action: they are masked out of all three terms and cut
    the V-trace recursion there (``v_s = V(x_s)``, zero advantage), counted in
    ``vtrace_masked_pairs``. The three terms are means over valid pairs: pg = ``-log pi(a) * A_pg``,
    baseline = ``0.5 (v_s - V(x_s))^2``, entropy = ``sum_a p log p``.
    """
    logits = require_key(out, "sp", "vtrace", "Build the model with an sp head (the actor).")
    value = require_key(out, "value", "vtrace", "Build the model with a scalar value head (the critic).")
    behavior = require_key(step_stream, "behavior_logits", "vtrace", "Collect data with behaviour logits.")
    if logits.dim() != 3:
        raise ValueError(f"out['sp'] must have shape [B, S, A], got {list(logits.shape)}.")
    check_shape(logits, (*step_stream.batch_size, None), "out['sp'] vs step_stream batch_size [B, S]")
    check_shape(behavior, tuple(logits.shape), "step_stream['behavior_logits'] (same as out['sp'])")
    if value.dim() != 2:
        raise ValueError(
            f"vtrace needs a scalar critic out['value'] of shape [B, S], got {list(value.shape)} "
            "(a two-hot critic is only supported by the 'value' loss)."
        )
    check_shape(value, tuple(step_stream.batch_size), "out['value'] ([B, S])")
    pairs = transition_pairs(step_stream, "vtrace", dtype=value.dtype)
    valid = pairs.valid  # [B, S-1]

    def tm(x: torch.Tensor) -> torch.Tensor:  # batch-major [B, S-1, ...] -> time-major
        return x.transpose(0, 1)

    # records where no action is taken may hold all -inf logits: neutralise them (they are masked)
    keep = valid.unsqueeze(-1)
    target_logits = torch.where(keep, logits[:, :-1], torch.zeros_like(logits[:, :-1]))
    behavior_logits = torch.where(keep, behavior[:, :-1].to(logits.dtype), torch.zeros_like(target_logits))
    v = value[:, :-1]
    # a masked pair cuts the recursion: discount 0 and reward V(x_t) give delta = 0, v_s = V(x_s)
    discounts, rewards = cut_masked_pairs(pairs, cfg.gamma, pairs.reward * cfg.reward_scale, v)
    ret = from_logits(
        tm(behavior_logits),
        tm(target_logits),
        tm(v),
        value[:, -1],
        tm(pairs.action),
        tm(discounts),
        tm(rewards),
        cfg.clip_rho_threshold,
        cfg.clip_pg_rho_threshold,
    )
    mask = tm(valid)
    pg_loss = masked_mean(-ret.target_action_log_probs * ret.pg_advantages, mask)
    baseline_loss = masked_mean(0.5 * (ret.vs - tm(v)) ** 2, mask)
    entropy_loss = masked_mean(_plogp(tm(target_logits)).sum(-1), mask)
    loss = pg_loss + cfg.baseline_weight * baseline_loss + cfg.entropy_weight * entropy_loss

    with torch.no_grad():
        rhos = ret.log_rhos.exp()
        named = {
            "vtrace_loss": loss,
            "vtrace_pg_loss": pg_loss,
            "vtrace_baseline_loss": baseline_loss,
            "vtrace_entropy": -entropy_loss,
            "vtrace_rho_mean": masked_mean(rhos, mask),
            "vtrace_rho_clipped_frac": masked_mean((rhos > cfg.clip_rho_threshold).to(rhos.dtype), mask),
            "vtrace_vs_mean": masked_mean(ret.vs, mask),
            "vtrace_advantage_mean": masked_mean(ret.pg_advantages, mask),
            "vtrace_pairs": valid.sum(),
            "vtrace_masked_pairs": (~valid).sum(),
        }
    metrics = metrics_or_raise(
        named,
        "vtrace_pairs",
        "vtrace loss: every pair in the window starts on a terminal/truncated record (done[t] != 0); "
        "there is nothing to learn from.",
    )
    return loss, metrics
