"""torchrl interop: every MOUSE loss (:data:`mouse.losses.LOSSES`) as a torchrl ``LossModule``.

Needs the optional ``torchrl`` extra (``pip install 'mouse[torchrl]'``); ``import mouse.losses``
works without it. Each adapter reads one TensorDict holding the MOUSE step stream ``[B, S]`` (see
DESIGN.md, "The step record") and the model outputs side by side, under MOUSE's names by default::

    loss_module = MouseDqnLoss(gamma=0.9)           # or MouseDqnLoss(DqnLossConfig(...))
    batch.update(model(batch)[0])                   # adds "dqn", "dqn_target", ... to the batch
    loss_td = loss_module(batch)                    # TensorDict: "loss_dqn" + the dqn_* metrics
    sum(v for k, v in loss_td.items() if k.startswith("loss_")).backward()

The output holds ``loss_<name>`` (the unweighted scalar of ``LOSSES[name].compute``, with its
gradient; ``cfg.weight`` is not applied, as torchrl losses leave weighting to the caller) and every
metric of the loss as a detached 0-dim tensor (``dqn_pairs``, ``value_target_mean``, ...).

Keys follow torchrl's convention: ``loss.tensor_keys`` / ``type(loss).default_keys`` list them and
``loss.set_keys(reward=("next", "reward"), value="state_value")`` reads a field elsewhere (a nested
key is fine). A renamed key changes where a field is read, not what it means: fields keep MOUSE's
step-record alignment (record ``t`` holds the reward/done of the transition that *arrived* at
``t``), which is not torchrl's ``("next", ...)`` alignment. Scalar fields may carry torchrl's
trailing singleton dimension (``[B, S, 1]``). A missing field raises ``KeyError`` naming the
field, the key it was looked up under and the keys present.

The twin-head targets (``dqn_target``, ``vec_dqn_target``) are model outputs here, like the
online heads: the MOUSE model computes them and keeps their weights
(``model.polyak_update(dqn_tau, vec_dqn_tau)`` after each optimizer step, instead of torchrl's
``SoftUpdate``); the adapters hold no parameters.

:class:`MouseValueLoss` also takes torchrl ``DreamerV3ValueLoss``'s options (``value_loss``,
``discount_loss``, ``gamma``, ``num_value_bins``). With ``two_hot_space="raw"`` it encodes two-hot
targets like torchrl (linear interpolation between symexp-spaced raw bins) and gives
``DreamerV3ValueLoss``'s ``loss_value`` on the same predictions and ``lambda_target``; the
default ``"symlog"`` keeps MOUSE's (DreamerV3 reference code's) symlog-space interpolation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey

try:
    from torchrl.objectives import LossModule
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "mouse.losses.torchrl needs torchrl (an optional extra): pip install 'mouse[torchrl]' "
        "or pip install 'torchrl>=0.14'."
    ) from err

from mouse.losses import LOSSES, LossConfig, LossSpec

__all__ = [
    "TORCHRL_LOSSES",
    "MouseDqnLoss",
    "MouseLossModule",
    "MouseSpLoss",
    "MouseSvLoss",
    "MouseValueLoss",
    "MouseVecDqnLoss",
    "MouseVtraceLoss",
    "make_loss_module",
]

Fields = tuple[tuple[str, ...], tuple[str, ...]]  # (required, optional) accepted-key names

# fields that MOUSE reads as [B, S]; torchrl's [B, S, 1] is accepted and squeezed
_SCALAR_FIELDS = frozenset({"action", "reward", "done", "xformed_reward", "lambda_target"})


class MouseLossModule(LossModule):
    """Base of the adapters: ``forward(td)`` gathers the fields of :attr:`loss_name` from ``td``
    (under :attr:`tensor_keys`), splits them into the step stream and the model outputs
    (``LOSSES[loss_name].heads``), runs ``LOSSES[loss_name].compute`` with :attr:`cfg` and returns
    ``TensorDict(loss_<name>=..., <metrics>...)`` with ``batch_size=[]``.

    ``cfg`` is the loss's MOUSE config; ``**fields`` build one (``weight=1.0`` unless given) or, with
    ``cfg``, override its fields (``dataclasses.replace``). The input TensorDict's batch size is
    ``[B, S]``, or ``[]`` / ``[B]`` with ``[B, S, ...]`` entries (then ``[B, S]`` is read from them).
    """

    loss_name: ClassVar[str]

    @dataclass
    class _AcceptedKeys:
        pass

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys

    def __init__(self, cfg: LossConfig | None = None, **fields: Any) -> None:
        super().__init__()
        spec = self.spec
        if cfg is None:
            cfg = spec.config_cls(**{"weight": 1.0, **fields})
        elif not isinstance(cfg, spec.config_cls):
            raise TypeError(
                f"{type(self).__name__} needs a {spec.config_cls.__name__}, got {type(cfg).__name__}."
            )
        elif fields:
            cfg = dataclasses.replace(cfg, **fields)
        self.cfg = cfg
        self._set_in_keys()

    # -- keys ------------------------------------------------------------------------------------
    @property
    def spec(self) -> LossSpec:
        """The MOUSE registry entry this module runs."""
        return LOSSES[self.loss_name]

    def _fields(self, tensordict: TensorDictBase | None) -> Fields:
        """The accepted-key names this loss reads with :attr:`cfg` (``tensordict`` is None when
        listing every field it may read, e.g. for :attr:`in_keys`)."""
        raise NotImplementedError

    def _hint(self, field: str) -> str:
        return ""

    def _set_in_keys(self) -> None:
        required, optional = self._fields(None)
        self.in_keys = [getattr(self.tensor_keys, f) for f in (*required, *optional)]
        self.out_keys = [f"loss_{self.loss_name}"]

    def _forward_value_estimator_keys(self, **kwargs: Any) -> None:
        self._set_in_keys()  # no value estimator: set_keys only refreshes in_keys

    # -- forward -----------------------------------------------------------------------------------
    def _gather(self, tensordict: TensorDictBase) -> dict[str, torch.Tensor]:
        required, optional = self._fields(tensordict)
        found: dict[str, torch.Tensor] = {}
        missing: list[str] = []
        for field in (*required, *optional):
            key: NestedKey = getattr(self.tensor_keys, field)
            value = tensordict.get(key, None)
            if value is None:
                if field in required:
                    missing.append(field)
                continue
            if not isinstance(value, torch.Tensor):
                raise TypeError(
                    f"{type(self).__name__}: tensordict key {key!r} (field {field!r}) must be a tensor, "
                    f"got {type(value).__name__}."
                )
            found[field] = value
        if missing:
            lines = [f"{f!r} under key {getattr(self.tensor_keys, f)!r}{self._hint(f)}" for f in missing]
            present = sorted(str(k) for k in tensordict.keys(include_nested=True, leaves_only=True))
            raise KeyError(
                f"{type(self).__name__} ({self.loss_name} loss) is missing "
                + "; ".join(lines)
                + f". Present keys: {present}. Rename with "
                f"{type(self).__name__}.set_keys({missing[0]}=<key>) if the field is stored elsewhere."
            )
        return found

    def _batch_size(self, tensordict: TensorDictBase, found: Mapping[str, torch.Tensor]) -> torch.Size:
        if tensordict.batch_dims == 2:
            return tensordict.batch_size
        if tensordict.batch_dims > 2:
            raise ValueError(
                f"{type(self).__name__} needs a tensordict with batch_size [B, S] (or [] / [B] with "
                f"[B, S, ...] entries), got {list(tensordict.batch_size)}."
            )
        first = next(iter(found.values()))
        if first.dim() < 2 or first.shape[: tensordict.batch_dims] != tensordict.batch_size:
            raise ValueError(
                f"{type(self).__name__}: cannot read [B, S] from entries of shape {list(first.shape)} "
                f"in a tensordict of batch_size {list(tensordict.batch_size)}."
            )
        return first.shape[:2]

    def _is_scalar(self, field: str) -> bool:
        return field in _SCALAR_FIELDS

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        found = self._gather(tensordict)
        batch = self._batch_size(tensordict, found)
        heads = set(self.spec.heads)
        stream: dict[str, torch.Tensor] = {}
        out: dict[str, torch.Tensor] = {}
        for field, value in found.items():
            if self._is_scalar(field) and value.shape == (*batch, 1):
                value = value.squeeze(-1)
            (out if field in heads else stream)[field] = value
        loss, metrics = self.spec.compute(
            TensorDict(stream, batch_size=batch), TensorDict(out, batch_size=batch), self.cfg
        )
        values = torch.tensor(list(metrics.values()), dtype=loss.dtype, device=loss.device)
        return TensorDict(
            {f"loss_{self.loss_name}": loss, **dict(zip(metrics, values.unbind(0)))},
            batch_size=[],
        )

    def extra_repr(self) -> str:
        return f"cfg={self.cfg!r}"


class _TdLoss(MouseLossModule):
    """dqn / vec_dqn: the online and target heads, action, done and the TD reward column."""

    online: ClassVar[str]

    def _fields(self, tensordict: TensorDictBase | None) -> Fields:
        heads = (self.online, f"{self.online}_target")
        if tensordict is None:
            return (*heads, "action", "reward", "done"), ("xformed_reward",)
        reward = "xformed_reward" if self.cfg.use_xformed_reward else "reward"
        return (*heads, "action", reward, "done"), ()

    def _hint(self, field: str) -> str:
        if field.endswith("_target"):
            return " (the target head's output: run the model with compute_targets=True)"
        if field == "xformed_reward":
            return " (use_xformed_reward=True)"
        return ""


class MouseDqnLoss(_TdLoss):
    """``LOSSES["dqn"]`` (:class:`~mouse.losses.DqnLossConfig`); out: ``loss_dqn`` + ``dqn_*``."""

    loss_name = "dqn"
    online = "dqn"

    @dataclass
    class _AcceptedKeys:
        """Keys (MOUSE names by default): model outputs ``dqn``, ``dqn_target`` ``[B, S, A]``; step
        stream ``action``, ``reward``, ``done`` ``[B, S]``, ``xformed_reward`` (``use_xformed_reward``)."""

        dqn: NestedKey = "dqn"
        dqn_target: NestedKey = "dqn_target"
        action: NestedKey = "action"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        xformed_reward: NestedKey = "xformed_reward"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys


class MouseVecDqnLoss(_TdLoss):
    """``LOSSES["vec_dqn"]`` (:class:`~mouse.losses.VecDqnLossConfig`); out: ``loss_vec_dqn`` +
    ``vec_dqn_*``."""

    loss_name = "vec_dqn"
    online = "vec_dqn"

    @dataclass
    class _AcceptedKeys:
        """Keys: model outputs ``vec_dqn``, ``vec_dqn_target`` ``[B, S, A, D]``; step stream
        ``action``, ``reward``, ``done`` ``[B, S]``, ``xformed_reward`` (``use_xformed_reward``)."""

        vec_dqn: NestedKey = "vec_dqn"
        vec_dqn_target: NestedKey = "vec_dqn_target"
        action: NestedKey = "action"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        xformed_reward: NestedKey = "xformed_reward"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys


class MouseSpLoss(MouseLossModule):
    """``LOSSES["sp"]`` (:class:`~mouse.losses.SpLossConfig`); out: ``loss_sp`` + ``sp_*``."""

    loss_name = "sp"

    @dataclass
    class _AcceptedKeys:
        """Keys: model output ``sp`` ``[B, S, A]``; the teacher of ``cfg.target``: ``q_star`` or
        ``teacher_logits`` ``[B, S, A]``, or (``next_action``) ``action``, ``reward``, ``done``."""

        sp: NestedKey = "sp"
        q_star: NestedKey = "q_star"
        teacher_logits: NestedKey = "teacher_logits"
        action: NestedKey = "action"
        reward: NestedKey = "reward"
        done: NestedKey = "done"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys

    def _fields(self, tensordict: TensorDictBase | None) -> Fields:
        target = {
            "q_star": ("q_star",),
            "teacher": ("teacher_logits",),
            "next_action": ("action", "reward", "done"),
        }[self.cfg.target]
        return ("sp", *target), ()

    def _hint(self, field: str) -> str:
        return f" (SpLossConfig.target={self.cfg.target!r})" if field != "sp" else ""


class MouseSvLoss(MouseLossModule):
    """``LOSSES["sv"]`` (:class:`~mouse.losses.SvLossConfig`); out: ``loss_sv`` + ``sv_*``."""

    loss_name = "sv"

    @dataclass
    class _AcceptedKeys:
        """Keys: model output ``sv`` ``[B, S, A]``; step stream ``q_star`` ``[B, S, A]``."""

        sv: NestedKey = "sv"
        q_star: NestedKey = "q_star"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys

    def _fields(self, tensordict: TensorDictBase | None) -> Fields:
        return ("sv", "q_star"), ()


class MouseVtraceLoss(MouseLossModule):
    """``LOSSES["vtrace"]`` (:class:`~mouse.losses.VtraceLossConfig`); out: ``loss_vtrace`` +
    ``vtrace_*``."""

    loss_name = "vtrace"

    @dataclass
    class _AcceptedKeys:
        """Keys: model outputs ``sp`` (policy logits) ``[B, S, A]`` and ``value`` ``[B, S]``; step
        stream ``behavior_logits`` ``[B, S, A]``, ``action``, ``reward``, ``done`` ``[B, S]``."""

        sp: NestedKey = "sp"
        value: NestedKey = "value"
        behavior_logits: NestedKey = "behavior_logits"
        action: NestedKey = "action"
        reward: NestedKey = "reward"
        done: NestedKey = "done"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys

    def _fields(self, tensordict: TensorDictBase | None) -> Fields:
        return ("sp", "value", "behavior_logits", "action", "reward", "done"), ()

    def _is_scalar(self, field: str) -> bool:
        return field == "value" or super()._is_scalar(field)


class MouseValueLoss(MouseLossModule):
    """``LOSSES["value"]`` (:class:`~mouse.losses.ValueLossConfig`); out: ``loss_value`` +
    ``value_*``.

    Besides the config fields it takes torchrl ``DreamerV3ValueLoss``'s names: ``value_loss``
    (``"symlog_mse"`` | ``"two_hot"``, the config's ``loss_type``), ``discount_loss``, ``gamma`` and
    ``num_value_bins`` (``num_bins``); ``two_hot_space="raw"`` encodes two-hot targets as torchrl
    does. With ``lambda_target`` in the input, ``loss_value`` is torchrl's: the mean over records of
    ``gamma^t`` (``discount_loss``, ``t`` the window position) times ``(symlog v - symlog R)^2`` or
    the two-hot cross-entropy, except that MOUSE leaves out records with ``done != 0`` (no action is
    taken there) where torchrl averages over every record. Without ``lambda_target`` the targets are
    MOUSE's lambda-returns over the window (``lambda_``; needs ``action``, ``reward``, ``done``).
    """

    loss_name = "value"

    @dataclass
    class _AcceptedKeys:
        """Keys: model output ``value`` (``[B, S]`` or ``[B, S, 1]`` scalars for ``symlog_mse``,
        ``[B, S, num_bins]`` logits for ``two_hot``; torchrl names them ``state_value`` and
        ``state_value_logits``); step stream ``done`` and either ``lambda_target`` (``[B, S]`` or
        ``[B, S, 1]``) or ``action`` + ``reward``."""

        value: NestedKey = "value"
        lambda_target: NestedKey = "lambda_target"
        action: NestedKey = "action"
        reward: NestedKey = "reward"
        done: NestedKey = "done"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys

    _TORCHRL_NAMES: ClassVar[dict[str, str]] = {"value_loss": "loss_type", "num_value_bins": "num_bins"}

    def __init__(self, cfg: LossConfig | None = None, **fields: Any) -> None:
        for torchrl_name, name in self._TORCHRL_NAMES.items():
            if torchrl_name in fields:
                if name in fields:
                    raise TypeError(f"MouseValueLoss: give {torchrl_name!r} or {name!r}, not both.")
                fields[name] = fields.pop(torchrl_name)
        super().__init__(cfg, **fields)

    def _fields(self, tensordict: TensorDictBase | None) -> Fields:
        if tensordict is None:
            return ("value", "done"), ("lambda_target", "action", "reward")
        if tensordict.get(self.tensor_keys.lambda_target, None) is not None:
            return ("value", "lambda_target", "done"), ()
        return ("value", "action", "reward", "done"), ()

    def _hint(self, field: str) -> str:
        if field in ("action", "reward"):
            return f" (or give lambda-returns under {self.tensor_keys.lambda_target!r})"
        if field == "value":
            kind = "logits [B, S, num_bins]" if self.cfg.loss_type == "two_hot" else "scalars [B, S]"
            return f" (the critic's {kind})"
        return ""

    def _is_scalar(self, field: str) -> bool:
        return (field == "value" and self.cfg.loss_type == "symlog_mse") or super()._is_scalar(field)


TORCHRL_LOSSES: dict[str, type[MouseLossModule]] = {
    cls.loss_name: cls
    for cls in (MouseDqnLoss, MouseVecDqnLoss, MouseSpLoss, MouseSvLoss, MouseVtraceLoss, MouseValueLoss)
}
"""The adapter class of each name in :data:`mouse.losses.LOSSES`."""


def make_loss_module(name: str, cfg: LossConfig | None = None, **fields: Any) -> MouseLossModule:
    """The adapter of ``LOSSES[name]``: ``make_loss_module("dqn", gamma=0.9)``."""
    if name not in TORCHRL_LOSSES:
        raise KeyError(f"no MOUSE loss {name!r}; known: {sorted(TORCHRL_LOSSES)}.")
    return TORCHRL_LOSSES[name](cfg, **fields)
