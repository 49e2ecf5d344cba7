"""ModelQwen3: a Qwen3 decoder (``transformers.Qwen3Model``: QK-norm, explicit head_dim) over step embeddings."""

from __future__ import annotations

from transformers import Qwen3Config, Qwen3Model

from mouse.models.backbone.transformer import TransformerModel

__all__ = ["ModelQwen3"]


class ModelQwen3(TransformerModel, backbone="qwen3"):
    """:class:`~mouse.models.base.Model` with a Qwen3 backbone.

    ``backbone_kwargs`` as :class:`~mouse.models.backbone.llama.ModelLlama` plus ``head_dim``
    (default ``hidden_dim // num_attention_heads``; always stored in the config, it is what makes
    ``load_model`` pick Qwen3), ``use_sliding_window``, ``sliding_window``, ``max_window_layers``.
    """

    _config_cls = Qwen3Config
    _model_cls = Qwen3Model
    _extra_defaults = {
        "head_dim": None,
        "use_sliding_window": False,
        "sliding_window": None,
        "max_window_layers": 0,
    }
    _forbidden = {"hidden_size": "it is always the model's hidden_dim."}

    def _resolve_backbone_kwargs(self, backbone_kwargs):
        kw = super()._resolve_backbone_kwargs(backbone_kwargs)
        if kw["head_dim"] is None:
            kw["head_dim"] = self.hidden_dim // int(kw["num_attention_heads"])
        if int(kw["head_dim"]) < 2 or int(kw["head_dim"]) % 2:
            raise ValueError(
                f"ModelQwen3 backbone_kwargs: head_dim must be an even number >= 2, got {kw['head_dim']}."
            )
        return kw
