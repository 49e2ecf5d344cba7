"""Typed config of `mouse-collect` (task, policy, collection) and the `task` / `policy` group schemas.

One dataclass per task family and per policy, each stored in Hydra's ConfigStore as
`task/<name>_schema` / `policy/<name>_schema`; every `conf/task/<name>.yaml` and
`conf/policy/<name>.yaml` starts its defaults list with its schema, so wherever the group is composed
(mouse-collect, mouse-train's `data.collect.task`, mouse-eval's `task`) a misspelt key
(`task.sise=9`) or a wrong type fails at compose time naming the full key. `mouse-collect` converts
the composed node once (`OmegaConf.to_object`) into a `CollectConfig`; `collect_config` also builds
one from a plain dict (the Python API), checking unknown keys and types the same way. A field left
None means "the family's / policy's own default" and is not passed on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from omegaconf import MISSING, OmegaConf, ValidationError

from mouse.data.loader import SAMPLING_MODES
from mouse.data.spec import SPLITS


class Split(StrEnum):
    """Which task ids streams are drawn from: the family's train or held-out test split."""

    train = "train"
    test = "test"


class Sampling(StrEnum):
    """Window starts of the training loader (`mouse.data.WindowLoader`)."""

    random = "random"
    sequential = "sequential"
    last = "last"
    start = "start"


assert tuple(Split) == SPLITS and tuple(Sampling) == SAMPLING_MODES  # one list of each


# ----------------------------------------------------------------------------- tasks
@dataclass
class TaskConfig:
    """Fields every task family has: the family name, its horizon/gamma and the train/test split."""

    name: str = MISSING
    horizon: int | None = None  # None: the family's default
    gamma: float | None = None  # None: the family's default
    test_fraction: float = 0.2  # fraction of the family's task ids held out as the test split
    split_seed: int = 0  # seed of the train/test partition (recorded in the dataset spec)


@dataclass
class DarkRoomTaskConfig(TaskConfig):
    name: str = "darkroom"
    size: int = 9
    horizon: int | None = 20


@dataclass
class FrozenLakeTaskConfig(TaskConfig):
    name: str = "frozenlake"
    size: int = 4
    hole_prob: float = 0.2
    slippery: bool = False
    num_tasks_pool: int = 1000


@dataclass
class KeyDoorTaskConfig(TaskConfig):
    name: str = "keydoor"
    size: int = 9
    horizon: int | None = 50


@dataclass
class BanditTaskConfig(TaskConfig):
    name: str = "bandit"
    num_arms: int = 5
    reward_dist: str = "bernoulli"  # bernoulli | gaussian
    reward_std: float = 0.3
    horizon: int | None = 100
    num_tasks_pool: int = 1000


@dataclass
class GymTaskConfig(TaskConfig):
    name: str = "gym"
    env_id: str = "CartPole-v1"  # any registered gymnasium id with Discrete actions
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # constant gymnasium.make kwargs
    num_tasks_pool: int = 1000  # task ids 0..pool-1
    seed: int = 0  # per-task seeds, kwargs and attributes are drawn from (seed, task id)
    # name -> [lo, hi] / list of choices; typed Any because OmegaConf rejects ints merged into new
    # List[float] entries ([5, 15] in YAML); GymFamily checks them (one error naming the entry)
    kwargs_ranges: dict[str, Any] = field(default_factory=dict)  # gymnasium.make kwarg -> [lo, hi]
    attr_ranges: dict[str, Any] = field(default_factory=dict)  # env.unwrapped attribute -> [lo, hi]
    attr_choices: dict[str, Any] = field(default_factory=dict)  # env.unwrapped attribute -> choices
    obs_key: str | None = None  # the entry of a Dict observation to record
    vectorization: str = "sync"  # sync (one process) | async (a worker process per stream)
    reference_return: float | None = None  # oracle reference return for normalised scores


@dataclass
class MiniGridTaskConfig(TaskConfig):
    name: str = "minigrid"
    size: int = 6  # room side, walls included
    num_tasks_pool: int | None = None  # None: every distinct layout (960 at size 6)
    seed: int = 0  # seed of the layout permutation
    vectorization: str = "sync"  # sync | async


TASK_CONFIGS: dict[str, type[TaskConfig]] = {
    "darkroom": DarkRoomTaskConfig,
    "frozenlake": FrozenLakeTaskConfig,
    "bandit": BanditTaskConfig,
    "keydoor": KeyDoorTaskConfig,
    "gym": GymTaskConfig,
    "minigrid": MiniGridTaskConfig,
}
_SPLIT_FIELDS = ("name", "test_fraction", "split_seed")


def task_kwargs(cfg: TaskConfig) -> dict[str, Any]:
    """`make_family(cfg.name, **task_kwargs(cfg))` parameters (None fields left to the family)."""
    return {
        f.name: getattr(cfg, f.name)
        for f in dataclasses.fields(cfg)
        if f.name not in _SPLIT_FIELDS and getattr(cfg, f.name) is not None
    }


# ----------------------------------------------------------------------------- policies
@dataclass
class PolicyConfig:
    """A behaviour policy by name (see mouse.tasks.POLICIES)."""

    name: str = MISSING


@dataclass
class RandomPolicyConfig(PolicyConfig):
    name: str = "random"


@dataclass
class ExpertPolicyConfig(PolicyConfig):
    name: str = "expert"
    epsilon: float = 0.0  # probability of a uniformly random action


@dataclass
class AnnealedPolicyConfig(PolicyConfig):
    name: str = "annealed"
    episodes: int | None = None  # episodes over which epsilon decays 1 -> 0 (None: the whole stream)


@dataclass
class ExplorerPolicyConfig(PolicyConfig):
    name: str = "explorer"
    epsilon_min: float = 0.0  # per-stream epsilon ~ U[epsilon_min, epsilon_max]
    epsilon_max: float = 0.3
    c: float | None = None  # bandit explorer (UCB1) exploration constant; None: its default


@dataclass
class LearnerPolicyConfig(PolicyConfig):
    """Algorithm Distillation's learner (mouse.tasks.learners): tabular Q-learning on tabular families,
    a DQN per stream otherwise. None: that learner's own default; a field the other learner has fails."""

    name: str = "learner"
    epsilon_start: float = 1.0  # epsilon decays linearly from epsilon_start to epsilon_end over the stream
    epsilon_end: float | None = None  # None: Q-learning 0.0, DQN 0.05
    gamma: float | None = None  # the learner's discount; None: the family's gamma if < 1, else 0.99
    bootstrap_truncation: bool = True  # truncation (done 2) bootstraps; false: it is a terminal
    alpha: float | None = None  # Q-learning: learning rate
    q_init: float | None = None  # Q-learning: initial Q value
    decay_episodes: int | None = None  # Q-learning: epsilon decay episodes (None: the whole stream)
    decay_steps: int | None = None  # DQN: epsilon decay transitions (None: the whole stream)
    lr: float | None = None  # DQN: Adam learning rate
    hidden_dim: int | None = None  # DQN: MLP width
    num_layers: int | None = None  # DQN: hidden layers
    buffer_size: int | None = None  # DQN: replay capacity per stream
    batch_size: int | None = None  # DQN: transitions per update
    learning_starts: int | None = None  # DQN: transitions before the first update
    train_every: int | None = None  # DQN: records per update (1; 4 is ~3x faster, less sample-efficient)
    target_every: int | None = None  # DQN: updates per target-network sync
    obs_key: str | None = None  # DQN: obs_continuous | obs_image (None: continuous if the family has it)
    obs_scale: float | None = None  # DQN: input scale (None: 1 continuous, 1/255 images)


@dataclass
class UCBPolicyConfig(PolicyConfig):
    name: str = "ucb"
    c: float = 1.0
    epsilon_min: float = 0.0
    epsilon_max: float = 0.3


@dataclass
class ThompsonPolicyConfig(PolicyConfig):
    name: str = "thompson"
    num_samples: int = 16
    epsilon_min: float = 0.0
    epsilon_max: float = 0.3


POLICY_CONFIGS: dict[str, type[PolicyConfig]] = {
    "random": RandomPolicyConfig,
    "expert": ExpertPolicyConfig,
    "annealed": AnnealedPolicyConfig,
    "explorer": ExplorerPolicyConfig,
    "ucb": UCBPolicyConfig,
    "thompson": ThompsonPolicyConfig,
    "learner": LearnerPolicyConfig,
}


def policy_kwargs(cfg: PolicyConfig) -> dict[str, Any]:
    """`make_policy(cfg.name, family, **policy_kwargs(cfg))` parameters (None fields left out)."""
    return {
        f.name: getattr(cfg, f.name)
        for f in dataclasses.fields(cfg)
        if f.name != "name" and getattr(cfg, f.name) is not None
    }


# ----------------------------------------------------------------------------- collection
@dataclass
class CollectHubConfig:
    repo_id: str | None = None  # ORG/NAME: push the dataset to this Hub dataset repo
    private: bool = False


@dataclass
class CollectConfig:
    """`mouse-collect` settings: `num_tasks` streams of `steps_per_task` records from tasks of `split`."""

    task: Any = MISSING  # one of TASK_CONFIGS
    policy: Any = MISSING  # one of POLICY_CONFIGS
    num_tasks: int = 200  # streams; task ids cycle through a seeded permutation of the split's ids
    steps_per_task: int | None = 400  # records per stream; None only in mouse-train (from data.episodes)
    seed: int = 0
    split: Split = Split.train
    output: str | None = None  # dataset directory (relative to the working directory)
    overwrite: bool = False
    show_progress: bool = True
    hub: CollectHubConfig = field(default_factory=CollectHubConfig)

    def validate(self) -> None:
        """Cross-field checks that run before any collection work."""
        if self.split not in SPLITS:
            raise ValueError(f"collect split must be one of {SPLITS}, got {str(self.split)!r}")
        if self.steps_per_task is None:
            raise ValueError(
                "collect steps_per_task is null: set it (mouse-collect steps_per_task=N), or in mouse-train "
                "set data.episodes (the stream then holds that many episodes of horizon + 1 records)"
            )
        for name in ("num_tasks", "steps_per_task"):
            if getattr(self, name) < 1:
                raise ValueError(f"collect {name} must be >= 1, got {getattr(self, name)}")
        if not isinstance(self.task, TaskConfig) or not isinstance(self.policy, PolicyConfig):
            raise ValueError("collect task and policy must be TaskConfig / PolicyConfig instances")


def _from_dict(kind: str, registry: dict[str, type], d: Any) -> Any:
    if isinstance(d, tuple(registry.values())):
        return d
    if not isinstance(d, dict) or "name" not in d:
        raise ValueError(f"{kind} config must be a mapping with a 'name' key, got {d!r}")
    name = d["name"]
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; valid: {', '.join(registry)}")
    cls = registry[name]
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(d) - set(valid))
    if unknown:
        raise ValueError(f"unknown {kind} key(s) {unknown} for {name!r}; valid keys: {', '.join(valid)}")
    try:  # type-checked by OmegaConf (a string for an int field fails, naming the key)
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), d))
    except ValidationError as exc:
        raise ValueError(f"bad {kind} config for {name!r}: {exc}") from None


def task_config(d: TaskConfig | dict) -> TaskConfig:
    """The TaskConfig subclass for `d["name"]`, strictly built from a dict (or returned as is)."""
    return _from_dict("task", TASK_CONFIGS, d)


def policy_config(d: PolicyConfig | dict) -> PolicyConfig:
    """The PolicyConfig subclass for `d["name"]`, strictly built from a dict (or returned as is)."""
    return _from_dict("policy", POLICY_CONFIGS, d)


def collect_config(cfg: CollectConfig | dict) -> CollectConfig:
    """A validated CollectConfig from a dataclass (the CLI's typed config) or a plain dict (the
    Python API: unknown keys and wrong types fail naming the key)."""
    if isinstance(cfg, dict):
        cfg = dict(cfg)
        valid = [f.name for f in dataclasses.fields(CollectConfig)]
        unknown = sorted(set(cfg) - set(valid))
        if unknown:
            raise ValueError(f"unknown collect key(s) {unknown}; valid keys: {', '.join(valid)}")
        hub = cfg.get("hub", {})
        cfg["hub"] = hub if isinstance(hub, CollectHubConfig) else CollectHubConfig(**hub)
        if "split" in cfg and cfg["split"] not in SPLITS:
            raise ValueError(f"collect split must be one of {SPLITS}, got {cfg['split']!r}")
        if "split" in cfg:
            cfg["split"] = Split(cfg["split"])
        cfg = CollectConfig(**cfg)
    if not isinstance(cfg, CollectConfig):
        raise ValueError(f"expected a CollectConfig or a dict, got {type(cfg).__name__}")
    cfg = dataclasses.replace(cfg, task=task_config(cfg.task), policy=policy_config(cfg.policy))
    cfg.validate()
    return cfg


def register_configs() -> None:
    """Store `collect_schema` and the `task/<name>_schema`, `policy/<name>_schema` group schemas in
    Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="collect_schema", node=CollectConfig)
    for name, cls in TASK_CONFIGS.items():
        cs.store(group="task", name=f"{name}_schema", node=cls)
    for name, cls in POLICY_CONFIGS.items():
        cs.store(group="policy", name=f"{name}_schema", node=cls)
