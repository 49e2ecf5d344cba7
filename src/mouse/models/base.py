"""The MOUSE model: StepEmbedder -> backbone -> last token of each step -> output heads.

:class:`Model` is abstract over the backbone (:mod:`mouse.models.backbone`: Llama, Qwen3, none).
This module never imports the backbones (they import it): each concrete subclass registers itself
under its backbone kind (``class ModelLlama(..., backbone="llama")``), :func:`backbone_kind` is the
rule that reads the kind from ``backbone_kwargs``, and :mod:`mouse.models.loading` (above base and
the backbones) holds ``load_model`` / ``model_class``. Hub transfers go through :mod:`mouse.hub`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from tensordict import TensorDict
from torch import nn

from mouse.checkpoint_io import CONFIG_FILE, WEIGHTS_FILE, previous_valid_checkpoint, read_model_config
from mouse.hub import download_model, push_checkpoint
from mouse.models.embedding import StepEmbedder, resolve_embedding_kwargs
from mouse.models.heads import DQNHead, SwiGLUHead, ValueHead, VecDQNHead, vec_dqn_scores
from mouse.models.heads.swiglu import check_head_kwargs

__all__ = ["BACKBONE_KINDS", "CONFIG_NAME", "WEIGHTS_NAME", "BackboneKind", "Model", "backbone_kind"]

CONFIG_NAME = CONFIG_FILE
WEIGHTS_NAME = WEIGHTS_FILE

_ACTION_HEADS = ("vec_dqn", "dqn", "sp", "sv")  # auto-selection order for get_action

BackboneKind = Literal["none", "qwen3", "llama"]
BACKBONE_KINDS: tuple[BackboneKind, ...] = ("none", "qwen3", "llama")
_REGISTRY: dict[str, type[Model]] = {}  # backbone kind -> concrete class (filled by __init_subclass__)


def backbone_kind(backbone_kwargs: dict[str, Any]) -> BackboneKind:
    """The detection rule on a saved ``backbone_kwargs``: empty -> ``"none"``; has ``head_dim`` ->
    ``"qwen3"``; otherwise ``"llama"`` (ModelLlama refuses ``head_dim``, ModelQwen3 always stores it)."""
    if not backbone_kwargs:
        return "none"
    return "qwen3" if "head_dim" in backbone_kwargs else "llama"


def _enabled(kwargs: dict | None) -> bool:
    return bool(kwargs) and int(kwargs.get("num_layers", 0)) > 0


def _plain(obj: Any) -> Any:
    """Deep-convert mappings/sequences (e.g. OmegaConf containers) to plain JSON-able Python objects."""
    if hasattr(obj, "items"):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, bool | int | float | str) or obj is None:
        return obj
    raise ValueError(f"Model config values must be plain JSON types, got {type(obj).__name__}: {obj!r}.")


class Model(nn.Module):
    """Base for the context-conditioned model: :class:`StepEmbedder`, backbone, heads.

    Heads (each exists iff its kwargs have ``num_layers > 0``; absent kwargs = disabled), reading
    the last token of each step; ``A = embedding_kwargs["max_num_actions"]``:

    * ``sp`` / ``sv``: :class:`SwiGLUHead` -> ``[B, S, A]`` (policy logits / supervised Q-values)
    * ``dqn``: :class:`DQNHead` -> ``dqn``, ``dqn_target`` ``[B, S, A]``
    * ``vec_dqn``: :class:`VecDQNHead` -> ``vec_dqn``, ``vec_dqn_target`` ``[B, S, A, vec_dim]``
    * ``value``: :class:`ValueHead` -> ``[B, S]`` or ``[B, S, num_bins]``

    Head kwargs: ``num_layers`` (SwiGLU blocks), ``hidden_mult`` (block width / hidden_dim, default 2),
    ``out_scale`` (output multiplier, default 1), ``zero_init``; ``vec_dqn`` adds ``vec_dim`` (even,
    default 8); ``value`` adds ``num_bins`` (0 = scalar). ``action_head`` names the head
    :meth:`get_action` reads; ``None`` picks the first enabled of vec_dqn > dqn > sp > sv.
    Subclasses implement :meth:`_init_backbone` and :meth:`backbone_forward`; a concrete one names
    its kind in the class statement (``class ModelNone(Model, backbone="none")``) to register.
    """

    def __init_subclass__(cls, backbone: BackboneKind | None = None, **kwargs: Any) -> None:
        """Register ``cls`` as the class of backbone kind ``backbone`` (one class per kind)."""
        super().__init_subclass__(**kwargs)
        if backbone is None:
            return
        if backbone not in BACKBONE_KINDS:
            raise ValueError(f"backbone must be one of {list(BACKBONE_KINDS)}, got {backbone!r}.")
        if backbone in _REGISTRY and _REGISTRY[backbone] is not cls:
            raise ValueError(
                f"backbone {backbone!r} is already registered by {_REGISTRY[backbone].__name__}."
            )
        _REGISTRY[backbone] = cls

    @staticmethod
    def class_for(backbone_kwargs: dict[str, Any]) -> type[Model]:
        """The registered class :func:`backbone_kind` selects for ``backbone_kwargs``.

        The backbones register when imported (``import mouse.models`` imports them all); a kind with no
        registered class raises ``LookupError``.
        """
        kind = backbone_kind(backbone_kwargs)
        if kind not in _REGISTRY:
            raise LookupError(
                f"no model class is registered for backbone kind {kind!r}; import mouse.models (or "
                "mouse.models.loading) so the backbones register."
            )
        return _REGISTRY[kind]

    def __init__(
        self,
        hidden_dim: int,
        backbone_kwargs: dict,
        embedding_kwargs: dict,
        sp_head_kwargs: dict | None = None,
        dqn_head_kwargs: dict | None = None,
        sv_head_kwargs: dict | None = None,
        vec_dqn_head_kwargs: dict | None = None,
        action_head: str | None = None,
        value_head_kwargs: dict | None = None,
    ):
        super().__init__()
        if type(self) is Model:
            raise TypeError("Model is abstract: use ModelLlama, ModelQwen3 or ModelNone (or load_model).")
        self.hidden_dim = int(hidden_dim)
        if self.hidden_dim < 1:
            raise ValueError(f"hidden_dim must be >= 1, got {hidden_dim}.")
        head_kwargs = {
            "sp": _plain(sp_head_kwargs or {}),
            "dqn": _plain(dqn_head_kwargs or {}),
            "sv": _plain(sv_head_kwargs or {}),
            "vec_dqn": _plain(vec_dqn_head_kwargs or {}),
            "value": _plain(value_head_kwargs or {}),
        }
        embedding_kwargs = resolve_embedding_kwargs(_plain(embedding_kwargs))
        self.max_num_actions = int(embedding_kwargs["max_num_actions"])
        self.embedder = StepEmbedder(self.hidden_dim, **embedding_kwargs)

        D, A = self.hidden_dim, self.max_num_actions
        swiglu_keys = SwiGLUHead.ALLOWED_KWARGS
        for name in ("sp", "sv"):
            check_head_kwargs(f"{name}_head_kwargs", head_kwargs[name], swiglu_keys)
        self.sp_head = SwiGLUHead(D, A, **head_kwargs["sp"]) if _enabled(head_kwargs["sp"]) else None
        self.sv_head = SwiGLUHead(D, A, **head_kwargs["sv"]) if _enabled(head_kwargs["sv"]) else None
        self.dqn_head = DQNHead(D, A, **head_kwargs["dqn"]) if _enabled(head_kwargs["dqn"]) else None
        self.vec_dqn_head = (
            VecDQNHead(D, A, **head_kwargs["vec_dqn"]) if _enabled(head_kwargs["vec_dqn"]) else None
        )
        self.value_head = ValueHead(D, **head_kwargs["value"]) if _enabled(head_kwargs["value"]) else None

        enabled = [h for h in _ACTION_HEADS if getattr(self, f"{h}_head") is not None]
        if action_head is None:
            if not enabled:
                raise ValueError(
                    "No action head is enabled: give one of sp/dqn/sv/vec_dqn head kwargs num_layers > 0."
                )
            action_head = enabled[0]
        elif action_head not in enabled:
            raise ValueError(
                f"action_head must name an enabled head among {list(_ACTION_HEADS)} (enabled: {enabled}), "
                f"got {action_head!r}."
            )
        self.action_head: str = action_head

        backbone_kwargs = self._init_backbone(_plain(backbone_kwargs))
        self._config = {
            "hidden_dim": self.hidden_dim,
            "backbone_kwargs": backbone_kwargs,
            "embedding_kwargs": embedding_kwargs,
            "sp_head_kwargs": head_kwargs["sp"],
            "dqn_head_kwargs": head_kwargs["dqn"],
            "sv_head_kwargs": head_kwargs["sv"],
            "vec_dqn_head_kwargs": head_kwargs["vec_dqn"],
            "action_head": self.action_head,
            "value_head_kwargs": head_kwargs["value"],
        }

    # ------------------------------------------------------------------------------- config & size
    @property
    def config(self) -> dict[str, Any]:
        """Plain-JSON constructor kwargs (what ``config.json`` holds); ``type(self)(**config)`` rebuilds."""
        return json.loads(json.dumps(self._config))

    @property
    def tokens_per_step(self) -> int:
        return self.embedder.tokens_per_step

    @property
    def max_context_steps(self) -> int | None:
        """Most steps one context may hold (``max_position_embeddings // tokens_per_step``); None = unbounded."""
        max_tokens = self.max_context_tokens
        return None if max_tokens is None else max_tokens // self.tokens_per_step

    @property
    def max_context_tokens(self) -> int | None:
        return None

    # --------------------------------------------------------------------------------- backbone API
    def _init_backbone(self, backbone_kwargs: dict[str, Any]) -> dict[str, Any]:
        """Build the backbone; return the resolved (plain-JSON) backbone kwargs stored in the config."""
        raise NotImplementedError("Subclasses must implement _init_backbone.")

    def backbone_forward(
        self,
        embeds: torch.Tensor,
        token_type: torch.Tensor,
        cache: dict[str, Any] | None = None,
        use_cache: bool = False,
        cache_position: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, dict[str, Any] | None]:
        """Run the backbone on ``embeds [B, T, D]``; return ``(hidden [B, T, D], cache or None)``."""
        raise NotImplementedError("Subclasses must implement backbone_forward.")

    # -------------------------------------------------------------------------------------- forward
    @property
    def enabled_heads(self) -> tuple[str, ...]:
        """Names of the built heads, among ``sp``, ``dqn``, ``vec_dqn``, ``sv``, ``value``."""
        names = ("sp", "dqn", "vec_dqn", "sv", "value")
        return tuple(n for n in names if getattr(self, f"{n}_head") is not None)

    def head(
        self,
        h: torch.Tensor,
        batch_size: tuple[int, int],
        compute_targets: bool = True,
        heads: Collection[str] | None = None,
    ) -> TensorDict:
        """Run the enabled heads on step representations ``h [B, S, D]``; float32 ``TensorDict[B, S]``.

        ``compute_targets=False`` skips the target heads (no ``*_target`` keys); ``heads`` restricts
        the run to those names (e.g. ``(model.action_head,)`` when acting); None runs every head.
        """
        enabled = self.enabled_heads
        if heads is None:
            heads = enabled
        elif not set(heads) <= set(enabled):
            raise ValueError(f"heads must name enabled heads {list(enabled)}, got {sorted(heads)}.")
        out: dict[str, torch.Tensor] = {}
        for name in enabled:
            if name not in heads:
                continue
            module = getattr(self, f"{name}_head")
            out[name] = module(h)
            if compute_targets and name in ("dqn", "vec_dqn"):
                out[f"{name}_target"] = module.target_forward(h)
        return TensorDict(out, batch_size=batch_size, device=h.device)

    def forward(
        self,
        step_stream: TensorDict,
        cache: dict[str, Any] | None = None,
        use_cache: bool = False,
        cache_position: torch.Tensor | None = None,
        compute_targets: bool = True,
        heads: Collection[str] | None = None,
    ) -> tuple[TensorDict, dict[str, Any] | None]:
        """Run the model over step records ``TensorDict[B, S]`` (DESIGN.md keys; extra keys ignored).

        ``compute_targets=False`` skips the target heads; ``heads`` (e.g. ``(model.action_head,)``
        when acting) runs only those heads, None runs all.

        Incremental decoding: ``forward(prefix, use_cache=True)`` then
        ``forward(next_steps, cache=cache, use_cache=True)``; ``cache_position=None`` continues right
        after what the cache holds, ``cache=None`` starts over at position 0. The cache is updated in
        place and returned.

        Returns ``(out, cache)``: ``out`` is a float32 ``TensorDict[B, S]`` with one key per enabled
        head (see the class docstring); ``cache`` is ``None`` unless ``use_cache``.
        """
        if cache is not None and not use_cache:
            raise ValueError(
                "A cache was passed with use_cache=False; pass use_cache=True to decode with it."
            )
        embeds, token_type = self.embedder(step_stream)
        B, S = int(step_stream.batch_size[0]), int(step_stream.batch_size[1])
        h, new_cache = self.backbone_forward(
            embeds, token_type, cache=cache, use_cache=use_cache, cache_position=cache_position
        )
        T = self.tokens_per_step
        if T > 1:
            h = h.view(B, S, T, self.hidden_dim)[:, :, -1]
        return self.head(h, (B, S), compute_targets=compute_targets, heads=heads), new_cache

    # ----------------------------------------------------------------------------------- acting
    def get_action(
        self, out: TensorDict, temperature: float = 1.0, num_actions: int | None = None
    ) -> torch.Tensor:
        """Pick actions ``[B]`` (int64) from the last step of ``out`` using ``self.action_head``.

        ``temperature == 0`` is argmax; ``> 0`` samples ``softmax(scores / temperature)`` (max-subtracted).
        vec_dqn vectors are scored with :func:`vec_dqn_scores`; ``num_actions`` keeps the first columns.
        """
        temperature = float(temperature)
        if not temperature >= 0.0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}.")
        if self.action_head not in out.keys():
            raise KeyError(f"out has no '{self.action_head}' key (keys: {sorted(out.keys())}).")
        raw = out.get(self.action_head)[:, -1]
        scores = vec_dqn_scores(raw) if self.action_head == "vec_dqn" else raw
        if num_actions is not None:
            if not 1 <= int(num_actions) <= scores.shape[-1]:
                raise ValueError(f"num_actions must be in [1, {scores.shape[-1]}], got {num_actions}.")
            scores = scores[:, : int(num_actions)]
        if temperature == 0.0:
            return scores.argmax(dim=-1)
        scores = scores.float()
        scores = scores - scores.max(dim=-1, keepdim=True).values
        probs = F.softmax(scores / temperature, dim=-1)
        return torch.multinomial(probs, num_samples=1).squeeze(-1)

    @torch.no_grad()
    def polyak_update(self, dqn_tau: float = 0.0, vec_dqn_tau: float = 0.0) -> None:
        """Soft-update target heads: ``theta_target <- tau * theta_online + (1 - tau) * theta_target``."""
        if self.dqn_head is not None:
            self.dqn_head.polyak_update(dqn_tau)
        if self.vec_dqn_head is not None:
            self.vec_dqn_head.polyak_update(vec_dqn_tau)

    # ------------------------------------------------------------------------------- save / load
    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write ``config.json`` (constructor kwargs) and ``model.safetensors``; return the directory."""
        from safetensors.torch import save_file

        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG_NAME).write_text(json.dumps(self.config, indent=2, sort_keys=True) + "\n")
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(out / WEIGHTS_NAME), metadata={"format": "pt", "class": type(self).__name__})
        return out

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo: str | os.PathLike,
        *,
        map_location: str | torch.device = "cpu",
        force_download: bool = False,
        local_dir: str | os.PathLike | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        **overrides: Any,
    ) -> Model:
        """Build ``cls`` from a directory or Hub repo id and load its weights strictly.

        On :class:`Model` itself the class follows ``config.json`` (:meth:`class_for`, the
        ``load_model`` rule). A path that does not exist and reads ``ORG/NAME`` is downloaded with
        :func:`mouse.hub.download_model` (``config.json`` + ``model.safetensors`` only; ``revision``,
        ``token``, ``force_download``, ``local_dir`` go there). ``overrides`` replace top-level config
        entries (e.g. ``action_head="sp"``). Missing, unexpected or mis-shaped weights and unreadable
        files raise ``ValueError`` naming them; a missing model raises ``FileNotFoundError``.
        """
        folder = _model_folder(path_or_repo, force_download, local_dir, revision, token)
        config = read_model_config(folder)
        if cls is Model:
            cls = Model.class_for(config.get("backbone_kwargs") or {})
        return _build(cls, config, folder / CONFIG_NAME, folder / WEIGHTS_NAME, map_location, overrides)

    def push_to_hub(
        self, repo_id: str, private: bool | None = None, token: str | None = None, **kw: Any
    ) -> str:
        """Upload ``config.json`` + ``model.safetensors`` to Hub model repo ``repo_id``; return the commit URL.

        A thin call into :func:`mouse.hub.push_checkpoint` (creates the repo if needed; ``private=None``
        keeps the Hub's default visibility); ``kw`` go there (``revision``, ``commit_message``,
        ``endpoint``, or ``HfApi.upload_folder`` arguments). ``load_model(repo_id)`` loads it back.
        """
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            return push_checkpoint(tmp, repo_id, private=private, token=token, **kw)


def _model_folder(
    path_or_repo: str | os.PathLike,
    force_download: bool,
    local_dir: str | os.PathLike | None,
    revision: str | None,
    token: str | bool | None,
) -> Path:
    """The local folder holding ``config.json`` and ``model.safetensors`` (downloaded for a Hub id)."""
    local = Path(path_or_repo)
    if local.exists():
        if not local.is_dir():
            raise FileNotFoundError(f"{local} is a file; expected a directory holding {CONFIG_NAME}.")
        folder = local
    else:
        folder = download_model(
            str(path_or_repo),
            revision=revision,
            token=token,
            force_download=force_download,
            local_dir=local_dir,
        )
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"{folder / name} not found: a saved model holds {CONFIG_NAME} and {WEIGHTS_NAME}."
            )
    return folder


def _build(
    cls: type[Model],
    config: dict[str, Any],
    config_file: Path,
    weights_file: Path,
    map_location: Any,
    overrides: dict[str, Any],
) -> Model:
    """Build ``cls`` from ``config`` (read from ``config_file``) with ``overrides`` and load its weights."""
    config = {**config, **overrides}
    _check_config_types(config, config_file)
    try:
        model = cls(**config)
    except TypeError as err:
        raise ValueError(f"{config_file}: config does not match {cls.__name__}'s arguments: {err}") from err
    except ValueError as err:
        raise ValueError(
            f"{config_file}: {err} Fix that entry of {config_file.name} or re-save the model."
        ) from err
    _load_weights(model, weights_file, map_location)
    return model


_DICT_KEYS = (
    "backbone_kwargs",
    "embedding_kwargs",
    "sp_head_kwargs",
    "dqn_head_kwargs",
    "sv_head_kwargs",
    "vec_dqn_head_kwargs",
    "value_head_kwargs",
)


def _check_config_types(config: dict[str, Any], config_file: Path) -> None:
    """ValueError naming ``config_file``, the key and the value for a top-level entry of the wrong type."""

    def bad(key: str, expected: str) -> ValueError:
        value = config[key]
        return ValueError(
            f"{config_file}: key {key!r} must be {expected}, got {value!r} ({type(value).__name__}); "
            f"fix it in {config_file.name} or re-save the model."
        )

    if "hidden_dim" in config:
        value = config["hidden_dim"]
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("hidden_dim", "an integer")
    for key in _DICT_KEYS:
        if key in config and config[key] is not None and not isinstance(config[key], dict):
            raise bad(key, "a JSON object (or null)")
    if config.get("action_head") is not None and not isinstance(config["action_head"], str):
        raise bad("action_head", "a head name string (or null)")


def _load_weights(model: nn.Module, weights_file: Path, map_location: str | torch.device) -> None:
    """Strictly load safetensors weights into ``model`` (no pickle); errors name the offending tensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(weights_file), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as err:
        previous = previous_valid_checkpoint(weights_file.parent)
        fix = (
            f"load the previous valid checkpoint {previous} instead"
            if previous is not None
            else "re-save or re-download the model"
        )
        raise ValueError(
            f"{weights_file}: corrupt or unreadable safetensors file ({type(err).__name__}: {err}); {fix}."
        ) from err
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k}: file {list(state[k].shape)} vs model {list(expected[k].shape)}"
        for k in set(state) & set(expected)
        if state[k].shape != expected[k].shape
    )
    if missing or unexpected or shapes:
        raise ValueError(
            f"{weights_file} does not match the model config: missing {missing}, unexpected {unexpected}, "
            f"shape mismatches {shapes}."
        )
    model.load_state_dict(state, strict=True)
    model.to(map_location)
