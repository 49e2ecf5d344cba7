"""StepEmbedder: step records ``TensorDict[B, S]`` -> token embeddings ``[B, S * T, D]``.

Each step becomes ``T = tokens_per_step`` tokens (see DESIGN.md, "The step record"):

* **sum mode** (default): one token per step, ``type(STEP) + sum_m content_m`` over the included
  modalities; the compact layout of the default in-context recipe.
* **concat mode** (``concat_modalities=True``): each modality gets its own token(s), in the order
  action, reward, done, time, obs_discrete, obs_continuous, obs_image; a token is
  ``type(m) + content`` (+ a chunk embedding for modalities split over several tokens).
  ``obs_continuous`` and ``obs_image`` are split into chunks of ``token_data_len`` values.

``num_compute_tokens`` learned tokens may follow each step (extra computation before the step's
last token, which the model pools). ``token_type [B, S * T]`` (int64, :class:`TokenType`) marks each
token's kind; ``PAD = 0`` tokens (steps flagged by the optional ``pad`` bool ``[B, S]`` key) are
masked out of attention by the backbone.

Encoders: discrete fields (action, done, time, obs_discrete) use embedding tables; reward uses random
Fourier features (:class:`~mouse.models.embedding.fourier.FourierFeatures`, over the fixed range
[-1, 1]; values outside still get well-defined features) and a linear map;
continuous observations use per-dimension Fourier features or the raw values (``"linear"``);
image pixels (uint8) are scaled to [0, 1] and mapped linearly (``obs_image_encoder="linear"``, chunked
like obs_continuous), or, for small symbolic grids such as MiniGrid's 7x7x3 view, read as ids
(``"cells"``: per-cell embeddings, or ``"conv"``: a small conv net; :mod:`mouse.models.embedding.image`)
that need ``obs_image_shape = [H, W, C]`` and give one token.
"""

from __future__ import annotations

import math
from enum import IntEnum
from typing import Any

import torch
import torch.nn.functional as F
from tensordict import TensorDict
from torch import nn

from mouse.contract import PAD_KEY, STEP_KEYS
from mouse.models.embedding.fourier import FourierFeatures
from mouse.models.embedding.image import GridCellEncoder, GridConvEncoder, check_image_shape

__all__ = ["EMBEDDING_DEFAULTS", "StepEmbedder", "TokenType", "resolve_embedding_kwargs"]


class TokenType(IntEnum):
    """Kind of each token in the flat sequence; ``PAD`` tokens are masked out of attention."""

    PAD = 0
    ACTION = 1
    REWARD = 2
    DONE = 3
    TIME = 4
    OBS_DISCRETE = 5
    OBS_CONTINUOUS = 6
    OBS_IMAGE = 7
    COMPUTE = 8
    STEP = 9


# Everything a user does not pass is off/neutral, except the action, reward, done and time tokens.
EMBEDDING_DEFAULTS: dict[str, Any] = {
    "max_num_actions": None,  # required: size of the action table and of every head's action axis
    "include_action_token": True,
    "include_reward_token": True,
    "include_done_token": True,
    "include_time_token": True,
    "max_num_time_steps": 1024,  # time ids must lie in [0, max_num_time_steps)
    "include_obs_discrete": False,
    "max_num_obs_discrete": 0,  # obs_discrete ids must lie in [0, max_num_obs_discrete)
    "include_obs_continuous": False,
    "max_num_obs_continuous": 0,  # C, the obs_continuous feature count
    "obs_continuous_encoder": "fourier",  # "fourier" | "linear"
    "include_obs_image": False,
    "max_num_obs_image": 0,  # P, the flattened pixel count
    "obs_image_encoder": "linear",  # "linear" (pixels / 255) | "cells" | "conv" (symbolic grids)
    "obs_image_shape": (),  # [H, W, C] of the P pixels, channels last; needed by "cells" / "conv"
    "obs_image_vocab": 256,  # "cells" / "conv": ids per channel, pixels must lie in [0, vocab) (MiniGrid: 16)
    "obs_image_cell_dim": 32,  # "cells" / "conv": width of the per-cell vectors (conv channels)
    "token_data_len": 16,  # values per token for obs_continuous / obs_image in concat mode
    "num_compute_tokens": 0,
    "concat_modalities": False,
    "std": 0.02,  # init std of embedding tables and input projections
    "fourier_in_min": -1.0,  # obs_continuous range mapped to [-1, 1] before its Fourier features
    "fourier_in_max": 1.0,
    "num_fourier_features": 16,
    "fourier_scale": 1.0,  # std of the random frequencies (cycles per unit of the rescaled value)
}

_OBS_CONTINUOUS_ENCODERS = ("fourier", "linear")
_OBS_IMAGE_ENCODERS = {"linear": None, "cells": GridCellEncoder, "conv": GridConvEncoder}


def resolve_embedding_kwargs(embedding_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Return ``embedding_kwargs`` completed with :data:`EMBEDDING_DEFAULTS`; unknown keys raise ``ValueError``."""
    unknown = sorted(set(embedding_kwargs) - set(EMBEDDING_DEFAULTS))
    if unknown:
        raise ValueError(
            f"embedding_kwargs: unknown key(s) {unknown}; allowed keys are {sorted(EMBEDDING_DEFAULTS)}."
        )
    kw = {**EMBEDDING_DEFAULTS, **embedding_kwargs}
    if kw["max_num_actions"] is None:
        raise ValueError("embedding_kwargs['max_num_actions'] is required (the number of action ids, >= 1).")
    for key in ("max_num_actions", "max_num_time_steps", "token_data_len"):
        if int(kw[key]) < 1:
            raise ValueError(f"embedding_kwargs['{key}'] must be >= 1, got {kw[key]}.")
    if int(kw["num_compute_tokens"]) < 0:
        raise ValueError(
            f"embedding_kwargs['num_compute_tokens'] must be >= 0, got {kw['num_compute_tokens']}."
        )
    for flag, size in (
        ("include_obs_discrete", "max_num_obs_discrete"),
        ("include_obs_continuous", "max_num_obs_continuous"),
        ("include_obs_image", "max_num_obs_image"),
    ):
        if kw[flag] and int(kw[size]) < 1:
            raise ValueError(f"embedding_kwargs['{flag}'] is True, so '{size}' must be >= 1, got {kw[size]}.")
    if kw["obs_continuous_encoder"] not in _OBS_CONTINUOUS_ENCODERS:
        raise ValueError(
            f"embedding_kwargs['obs_continuous_encoder'] must be one of {_OBS_CONTINUOUS_ENCODERS}, "
            f"got {kw['obs_continuous_encoder']!r}."
        )
    _check_image_kwargs(kw)
    if not any(
        kw[k]
        for k in (
            "include_action_token",
            "include_reward_token",
            "include_done_token",
            "include_time_token",
            "include_obs_discrete",
            "include_obs_continuous",
            "include_obs_image",
        )
    ):
        raise ValueError("embedding_kwargs: every modality is switched off; include at least one.")
    return kw


def _check_image_kwargs(kw: dict[str, Any]) -> None:
    """Validate the obs_image encoder kwargs in place (``obs_image_shape`` becomes a list of ints)."""
    if kw["obs_image_encoder"] not in _OBS_IMAGE_ENCODERS:
        raise ValueError(
            f"embedding_kwargs['obs_image_encoder'] must be one of {list(_OBS_IMAGE_ENCODERS)}, "
            f"got {kw['obs_image_encoder']!r}."
        )
    shape = list(check_image_shape(kw["obs_image_shape"], "embedding_kwargs['obs_image_shape']"))
    kw["obs_image_shape"] = shape
    for key, low, high in (("obs_image_vocab", 1, 256), ("obs_image_cell_dim", 1, None)):
        value = kw[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high and value > high):
            allowed = f"in [{low}, {high}]" if high else f">= {low}"
            raise ValueError(f"embedding_kwargs['{key}'] must be an integer {allowed}, got {value!r}.")
    if not kw["include_obs_image"]:
        return
    if shape and math.prod(shape) != int(kw["max_num_obs_image"]):
        raise ValueError(
            f"embedding_kwargs['obs_image_shape']={shape} holds {math.prod(shape)} pixels but "
            f"'max_num_obs_image' is {kw['max_num_obs_image']}; make their product match."
        )
    if kw["obs_image_encoder"] != "linear" and len(shape) != 3:
        raise ValueError(
            f"embedding_kwargs['obs_image_encoder']={kw['obs_image_encoder']!r} needs "
            f"'obs_image_shape' = [H, W, C] (channels last), got {shape}; set it (a dataset spec's "
            "obs_image_shape fills it) or use obs_image_encoder='linear'."
        )


def _check_int_field(td: TensorDict, key: str, low: int, high: int, what: str) -> None:
    x = td.get(key)
    if x.dtype != torch.int64:
        raise ValueError(f"step_stream['{key}'] must be int64, got {x.dtype}.")
    if x.numel() == 0:
        return
    lo, hi = torch.aminmax(x)
    lo, hi = int(lo), int(hi)
    if lo < low or hi >= high:
        bad = lo if lo < low else hi
        raise ValueError(f"step_stream['{key}'] holds {bad}, outside [{low}, {high}) ({what}).")


class StepEmbedder(nn.Module):
    """Embed step records into a flat token sequence (keyword arguments: :data:`EMBEDDING_DEFAULTS`).

    ``forward(step_stream[B, S]) -> (embeds [B, S * T, D] float32, token_type [B, S * T] int64)``;
    the last of each step's ``T = tokens_per_step`` tokens is the one the heads read.
    """

    def __init__(self, hidden_dim: int, **embedding_kwargs: Any):
        super().__init__()
        kw = resolve_embedding_kwargs(embedding_kwargs)
        self.kwargs = kw
        self.hidden_dim = D = int(hidden_dim)
        self.concat = bool(kw["concat_modalities"])
        self.max_num_actions = int(kw["max_num_actions"])
        self.max_num_time_steps = int(kw["max_num_time_steps"])
        self.max_num_obs_discrete = int(kw["max_num_obs_discrete"])
        self.num_obs_continuous = int(kw["max_num_obs_continuous"])
        self.num_obs_image = int(kw["max_num_obs_image"])
        self.token_data_len = int(kw["token_data_len"])
        self.num_compute_tokens = int(kw["num_compute_tokens"])
        self.use = {
            "action": bool(kw["include_action_token"]),
            "reward": bool(kw["include_reward_token"]),
            "done": bool(kw["include_done_token"]),
            "time": bool(kw["include_time_token"]),
            "obs_discrete": bool(kw["include_obs_discrete"]),
            "obs_continuous": bool(kw["include_obs_continuous"]),
            "obs_image": bool(kw["include_obs_image"]),
        }
        std = float(kw["std"])

        self.type_emb = nn.Embedding(len(TokenType), D)
        if self.use["action"]:
            self.action_emb = nn.Embedding(self.max_num_actions, D)
        if self.use["reward"]:
            # Rewards use the fixed range [-1, 1] (fourier_in_min/max describe obs_continuous).
            self.reward_ff = FourierFeatures(
                int(kw["num_fourier_features"]), -1.0, 1.0, kw["fourier_scale"], seed=0
            )
            self.reward_proj = nn.Linear(self.reward_ff.out_features, D)
        if self.use["done"]:
            self.done_emb = nn.Embedding(3, D)
        if self.use["time"]:
            self.time_emb = nn.Embedding(self.max_num_time_steps, D)
        if self.use["obs_discrete"]:
            self.obs_discrete_emb = nn.Embedding(self.max_num_obs_discrete, D)
        if self.use["obs_continuous"]:
            self.obs_continuous_ff = None
            per_dim = 1
            if kw["obs_continuous_encoder"] == "fourier":
                self.obs_continuous_ff = FourierFeatures(
                    int(kw["num_fourier_features"]),
                    kw["fourier_in_min"],
                    kw["fourier_in_max"],
                    kw["fourier_scale"],
                    seed=1,
                )
                per_dim = self.obs_continuous_ff.out_features
            self.obs_continuous_proj, self.obs_continuous_chunk = self._chunked_encoder(
                self.num_obs_continuous, per_dim
            )
        self.obs_image_vocab = int(kw["obs_image_vocab"])
        self.obs_image_enc: GridCellEncoder | GridConvEncoder | None = None
        if self.use["obs_image"]:
            grid_cls = _OBS_IMAGE_ENCODERS[kw["obs_image_encoder"]]
            if grid_cls is None:
                self.obs_image_proj, self.obs_image_chunk = self._chunked_encoder(self.num_obs_image, 1)
            else:  # one token per step, in both modes
                self.obs_image_enc = grid_cls(
                    kw["obs_image_shape"], self.obs_image_vocab, int(kw["obs_image_cell_dim"]), D
                )
        if self.num_compute_tokens:
            self.compute_emb = nn.Parameter(torch.empty(self.num_compute_tokens, D))

        # Static token-type pattern of one step.
        if self.concat:
            pattern: list[int] = []
            for name, ttype in (
                ("action", TokenType.ACTION),
                ("reward", TokenType.REWARD),
                ("done", TokenType.DONE),
                ("time", TokenType.TIME),
                ("obs_discrete", TokenType.OBS_DISCRETE),
            ):
                if self.use[name]:
                    pattern.append(int(ttype))
            if self.use["obs_continuous"]:
                pattern += [int(TokenType.OBS_CONTINUOUS)] * self._num_chunks(self.num_obs_continuous)
            if self.use["obs_image"]:
                n = 1 if self.obs_image_enc is not None else self._num_chunks(self.num_obs_image)
                pattern += [int(TokenType.OBS_IMAGE)] * n
        else:
            pattern = [int(TokenType.STEP)]
        pattern += [int(TokenType.COMPUTE)] * self.num_compute_tokens
        self.register_buffer("step_token_type", torch.tensor(pattern, dtype=torch.int64), persistent=False)
        self.tokens_per_step = len(pattern)
        self.reset_parameters(std)

    def _num_chunks(self, n: int) -> int:
        return math.ceil(n / self.token_data_len) if self.concat else 1

    def _chunked_encoder(self, n: int, per_dim: int) -> tuple[nn.Linear, nn.Embedding | None]:
        """Linear map of one chunk (``token_data_len`` values in concat mode, all ``n`` in sum mode)."""
        chunk_len = min(self.token_data_len, n) if self.concat else n
        num_chunks = self._num_chunks(n)
        proj = nn.Linear(chunk_len * per_dim, self.hidden_dim)
        chunk = nn.Embedding(num_chunks, self.hidden_dim) if num_chunks > 1 else None
        return proj, chunk

    @torch.no_grad()
    def reset_parameters(self, std: float) -> None:
        for module in self.modules():
            if isinstance(module, nn.Embedding | nn.Linear):
                nn.init.normal_(module.weight, std=std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        if self.num_compute_tokens:
            nn.init.normal_(self.compute_emb, std=std)
        if self.obs_image_enc is not None:  # re-initialises every parameter of its own
            self.obs_image_enc.reset_parameters(std)

    # ----------------------------------------------------------------------------------- validation
    def validate(self, step_stream: TensorDict) -> None:
        """Raise ``ValueError`` naming the field, bad value and allowed range for any invalid input."""
        if not isinstance(step_stream, TensorDict):
            raise ValueError(
                f"step_stream must be a tensordict.TensorDict, got {type(step_stream).__name__}."
            )
        if step_stream.batch_dims != 2:
            raise ValueError(f"step_stream must have batch_size [B, S], got {list(step_stream.batch_size)}.")
        B, S = step_stream.batch_size
        if S < 1:
            raise ValueError(f"step_stream has S={S} steps; a window needs at least one step.")
        unknown = sorted(set(step_stream.keys()) - set(STEP_KEYS) - {PAD_KEY})
        if unknown:
            raise ValueError(
                f"step_stream has unknown field(s) {unknown}; the step record's fields are "
                f"{[*STEP_KEYS, PAD_KEY]} (fields the model does not embed, e.g. q_star, are ignored)."
            )
        needed = [k for k in ("action", "reward", "done", "time", "obs_discrete") if self.use[k]]
        needed += [k for k in ("obs_continuous", "obs_image") if self.use[k]]
        missing = [k for k in needed if k not in step_stream.keys()]
        if missing:
            raise ValueError(
                f"step_stream lacks field(s) {missing} that the embedder needs "
                f"(it has {sorted(step_stream.keys())})."
            )
        trailing = {"obs_continuous": (self.num_obs_continuous,), "obs_image": (self.num_obs_image,)}
        for key in [*needed, *(["pad"] if "pad" in step_stream.keys() else [])]:
            shape = tuple(step_stream.get(key).shape)
            want = (B, S, *trailing.get(key, ()))
            if shape != want:
                raise ValueError(
                    f"step_stream['{key}'] has shape {list(shape)}, expected {list(want)} ([B, S])."
                )
        if self.use["action"]:
            _check_int_field(step_stream, "action", 0, self.max_num_actions, "max_num_actions")
        if self.use["done"]:
            _check_int_field(step_stream, "done", 0, 3, "0 alive, 1 terminal, 2 truncated")
        if self.use["time"]:
            _check_int_field(step_stream, "time", 0, self.max_num_time_steps, "max_num_time_steps")
        if self.use["obs_discrete"]:
            _check_int_field(
                step_stream, "obs_discrete", 0, self.max_num_obs_discrete, "max_num_obs_discrete"
            )
        for key in ("reward", "obs_continuous"):
            if not self.use[key]:
                continue
            x = step_stream.get(key)
            if x.dtype != torch.float32:
                raise ValueError(f"step_stream['{key}'] must be floating point float32, got {x.dtype}.")
            finite = torch.isfinite(x)
            if not bool(finite.all()):
                bad = x[~finite][0].item()
                raise ValueError(f"step_stream['{key}'] holds a non-finite value ({bad}); it must be finite.")
        if self.use["obs_image"] and step_stream.get("obs_image").dtype != torch.uint8:
            raise ValueError(
                f"step_stream['obs_image'] must be uint8, got {step_stream.get('obs_image').dtype}."
            )
        if self.obs_image_enc is not None and self.obs_image_vocab < 256:
            self._check_image_vocab(step_stream.get("obs_image"))
        if "pad" in step_stream.keys() and step_stream.get("pad").dtype != torch.bool:
            raise ValueError(f"step_stream['pad'] must be bool, got {step_stream.get('pad').dtype}.")
        if "pad" in step_stream.keys():
            all_pad = step_stream.get("pad").all(dim=1)
            if bool(all_pad.any()):
                row = int(all_pad.nonzero()[0, 0])
                raise ValueError(
                    f"step_stream['pad'] marks every step of window {row} as PAD; nothing to embed."
                )

    def _check_image_vocab(self, pix: torch.Tensor) -> None:
        """Grid encoders read pixels as ids: each must lie below ``obs_image_vocab`` (one max per batch)."""
        if pix.numel() == 0 or int(pix.max()) < self.obs_image_vocab:
            return
        flat = pix.reshape(-1)
        first = int((flat >= self.obs_image_vocab).nonzero()[0, 0])
        C = self.obs_image_enc.shape[2]
        raise ValueError(
            f"step_stream['obs_image'] holds {int(flat[first])} (channel {first % C} of [H, W, C]="
            f"{list(self.obs_image_enc.shape)}), outside [0, {self.obs_image_vocab}) (obs_image_vocab); "
            "raise embedding_kwargs['obs_image_vocab'] or use obs_image_encoder='linear'."
        )

    # -------------------------------------------------------------------------------------- forward
    def _chunks(self, feats: torch.Tensor, proj: nn.Linear, chunk: nn.Embedding | None) -> torch.Tensor:
        """``feats [B, S, N, F]`` -> ``[B, S, num_chunks, D]`` (zero-padding the last chunk)."""
        B, S, N, Fd = feats.shape
        n = proj.in_features // Fd
        num_chunks = math.ceil(N / n)
        if num_chunks * n != N:
            feats = F.pad(feats, (0, 0, 0, num_chunks * n - N))
        y = proj(feats.reshape(B, S, num_chunks, n * Fd))
        return y + chunk.weight if chunk is not None else y

    def _modalities(self, td: TensorDict) -> list[torch.Tensor]:
        """Content embeddings, each ``[B, S, n_m, D]``, in token order."""
        out: list[torch.Tensor] = []
        if self.use["action"]:
            out.append(self.action_emb(td.get("action")).unsqueeze(2))
        if self.use["reward"]:
            out.append(self.reward_proj(self.reward_ff(td.get("reward"))).unsqueeze(2))
        if self.use["done"]:
            out.append(self.done_emb(td.get("done")).unsqueeze(2))
        if self.use["time"]:
            out.append(self.time_emb(td.get("time")).unsqueeze(2))
        if self.use["obs_discrete"]:
            out.append(self.obs_discrete_emb(td.get("obs_discrete")).unsqueeze(2))
        if self.use["obs_continuous"]:
            x = td.get("obs_continuous").float()
            feats = self.obs_continuous_ff(x) if self.obs_continuous_ff is not None else x.unsqueeze(-1)
            out.append(self._chunks(feats, self.obs_continuous_proj, self.obs_continuous_chunk))
        if self.use["obs_image"] and self.obs_image_enc is not None:
            out.append(self.obs_image_enc(td.get("obs_image")).unsqueeze(2))
        elif self.use["obs_image"]:
            pix = td.get("obs_image").float().mul_(1.0 / 255.0).unsqueeze(-1)
            out.append(self._chunks(pix, self.obs_image_proj, self.obs_image_chunk))
        return out

    def forward(self, step_stream: TensorDict, validate: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``step_stream[B, S]`` -> ``(embeds [B, S*T, D] float32, token_type [B, S*T] int64)``."""
        if validate:
            self.validate(step_stream)
        B, S = step_stream.batch_size
        parts = self._modalities(step_stream)
        types = self.type_emb(self.step_token_type)  # [T, D]
        if self.concat:
            tokens = torch.cat(parts, dim=2)  # [B, S, T - K, D]
        else:
            tokens = parts[0]
            for p in parts[1:]:
                tokens = tokens + p
        if self.num_compute_tokens:
            compute = self.compute_emb.to(tokens.dtype).expand(B, S, -1, -1)
            tokens = torch.cat((tokens, compute), dim=2)
        tokens = tokens + types
        token_type = self.step_token_type.expand(B, S, -1)
        if "pad" in step_stream.keys():
            token_type = token_type.masked_fill(step_stream.get("pad").unsqueeze(-1), int(TokenType.PAD))
        T = self.tokens_per_step
        return tokens.reshape(B, S * T, self.hidden_dim), token_type.reshape(B, S * T)
