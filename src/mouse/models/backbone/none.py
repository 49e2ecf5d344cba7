"""ModelNone: no sequence model; each step's heads read that step's own embedding (memoryless baseline)."""

from __future__ import annotations

from typing import Any

import torch

from mouse.models.base import Model

__all__ = ["ModelNone"]


class ModelNone(Model, backbone="none"):
    """:class:`~mouse.models.base.Model` with an identity backbone (``backbone_kwargs`` must be empty).

    With ``concat_modalities`` the heads still read only each step's last token, so sum mode is the
    meaningful layout for this baseline.
    """

    def _init_backbone(self, backbone_kwargs: dict[str, Any]) -> dict[str, Any]:
        if backbone_kwargs:
            raise ValueError(
                f"ModelNone takes no backbone_kwargs (empty selects it in load_model), got {sorted(backbone_kwargs)}."
            )
        return {}

    def backbone_forward(
        self,
        embeds: torch.Tensor,
        token_type: torch.Tensor,
        cache: dict[str, Any] | None = None,
        use_cache: bool = False,
        cache_position: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, dict[str, Any] | None]:
        """Identity: ``(embeds, cache)``; the cache only counts tokens (``{"num_tokens": int}``)."""
        if not use_cache:
            return embeds, None
        cache = cache if cache is not None else {"num_tokens": 0}
        cache["num_tokens"] = int(cache["num_tokens"]) + embeds.shape[1]
        return embeds, cache
