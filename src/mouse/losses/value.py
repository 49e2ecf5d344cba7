"""DreamerV3-style value loss (Hafner et al. 2023, "Mastering Diverse Domains through World Models",
arXiv:2301.04104): symlog squared error or two-hot cross-entropy onto lambda-returns.

The two-hot grid has ``num_bins`` bins uniform in symlog space on ``[-20, 20]`` (255 in the paper).
Two ways to put a scalar ``x`` on it (``two_hot_space``):

* ``"symlog"`` (default; DreamerV3's reference code): interpolate ``symlog(x)`` between its two
  neighbouring grid points ``b_i``; decode as ``symexp(sum_i p_i b_i)``.
* ``"raw"`` (torchrl's ``DreamerV3ValueLoss`` / ``SymExpTwoHot``): the support is the raw values
  ``B_i = symexp(b_i)`` (made exactly antisymmetric, ``B_{n-1-i} = -B_i``); interpolate ``x`` itself
  linearly between its two neighbouring ``B_i`` (clamped to ``[B_0, B_{n-1}]``); decode as the raw
  expectation ``sum_i p_i B_i``.

Both put mass on the same two neighbouring bins; only the split between them (and so the decoded
value of a given distribution) differs.
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
    "TWO_HOT_SPACES",
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
TWO_HOT_SPACES = ("symlog", "raw")  # where two-hot interpolates (see the module docstring)


def symlog(x: torch.Tensor) -> torch.Tensor:
    """``sign(x) log(1 + |x|)`` (DreamerV3 eq. 9)."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    """``sign(x) (exp(|x|) - 1)``, the inverse of :func:`symlog`."""
    return torch.sign(x) * torch.expm1(x.abs())


def _check_space(space: str) -> None:
    if space not in TWO_HOT_SPACES:
        raise ValueError(f"two-hot space must be one of {list(TWO_HOT_SPACES)}, got {space!r}.")


def two_hot_bins(
    num_bins: int = 255, device=None, dtype: torch.dtype = torch.float32, space: str = "symlog"
) -> torch.Tensor:
    """The ``[num_bins]`` bin centres, uniform in symlog space on ``[-20, 20]``: the symlog-space
    grid ``b_i`` (``space="symlog"``) or the raw support ``symexp(b_i)``, exactly antisymmetric
    (``space="raw"``, the bins of torchrl's ``DreamerV3ValueLoss``; built in float64, then cast)."""
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 2:
        raise ValueError(f"num_bins must be an int >= 2, got {num_bins!r}.")
    _check_space(space)
    if space == "symlog":
        return torch.linspace(TWO_HOT_LOW, TWO_HOT_HIGH, num_bins, device=device, dtype=dtype)
    return _raw_bins(num_bins, device).to(dtype)


def _raw_bins(num_bins: int, device=None) -> torch.Tensor:
    """float64 raw support ``symexp(b_i)``, antisymmetrised so the centre bin (odd ``num_bins``) is 0."""
    grid = torch.linspace(TWO_HOT_LOW, TWO_HOT_HIGH, num_bins, device=device, dtype=torch.float64)
    raw = symexp(grid)
    return (raw - raw.flip(0)) / 2


def _two_hot_weights(
    x: torch.Tensor, num_bins: int, space: str = "symlog"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(below, w_above)``, both shaped like ``x``: ``x`` lies between bins ``below`` and
    ``below + 1`` (int64), with weight ``w_above`` on the upper one and ``1 - w_above`` on the lower;
    the weights interpolate ``symlog(x)`` on the symlog grid or ``x`` on the raw support (``space``)."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    if space == "raw":
        bins = _raw_bins(num_bins, x.device)
        y = x.to(torch.float64).clamp(bins[0], bins[-1])
        below = (torch.searchsorted(bins, y.contiguous(), right=True) - 1).clamp(0, num_bins - 2)
        lo, hi = bins[below], bins[below + 1]
        return below, ((y - lo) / (hi - lo)).clamp(0.0, 1.0).to(dtype)
    _check_space(space)
    # bin position in float64 so that grid points and edges land exactly on their bin
    y = symlog(x.to(torch.float64)).clamp(TWO_HOT_LOW, TWO_HOT_HIGH)
    pos = (y - TWO_HOT_LOW) * ((num_bins - 1) / (TWO_HOT_HIGH - TWO_HOT_LOW))
    below = pos.floor().long().clamp(0, num_bins - 2)
    return below, (pos - below).clamp(0.0, 1.0).to(dtype)


def two_hot_encode(x: torch.Tensor, num_bins: int = 255, space: str = "symlog") -> torch.Tensor:
    """Two-hot probabilities ``[..., num_bins]`` of the scalars ``x [...]``, interpolated in symlog
    space (``space="symlog"``) or in raw value space (``space="raw"``, torchrl's encoding).

    Inside the grid ``sum_i p_i b_i = symlog(x)`` (symlog) or ``sum_i p_i symexp(b_i) = x`` (raw)
    exactly; values whose symlog lies outside ``[-20, 20]`` (``|x| > 4.85e8``) land on the edge bin,
    as in DreamerV3.
    """
    below, w_above = _two_hot_weights(x, num_bins, space)
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
    logits: torch.Tensor, x: torch.Tensor, probs: torch.Tensor | None = None, space: str = "symlog"
) -> torch.Tensor:
    """``-sum_i two_hot_encode(x, space=space)_i * log_softmax(logits)_i``: ``[..., num_bins]``
    logits and ``[...]`` scalars -> ``[...]``, differentiable in ``logits``.

    Reads the two non-zero bins only (no ``[..., num_bins]`` target is built); ``probs`` is
    ``softmax(logits)`` (float32 or wider) when the caller already has it, e.g. from decoding.
    """
    return _two_hot_cross_entropy(logits, x, probs, reuse_probs=False, space=space)


def _two_hot_cross_entropy(
    logits: torch.Tensor,
    x: torch.Tensor,
    probs: torch.Tensor | None,
    reuse_probs: bool,
    space: str = "symlog",
) -> torch.Tensor:
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    if probs is None:
        with torch.no_grad():
            probs = torch.softmax(logits, dim=-1)
    below, w_above = _two_hot_weights(x, logits.shape[-1], space)
    probs = probs.detach().to(logits.dtype)
    return _TwoHotCrossEntropy.apply(logits, probs, below, w_above.to(logits.dtype), reuse_probs)


def _decode_probs(probs: torch.Tensor, space: str = "symlog") -> torch.Tensor:
    """``symexp(sum_i p_i b_i)`` (symlog) or ``sum_i p_i symexp(b_i)`` (raw) of two-hot
    probabilities ``[..., num_bins]``."""
    num_bins = probs.shape[-1]
    flat = probs.reshape(-1, num_bins)
    if space == "raw":
        # the raw support is antisymmetric: pair bin n-1-i with bin i, sum (p_hi - p_lo) * B_hi, so
        # mirrored mass cancels exactly (a uniform critic decodes to 0, not to float32 round-off of
        # +-4.85e8-sized terms); the centre bin of an odd grid is 0 and drops out
        half = num_bins // 2
        bins = _raw_bins(num_bins, probs.device)[num_bins - half :].to(probs.dtype)

        def part_sums(part: torch.Tensor) -> torch.Tensor:
            return ((part[:, num_bins - half :] - part[:, :half].flip(-1)) * bins).sum(dim=-1)
    else:
        _check_space(space)
        bins = two_hot_bins(num_bins, probs.device, probs.dtype)

        def part_sums(part: torch.Tensor) -> torch.Tensor:
            return (part * bins).sum(dim=-1)

    # the weighted sum in slices of ~1 MiB: the same per-row sums without a [..., num_bins] temporary
    rows = max(1, (1 << 18) // max(1, flat.shape[-1]))
    sums = torch.cat([part_sums(part) for part in flat.split(rows)]) if flat.numel() else flat.sum(-1)
    sums = sums.reshape(probs.shape[:-1])
    return sums if space == "raw" else symexp(sums)


def two_hot_decode(values: torch.Tensor, logits: bool = True, space: str = "symlog") -> torch.Tensor:
    """Scalars ``[...]`` of a two-hot critic ``[..., num_bins]``: ``symexp(sum_i p_i b_i)``
    (``space="symlog"``) or the raw expectation ``sum_i p_i symexp(b_i)`` (``space="raw"``, torchrl's
    decoding).

    ``values`` are logits (softmax applied) when ``logits`` is True, else probabilities;
    ``num_bins`` is the last dimension.
    """
    values = values.to(torch.promote_types(values.dtype, torch.float32))
    return _decode_probs(torch.softmax(values, dim=-1) if logits else values, space)


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
    # two_hot only: interpolate targets (and decode the critic) in symlog space (DreamerV3's code) or
    # linearly between the raw symexp-spaced bins (torchrl's DreamerV3ValueLoss)
    two_hot_space: str = "symlog"  # symlog | raw

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "loss_type", VALUE_LOSS_TYPES)
        check_choice(self, "two_hot_space", TWO_HOT_SPACES)
        if isinstance(self.num_bins, bool) or not isinstance(self.num_bins, int) or self.num_bins < 2:
            raise ValueError(f"ValueLossConfig.num_bins must be an int >= 2, got {self.num_bins!r}.")
        check_range(self, "gamma", 0.0, 1.0)
        check_range(self, "lambda_", 0.0, 1.0)


def value_prediction(value: torch.Tensor, cfg: ValueLossConfig) -> torch.Tensor:
    """Scalar values ``[B, S]`` of ``out['value']`` (decoded when it is a two-hot critic)."""
    return two_hot_decode(value, space=cfg.two_hot_space) if cfg.loss_type == "two_hot" else value


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
    (symlog_mse, torchrl's DreamerV3ValueLoss) or ``-sum twohot(R) log softmax(logits)`` (two_hot,
    interpolated in ``cfg.two_hot_space``, which also decodes the critic for the bootstrap and metrics),
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
            pred = _decode_probs(probs, cfg.two_hot_space)
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
        per_pos = _two_hot_cross_entropy(value, whole, probs, reuse_probs=True, space=cfg.two_hot_space)
        per_pos = per_pos[:, :n]
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
