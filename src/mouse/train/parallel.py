"""How the training forward runs over the ``torchrun`` ranks: DDP, FSDP2, or the model itself.

* one process: nothing is wrapped;
* ``trainer.strategy=ddp``: :class:`torch.nn.parallel.DistributedDataParallel` (every rank holds the
  whole model, gradients are averaged in the backward);
* ``trainer.strategy=fsdp``: FSDP2 (:func:`torch.distributed.fsdp.fully_shard`) on every backbone
  layer and on the root, so parameters, gradients and optimizer moments are sharded over the ranks.
  The model is sharded in place (its parameters become ``DTensor`` shards) and runs the
  transformers forward (each layer's own ``forward`` gathers its weights; the fused fast path reads
  every layer's weights at once).

The Polyak target heads hold ``requires_grad=False`` parameters: DDP leaves them out of its gradient
buckets, FSDP shards them like the rest, and the elementwise update works on local shards, so the
targets stay identical on every rank. Checkpoints are always consolidated: :meth:`Parallel.full_model`
gathers the full weights into a plain model on rank 0 (what ``save_pretrained`` and the evaluation
use), :meth:`Parallel.optimizer_state` the full optimizer state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mouse.losses import LOSSES
from mouse.train.dist import is_distributed, is_main_process

__all__ = ["Parallel", "freeze_unused_heads", "unused_heads", "wrap_model"]


def unused_heads(model: nn.Module, loss_names: Iterable[str]) -> list[str]:
    """The model's enabled heads that no loss in ``loss_names`` reads (their parameters get no gradient)."""
    read = {key.removesuffix("_target") for name in loss_names for key in LOSSES[name].heads}
    return [head for head in model.enabled_heads if head not in read]


def freeze_unused_heads(model: nn.Module, loss_names: Iterable[str]) -> list[str]:
    """Set ``requires_grad=False`` on the :func:`unused_heads` (returned): they would get no gradient
    anyway, and DDP expects one for every trainable parameter (``find_unused_parameters`` would search
    the graph at every step, and cannot see into the model's TensorDict output)."""
    heads = unused_heads(model, loss_names)
    for head in heads:
        getattr(model, f"{head}_head").requires_grad_(False)
    return heads


def _fsdp_units(model: nn.Module) -> list[nn.Module]:
    """The submodules sharded as their own FSDP units: the backbone's decoder layers (none for
    ``backbone=none``)."""
    transformer = getattr(model, "transformer", None)
    return list(transformer.layers) if transformer is not None else []


class Parallel:
    """The training-time view of ``model``: :attr:`module` is what the training forward calls.

    ``strategy`` is ``"single"`` (one process), ``"ddp"`` or ``"fsdp"``; :attr:`model` stays the MOUSE
    model (under FSDP it is sharded in place; :meth:`full_model` gives a plain copy).
    """

    def __init__(self, model: nn.Module, module: nn.Module, strategy: str, model_cls: type) -> None:
        self.model, self.module, self.strategy, self.model_cls = model, module, strategy, model_cls

    @property
    def fsdp(self) -> bool:
        return self.strategy == "fsdp"

    # ------------------------------------------------------------------------------------- training
    def grad_sync(self, sync: bool) -> contextlib.AbstractContextManager:
        """Context for one micro-batch's forward + backward: DDP skips its all-reduce unless ``sync``
        (``no_sync``: gradients accumulate locally until the last micro-batch). FSDP reduce-scatters
        every micro-batch (the gradients stay sharded)."""
        if self.strategy == "ddp" and not sync:
            return self.module.no_sync()
        return contextlib.nullcontext()

    def clip_grad_norm(self, max_norm: float) -> float:
        """Clip the global gradient norm of the trainable parameters to ``max_norm``; return the norm
        before clipping (the same on every rank)."""
        from torch.distributed.tensor import DTensor

        params = [p for p in self.model.parameters() if p.requires_grad]
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        if isinstance(norm, DTensor):  # FSDP: the norm of the local shards, reduced over the ranks
            norm = norm.full_tensor()
        return float(norm)

    # ------------------------------------------------------------------------------------- state
    def full_model(self) -> nn.Module | None:
        """The model with its full weights on rank 0, or None on the other ranks.

        One process and DDP: the model itself (on every rank). FSDP: a collective every rank must
        join; rank 0 gets a new, plain model of the original class on the CPU.
        """
        if not self.fsdp:
            return self.model
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        state = get_model_state_dict(self.model, options=options)
        if not is_main_process():
            return None
        plain = self.model_cls(**self.model.config)
        plain.load_state_dict(state, strict=True)
        return plain

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """What the checkpoint stores for ``optimizer``. FSDP: the full state keyed by parameter name
        (a collective every rank must join; the other ranks get ``{}``); else ``optimizer.state_dict()``."""
        if not self.fsdp:
            return optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_optimizer_state_dict(self.model, optimizer, options=options)

    def load_weights(self, path: str | Path, device: torch.device) -> None:
        """Load a consolidated ``model.safetensors`` (strict) on every rank."""
        from safetensors.torch import load_file, load_model

        if not self.fsdp:
            load_model(self.model, str(path), strict=True, device=str(device))
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        state = load_file(str(path))  # every rank reads the file and keeps its own shards
        set_model_state_dict(self.model, state, options=StateDictOptions(full_state_dict=True, strict=True))

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        """Restore what :meth:`optimizer_state` stored, under either strategy (a DDP checkpoint resumes
        under FSDP and the other way round)."""
        by_name = bool(state.get("state")) and all(isinstance(k, str) for k in state["state"])
        by_name = by_name or any(isinstance(p, str) for g in state["param_groups"] for p in g["params"])
        if not self.fsdp:
            optimizer.load_state_dict(_to_ids(self.model, optimizer, state) if by_name else state)
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        state = state if by_name else _to_names(self.model, optimizer, state)
        set_optimizer_state_dict(self.model, optimizer, state, options=StateDictOptions(full_state_dict=True))


def _param_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The parameter name of each optimizer parameter, in ``optimizer.state_dict()`` id order."""
    names = {id(p): name for name, p in model.named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]


def _to_names(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> dict[str, Any]:
    """``optimizer.state_dict()`` (integer ids) → the same keyed by parameter name."""
    names = _param_names(model, optimizer)
    return {
        "state": {names[i]: v for i, v in state["state"].items()},
        "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]],
    }


def _to_ids(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`_to_names`."""
    ids = {name: i for i, name in enumerate(_param_names(model, optimizer))}
    return {
        "state": {ids[k]: v for k, v in state["state"].items()},
        "param_groups": [{**g, "params": [ids[p] for p in g["params"]]} for g in state["param_groups"]],
    }


def wrap_model(model: nn.Module, strategy: str, device: torch.device) -> Parallel:
    """Prepare ``model`` (already on ``device``) for training under ``strategy`` (``"ddp"`` |
    ``"fsdp"``; ignored for one process). Build the optimizer afterwards: FSDP replaces the
    parameters by their shards. DDP needs a gradient for every trainable parameter in every step
    (:func:`freeze_unused_heads` first).
    """
    model_cls = type(model)
    if not is_distributed():
        return Parallel(model, model, "single", model_cls)
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        module = DistributedDataParallel(
            model,
            device_ids=[device.index or 0] if device.type == "cuda" else None,
            broadcast_buffers=False,  # no buffer changes in training (no batch statistics)
        )
        return Parallel(model, module, "ddp", model_cls)
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        units = _fsdp_units(model)
        if units:
            model.use_fast_path = False  # per-layer unsharding needs each layer's own forward
        for unit in units:
            fully_shard(unit)
        fully_shard(model)
        return Parallel(model, model, "fsdp", model_cls)
    raise ValueError(f"trainer.strategy={strategy!r} is unknown; use ddp or fsdp")
