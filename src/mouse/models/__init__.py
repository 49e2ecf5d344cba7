"""MOUSE models: step embedder, backbones (Llama, Qwen3, none), heads, save/load."""

from mouse.models.backbone import ModelLlama, ModelNone, ModelQwen3
from mouse.models.base import Model
from mouse.models.embedding import StepEmbedder, TokenType
from mouse.models.loading import load_model

__all__ = ["Model", "ModelLlama", "ModelNone", "ModelQwen3", "StepEmbedder", "TokenType", "load_model"]
