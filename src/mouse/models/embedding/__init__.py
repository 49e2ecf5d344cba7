"""Step embedding: step records -> token sequences for the backbone."""

from mouse.models.embedding.fourier import FourierFeatures
from mouse.models.embedding.step_embedder import (
    EMBEDDING_DEFAULTS,
    StepEmbedder,
    TokenType,
    resolve_embedding_kwargs,
)

__all__ = ["EMBEDDING_DEFAULTS", "FourierFeatures", "StepEmbedder", "TokenType", "resolve_embedding_kwargs"]
