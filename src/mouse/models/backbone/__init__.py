"""Backbones: :class:`ModelLlama`, :class:`ModelQwen3` (transformers decoders) and :class:`ModelNone`."""

from mouse.models.backbone.llama import ModelLlama
from mouse.models.backbone.none import ModelNone
from mouse.models.backbone.qwen3 import ModelQwen3

__all__ = ["ModelLlama", "ModelNone", "ModelQwen3"]
