"""Loading saved MOUSE models: :func:`load_model` and :func:`model_class`.

This module sits above :mod:`mouse.models.base` and the backbones: it imports both, and neither
imports it, so ``mouse.models`` has no import cycle. Importing it registers every backbone class
with :class:`~mouse.models.base.Model`.
"""

from __future__ import annotations

import os
from typing import Any

# Importing the backbones registers them with Model (Model.class_for); the names document which exist.
from mouse.models.backbone import ModelLlama, ModelNone, ModelQwen3
from mouse.models.base import Model

__all__ = ["load_model", "model_class"]
_BACKBONE_CLASSES = (ModelNone, ModelQwen3, ModelLlama)


def model_class(backbone_kwargs: dict[str, Any]) -> type[Model]:
    """The model class ``backbone_kwargs`` select (:func:`~mouse.models.base.backbone_kind`):
    empty -> :class:`ModelNone`; ``head_dim`` -> :class:`ModelQwen3`; else :class:`ModelLlama`."""
    return Model.class_for(backbone_kwargs)


def load_model(
    repo_id_or_path: str | os.PathLike,
    force_download: bool = False,
    local_dir: str | os.PathLike | None = None,
    **kwargs: Any,
) -> Model:
    """Load a saved MOUSE model from a local directory or a Hub repo id ``ORG/NAME``, picking its class.

    The class follows :func:`model_class` on ``config.json``'s ``backbone_kwargs``. ``kwargs`` go to
    :meth:`Model.from_pretrained <mouse.models.base.Model.from_pretrained>` (``map_location``,
    ``revision``, ``token``, or config overrides). A Hub id downloads only ``config.json`` and
    ``model.safetensors`` (:func:`mouse.hub.download_model`; ``force_download`` / ``local_dir`` go
    there). Raises ``FileNotFoundError`` when nothing loadable is found, ``ValueError`` for a bad
    config or weights that do not match it.
    """
    return Model.from_pretrained(
        repo_id_or_path, force_download=force_download, local_dir=local_dir, **kwargs
    )
