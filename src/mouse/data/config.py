"""Structured-config schemas of `mouse-collect` (task, policy, collection), registered with Hydra.

One dataclass per task family and per policy. The YAML files of the `task` and `policy` groups stay
plain (mouse-eval and mouse-train compose them too); `task_config`/`policy_config` check a composed
node against its family's/policy's dataclass (unknown keys and wrong types fail, naming the key and
the valid names), and Hydra's struct mode rejects misspelt command-line keys (`task.sise=9`). A field
left None means "the family's / policy's own default" and is not passed on. `register_configs()`
stores `collect_schema` (CollectConfig, extended by conf/collect.yaml) in Hydra's ConfigStore.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf, ValidationError

from mouse.data.spec import SPLITS


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
class BanditTaskConfig(TaskConfig):
    name: str = "bandit"
    num_arms: int = 5
    reward_dist: str = "bernoulli"  # bernoulli | gaussian
    reward_std: float = 0.3
    horizon: int | None = 100
    num_tasks_pool: int = 1000


TASK_CONFIGS: dict[str, type[TaskConfig]] = {
    "darkroom": DarkRoomTaskConfig,
    "frozenlake": FrozenLakeTaskConfig,
    "bandit": BanditTaskConfig,
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
    steps_per_task: int = 400
    seed: int = 0
    split: str = "train"
    output: str | None = None  # dataset directory (relative to the working directory)
    overwrite: bool = False
    show_progress: bool = True
    hub: CollectHubConfig = field(default_factory=CollectHubConfig)

    def validate(self) -> None:
        """Cross-field checks that run before any collection work."""
        if self.split not in SPLITS:
            raise ValueError(f"collect split must be one of {SPLITS}, got {self.split!r}")
        for name in ("num_tasks", "steps_per_task"):
            if getattr(self, name) < 1:
                raise ValueError(f"collect {name} must be >= 1, got {getattr(self, name)}")
        if not isinstance(self.task, TaskConfig) or not isinstance(self.policy, PolicyConfig):
            raise ValueError("collect task and policy must be TaskConfig / PolicyConfig instances")


def _from_dict(kind: str, registry: dict[str, type], d: Any) -> Any:
    if isinstance(d, tuple(registry.values())):
        return d
    if isinstance(d, DictConfig):
        d = OmegaConf.to_container(d, resolve=True)
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


def task_config(d: TaskConfig | dict | DictConfig) -> TaskConfig:
    """The TaskConfig subclass for `d["name"]`, strictly built from a dict (or returned as is)."""
    return _from_dict("task", TASK_CONFIGS, d)


def policy_config(d: PolicyConfig | dict | DictConfig) -> PolicyConfig:
    """The PolicyConfig subclass for `d["name"]`, strictly built from a dict (or returned as is)."""
    return _from_dict("policy", POLICY_CONFIGS, d)


def collect_config(cfg: CollectConfig | dict | DictConfig) -> CollectConfig:
    """A validated CollectConfig from a dataclass, plain dict or (Hydra) DictConfig."""
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
        cfg.pop("hydra", None)
    if isinstance(cfg, dict):
        cfg = dict(cfg)
        valid = [f.name for f in dataclasses.fields(CollectConfig)]
        unknown = sorted(set(cfg) - set(valid))
        if unknown:
            raise ValueError(f"unknown collect key(s) {unknown}; valid keys: {', '.join(valid)}")
        hub = cfg.get("hub", {})
        cfg["hub"] = hub if isinstance(hub, CollectHubConfig) else CollectHubConfig(**hub)
        cfg = CollectConfig(**cfg)
    if not isinstance(cfg, CollectConfig):
        raise ValueError(f"expected a CollectConfig, dict or DictConfig, got {type(cfg).__name__}")
    cfg = dataclasses.replace(cfg, task=task_config(cfg.task), policy=policy_config(cfg.policy))
    cfg.validate()
    return cfg


def register_configs() -> None:
    """Store the schemas in Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="collect_schema", node=CollectConfig)
