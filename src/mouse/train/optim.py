"""AdamW with linear warmup + cosine decay (``optim`` config group).

Weight decay applies to matrices only (parameters with ``ndim >= 2``); biases and norm gains are not
decayed, the usual transformer recipe (e.g. GPT-2 / nanoGPT).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from mouse.train.config import Schedule

__all__ = ["build_optimizer", "build_scheduler", "lr_factor"]


def build_optimizer(
    model: torch.nn.Module,
    *,
    lr: float,
    weight_decay: float,
    beta1: float,
    beta2: float,
    eps: float,
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters of ``model``: two groups (decayed matrices, the rest)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters")
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(beta1, beta2), eps=eps)


def lr_factor(
    step: int, *, total_steps: int, warmup_steps: int, schedule: Schedule | str, min_lr_ratio: float
) -> float:
    """Multiplier of the base lr for optimizer step ``step`` (0-based).

    Linear warmup ``(step+1)/warmup_steps`` for the first ``warmup_steps`` steps, then either constant 1
    or a half-cosine from 1 down to ``min_lr_ratio`` at ``total_steps`` (SGDR, Loshchilov & Hutter 2017).
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == Schedule.constant:
        return 1.0
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    warmup_steps: int,
    schedule: Schedule | str,
    min_lr_ratio: float,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` applying :func:`lr_factor`; its ``state_dict()`` is plain JSON-able data.

    ``schedule`` outside :class:`Schedule` raises ValueError naming ``optim.schedule``."""
    try:
        schedule = Schedule(schedule)
    except ValueError:
        raise ValueError(
            f"optim.schedule={str(schedule)!r} is unknown; use one of {[s.value for s in Schedule]}"
        ) from None
    fn: Callable[[int], float] = lambda step: lr_factor(  # noqa: E731
        step,
        total_steps=total_steps,
        warmup_steps=warmup_steps,
        schedule=schedule,
        min_lr_ratio=min_lr_ratio,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
