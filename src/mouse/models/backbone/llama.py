"""ModelLlama: a Llama decoder (``transformers.LlamaModel``) over step embeddings."""

from __future__ import annotations

from transformers import LlamaConfig, LlamaModel

from mouse.models.backbone.transformer import TransformerModel

__all__ = ["ModelLlama"]


class ModelLlama(TransformerModel, backbone="llama"):
    """:class:`~mouse.models.base.Model` with a Llama backbone.

    ``backbone_kwargs`` (transformers ``LlamaConfig`` names, MOUSE defaults): ``num_hidden_layers`` (3),
    ``num_attention_heads`` (4), ``num_key_value_heads`` (= heads), ``intermediate_size``
    (4 * hidden_dim), ``rope_theta`` (1e4), ``max_position_embeddings`` (4096), ``rms_norm_eps``,
    ``hidden_act``, ``attention_bias``, ``attention_dropout``, ``initializer_range``,
    ``attn_implementation`` ("sdpa" | "eager"). The head width is ``hidden_dim // num_attention_heads``.
    """

    _config_cls = LlamaConfig
    _model_cls = LlamaModel
    _extra_defaults = {"mlp_bias": False}
    _forbidden = {
        "head_dim": "load_model reads head_dim as the mark of a Qwen3 backbone; Llama uses "
        "hidden_dim // num_attention_heads (use ModelQwen3 for an explicit head_dim).",
        "hidden_size": "it is always the model's hidden_dim.",
    }
