"""DreamerV3-style value loss (Hafner et al. 2023, "Mastering Diverse Domains through World Models",
arXiv:2301.04104): symlog squared error or two-hot cross-entropy onto lambda-returns.

The two-hot grid has ``num_bins`` bins uniform in symlog space on ``[-20, 20]`` (255 in the paper);
a scalar ``x`` is encoded by interpolating ``symlog(x)`` between its two neighbouring bins and
decoded as ``symexp(sum_i p_i b_i)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tensordict import TensorDict

from mouse.losses.base import (
    LossConfig,
    check_choice,
    check_range,
    check_shape,
    cut_masked_pairs,
    masked_mean,
    metrics_or_raise,
    transition_pairs,
)

__all__ = [
    "TWO_HOT_HIGH",
    "TWO_HOT_LOW",
    "VALUE_LOSS_TYPES",
    "ValueLossConfig",
    "lambda_returns",
    "symexp",
    "symlog",
    "two_hot_bins",
    "two_hot_cross_entropy",
    "two_hot_decode",
    "two_hot_encode",
    "value_loss",
    "value_prediction",
]

VALUE_LOSS_TYPES = ("symlog_mse", "two_hot")
TWO_HOT_LOW, TWO_HOT_HIGH = -20.0, 20.0


def symlog(x: torch.Tensor) -> torch.Tensor:
    """``sign(x) log(1 + |x|)`` (DreamerV3 eq. 9)."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    """``sign(x) (exp(|x|) - 1)``, the inverse of :func:`symlog`."""
    return torch.sign(x) * torch.expm1(x.abs())


def two_hot_bins(num_bins: int = 255, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The ``[num_bins]`` bin centres, uniform in symlog space on ``[-20, 20]``."""
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 2:
        raise ValueError(f"num_bins must be an int >= 2, got {num_bins!r}.")
    return torch.linspace(TWO_HOT_LOW, TWO_HOT_HIGH, num_bins, device=device, dtype=dtype)


def _two_hot_weights(x: torch.Tensor, num_bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(below, w_above)``, both shaped like ``x``: ``symlog(x)`` lies between bins ``below`` and
    ``below + 1`` (int64), with weight ``w_above`` on the upper one and ``1 - w_above`` on the lower."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    # bin position in float64 so that grid points and edges land exactly on their bin
    y = symlog(x.to(torch.float64)).clamp(TWO_HOT_LOW, TWO_HOT_HIGH)
    pos = (y - TWO_HOT_LOW) * ((num_bins - 1) / (TWO_HOT_HIGH - TWO_HOT_LOW))
    below = pos.floor().long().clamp(0, num_bins - 2)
    return below, (pos - below).clamp(0.0, 1.0).to(dtype)


def two_hot_encode(x: torch.Tensor, num_bins: int = 255) -> torch.Tensor:
    """Two-hot probabilities ``[..., num_bins]`` of the scalars ``x [...]``, interpolated in symlog space.

    Inside the grid ``sum_i p_i b_i = symlog(x)`` exactly; values whose symlog lies outside
    ``[-20, 20]`` (``|x| > 4.85e8``) land on the edge bin, as in DreamerV3.
    """
    below, w_above = _two_hot_weights(x, num_bins)
    probs = torch.zeros(*x.shape, num_bins, dtype=w_above.dtype, device=x.device)
    probs.scatter_(-1, below.unsqueeze(-1), (1.0 - w_above).unsqueeze(-1))
    probs.scatter_add_(-1, (below + 1).unsqueeze(-1), w_above.unsqueeze(-1))
    return probs


class _TwoHotCrossEntropy(torch.autograd.Function):
    """``-sum_i twohot_i log softmax(logits)_i`` per position from the softmax ``probs`` of the
    logits: ``log softmax(logits)_j = logits_j - lse`` with ``lse = max(logits) - log(max(probs))``
    (``max(probs) >= 1 / num_bins``, so the log is accurate), and the gradient
    ``(probs - twohot) * g``. One softmax serves the loss, its gradient and the decoded value.
    With ``reuse_probs`` the gradient is written into ``probs`` (a buffer the caller gives up), so
    the backward allocates nothing; a second backward then fails autograd's saved-tensor check."""

    @staticmethod
    def forward(ctx, logits, probs, below, w_above, reuse_probs):  # noqa: ANN001, ANN205
        # softmax puts exp(0) / sum on the largest logit, so lse = max logit - log(max prob)
        lse = logits.amax(dim=-1, keepdim=True) - probs.amax(dim=-1, keepdim=True).log()  # [..., 1]
        index = torch.stack((below, below + 1), dim=-1)  # [..., 2]
        lo, hi = (logits.gather(-1, index) - lse).unbind(-1)
        ctx.save_for_backward(probs, index, w_above)
        ctx.reuse_probs = reuse_probs
        return -((1.0 - w_above) * lo + w_above * hi)

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        probs, index, w_above = ctx.saved_tensors
        g = grad.unsqueeze(-1)
        out = probs.mul_(g) if ctx.reuse_probs else probs * g
        out.scatter_add_(-1, index, torch.stack((w_above - 1.0, -w_above), dim=-1) * g)
        return out, None, None, None, None


def two_hot_cross_entropy(
    logits: torch.Tensor, x: torch.Tensor, probs: torch.Tensor | None = None
) -> torch.Tensor:
    """``-sum_i two_hot_encode(x)_i * log_softmax(logits)_i``: ``[..., num_bins]`` logits and
    ``[...]`` scalars -> ``[...]``, differentiable in ``logits``.

    Reads the two non-zero bins only (no ``[..., num_bins]`` target is built); ``probs`` is
    ``softmax(logits)`` (float32 or wider) when the caller already has it, e.g. from decoding.
    """
    return _two_hot_cross_entropy(logits, x, probs, reuse_probs=False)


def _two_hot_cross_entropy(
    logits: torch.Tensor, x: torch.Tensor, probs: torch.Tensor | None, reuse_probs: bool
) -> torch.Tensor:
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    if probs is None:
        with torch.no_grad():
            probs = torch.softmax(logits, dim=-1)
    below, w_above = _two_hot_weights(x, logits.shape[-1])
    probs = probs.detach().to(logits.dtype)
    return _TwoHotCrossEntropy.apply(logits, probs, below, w_above.to(logits.dtype), reuse_probs)


def _decode_probs(probs: torch.Tensor) -> torch.Tensor:
    """``symexp(sum_i p_i b_i)`` of two-hot probabilities ``[..., num_bins]``."""
    bins = two_hot_bins(probs.shape[-1], probs.device, probs.dtype)
    flat = probs.reshape(-1, probs.shape[-1])
    # the weighted sum in slices of ~1 MiB: the same per-row sums without a [..., num_bins] temporary
    rows = max(1, (1 << 18) // max(1, flat.shape[-1]))
    sums = (
        torch.cat([(part * bins).sum(dim=-1) for part in flat.split(rows)]) if flat.numel() else flat.sum(-1)
    )
    return symexp(sums.reshape(probs.shape[:-1]))


def two_hot_decode(values: torch.Tensor, logits: bool = True) -> torch.Tensor:
    """Scalars ``[...]`` of a two-hot critic ``[..., num_bins]``: ``symexp(sum_i p_i b_i)``.

    ``values`` are logits (softmax applied) when ``logits`` is True, else probabilities;
    ``num_bins`` is the last dimension.
    """
    values = values.to(torch.promote_types(values.dtype, torch.float32))
    return _decode_probs(torch.softmax(values, dim=-1) if logits else values)


@torch.no_grad()
def lambda_returns(
    rewards: torch.Tensor, discounts: torch.Tensor, values_next: torch.Tensor, lambda_: float
) -> torch.Tensor:
    """TD(lambda) returns ``[B, T]`` (DreamerV3 eq. 7), computed backwards without gradient:
    ``R_t = r_t + d_t ((1 - lambda) v_{t+1} + lambda R_{t+1})`` with ``R_T = v_T`` (``values_next[:, -1]``).
    ``rewards``, ``discounts`` and ``values_next`` (``v_{t+1}``) are ``[B, T]``."""
    out = torch.empty_like(rewards)
    nxt = values_next[:, -1]
    for t in range(rewards.shape[1] - 1, -1, -1):
        nxt = rewards[:, t] + discounts[:, t] * ((1.0 - lambda_) * values_next[:, t] + lambda_ * nxt)
        out[:, t] = nxt
    return out


@dataclass(frozen=True)
class ValueLossConfig(LossConfig):
    """DreamerV3-style value loss (see :func:`value_loss`)."""

    weight: float = 0.0
    loss_type: str = "symlog_mse"  # symlog_mse (scalar critic) | two_hot (logits over num_bins)
    num_bins: int = 255  # two-hot grid size (last dim of out['value'] for 'two_hot')
    discount_loss: bool = True  # weight position t of the window by gamma^t
    gamma: float = 0.99  # discount; 0 after a terminal record
    lambda_: float = 0.95  # lambda of the lambda-returns

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "loss_type", VALUE_LOSS_TYPES)
        if isinstance(self.num_bins, bool) or not isinstance(self.num_bins, int) or self.num_bins < 2:
            raise ValueError(f"ValueLossConfig.num_bins must be an int >= 2, got {self.num_bins!r}.")
        check_range(self, "gamma", 0.0, 1.0)
        check_range(self, "lambda_", 0.0, 1.0)


def value_prediction(value: torch.Tensor, cfg: ValueLossConfig) -> torch.Tensor:
    """Scalar values ``[B, S]`` of ``out['value']`` (decoded when it is a two-hot critic)."""
    return two_hot_decode(value) if cfg.loss_type == "two_hot" else value


def _check_value(value: torch.Tensor, step_stream: TensorDict, cfg: ValueLossConfig) -> None:
    bs = tuple(step_stream.batch_size)
    if cfg.loss_type == "two_hot":
        if value.dim() != 3 or value.shape[-1] != cfg.num_bins:
            raise ValueError(
                f"value loss 'two_hot' needs out['value'] logits of shape [B, S, num_bins={cfg.num_bins}], "
                f"got {list(value.shape)}; set ValueLossConfig.num_bins to the head's output size."
            )
        check_shape(value, (*bs, cfg.num_bins), "out['value'] vs step_stream batch_size [B, S]")
    else:
        if value.dim() != 2:
            raise ValueError(
                f"value loss 'symlog_mse' needs a scalar critic out['value'] of shape [B, S], got "
                f"{list(value.shape)} (use loss_type='two_hot' for a binned critic)."
            )
        check_shape(value, bs, "out['value'] vs step_stream batch_size [B, S]")


def value_loss(
    step_stream: TensorDict, out: TensorDict, cfg: ValueLossConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """Regress ``out['value']`` (``[B, S]`` scalars, or ``[B, S, num_bins]`` two-hot logits) onto
    lambda-returns, detached.

    Targets: ``step_stream['lambda_target'] [B, S]`` when present (used at every record with
    ``done[t] == 0``); otherwise lambda-returns over the window: transition ``t < S-1`` is
    ``(reward[t+1], done[t+1])``, discount ``gamma`` (0 into a terminal record; a truncated record
    bootstraps from its value), bootstrap ``V(x_{S-1})``. Pairs whose record ``t`` is
    terminal/truncated take no action: no target there, and the return recursion restarts from
    ``V(x_{t})`` (counted in ``value_masked``). Per position: ``(symlog V - symlog R)^2``
    (symlog_mse, torchrl's DreamerV3ValueLoss) or ``-sum twohot(R) log softmax(logits)`` (two_hot),
    weighted by ``gamma^t`` (window position) when ``discount_loss``; mean over kept positions.
    Metrics: value_loss, value_mean, value_target_mean, value_positions, value_masked.
    """
    if "value" not in out.keys():
        raise KeyError(
            f"value loss needs out['value'] (build the model with a value head); present: {sorted(out.keys())}."
        )
    value = out["value"]
    _check_value(value, step_stream, cfg)
    probs = None
    if cfg.loss_type == "two_hot":
        with torch.no_grad():  # one softmax: the decoded critic (a detached target) and the loss
            probs = torch.softmax(value.to(torch.promote_types(value.dtype, torch.float32)), dim=-1)
            pred = _decode_probs(probs)
    else:
        pred = value.to(torch.promote_types(value.dtype, torch.float32))  # [B, S]
    if "lambda_target" in step_stream.keys():
        target = step_stream["lambda_target"].to(pred.dtype)
        check_shape(target, tuple(step_stream.batch_size), "step_stream['lambda_target'] ([B, S])")
        if "done" not in step_stream.keys():
            raise KeyError("value loss needs step_stream['done'] to mask records where no action is taken.")
        mask = step_stream["done"] == 0
        target = target.detach()
    else:
        pairs = transition_pairs(step_stream, "value", dtype=pred.dtype)
        mask = pairs.valid
        v = pred.detach()
        # a masked pair restarts the recursion: R_t = V(x_t) there
        discounts, rewards = cut_masked_pairs(pairs, cfg.gamma, pairs.reward, v[:, :-1])
        target = lambda_returns(rewards, discounts, v[:, 1:], cfg.lambda_)
        pred = pred[:, :-1]
    n = mask.shape[1]
    if probs is not None:
        # over the whole window (the last position's target, if missing, is a dummy 0 dropped below)
        whole = target if n == value.shape[1] else F.pad(target, (0, value.shape[1] - n))
        per_pos = _two_hot_cross_entropy(value, whole, probs, reuse_probs=True)[:, :n]
    else:
        per_pos = (symlog(pred) - symlog(target)) ** 2
    if cfg.discount_loss:
        steps = torch.arange(n, device=per_pos.device, dtype=per_pos.dtype)
        per_pos = per_pos * cfg.gamma**steps
    loss = masked_mean(per_pos, mask)
    named = {
        "value_loss": loss,
        "value_mean": masked_mean(pred.detach(), mask),
        "value_target_mean": masked_mean(target, mask),
        "value_positions": mask.sum(),
        "value_masked": (~mask).sum(),
    }
    metrics = metrics_or_raise(
        named,
        "value_positions",
        "value loss: no position of the window has a target (every record t is terminal/truncated).",
    )
    return loss, metrics
