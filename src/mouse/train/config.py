"""Structured config of ``mouse-train``: one dataclass per config group, registered with Hydra.

The primary config ``conf/train.yaml`` starts its defaults list with ``train_schema`` (the
:class:`TrainConfig` node stored here), so every group YAML and every command-line override is merged
into a typed node: a misspelt key (``loss.dqn.wieght=1``) or a wrong type fails at start, naming the
full key. Cross-field checks (:func:`validate_config`) run before any heavy work.

Loss nodes mirror the losses' own frozen config dataclasses (``mouse.losses.LOSSES``) field by field
(OmegaConf cannot merge into frozen dataclasses); :func:`loss_configs` builds the real frozen configs
(whose ``__post_init__`` validates the values) from the composed node.

A loss with ``weight > 0`` whose head is disabled gets that head enabled automatically with
``heads.auto_num_layers`` layers (:func:`enable_loss_heads` prints one line per head it enables), so
``mouse-train loss.dqn.weight=1`` works as typed.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from mouse.data.augment import AugmentConfig
from mouse.data.config import CollectConfig
from mouse.losses import LOSSES

__all__ = [
    "BackboneConfig",
    "HeadConfig",
    "VecDqnHeadConfig",
    "ValueHeadConfig",
    "HeadsConfig",
    "EmbeddingConfig",
    "ModelConfig",
    "DataConfig",
    "OptimConfig",
    "LoggerConfig",
    "HubConfig",
    "TrainerConfig",
    "TrainConfig",
    "Precision",
    "LoggerKind",
    "WandbMode",
    "Schedule",
    "HEAD_NAMES",
    "register_configs",
    "run_dir_resolver",
    "validate_config",
    "enable_loss_heads",
    "active_losses",
    "augment_config",
    "loss_configs",
    "backbone_kwargs",
    "head_kwargs",
    "embedding_overrides",
    "to_plain_dict",
]

# Optional[...] (not ``X | None``) below: OmegaConf reads these annotations at runtime on Python 3.11.
# ruff: noqa: UP007, UP045


class Precision(StrEnum):
    """Autocast precision of the forward pass: fp32 (no autocast) or bf16 (autocast, CPU or CUDA)."""

    fp32 = "fp32"
    bf16 = "bf16"


class LoggerKind(StrEnum):
    wandb = "wandb"
    tensorboard = "tensorboard"
    none = "none"


class WandbMode(StrEnum):
    offline = "offline"
    online = "online"
    disabled = "disabled"


class Schedule(StrEnum):
    cosine = "cosine"
    constant = "constant"


# ------------------------------------------------------------------------------------------------ model
@dataclass
class BackboneConfig:
    """transformers config names of the backbone (``hidden_size`` is ``model.hidden_dim``).

    All None (``backbone=none``) gives an empty ``backbone_kwargs``: no sequence model. A set
    ``head_dim`` selects Qwen3, otherwise Llama (the rule ``mouse.models.load_model`` applies).
    """

    num_hidden_layers: Optional[int] = None
    num_attention_heads: Optional[int] = None
    num_key_value_heads: Optional[int] = None
    intermediate_size: Optional[int] = None
    head_dim: Optional[int] = None
    rope_theta: Optional[float] = None
    max_position_embeddings: Optional[int] = None
    rms_norm_eps: Optional[float] = None
    attention_dropout: Optional[float] = None


@dataclass
class HeadConfig:
    """A SwiGLU head; ``num_layers: 0`` disables it. None fields keep the model's defaults."""

    num_layers: int = 0
    hidden_mult: Optional[float] = None
    out_scale: Optional[float] = None
    zero_init: Optional[bool] = None


@dataclass
class VecDqnHeadConfig(HeadConfig):
    vec_dim: Optional[int] = None  # per-action vector width (even)


@dataclass
class ValueHeadConfig(HeadConfig):
    num_bins: Optional[int] = None  # 0 = scalar value, >= 2 = two-hot bins


HEAD_NAMES = ("sp", "dqn", "sv", "vec_dqn", "value")


@dataclass
class HeadsConfig:
    """Output heads (``heads`` group) and which one acts (``action_head``: None = automatic)."""

    sp: HeadConfig = field(default_factory=HeadConfig)
    dqn: HeadConfig = field(default_factory=HeadConfig)
    sv: HeadConfig = field(default_factory=HeadConfig)
    vec_dqn: VecDqnHeadConfig = field(default_factory=VecDqnHeadConfig)
    value: ValueHeadConfig = field(default_factory=ValueHeadConfig)
    action_head: Optional[str] = None
    auto_num_layers: int = 2  # layers of a head enabled because a loss with weight > 0 reads it


@dataclass
class EmbeddingConfig:
    """Overrides of the ``StepEmbedder`` kwargs; None keeps the value from the dataset spec."""

    max_num_actions: Optional[int] = None
    include_action_token: Optional[bool] = None
    include_reward_token: Optional[bool] = None
    include_done_token: Optional[bool] = None
    include_time_token: Optional[bool] = None
    max_num_time_steps: Optional[int] = None
    include_obs_discrete: Optional[bool] = None
    max_num_obs_discrete: Optional[int] = None
    include_obs_continuous: Optional[bool] = None
    max_num_obs_continuous: Optional[int] = None
    obs_continuous_encoder: Optional[str] = None
    include_obs_image: Optional[bool] = None
    max_num_obs_image: Optional[int] = None
    token_data_len: Optional[int] = None
    num_compute_tokens: Optional[int] = None
    concat_modalities: Optional[bool] = None
    std: Optional[float] = None
    fourier_in_min: Optional[float] = None
    fourier_in_max: Optional[float] = None


@dataclass
class ModelConfig:
    hidden_dim: int = 128
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)


# ------------------------------------------------------------------------------------------------ losses
_OMEGACONF_TYPES = (int, float, bool, str)


def _schema_type(tp: Any) -> Any:
    """The OmegaConf-compatible annotation for a loss config field type (plain types pass through)."""
    if tp in _OMEGACONF_TYPES:
        return tp
    args = typing.get_args(tp)
    if typing.get_origin(tp) is typing.Literal:  # a choice: typed as its values' type, checked by the loss
        kinds = {type(a) for a in args}
        return kinds.pop() if len(kinds) == 1 and kinds <= set(_OMEGACONF_TYPES) else Any
    if type(None) in args and len(args) == 2:
        inner = next(a for a in args if a is not type(None))
        if inner in _OMEGACONF_TYPES:
            return Optional[inner]
    return Any


def _mutable_mirror(cls: type) -> type:
    """A mutable dataclass with the fields, types and defaults of the frozen dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    fields = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            spec = field(default=f.default)
        elif f.default_factory is not dataclasses.MISSING:
            spec = field(default_factory=f.default_factory)
        else:
            spec = field()
        fields.append((f.name, _schema_type(hints[f.name]), spec))
    node = dataclasses.make_dataclass(f"{cls.__name__}Node", fields)
    node.__module__ = __name__
    return node


LOSS_NODES: dict[str, type] = {name: _mutable_mirror(spec.config_cls) for name, spec in LOSSES.items()}
LossesConfig = dataclasses.make_dataclass(
    "LossesConfig", [(name, node, field(default_factory=node)) for name, node in LOSS_NODES.items()]
)
LossesConfig.__module__ = __name__
LossesConfig.__doc__ = "One node per loss (``loss.<name>.<field>``); a loss counts when its weight > 0."


# ------------------------------------------------------------------------------------------------ others
AugmentNode = _mutable_mirror(AugmentConfig)


@dataclass
class DataConfig:
    """Training data: a dataset folder / Hub dataset id (``path``), or ``collect`` settings that
    ``mouse.data.ensure_dataset`` collects once and caches (used when ``path`` is None)."""

    path: Optional[str] = None
    collect: Optional[CollectConfig] = None  # mouse-collect settings (task, policy, num_tasks, ...)
    cache_dir: Optional[str] = None  # None = $MOUSE_CACHE_DIR or ~/.cache/mouse/datasets
    sampling: str = "random"
    prefetch: int = 2  # batches built ahead in a thread; 0 = none
    augment: AugmentNode = field(default_factory=AugmentNode)  # mouse.data.AugmentConfig fields (all off)


@dataclass
class OptimConfig:
    """AdamW with linear warmup then cosine decay to ``min_lr_ratio * lr`` at ``trainer.steps``."""

    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    warmup_steps: int = 50
    schedule: Schedule = Schedule.cosine
    min_lr_ratio: float = 0.1


@dataclass
class LoggerConfig:
    """Metrics backend; W&B runs offline by default (files under ``<run_dir>/wandb``)."""

    kind: LoggerKind = LoggerKind.wandb
    project: str = "mouse"
    entity: Optional[str] = None
    mode: WandbMode = WandbMode.offline
    group: Optional[str] = None  # None: the sweep folder name in a multirun, else no group
    name: Optional[str] = None
    tags: list[str] = field(default_factory=list)


@dataclass
class HubConfig:
    """Hugging Face Hub push at the end of training when ``repo_id`` is set. The token comes from the
    usual HF environment/login (``HF_TOKEN``, ``hf auth login``), never from the config."""

    repo_id: Optional[str] = None
    private: bool = True
    revision: Optional[str] = None  # branch to push to (None = main)
    push_every_checkpoint: bool = False
    commit_message: str = "Upload MOUSE model"


@dataclass
class TrainerConfig:
    steps: int = 1000
    batch_size: int = 32
    seq_len: int = 200  # window length in steps (records)
    grad_clip: float = 1.0  # max global grad norm; 0 = off
    log_every: int = 10
    eval_every: int = 0  # 0 = evaluate only at the end
    eval_num_tasks: int = 16  # held-out tasks per evaluation; 0 = no evaluation
    eval_episodes: int = 8
    eval_temperature: float = 1.0
    checkpoint_every: int = 0  # 0 = only at the end
    keep_last: int = 3  # checkpoints kept; 0 = all
    seed: int = 0
    device: str = "auto"  # auto = cuda if available else cpu
    precision: Precision = Precision.fp32
    resume: bool = False  # continue from <run_dir>/checkpoints/last


@dataclass
class TrainConfig:
    """The whole ``mouse-train`` config (``mouse-train --cfg job`` prints it)."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    loss: LossesConfig = field(default_factory=LossesConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    hub: HubConfig = field(default_factory=HubConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


def run_dir_resolver(default: str) -> str:
    """``${mouse_run_dir:<default>}``: the run folder every process of one job agrees on.

    A single process gets ``default`` (``outputs/<date>/<time>``). Under ``torchrun``
    (``WORLD_SIZE > 1``) each rank would read its own clock, so all ranks use ``$MOUSE_RUN_DIR`` if
    set, else ``outputs/torchrun/<TORCHELASTIC_RUN_ID>`` (the same on every rank of one launch).
    """
    import os

    from mouse.train.dist import get_world_size

    if get_world_size() <= 1:
        return default
    if os.environ.get("MOUSE_RUN_DIR"):
        return os.environ["MOUSE_RUN_DIR"]
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "none")
    if run_id in ("", "none"):
        raise ValueError(
            "under torchrun every rank must resolve the same run directory: pass hydra.run.dir=<dir>, "
            "set MOUSE_RUN_DIR, or launch with torchrun --rdzv-id=<id> / --standalone"
        )
    return f"outputs/torchrun/{run_id}"


def output_subdir_resolver(default: str) -> str | None:
    """``${mouse_output_subdir:.hydra}``: Hydra saves its config files on rank 0 only."""
    from mouse.train.dist import is_main_process

    return default if is_main_process() else None


def register_configs() -> None:
    """Store :class:`TrainConfig` as ``train_schema`` in Hydra's ConfigStore and register the
    ``mouse_run_dir`` / ``mouse_output_subdir`` resolvers ``conf/train.yaml`` uses (idempotent)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
    for name, fn in (("mouse_run_dir", run_dir_resolver), ("mouse_output_subdir", output_subdir_resolver)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn, use_cache=True)


# ------------------------------------------------------------------------------------------------ helpers
def to_plain_dict(node: Any) -> dict[str, Any]:
    """A resolved config node as plain Python data (enums as their names) for JSON/W&B."""
    return OmegaConf.to_container(node, resolve=True, enum_to_str=True)  # type: ignore[return-value]


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def backbone_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """``Model(backbone_kwargs=...)``: the set backbone fields ({} for ``backbone=none``)."""
    return _drop_none(to_plain_dict(cfg.backbone))


def head_kwargs(cfg: DictConfig, head: str) -> dict[str, Any]:
    """``Model(<head>_head_kwargs=...)``: {} when the head is disabled, else its set fields."""
    node = to_plain_dict(cfg.heads[head])
    if int(node["num_layers"]) <= 0:
        return {}
    return _drop_none(node)


def embedding_overrides(cfg: DictConfig) -> dict[str, Any]:
    """The ``model.embedding`` fields that are set (merged over the dataset spec's kwargs)."""
    return _drop_none(to_plain_dict(cfg.model.embedding))


def active_losses(cfg: DictConfig) -> list[str]:
    """Names of the losses with ``weight > 0``, in ``LOSSES`` order."""
    return [name for name in LOSSES if float(cfg.loss[name].weight) > 0]


def loss_configs(cfg: DictConfig, active_only: bool = True) -> dict[str, Any]:
    """The losses' frozen config objects (validated by their ``__post_init__``) for every active loss
    (every loss with ``active_only=False``)."""
    out = {}
    for name in active_losses(cfg) if active_only else LOSSES:
        spec = LOSSES[name]
        try:
            out[name] = spec.config_cls(**to_plain_dict(cfg.loss[name]))
        except (TypeError, ValueError) as e:
            raise ValueError(f"loss.{name}: {e}") from e
    return out


def augment_config(cfg: DictConfig) -> AugmentConfig:
    """``data.augment`` as the data package's frozen (validated) ``AugmentConfig``."""
    try:
        return AugmentConfig(**to_plain_dict(cfg.data.augment))
    except ValueError as e:
        raise ValueError(f"data.augment: {e}") from e


def enable_loss_heads(cfg: DictConfig) -> list[str]:
    """Enable (in place) every head an active loss reads but ``heads`` leaves disabled.

    Returns one human-readable line per head enabled (``heads.auto_num_layers`` layers each).
    """
    notes = []
    for name in active_losses(cfg):
        for head in dict.fromkeys(key.removesuffix("_target") for key in LOSSES[name].heads):
            if head not in HEAD_NAMES:
                raise KeyError(f"loss.{name} reads head {head!r}, which the heads config does not know")
            if int(cfg.heads[head].num_layers) <= 0:
                cfg.heads[head].num_layers = int(cfg.heads.auto_num_layers)
                notes.append(
                    f"heads.{head}.num_layers={cfg.heads.auto_num_layers}: enabled because "
                    f"loss.{name}.weight={cfg.loss[name].weight} reads the {head} head"
                )
    return notes


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def validate_config(cfg: DictConfig) -> None:
    """Cross-field checks run before any heavy work; each failure names the key and the fix.

    (Types and key names were already checked by the structured schema; resume is checked by the
    trainer, which knows the run directory.)
    """
    t = cfg.trainer
    _check(t.steps >= 1, f"trainer.steps={t.steps} must be >= 1")
    _check(t.batch_size >= 1, f"trainer.batch_size={t.batch_size} must be >= 1")
    _check(t.seq_len >= 2, f"trainer.seq_len={t.seq_len} must be >= 2 (TD losses pair step t with t+1)")
    _check(t.grad_clip >= 0, f"trainer.grad_clip={t.grad_clip} must be >= 0 (0 turns clipping off)")
    _check(t.log_every >= 1, f"trainer.log_every={t.log_every} must be >= 1")
    for key in ("eval_every", "eval_num_tasks", "checkpoint_every", "keep_last"):
        _check(t[key] >= 0, f"trainer.{key}={t[key]} must be >= 0")
    _check(t.eval_episodes >= 1, f"trainer.eval_episodes={t.eval_episodes} must be >= 1")
    _check(t.eval_temperature >= 0, f"trainer.eval_temperature={t.eval_temperature} must be >= 0")
    device = str(t.device)
    _check(
        device in ("auto", "cpu", "mps") or device == "cuda" or device.startswith("cuda:"),
        f"trainer.device={device!r} is not a device; use auto, cpu, cuda, cuda:N or mps",
    )
    o = cfg.optim
    _check(o.name == "adamw", f"optim.name={o.name!r} is unknown; the only optimizer is 'adamw'")
    _check(o.lr > 0, f"optim.lr={o.lr} must be > 0")
    _check(o.weight_decay >= 0, f"optim.weight_decay={o.weight_decay} must be >= 0")
    _check(
        0 <= o.beta1 < 1 and 0 <= o.beta2 < 1, f"optim.beta1/beta2=({o.beta1}, {o.beta2}) must be in [0, 1)"
    )
    _check(o.eps > 0, f"optim.eps={o.eps} must be > 0")
    _check(o.warmup_steps >= 0, f"optim.warmup_steps={o.warmup_steps} must be >= 0")
    _check(0 <= o.min_lr_ratio <= 1, f"optim.min_lr_ratio={o.min_lr_ratio} must be in [0, 1]")
    _check(cfg.model.hidden_dim >= 1, f"model.hidden_dim={cfg.model.hidden_dim} must be >= 1")
    _check(cfg.heads.auto_num_layers >= 1, f"heads.auto_num_layers={cfg.heads.auto_num_layers} must be >= 1")
    for head in HEAD_NAMES:
        n = cfg.heads[head].num_layers
        _check(n >= 0, f"heads.{head}.num_layers={n} must be >= 0 (0 disables the head)")
    action_head = cfg.heads.action_head
    _check(
        action_head is None or action_head in HEAD_NAMES,
        f"heads.action_head={action_head!r} is unknown; use null (automatic) or one of {list(HEAD_NAMES)}",
    )
    if action_head is not None:
        _check(
            cfg.heads[action_head].num_layers > 0,
            f"heads.action_head={action_head!r} but that head is disabled; set heads.{action_head}.num_layers > 0",
        )
    if not active_losses(cfg):
        raise ValueError(
            f"every loss weight is 0: set at least one of {[f'loss.{n}.weight' for n in LOSSES]} > 0"
        )
    loss_configs(cfg, active_only=False)  # the losses' own __post_init__ checks, weight 0 included
    _check(
        cfg.data.path is not None or cfg.data.collect is not None,
        "data.path and data.collect are both null: choose a data config (data=darkroom) or set data.path",
    )
    if cfg.data.path is None:
        from mouse.data.config import collect_config

        try:
            collect_config(cfg.data.collect)
        except ValueError as e:
            raise ValueError(f"data.collect: {e}") from e
    augment_config(cfg)
    _check(cfg.data.prefetch >= 0, f"data.prefetch={cfg.data.prefetch} must be >= 0")
    if cfg.hub.push_every_checkpoint:
        _check(cfg.hub.repo_id is not None, "hub.push_every_checkpoint=true needs hub.repo_id=<user>/<model>")
    if cfg.hub.repo_id is not None:
        _check(
            str(cfg.hub.repo_id).count("/") <= 1 and str(cfg.hub.repo_id).strip() != "",
            f"hub.repo_id={cfg.hub.repo_id!r} must look like 'user/model'",
        )
