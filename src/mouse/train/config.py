"""Typed config of ``mouse-train``: one dataclass per config group, registered with Hydra.

The primary config ``conf/train.yaml`` starts its defaults list with ``train_schema`` (the
:class:`TrainConfig` node stored here), so every group YAML and every command-line override is merged
into a typed node: a misspelt key (``loss.dqn.wieght=1``), a wrong type or an unknown enum value
(``optim.schedule=linear``) fails at compose time, naming the full key and the choices. ``mouse-train``
then converts the composed node once (``OmegaConf.to_object``) into a :class:`TrainConfig` instance;
everything below ``mouse.cli`` takes that typed object. Cross-field checks (:func:`validate_config`)
run before any heavy work.

Loss nodes mirror the losses' own frozen config dataclasses (``mouse.losses.LOSSES``) field by field
(OmegaConf cannot merge into frozen dataclasses), with the losses' string choices typed as enums;
:func:`loss_configs` builds the real frozen configs (whose ``__post_init__`` validates the values).

A loss with ``weight > 0`` whose head is disabled gets that head enabled automatically with
``heads.auto_num_layers`` layers (:func:`enable_loss_heads` prints one line per head it enables), so
``mouse-train loss.dqn.weight=1`` works as typed. Each loss with a target head owns its Polyak ``tau``
(:func:`polyak_taus`): only the targets of active losses are updated.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, Optional

from omegaconf import OmegaConf

from mouse.data.augment import AugmentConfig
from mouse.data.config import CollectConfig, Sampling, collect_config
from mouse.device import DeviceKind, parse_device
from mouse.hub import check_push_target
from mouse.losses import LOSSES
from mouse.losses.sp import SP_LOSS_TYPES, SP_TARGETS
from mouse.losses.sv import SV_LOSS_TYPES
from mouse.losses.value import VALUE_LOSS_TYPES
from mouse.train.dist import get_world_size, is_main_process

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
    "ActionHead",
    "DeviceKind",
    "OptimizerName",
    "Precision",
    "Strategy",
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
    "polyak_taus",
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


class Strategy(StrEnum):
    """How ``torchrun`` ranks share the model (``trainer.strategy``; one process ignores it)."""

    ddp = "ddp"  # DistributedDataParallel: every rank holds the whole model, gradients are averaged
    fsdp = "fsdp"  # FSDP2 fully_shard: parameters, gradients and optimizer state sharded over ranks


class LoggerKind(StrEnum):
    wandb = "wandb"
    tensorboard = "tensorboard"
    none = "none"


class WandbMode(StrEnum):
    offline = "offline"
    online = "online"
    disabled = "disabled"


RESUME_MODES = ("false", "true", "auto")


class Schedule(StrEnum):
    cosine = "cosine"
    constant = "constant"


class OptimizerName(StrEnum):
    adamw = "adamw"


class ActionHead(StrEnum):
    """The head whose output chooses actions (``heads.action_head``; null = automatic)."""

    sp = "sp"
    dqn = "dqn"
    sv = "sv"
    vec_dqn = "vec_dqn"
    value = "value"


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
    action_head: Optional[ActionHead] = None
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
    # linear | cells | conv; None: cells when the dataset gives a [H, W, C] grid shape, else linear
    obs_image_encoder: Optional[str] = None
    obs_image_vocab: Optional[int] = None  # values per image channel (cells / conv); None: 256 (any uint8)
    obs_image_cell_dim: Optional[int] = None  # width of a cell's vector (cells / conv)
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
    # recompute each backbone layer's activations in the backward (less memory, ~1 more forward);
    # training only: evaluation and KV-cache decoding run the layers as usual
    gradient_checkpointing: bool = False


# ------------------------------------------------------------------------------------------------ losses
_OMEGACONF_TYPES = (int, float, bool, str)


def _choice_enum(name: str, values: tuple[str, ...]) -> type[StrEnum]:
    """A StrEnum whose member names are ``values`` themselves (OmegaConf matches enum values by name)."""
    enum = StrEnum(name, [(v, v) for v in values])
    enum.__module__ = __name__
    return enum


SpLossType = _choice_enum("SpLossType", SP_LOSS_TYPES)
SpTarget = _choice_enum("SpTarget", SP_TARGETS)
SvLossType = _choice_enum("SvLossType", SV_LOSS_TYPES)
ValueLossType = _choice_enum("ValueLossType", VALUE_LOSS_TYPES)
# (loss, field) -> the enum that types it in the schema (the loss itself takes the plain string)
_LOSS_CHOICES: dict[tuple[str, str], type[StrEnum]] = {
    ("sp", "loss_type"): SpLossType,
    ("sp", "target"): SpTarget,
    ("sv", "loss_type"): SvLossType,
    ("value", "loss_type"): ValueLossType,
}


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


def _mutable_mirror(cls: type, choices: dict[str, type[StrEnum]] | None = None) -> type:
    """A mutable dataclass with the fields, types and defaults of the frozen dataclass ``cls``;
    fields named in ``choices`` are typed (and defaulted) as that enum."""
    hints = typing.get_type_hints(cls)
    choices = choices or {}
    fields = []
    for f in dataclasses.fields(cls):
        tp = choices.get(f.name) or _schema_type(hints[f.name])
        if f.default is not dataclasses.MISSING:
            default = choices[f.name](f.default) if f.name in choices else f.default
            spec = field(default=default)
        elif f.default_factory is not dataclasses.MISSING:
            spec = field(default_factory=f.default_factory)
        else:
            spec = field()
        fields.append((f.name, tp, spec))
    node = dataclasses.make_dataclass(f"{cls.__name__}Node", fields)
    node.__module__ = __name__
    return node


LOSS_NODES: dict[str, type] = {
    name: _mutable_mirror(spec.config_cls, {f: e for (loss, f), e in _LOSS_CHOICES.items() if loss == name})
    for name, spec in LOSSES.items()
}
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
    # In-context episodes per training window: the one knob of the layout. With it, a null
    # trainer.seq_len is episodes x (horizon + 1), a null collect.steps_per_task is seq_len (one window
    # per stream) and a null trainer.eval_episodes is episodes (see resolve_layout).
    episodes: Optional[int] = None
    # random | sequential | last | start; null: start when the behaviour policy acts on the whole stream
    # (mouse.tasks.STREAM_POLICIES: explorers, learners, annealed, bandit teachers), else random
    sampling: Optional[Sampling] = None
    prefetch: int = 2  # batches built ahead in a thread; 0 = none
    allow_short_streams: bool = False  # skip streams shorter than trainer.seq_len (default: an error)
    augment: AugmentNode = field(default_factory=AugmentNode)  # mouse.data.AugmentConfig fields (all off)


@dataclass
class OptimConfig:
    """AdamW with linear warmup then cosine decay to ``min_lr_ratio * lr`` at ``trainer.steps``."""

    name: OptimizerName = OptimizerName.adamw
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
    grad_accum_steps: int = 1  # micro-batches of batch_size windows per optimizer step
    seq_len: Optional[int] = None  # window length in records; null = data.episodes x (horizon + 1)
    grad_clip: float = 1.0  # max global grad norm; 0 = off
    log_every: int = 10
    eval_every: int = 0  # 0 = evaluate only at the end
    eval_num_tasks: int = 16  # held-out tasks per evaluation; 0 = no evaluation
    eval_episodes: Optional[int] = None  # null = data.episodes (else the episodes a window holds)
    eval_temperature: float = 1.0
    checkpoint_every: int = 0  # 0 = only at the end
    keep_last: int = 3  # checkpoints kept; 0 = all
    seed: int = 0
    device: str = "auto"  # auto = cuda if available else cpu
    precision: Precision = Precision.fp32
    strategy: Strategy = Strategy.ddp  # under torchrun: ddp | fsdp
    compile: bool = False  # torch.compile the model for the training forward (evaluation runs it eagerly)
    # false: start fresh | true: continue <run_dir>/checkpoints/last (it must exist) | auto: continue
    # when checkpoints/last exists, else start fresh (a restart loop, e.g. Slurm requeue)
    resume: str = "false"
    # start from the weights of this checkpoint (folder or Hub id; fine-tuning, e.g. mode=online from a
    # distilled model); the optimizer, schedule and step start fresh; a resumed run ignores it
    init_from: Optional[str] = None

    @property
    def resume_mode(self) -> str:
        """``trainer.resume`` as one of ``"false"``, ``"true"``, ``"auto"`` (booleans accepted)."""
        mode = str(self.resume).lower()
        if mode not in RESUME_MODES:
            raise ValueError(f"trainer.resume={self.resume!r} is unknown; use one of {list(RESUME_MODES)}")
        return mode


class ModeKind(StrEnum):
    offline = "offline"  # windows sampled from a dataset on disk
    online = "online"  # actors (the model being trained) feed a bounded replay


@dataclass
class ScheduleNode:
    """A linear schedule over env steps (records the actors acted on): ``start`` → ``end`` over ``steps``."""

    start: float = 1.0
    end: float = 1.0
    steps: int = 0  # 0 = constant ``end``


@dataclass
class ModeConfig:
    """``mode=offline`` (the default) or ``mode=online`` (``mouse.online``: actor–learner on ``data.collect.task``).

    Online: each acting round runs ``num_envs`` streams of freshly drawn training tasks for
    ``trainer.seq_len`` ticks from a reset (one window per stream) with the actors' copy of the model,
    one batched forward per tick; the windows go to a FIFO replay of ``replay_capacity`` windows. The
    learner takes ``steps_per_round`` steps per round (replay ratio = steps_per_round x batch_size /
    num_envs) once the replay holds ``min_replay`` windows; actors take fresh weights when a round starts
    ``actor_sync_every`` or more learner steps after their last sync.
    """

    kind: ModeKind = ModeKind.offline
    num_envs: int = 64
    steps_per_round: int = 1
    actor_sync_every: int = 1
    replay_capacity: int = 1024
    min_replay: Optional[int] = None  # windows before the first learner step; null = trainer.batch_size
    temperature: ScheduleNode = field(default_factory=lambda: ScheduleNode(1.0, 1.0, 0))
    epsilon: ScheduleNode = field(default_factory=lambda: ScheduleNode(0.0, 0.0, 0))
    overlap: bool = False  # act (a thread) while the learner trains on the previous rounds


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
    mode: ModeConfig = field(default_factory=ModeConfig)


def run_dir_resolver(default: str) -> str:
    """``${mouse_run_dir:<default>}``: the run folder every process of one job agrees on.

    A single process gets ``default`` (``outputs/<date>/<time>``). Under ``torchrun``
    (``WORLD_SIZE > 1``) each rank would read its own clock, so all ranks use ``$MOUSE_RUN_DIR`` if
    set, else ``outputs/torchrun/<TORCHELASTIC_RUN_ID>`` (the same on every rank of one launch).
    """
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
    return default if is_main_process() else None


def register_configs() -> None:
    """Store :class:`TrainConfig` as ``train_schema`` (plus the task/policy group schemas the data
    group composes) in Hydra's ConfigStore and register the ``mouse_run_dir`` /
    ``mouse_output_subdir`` resolvers ``conf/train.yaml`` uses (idempotent)."""
    from hydra.core.config_store import ConfigStore

    from mouse.data.config import register_configs as register_data_configs

    register_data_configs()
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
    for name, fn in (("mouse_run_dir", run_dir_resolver), ("mouse_output_subdir", output_subdir_resolver)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn, use_cache=True)


# ------------------------------------------------------------------------------------------------ helpers
def _plain(value: Any) -> Any:
    """Dataclasses, enums, lists and dicts as plain JSON-able Python data (enums as their values)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def to_plain_dict(node: Any) -> dict[str, Any]:
    """A config dataclass as plain Python data (enums as their values) for JSON, YAML and W&B."""
    return _plain(node)


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _loss(cfg: TrainConfig, name: str) -> Any:
    return getattr(cfg.loss, name)


def _head(cfg: TrainConfig, name: str) -> HeadConfig:
    return getattr(cfg.heads, name)


def backbone_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """``Model(backbone_kwargs=...)``: the set backbone fields ({} for ``backbone=none``)."""
    return _drop_none(to_plain_dict(cfg.backbone))


def head_kwargs(cfg: TrainConfig, head: str) -> dict[str, Any]:
    """``Model(<head>_head_kwargs=...)``: {} when the head is disabled, else its set fields."""
    node = to_plain_dict(_head(cfg, head))
    if node["num_layers"] <= 0:
        return {}
    return _drop_none(node)


def embedding_overrides(cfg: TrainConfig) -> dict[str, Any]:
    """The ``model.embedding`` fields that are set (merged over the dataset spec's kwargs)."""
    return _drop_none(to_plain_dict(cfg.model.embedding))


def active_losses(cfg: TrainConfig) -> list[str]:
    """Names of the losses with ``weight > 0``, in ``LOSSES`` order."""
    return [name for name in LOSSES if _loss(cfg, name).weight > 0]


def loss_configs(cfg: TrainConfig, active_only: bool = True) -> dict[str, Any]:
    """The losses' frozen config objects (validated by their ``__post_init__``) for every active loss
    (every loss with ``active_only=False``)."""
    out = {}
    for name in active_losses(cfg) if active_only else LOSSES:
        spec = LOSSES[name]
        try:
            out[name] = spec.config_cls(**to_plain_dict(_loss(cfg, name)))
        except (TypeError, ValueError) as e:
            raise ValueError(f"loss.{name}: {e}") from e
    return out


def polyak_taus(cfg: TrainConfig) -> dict[str, float]:
    """``Model.polyak_update`` kwargs: ``<head>_tau`` = the ``tau`` of the active loss that reads that
    target head, 0 (no update) for every other twin head."""
    taus = {"dqn_tau": 0.0, "vec_dqn_tau": 0.0}
    for name in active_losses(cfg):
        for key in LOSSES[name].heads:
            if key.endswith("_target"):
                taus[f"{key.removesuffix('_target')}_tau"] = float(_loss(cfg, name).tau)
    return taus


def augment_config(cfg: TrainConfig) -> AugmentConfig:
    """``data.augment`` as the data package's frozen (validated) ``AugmentConfig``."""
    try:
        return AugmentConfig(**to_plain_dict(cfg.data.augment))
    except ValueError as e:
        raise ValueError(f"data.augment: {e}") from e


def enable_loss_heads(cfg: TrainConfig) -> list[str]:
    """Enable (in place) every head an active loss reads but ``heads`` leaves disabled.

    Returns one human-readable line per head enabled (``heads.auto_num_layers`` layers each).
    """
    notes = []
    for name in active_losses(cfg):
        for head in dict.fromkeys(key.removesuffix("_target") for key in LOSSES[name].heads):
            if head not in HEAD_NAMES:
                raise KeyError(f"loss.{name} reads head {head!r}, which the heads config does not know")
            if _head(cfg, head).num_layers <= 0:
                _head(cfg, head).num_layers = cfg.heads.auto_num_layers
                notes.append(
                    f"heads.{head}.num_layers={cfg.heads.auto_num_layers}: enabled because "
                    f"loss.{name}.weight={_loss(cfg, name).weight} reads the {head} head"
                )
    return notes


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def validate_config(cfg: TrainConfig) -> None:
    """Cross-field checks run before any heavy work; each failure names the key and the fix.

    (Types, key names and enum values were already checked by the structured schema; resume is
    checked by the trainer, which knows the run directory.)
    """
    if not isinstance(cfg, TrainConfig):
        raise TypeError(
            f"expected a mouse.train.config.TrainConfig, got {type(cfg).__name__}; convert a composed "
            "Hydra config once with OmegaConf.to_object(cfg) (mouse.cli.common.to_config)"
        )
    t = cfg.trainer
    _check(t.steps >= 1, f"trainer.steps={t.steps} must be >= 1")
    _check(t.batch_size >= 1, f"trainer.batch_size={t.batch_size} must be >= 1")
    _check(
        t.grad_accum_steps >= 1,
        f"trainer.grad_accum_steps={t.grad_accum_steps} must be >= 1 (micro-batches per optimizer step)",
    )
    _check(
        t.seq_len is None or t.seq_len >= 2,
        f"trainer.seq_len={t.seq_len} must be >= 2 (TD losses pair step t with t+1)",
    )
    e = cfg.data.episodes
    _check(e is None or e >= 1, f"data.episodes={e} must be >= 1 (or null: set trainer.seq_len)")
    _check(t.grad_clip >= 0, f"trainer.grad_clip={t.grad_clip} must be >= 0 (0 turns clipping off)")
    _check(t.log_every >= 1, f"trainer.log_every={t.log_every} must be >= 1")
    for key in ("eval_every", "eval_num_tasks", "checkpoint_every", "keep_last"):
        _check(getattr(t, key) >= 0, f"trainer.{key}={getattr(t, key)} must be >= 0")
    _check(
        t.eval_episodes is None or t.eval_episodes >= 1,
        f"trainer.eval_episodes={t.eval_episodes} must be >= 1",
    )
    _check(t.eval_temperature >= 0, f"trainer.eval_temperature={t.eval_temperature} must be >= 0")
    parse_device(t.device)
    t.resume_mode  # noqa: B018 (raises on an unknown mode)
    o = cfg.optim
    _check(o.lr > 0, f"optim.lr={o.lr} must be > 0")
    _check(o.weight_decay >= 0, f"optim.weight_decay={o.weight_decay} must be >= 0")
    _check(
        0 <= o.beta1 < 1 and 0 <= o.beta2 < 1, f"optim.beta1/beta2=({o.beta1}, {o.beta2}) must be in [0, 1)"
    )
    _check(o.eps > 0, f"optim.eps={o.eps} must be > 0")
    _check(o.warmup_steps >= 0, f"optim.warmup_steps={o.warmup_steps} must be >= 0")
    _check(0 <= o.min_lr_ratio <= 1, f"optim.min_lr_ratio={o.min_lr_ratio} must be in [0, 1]")
    _check(cfg.model.hidden_dim >= 1, f"model.hidden_dim={cfg.model.hidden_dim} must be >= 1")
    _check(
        not (cfg.model.gradient_checkpointing and not backbone_kwargs(cfg)),
        "model.gradient_checkpointing=true needs a backbone (backbone=none has no layers to checkpoint)",
    )
    _check(cfg.heads.auto_num_layers >= 1, f"heads.auto_num_layers={cfg.heads.auto_num_layers} must be >= 1")
    for head in HEAD_NAMES:
        n = _head(cfg, head).num_layers
        _check(n >= 0, f"heads.{head}.num_layers={n} must be >= 0 (0 disables the head)")
    action_head = cfg.heads.action_head
    if action_head is not None:
        _check(
            _head(cfg, action_head.value).num_layers > 0,
            f"heads.action_head={action_head.value!r} but that head is disabled; "
            f"set heads.{action_head.value}.num_layers > 0",
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
    if cfg.data.path is None and cfg.data.collect.steps_per_task is not None:  # else resolve_layout checks
        try:
            collect_config(cfg.data.collect)
        except ValueError as err:
            raise ValueError(f"data.collect: {err}") from err
    augment_config(cfg)
    _check(cfg.data.prefetch >= 0, f"data.prefetch={cfg.data.prefetch} must be >= 0")
    if cfg.hub.push_every_checkpoint:
        _check(cfg.hub.repo_id is not None, "hub.push_every_checkpoint=true needs hub.repo_id=<user>/<model>")
    if cfg.hub.repo_id is not None:
        check_push_target(cfg.hub.repo_id, "hub.repo_id")
    if cfg.mode.kind is ModeKind.online:
        validate_online(cfg)


def validate_online(cfg: TrainConfig) -> None:
    """The ``mode.*`` checks of online training (each names the key and the fix)."""
    m, t = cfg.mode, cfg.trainer
    _check(
        cfg.data.path is None and cfg.data.collect is not None,
        "mode=online acts in data.collect.task and reads no dataset: drop data.path (choose data=<recipe>)",
    )
    _check(
        t.strategy is not Strategy.fsdp,
        "mode=online acts with a full copy of the model on every rank: use trainer.strategy=ddp (FSDP shards it)",
    )
    for key in ("num_envs", "steps_per_round"):
        _check(getattr(m, key) >= 1, f"mode.{key}={getattr(m, key)} must be >= 1")
    _check(
        m.actor_sync_every >= 1,
        f"mode.actor_sync_every={m.actor_sync_every} must be >= 1 (learner steps between actors taking fresh weights)",
    )
    _check(
        m.replay_capacity >= max(t.batch_size, m.num_envs),
        f"mode.replay_capacity={m.replay_capacity} windows must hold one batch (trainer.batch_size={t.batch_size}) "
        f"and one acting round (mode.num_envs={m.num_envs})",
    )
    if m.min_replay is not None:
        _check(
            t.batch_size <= m.min_replay <= m.replay_capacity,
            f"mode.min_replay={m.min_replay} must lie in [trainer.batch_size={t.batch_size}, "
            f"mode.replay_capacity={m.replay_capacity}] (or null)",
        )
    for name, node, high in (("temperature", m.temperature, math.inf), ("epsilon", m.epsilon, 1.0)):
        for end in ("start", "end"):
            value = getattr(node, end)
            _check(0 <= value <= high, f"mode.{name}.{end}={value} must be in [0, {high}]")
        _check(node.steps >= 0, f"mode.{name}.steps={node.steps} must be >= 0 (env steps; 0 = constant end)")


def resolve_layout(cfg: TrainConfig, spec: Any = None) -> TrainConfig:
    """``cfg`` with its window layout filled in from ``data.episodes`` and the task family (DESIGN.md).

    The horizon H and the behaviour policy come from ``spec`` (a loaded dataset's ``DatasetSpec``) or,
    without one, from ``data.collect`` (its family is built to read H). Null fields are derived, set
    ones are kept: ``trainer.seq_len = episodes x (H + 1)`` (an episode of H transitions takes H + 1
    records), ``data.collect.steps_per_task = seq_len`` (one window per stream),
    ``trainer.eval_episodes = episodes`` (else the episodes a window holds) and ``data.sampling`` =
    ``start`` for policies in ``mouse.tasks.STREAM_POLICIES`` (else ``random``). ValueError naming the
    keys when ``seq_len`` can be neither read nor derived.
    """
    from mouse.tasks import STREAM_POLICIES, make_family

    data, t = cfg.data, cfg.trainer
    if spec is not None:
        horizon, policy = int(spec.horizon), str(spec.policy)
    elif data.collect is not None:
        from mouse.data.config import task_kwargs

        try:
            horizon = int(make_family(data.collect.task.name, **task_kwargs(data.collect.task)).horizon)
        except ValueError as err:
            raise ValueError(f"data.collect.task: {err}") from err
        policy = str(data.collect.policy.name)
    else:
        raise ValueError("resolve_layout needs the dataset spec when data.path is set")
    seq_len = t.seq_len
    if seq_len is None:
        if data.episodes is None:
            raise ValueError(
                "trainer.seq_len and data.episodes are both null: set data.episodes=E (windows of E "
                f"episodes = E x {horizon + 1} records for this horizon {horizon}) or trainer.seq_len=N"
            )
        seq_len = data.episodes * (horizon + 1)
    eval_episodes = t.eval_episodes
    if eval_episodes is None:
        eval_episodes = data.episodes or max(1, seq_len // (horizon + 1))
    sampling = data.sampling
    if sampling is None:
        sampling = Sampling.start if policy in STREAM_POLICIES else Sampling.random
    collect = data.collect
    if collect is not None and collect.steps_per_task is None:
        collect = dataclasses.replace(collect, steps_per_task=seq_len)
    out = dataclasses.replace(
        cfg,
        trainer=dataclasses.replace(t, seq_len=seq_len, eval_episodes=eval_episodes),
        data=dataclasses.replace(data, sampling=sampling, collect=collect),
    )
    validate_config(out)
    if out.data.path is None:
        try:
            collect_config(out.data.collect)
        except ValueError as err:
            raise ValueError(f"data.collect: {err}") from err
    return out
