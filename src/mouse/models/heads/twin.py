"""Online/target twin heads for TD learning (DQN, Mnih et al. 2015; vector DQN).

The target copy starts equal to the online head, never receives gradient (its parameters have
``requires_grad=False`` and :meth:`target_forward` runs under ``torch.no_grad``), and follows the
online head by Polyak averaging ``theta_target <- tau * theta_online + (1 - tau) * theta_target``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from mouse.models.heads.swiglu import SwiGLUHead, check_head_kwargs

__all__ = ["TwinHead", "DQNHead", "VecDQNHead"]


class TwinHead(nn.Module):
    """An online :class:`SwiGLUHead` (``self.online``) and its frozen target copy (``self.target``)."""

    def __init__(self, online: SwiGLUHead):
        super().__init__()
        self.online = online
        self.target = copy.deepcopy(online)
        self.target.requires_grad_(False)

    def _reshape(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self._reshape(self.online(h))

    @torch.no_grad()
    def target_forward(self, h: torch.Tensor) -> torch.Tensor:
        """Target-head output (same shape as :meth:`forward`), computed without gradient."""
        return self._reshape(self.target(h.detach()))

    @torch.no_grad()
    def polyak_update(self, tau: float) -> None:
        """``theta_target <- tau * theta_online + (1 - tau) * theta_target`` (tau in [0, 1]; 0 = no-op)."""
        tau = float(tau)
        if not 0.0 <= tau <= 1.0:
            raise ValueError(f"Polyak tau must be in [0, 1], got {tau}.")
        if tau == 0.0:
            return
        for tgt, src in zip(self.target.parameters(), self.online.parameters(), strict=True):
            tgt.lerp_(src, tau)  # public per-tensor op: a head holds a handful of tensors


class DQNHead(TwinHead):
    """Q-value twin head: ``[..., D] -> [..., A]`` float32 (kwargs as :class:`SwiGLUHead`)."""

    def __init__(self, in_features: int, out_features: int, **kwargs):
        check_head_kwargs("dqn_head_kwargs", kwargs, SwiGLUHead.ALLOWED_KWARGS)
        super().__init__(SwiGLUHead(in_features, out_features, **kwargs))


class VecDQNHead(TwinHead):
    """Vector-DQN twin head: ``[..., D] -> [..., A, vec_dim]`` float32 (``vec_dim`` even, default 8).

    Scores are read with :func:`mouse.models.heads.vec_dqn.vec_dqn_scores`.
    """

    def __init__(self, in_features: int, max_num_actions: int, vec_dim: int = 8, **kwargs):
        check_head_kwargs("vec_dqn_head_kwargs", kwargs, SwiGLUHead.ALLOWED_KWARGS)
        vec_dim = int(vec_dim)
        if vec_dim < 2 or vec_dim % 2:
            raise ValueError(f"vec_dqn_head_kwargs vec_dim must be an even number >= 2, got {vec_dim}.")
        self.max_num_actions, self.vec_dim = int(max_num_actions), vec_dim
        super().__init__(SwiGLUHead(in_features, self.max_num_actions * vec_dim, **kwargs))

    def _reshape(self, y: torch.Tensor) -> torch.Tensor:
        return y.unflatten(-1, (self.max_num_actions, self.vec_dim))
