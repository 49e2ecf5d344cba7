"""Random Fourier features for real-valued inputs (Rahimi & Recht 2007; Tancik et al. 2020).

A value ``x`` is rescaled to ``v = 2 (x - in_min) / (in_max - in_min) - 1`` (no clipping: values
outside the range still get well-defined features) and mapped to
``[v, sin(2 pi b_k v), cos(2 pi b_k v)]_k`` with fixed frequencies ``b_k ~ N(0, scale^2)`` drawn from a
seeded generator and stored as a buffer (so a saved model reloads the exact same features).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["FourierFeatures"]


class FourierFeatures(nn.Module):
    """``[...]`` real values -> ``[..., 2 * num_features + 1]`` float32 features."""

    def __init__(
        self,
        num_features: int = 16,
        in_min: float = -1.0,
        in_max: float = 1.0,
        scale: float = 1.0,
        seed: int = 0,
    ):
        super().__init__()
        if not in_max > in_min:
            raise ValueError(
                f"fourier_in_max must be > fourier_in_min, got in_min={in_min}, in_max={in_max}."
            )
        if num_features < 1:
            raise ValueError(f"num_fourier_features must be >= 1, got {num_features}.")
        gen = torch.Generator().manual_seed(seed)
        freqs = torch.randn(num_features, generator=gen) * scale * 2 * math.pi
        self.register_buffer("freqs", freqs)
        self.in_min, self.in_max = float(in_min), float(in_max)
        self.out_features = 2 * num_features + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = (x.float() - self.in_min) * (2.0 / (self.in_max - self.in_min)) - 1.0
        angles = v.unsqueeze(-1) * self.freqs
        return torch.cat((v.unsqueeze(-1), torch.sin(angles), torch.cos(angles)), dim=-1)
