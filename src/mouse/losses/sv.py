"""Supervised value loss: regress the ``sv`` head onto the exact optimal action values ``q_star``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict

from mouse.losses.base import LossConfig, check_choice, check_shape, masked_mean, metrics_to_host, require_key

__all__ = ["SV_LOSS_TYPES", "SvLossConfig", "sv_loss"]

SV_LOSS_TYPES = ("mse", "mae")


@dataclass(frozen=True)
class SvLossConfig(LossConfig):
    """Supervised q_star loss at PREDICTION (see :func:`sv_loss`)."""

    weight: float = 0.0
    loss_type: str = "mse"  # mse | mae

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "loss_type", SV_LOSS_TYPES)


def sv_loss(
    step_stream: TensorDict, logits: torch.Tensor, cfg: SvLossConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """Supervised q_star loss over all ``[B, S]`` positions, restricted to finite action slots.

    ``logits`` is ``out['sv'] [B, S, A]``; ``step_stream['q_star'] [B, S, A]`` uses ``-inf`` for
    invalid/padded actions and on records where no action is taken, so only finite entries
    contribute (and receive gradient). Mean of the squared (mse) or absolute (mae) error over those
    entries. An empty batch or a batch without any finite entry raises ValueError.
    Metrics: sv_loss, sv_abs_error_max, sv_q_star_mean, sv_entries.
    """
    if logits.dim() != 3:
        raise ValueError(f"sv logits must have shape [B, S, A], got {list(logits.shape)}.")
    check_shape(logits, (*step_stream.batch_size, None), "sv logits vs step_stream batch_size [B, S]")
    if logits.numel() == 0:
        raise ValueError(f"sv loss got an empty batch (shape {list(logits.shape)}).")
    q_star = require_key(step_stream, "q_star", "sv")
    check_shape(q_star, tuple(logits.shape), "step_stream['q_star'] (same as the sv logits [B, S, A])")
    finite = torch.isfinite(q_star)
    target = torch.where(finite, q_star, torch.zeros_like(q_star)).to(logits.dtype)
    err = logits - target
    per_entry = err.square() if cfg.loss_type == "mse" else err.abs()
    loss = masked_mean(per_entry, finite)
    abs_err = torch.where(finite, err.detach().abs(), torch.zeros_like(err))
    named = {
        "sv_loss": loss,
        "sv_abs_error_max": abs_err.amax(),
        "sv_q_star_mean": masked_mean(target, finite),
        "sv_entries": finite.sum(),
    }
    metrics = metrics_to_host(named)
    if metrics["sv_entries"] == 0:
        raise ValueError(
            "sv loss: step_stream['q_star'] has no finite entry in this batch; nothing to regress on."
        )
    return loss, metrics
