"""State-value head: ``[..., D] -> [...]`` scalar, or ``[..., num_bins]`` logits for two-hot critics.

The two-hot critic over symlog-spaced bins is DreamerV3's (Hafner et al. 2023); its output layer
starts at zero there, which is this head's default when ``num_bins > 0``.
"""

from __future__ import annotations

import torch
from torch import nn

from mouse.models.heads.swiglu import SwiGLUHead, check_head_kwargs

__all__ = ["ValueHead"]


class ValueHead(nn.Module):
    """``num_bins == 0``: float32 ``[...]`` values; ``num_bins > 0``: float32 ``[..., num_bins]`` logits."""

    def __init__(self, in_features: int, num_bins: int = 0, **kwargs):
        super().__init__()
        check_head_kwargs("value_head_kwargs", kwargs, SwiGLUHead.ALLOWED_KWARGS)
        self.num_bins = int(num_bins)
        if self.num_bins < 0 or self.num_bins == 1:
            raise ValueError(f"value_head_kwargs num_bins must be 0 (scalar) or >= 2, got {num_bins}.")
        kwargs.setdefault("zero_init", self.num_bins > 0)
        self.mlp = SwiGLUHead(in_features, max(1, self.num_bins), **kwargs)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        y = self.mlp(h)
        return y if self.num_bins else y.squeeze(-1)
