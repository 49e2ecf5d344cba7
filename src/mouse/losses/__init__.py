"""MOUSE losses: ``fn(step_stream, <model outputs>, cfg) -> (scalar_loss, dict[str, float])``.

``LOSSES`` maps each loss name to a :class:`LossSpec` the trainer uses uniformly::

    spec = LOSSES["dqn"]
    cfg = spec.config_cls(weight=1.0)               # or spec.config_cls.from_mapping(hydra_node)
    loss, metrics = spec.compute(step_stream, out, cfg)   # out: TensorDict[B, S] of model outputs
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from tensordict import TensorDict

from mouse.losses.base import LossConfig
from mouse.losses.dqn import DqnLossConfig, dqn_loss
from mouse.losses.sp import SpLossConfig, sp_loss
from mouse.losses.sv import SvLossConfig, sv_loss
from mouse.losses.value import ValueLossConfig, two_hot_decode, value_loss
from mouse.losses.vec_dqn import VecDqnLossConfig, vec_dqn_loss
from mouse.losses.vtrace import VtraceLossConfig, vtrace_loss

__all__ = [
    "LOSSES",
    "required_columns",
    "DqnLossConfig",
    "LossConfig",
    "LossSpec",
    "SpLossConfig",
    "SvLossConfig",
    "ValueLossConfig",
    "VecDqnLossConfig",
    "VtraceLossConfig",
    "dqn_loss",
    "sp_loss",
    "sv_loss",
    "two_hot_decode",
    "value_loss",
    "vec_dqn_loss",
    "vtrace_loss",
]

LossResult = tuple[torch.Tensor, dict[str, float]]


@dataclass(frozen=True)
class LossSpec:
    """How the trainer runs one loss: its config class, the model output keys (``heads``) it reads,
    whether it needs the target heads' forward (``needs_target``), and an adapter ``fn`` with the
    uniform signature ``(step_stream, out, cfg)``."""

    name: str
    config_cls: type[LossConfig]
    heads: tuple[str, ...]
    needs_target: bool
    fn: Callable[[TensorDict, TensorDict, LossConfig], LossResult]

    def compute(self, step_stream: TensorDict, out: TensorDict, cfg: LossConfig) -> LossResult:
        """Check ``cfg`` and the presence of ``heads`` in ``out``, then run the loss."""
        if not isinstance(cfg, self.config_cls):
            raise TypeError(
                f"loss {self.name!r} needs a {self.config_cls.__name__}, got {type(cfg).__name__}; "
                f"build it with {self.config_cls.__name__}.from_mapping(...)."
            )
        missing = [h for h in self.heads if h not in out.keys()]
        if missing:
            raise KeyError(
                f"loss {self.name!r} reads model outputs {list(self.heads)}, but {missing} are missing "
                f"(present: {sorted(out.keys())}); enable those heads in the model config."
            )
        return self.fn(step_stream, out, cfg)


def required_columns(name: str, cfg: LossConfig) -> tuple[str, ...]:
    """The optional step-record columns loss ``name`` reads under ``cfg`` (beyond action, reward, done,
    time): ``q_star`` (sp with target q_star, sv), ``teacher_logits`` (sp with target teacher),
    ``behavior_logits`` (vtrace), ``xformed_reward`` (dqn / vec_dqn with use_xformed_reward)."""
    if name in ("dqn", "vec_dqn"):
        return ("xformed_reward",) if cfg.use_xformed_reward else ()
    if name == "sp":
        return {"q_star": ("q_star",), "teacher": ("teacher_logits",)}.get(str(cfg.target), ())
    if name == "sv":
        return ("q_star",)
    if name == "vtrace":
        return ("behavior_logits",)
    if name in LOSSES:
        return ()
    raise KeyError(f"unknown loss {name!r}; known losses: {', '.join(LOSSES)}")


def _vec_dqn(step_stream: TensorDict, out: TensorDict, cfg: VecDqnLossConfig) -> LossResult:
    return vec_dqn_loss(step_stream, out["vec_dqn"], out["vec_dqn_target"], cfg)


def _sp(step_stream: TensorDict, out: TensorDict, cfg: SpLossConfig) -> LossResult:
    return sp_loss(step_stream, out["sp"], cfg)


def _sv(step_stream: TensorDict, out: TensorDict, cfg: SvLossConfig) -> LossResult:
    return sv_loss(step_stream, out["sv"], cfg)


LOSSES: dict[str, LossSpec] = {
    spec.name: spec
    for spec in (
        LossSpec("dqn", DqnLossConfig, ("dqn", "dqn_target"), True, dqn_loss),
        LossSpec("vec_dqn", VecDqnLossConfig, ("vec_dqn", "vec_dqn_target"), True, _vec_dqn),
        LossSpec("sp", SpLossConfig, ("sp",), False, _sp),
        LossSpec("sv", SvLossConfig, ("sv",), False, _sv),
        LossSpec("vtrace", VtraceLossConfig, ("sp", "value"), False, vtrace_loss),
        LossSpec("value", ValueLossConfig, ("value",), False, value_loss),
    )
}
