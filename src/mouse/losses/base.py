"""Shared pieces of every MOUSE loss: the config base class, input checks, the step-record
pairing used by TD-style losses, and the one-transfer metrics helper.

Step-record alignment (DESIGN.md): record ``t`` holds ``obs_t`` and the transition that *arrived*
at ``t``, so the transition out of state ``t`` is ``(action[t+1], reward[t+1], done[t+1])``. A TD
pair is ``(t, t+1)`` for ``t < S-1``. A pair whose record ``t`` is terminal or truncated
(``done[t] != 0``) is masked out: no action is taken from such a record (its outgoing "transition"
is the reset record of the next episode, whose action and reward are 0).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from tensordict import TensorDict

__all__ = [
    "DONE_ALIVE",
    "DONE_TERMINAL",
    "DONE_TRUNCATED",
    "LossConfig",
    "RewardTransformConfig",
    "TransitionPairs",
    "check_choice",
    "check_finite",
    "check_positive",
    "check_range",
    "check_reward_transform",
    "check_shape",
    "cut_masked_pairs",
    "masked_mean",
    "masked_stats",
    "metrics_or_raise",
    "metrics_to_host",
    "normalize_rewards",
    "require_key",
    "transformed_reward_pairs",
    "transition_pairs",
]

DONE_ALIVE, DONE_TERMINAL, DONE_TRUNCATED = 0, 1, 2


# --------------------------------------------------------------------------------------------------
# config validation helpers (used in every config's __post_init__)
# --------------------------------------------------------------------------------------------------
def _where(cfg: object, field: str) -> str:
    return f"{type(cfg).__name__}.{field}"


def check_finite(cfg: object, field: str) -> float:
    """Return ``cfg.field`` as a float, or raise ValueError when it is not a finite number."""
    value = getattr(cfg, field)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{_where(cfg, field)} must be a finite number, got {value!r}.")
    return float(value)


def check_range(cfg: object, field: str, low: float, high: float) -> None:
    """Raise ValueError unless ``low <= cfg.field <= high``."""
    value = check_finite(cfg, field)
    if not low <= value <= high:
        raise ValueError(f"{_where(cfg, field)} must be in [{low}, {high}], got {value!r}.")


def check_positive(cfg: object, field: str, strict: bool = True) -> None:
    """Raise ValueError unless ``cfg.field > 0`` (``>= 0`` when ``strict`` is False)."""
    value = check_finite(cfg, field)
    if value < 0 or (strict and value == 0):
        bound = "> 0" if strict else ">= 0"
        raise ValueError(f"{_where(cfg, field)} must be {bound}, got {value!r}.")


def check_reward_transform(cfg: RewardTransformConfig) -> None:
    """Check the TD reward fields of ``cfg`` (see :class:`RewardTransformConfig`)."""
    check_positive(cfg, "normalize_reward_eps")
    check_positive(cfg, "normalize_reward_std_target")
    check_range(cfg, "reward_scale", -math.inf, math.inf)
    check_range(cfg, "reward_shift", -math.inf, math.inf)


def check_choice(cfg: object, field: str, allowed: Iterable[str]) -> None:
    """Raise ValueError unless ``cfg.field`` is one of ``allowed``."""
    allowed = tuple(allowed)
    value = getattr(cfg, field)
    if value not in allowed:
        raise ValueError(f"{_where(cfg, field)} must be one of {list(allowed)}, got {value!r}.")


@dataclass(frozen=True)
class LossConfig:
    """Base of every loss config: ``weight`` (first field) scales the loss in the trainer's sum;
    0 turns the loss off. Fields are plain types so Hydra structured configs can use them."""

    weight: float = 0.0

    def __post_init__(self) -> None:
        check_positive(self, "weight", strict=False)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> LossConfig:
        """Build the config from a plain mapping (e.g. a resolved Hydra node); unknown keys raise
        KeyError naming the valid fields."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise KeyError(f"{cls.__name__} has no field(s) {unknown}; valid fields: {names}.")
        return cls(**dict(values))


# --------------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------------
def require_key(td: TensorDict, key: str, loss: str, hint: str = "") -> torch.Tensor:
    """Return ``td[key]`` or raise KeyError naming the loss, the key and the keys present."""
    if key not in td.keys():
        extra = f" {hint}" if hint else ""
        raise KeyError(f"{loss} loss needs {key!r}, but it is missing; present: {sorted(td.keys())}.{extra}")
    return td[key]


def check_shape(x: torch.Tensor, expected: tuple[int | None, ...], what: str) -> None:
    """Raise ValueError unless ``x.shape`` matches ``expected`` (``None`` matches any size)."""
    ok = x.dim() == len(expected) and all(e is None or e == s for e, s in zip(expected, x.shape))
    if not ok:
        shown = "[" + ", ".join("*" if e is None else str(e) for e in expected) + "]"
        raise ValueError(f"{what} must have shape {shown}, got {list(x.shape)}.")


def _batch_shape(step_stream: TensorDict, loss: str) -> tuple[int, int]:
    if len(step_stream.batch_size) != 2:
        raise ValueError(
            f"{loss} loss needs a step stream with batch_size [B, S], got {list(step_stream.batch_size)}."
        )
    b, s = step_stream.batch_size
    return int(b), int(s)


# --------------------------------------------------------------------------------------------------
# TD pairs
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TransitionPairs:
    """The ``S-1`` transitions ``t -> t+1`` of a window, all ``[B, S-1]``.

    ``action``/``reward``/``done`` are read at ``t+1`` (the transition out of ``t``); ``valid`` is
    False where record ``t`` is terminal/truncated (no action was taken from it).
    """

    action: torch.Tensor  # int64
    reward: torch.Tensor  # float
    done: torch.Tensor  # int64, 0 alive | 1 terminal | 2 truncated
    valid: torch.Tensor  # bool

    @property
    def terminal(self) -> torch.Tensor:
        return self.done == DONE_TERMINAL

    @property
    def truncated(self) -> torch.Tensor:
        return self.done == DONE_TRUNCATED


def transition_pairs(
    step_stream: TensorDict, loss: str, reward_key: str = "reward", dtype: torch.dtype = torch.float32
) -> TransitionPairs:
    """Pair each record ``t < S-1`` with ``t+1`` (see module docstring); raise on S < 2 or missing keys."""
    _, s = _batch_shape(step_stream, loss)
    if s < 2:
        raise ValueError(
            f"{loss} loss pairs record t with t+1 and needs a window of S >= 2 records, got S={s}."
        )
    action = require_key(step_stream, "action", loss)
    reward = require_key(step_stream, reward_key, loss)
    done = require_key(step_stream, "done", loss)
    for name, x in (("action", action), (reward_key, reward), ("done", done)):
        check_shape(x, tuple(step_stream.batch_size), f"step_stream[{name!r}]")
    return TransitionPairs(
        action=action[:, 1:].long(),
        reward=reward[:, 1:].to(dtype),
        done=done[:, 1:].long(),
        valid=done[:, :-1] == DONE_ALIVE,
    )


def normalize_rewards(
    reward: torch.Tensor,
    valid: torch.Tensor,
    mean: bool,
    std: bool,
    eps: float,
    std_target: float,
) -> torch.Tensor:
    """Per-row reward normalisation over the row's valid pairs (``[B, N]`` in/out): subtract the
    mean (``mean``), then divide by (std + ``eps``) and multiply by ``std_target`` (``std``).

    The std is Bessel-corrected like ``torch.std`` (divisor ``n - 1`` over the row's ``n`` valid
    pairs); a row with a single valid pair has std 0 (where ``torch.std`` would give NaN)."""
    if not (mean or std):
        return reward
    w = valid.to(reward.dtype)
    count = w.sum(dim=1, keepdim=True)
    row_mean = (reward * w).sum(dim=1, keepdim=True) / count.clamp_min(1.0)
    if mean:
        reward = reward - row_mean
        row_mean = torch.zeros_like(row_mean)
    if std:
        var = (((reward - row_mean) * w) ** 2).sum(dim=1, keepdim=True) / (count - 1.0).clamp_min(1.0)
        reward = reward / (var.sqrt() + eps) * std_target
    return reward


class RewardTransformConfig(Protocol):
    """The config fields of a loss that transforms the TD reward (dqn, vec_dqn): which reward column
    (``use_xformed_reward``), the per-row normalisation (:func:`normalize_rewards`), then
    ``* reward_scale + reward_shift``."""

    use_xformed_reward: bool
    normalize_reward_mean: bool
    normalize_reward_std: bool
    normalize_reward_eps: float
    normalize_reward_std_target: float
    reward_scale: float
    reward_shift: float


def transformed_reward_pairs(
    step_stream: TensorDict, loss: str, cfg: RewardTransformConfig, dtype: torch.dtype
) -> tuple[TransitionPairs, torch.Tensor]:
    """The window's :func:`transition_pairs` and their TD rewards ``[B, S-1]``:
    ``normalise(r[t+1]) * reward_scale + reward_shift``, ``r`` read from ``'xformed_reward'`` when
    ``cfg.use_xformed_reward`` (KeyError if the stream has none), else from ``'reward'``."""
    reward_key = "xformed_reward" if cfg.use_xformed_reward else "reward"
    if cfg.use_xformed_reward and reward_key not in step_stream.keys():
        raise KeyError(
            f"{type(cfg).__name__}.use_xformed_reward=True but the step stream has no 'xformed_reward'."
        )
    pairs = transition_pairs(step_stream, loss, reward_key=reward_key, dtype=dtype)
    reward = normalize_rewards(
        pairs.reward,
        pairs.valid,
        cfg.normalize_reward_mean,
        cfg.normalize_reward_std,
        cfg.normalize_reward_eps,
        cfg.normalize_reward_std_target,
    )
    return pairs, reward * cfg.reward_scale + cfg.reward_shift


def cut_masked_pairs(
    pairs: TransitionPairs, gamma: float, rewards: torch.Tensor, values: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(discounts, rewards)`` ``[B, S-1]`` for a return recursion over ``pairs``: discount ``gamma``,
    0 into a terminal record (a truncated record bootstraps from its value). A masked pair (no action
    taken) cuts the recursion: discount 0 and reward ``V(x_t)`` (``values [B, S-1]``, detached)."""
    discounts = gamma * (pairs.done != DONE_TERMINAL).to(values.dtype)
    discounts = torch.where(pairs.valid, discounts, torch.zeros_like(discounts))
    return discounts, torch.where(pairs.valid, rewards, values.detach())


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over ``mask`` (0 when the mask is empty, never NaN)."""
    w = mask.to(x.dtype)
    return (x * w).sum() / w.sum().clamp_min(1.0)


def masked_stats(x: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean, std, min and max of ``x`` over ``mask`` without a host sync (all 0 if the mask is
    empty). The std is Bessel-corrected like ``torch.std`` (divisor ``n - 1``; 0 when ``n = 1``)."""
    x = x.detach()
    mean = masked_mean(x, mask)
    n = mask.sum().to(x.dtype)
    std = (((x - mean) ** 2 * mask.to(x.dtype)).sum() / (n - 1.0).clamp_min(1.0)).sqrt()
    empty = ~mask.any()
    lo = torch.where(mask, x, torch.full_like(x, float("inf"))).amin()
    hi = torch.where(mask, x, torch.full_like(x, float("-inf"))).amax()
    zero = torch.zeros_like(mean)
    return {
        "mean": mean,
        "std": std,
        "min": torch.where(empty, zero, lo),
        "max": torch.where(empty, zero, hi),
    }


# --------------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------------
def metrics_to_host(named: Mapping[str, torch.Tensor | float | int]) -> dict[str, float]:
    """Detach the scalar metrics and bring them to the host in one transfer, as plain floats."""
    if not named:
        return {}
    device = next((v.device for v in named.values() if isinstance(v, torch.Tensor)), torch.device("cpu"))
    values = [
        v.detach().reshape(()).to(torch.float64)
        if isinstance(v, torch.Tensor)
        else torch.tensor(float(v), dtype=torch.float64, device=device)
        for v in named.values()
    ]
    return dict(zip(named, torch.stack([v.to(device) for v in values]).tolist()))


def metrics_or_raise(
    named: Mapping[str, torch.Tensor | float | int], count: str, empty_error: str
) -> dict[str, float]:
    """:func:`metrics_to_host`, raising ``ValueError(empty_error)`` when the metric ``count`` (the
    positions the loss learnt from) is 0."""
    metrics = metrics_to_host(named)
    if metrics[count] == 0:
        raise ValueError(empty_error)
    return metrics
