"""Supervised policy loss: distil a teacher's action distribution into the ``sp`` logits.

Teacher rows are value-like scores ``[N, A]`` (``q_star``, the exploring teacher's
``teacher_logits``, or the executed next action); ``-inf`` marks an action outside the teacher's
support (probability 0). As in the seed's helpers, the teacher distribution is
``P = softmax(q / T)`` with label smoothing ``P <- (1 - eps) P + eps * uniform(support)`` applied to
the teacher only, and the student is ``Q = softmax(logits)``: the temperature ``T`` softens the
teacher only. Soft cross-entropy and KL are not rescaled; Jensen-Shannon is multiplied by ``T^2``
(the seed's ``sp_js_loss``). At ``T = 1`` no scaling applies anywhere. ``ce`` is the cross-entropy
to the (smoothed) one-hot argmax of the teacher (temperature unused). Behaviour cloning of the
next action is the Algorithm Distillation objective (Laskin et al. 2022).

Each formula is implemented once, in the public helpers :func:`sp_soft_ce_loss`, :func:`sp_kl_loss`
and :func:`sp_js_loss`; :func:`sp_loss` builds the teacher/student rows and calls them. Metric names
carry the ``sp_`` prefix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tensordict import TensorDict

from mouse.losses.base import (
    LossConfig,
    check_choice,
    check_range,
    check_shape,
    masked_mean,
    metrics_or_raise,
    require_key,
    transition_pairs,
)

__all__ = [
    "SP_LOSS_TYPES",
    "SP_TARGETS",
    "SpLossConfig",
    "sp_js_loss",
    "sp_kl_loss",
    "sp_loss",
    "sp_soft_ce_loss",
]

SP_LOSS_TYPES = ("ce", "ce-soft-fwd", "ce-soft-bwd", "js", "kl-fwd", "kl-bwd")
SP_TARGETS = ("q_star", "teacher", "next_action")
_DIRECTIONS = ("fwd", "bwd")


@dataclass(frozen=True)
class SpLossConfig(LossConfig):
    """Supervised action loss at PREDICTION (see :func:`sp_loss`)."""

    weight: float = 0.0
    label_smoothing: float = 0.0  # uniform mass mixed into the teacher, in [0, 1]
    loss_type: str = "ce"  # ce | ce-soft-fwd | ce-soft-bwd | js | kl-fwd | kl-bwd
    temperature: float = 1.0  # > 0; softens the teacher only (soft losses); js is scaled by T^2
    target: str = "q_star"  # q_star | teacher (teacher_logits) | next_action (behaviour cloning)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self, "label_smoothing", 0.0, 1.0)
        check_choice(self, "loss_type", SP_LOSS_TYPES)
        _check_temperature(self.temperature, "SpLossConfig.temperature")
        check_choice(self, "target", SP_TARGETS)
        if self.target == "next_action" and self.loss_type != "ce":
            raise ValueError(
                f"SpLossConfig.target='next_action' (behaviour cloning of a single executed action) only "
                f"supports loss_type='ce', got loss_type={self.loss_type!r}."
            )


def _check_temperature(temperature: float, name: str = "temperature") -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not temperature > 0:
        raise ValueError(f"{name} must be a number > 0, got {temperature!r}.")
    if not math.isfinite(temperature):
        raise ValueError(f"{name} must be finite, got {temperature!r}.")


# --------------------------------------------------------------------------------------------------
# teacher / student distributions
# --------------------------------------------------------------------------------------------------
def _smooth(log_p: torch.Tensor, support: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """``log((1 - eps) P + eps * uniform(support))``, computed in log space."""
    if label_smoothing == 0:
        return log_p
    n = support.sum(dim=-1, keepdim=True).to(log_p.dtype)
    log_u = torch.where(support, -torch.log(n), torch.full_like(log_p, -math.inf))
    if label_smoothing == 1:
        return log_u
    return torch.logaddexp(log_p + math.log1p(-label_smoothing), log_u + math.log(label_smoothing))


def _support(q_targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(support [N, A], has_row [N])``: finite entries; a row without any gets full support as a
    harmless placeholder (``has_row`` False) so nothing downstream is NaN."""
    support = torch.isfinite(q_targets)
    has_row = support.any(dim=-1)
    return support | ~has_row.unsqueeze(-1), has_row


def _prepare(
    q_targets: torch.Tensor, logits: torch.Tensor, temperature: float, label_smoothing: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check the arguments of a helper; return ``(q_targets, logits)`` in float32 or wider."""
    if q_targets.dim() != 2 or q_targets.shape != logits.shape:
        raise ValueError(
            f"q_targets and logits must be aligned [N, A] rows, got {list(q_targets.shape)} and "
            f"{list(logits.shape)}."
        )
    _check_temperature(temperature)
    if (
        isinstance(label_smoothing, bool)
        or not isinstance(label_smoothing, int | float)
        or not 0.0 <= label_smoothing <= 1.0
    ):
        raise ValueError(f"label_smoothing must be a number in [0, 1], got {label_smoothing!r}.")
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return q_targets.to(logits.dtype), logits


def _teacher_log_probs(
    q_targets: torch.Tensor, temperature: float, label_smoothing: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(log P [N, A], support [N, A], has_row [N])`` of ``softmax(q / T)`` smoothed on the support."""
    support, has_row = _support(q_targets)
    q = torch.where(support & has_row.unsqueeze(-1), q_targets, torch.zeros_like(q_targets))
    q = q.masked_fill(~support, -math.inf)
    return _smooth(torch.log_softmax(q / temperature, dim=-1), support, label_smoothing), support, has_row


def _plogp_diff(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """Row sums of ``a * (log a - log b)`` with ``0 log 0 = 0`` (``[N, A] -> [N]``)."""
    a = log_a.exp()
    safe_a = torch.where(a > 0, log_a, torch.zeros_like(log_a))
    safe_b = torch.where(a > 0, log_b, torch.zeros_like(log_b))
    return (a * (safe_a - safe_b)).sum(dim=-1)


def _masked_log_softmax(logits: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """The student's log-probabilities renormalised over the teacher's support."""
    return torch.log_softmax(logits.masked_fill(~support, -math.inf), dim=-1)


def _check_direction(direction: str) -> None:
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {list(_DIRECTIONS)}, got {direction!r}.")


def _mean_kept_rows(row: torch.Tensor, has_row: torch.Tensor) -> torch.Tensor:
    """Mean of ``row [N]`` over the rows with a finite teacher entry (0 when there is none)."""
    return masked_mean(torch.where(has_row, row, torch.zeros_like(row)), has_row)


def _hard_ce_loss(q_targets: torch.Tensor, logits: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """``ce``: cross-entropy to the one-hot argmax of ``q_targets`` smoothed on its support; mean
    over the rows with a finite teacher entry."""
    q_targets, logits = _prepare(q_targets, logits, 1.0, label_smoothing)
    support, has_row = _support(q_targets)
    best = q_targets.masked_fill(~support, -math.inf).argmax(dim=-1, keepdim=True)
    hard = torch.full_like(q_targets, -math.inf).scatter(-1, best, 0.0)
    p = _smooth(hard, support, label_smoothing).exp()
    return _mean_kept_rows(-(p * torch.log_softmax(logits, dim=-1)).sum(dim=-1), has_row)


# --------------------------------------------------------------------------------------------------
# the seed's helpers: one implementation of each formula, also used by sp_loss
# --------------------------------------------------------------------------------------------------
def sp_js_loss(
    q_targets: torch.Tensor, logits: torch.Tensor, temperature: float, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Jensen–Shannon loss between teacher ``q_targets [N, A]`` and student ``logits [N, A]`` (aligned rows).

    ``P = softmax(q / T)`` (label smoothing on the teacher only), ``Q = softmax(logits)``;
    ``JS = 0.5 KL(P||M) + 0.5 KL(Q||M)`` with ``M = (P + Q) / 2``, mean over rows with a finite
    teacher entry, times ``T^2``. ``temperature`` must be > 0.
    """
    q_targets, logits = _prepare(q_targets, logits, temperature, label_smoothing)
    log_p, _, has_row = _teacher_log_probs(q_targets, temperature, label_smoothing)
    log_q = torch.log_softmax(logits, dim=-1)
    log_m = torch.logaddexp(log_p, log_q) - math.log(2.0)
    row = 0.5 * _plogp_diff(log_p, log_m) + 0.5 * _plogp_diff(log_q, log_m)
    return _mean_kept_rows(row * (temperature * temperature), has_row)


def sp_kl_loss(
    q_targets: torch.Tensor,
    logits: torch.Tensor,
    temperature: float,
    label_smoothing: float = 0.0,
    direction: str = "fwd",
) -> torch.Tensor:
    """KL between the teacher ``P = softmax(q_targets / T)`` and the student ``Q = softmax(logits)``
    (``[N, A]`` rows; label smoothing on the teacher only; no ``T^2`` factor).

    ``direction='fwd'``: ``KL(P || Q)``; ``'bwd'``: ``KL(Q || P)`` on the teacher's support (the
    student renormalised there). Mean over rows with a finite teacher entry.
    """
    _check_direction(direction)
    q_targets, logits = _prepare(q_targets, logits, temperature, label_smoothing)
    log_p, support, has_row = _teacher_log_probs(q_targets, temperature, label_smoothing)
    if direction == "fwd":
        row = _plogp_diff(log_p, torch.log_softmax(logits, dim=-1))
    else:
        row = _plogp_diff(_masked_log_softmax(logits, support), log_p)
    return _mean_kept_rows(row, has_row)


def sp_soft_ce_loss(
    q_targets: torch.Tensor,
    logits: torch.Tensor,
    temperature: float,
    label_smoothing: float = 0.0,
    direction: str = "fwd",
) -> torch.Tensor:
    """Directional soft cross-entropy between the teacher ``P = softmax(q_targets / T)`` and the
    student ``Q = softmax(logits)`` (``[N, A]`` rows; label smoothing on the teacher only; no ``T^2``
    factor).

    ``direction='fwd'``: ``H(P, Q) = -sum P log Q``; ``'bwd'``: ``H(Q, P) = -sum Q log P`` on the
    teacher's support (the student renormalised there). Mean over rows with a finite teacher entry.
    """
    _check_direction(direction)
    q_targets, logits = _prepare(q_targets, logits, temperature, label_smoothing)
    log_p, support, has_row = _teacher_log_probs(q_targets, temperature, label_smoothing)
    if direction == "fwd":
        row = -(log_p.exp() * torch.log_softmax(logits, dim=-1)).sum(dim=-1)
    else:
        log_q = _masked_log_softmax(logits, support)
        row = -(log_q.exp() * log_p.masked_fill(~support, 0.0)).sum(dim=-1)
    return _mean_kept_rows(row, has_row)


# --------------------------------------------------------------------------------------------------
# the MOUSE loss
# --------------------------------------------------------------------------------------------------
def _teacher_rows(step_stream: TensorDict, logits: torch.Tensor, cfg: SpLossConfig):
    """``(teacher [N, A], student [N, A])`` rows for ``cfg.target`` (``-inf`` rows are skipped)."""
    a = logits.shape[-1]
    if cfg.target == "next_action":
        pairs = transition_pairs(step_stream, "sp")
        # 0 on the executed action, -1 elsewhere: argmax = the action, support = all A actions
        # (so label smoothing spreads over every action); -inf rows are skipped (no action taken)
        onehot = F.one_hot(pairs.action, a).to(logits.dtype) - 1.0
        teacher = onehot.masked_fill(~pairs.valid.unsqueeze(-1), -math.inf)
        return teacher.reshape(-1, a), logits[:, :-1].reshape(-1, a)
    key = "q_star" if cfg.target == "q_star" else "teacher_logits"
    teacher = require_key(step_stream, key, "sp", f"(SpLossConfig.target={cfg.target!r})")
    check_shape(teacher, tuple(logits.shape), f"step_stream[{key!r}] (same as the sp logits [B, S, A])")
    return teacher.reshape(-1, a), logits.reshape(-1, a)


def sp_loss(
    step_stream: TensorDict, logits: torch.Tensor, cfg: SpLossConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """Supervised policy loss over all ``[B, S]`` step positions; ``logits`` is ``out['sp'] [B, S, A]``.

    ``cfg.target`` picks the teacher at record ``t``: ``q_star[t]`` (the seed's behaviour),
    ``teacher_logits[t]`` (the exploring teacher, needed to learn in-context exploration), or
    ``action[t+1]`` (behaviour cloning of the executed next action, ``ce`` only; pairs whose
    record ``t`` is terminal/truncated take no action and are skipped). Rows with no finite teacher
    entry (e.g. terminal records, all ``-inf``) are skipped and counted. Mean over kept rows.
    Metrics: sp_loss, sp_accuracy (student argmax is a teacher argmax), sp_entropy (student, T=1),
    sp_rows, sp_skipped_rows.
    """
    if logits.dim() != 3:
        raise ValueError(f"sp logits must have shape [B, S, A], got {list(logits.shape)}.")
    check_shape(logits, (*step_stream.batch_size, None), "sp logits vs step_stream batch_size [B, S]")
    teacher, student = _teacher_rows(step_stream, logits, cfg)
    teacher = teacher.to(student.dtype)
    t, eps = cfg.temperature, cfg.label_smoothing
    kind, _, direction = cfg.loss_type.rpartition("-")
    if cfg.loss_type == "ce":
        loss = _hard_ce_loss(teacher, student, eps)
    elif cfg.loss_type == "js":
        loss = sp_js_loss(teacher, student, t, eps)
    elif kind == "kl":
        loss = sp_kl_loss(teacher, student, t, eps, direction)
    else:  # ce-soft-fwd | ce-soft-bwd
        loss = sp_soft_ce_loss(teacher, student, t, eps, direction)
    has_row = torch.isfinite(teacher).any(dim=-1)

    with torch.no_grad():
        best = torch.where(torch.isfinite(teacher), teacher, torch.full_like(teacher, -math.inf))
        chosen = best.gather(-1, student.argmax(dim=-1, keepdim=True)).squeeze(-1)
        hit = chosen == best.amax(dim=-1)
        log_q = torch.log_softmax(student.detach().float(), dim=-1)
        ent = -(log_q.exp() * log_q).sum(dim=-1)
    named = {
        "sp_loss": loss,
        "sp_accuracy": masked_mean(hit.to(ent.dtype), has_row),
        "sp_entropy": masked_mean(ent, has_row),
        "sp_rows": has_row.sum(),
        "sp_skipped_rows": (~has_row).sum(),
    }
    metrics = metrics_or_raise(
        named,
        "sp_rows",
        f"sp loss: no row of the batch has a finite teacher entry (target={cfg.target!r}); every "
        f"position was skipped. Check the dataset's {cfg.target!r} column.",
    )
    return loss, metrics
