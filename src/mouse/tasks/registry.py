"""The policy registry: `make_policy(name, family, **params)` and `POLICIES`."""

from __future__ import annotations

import inspect

from mouse.tasks.core import TaskFamily
from mouse.tasks.keydoor import KeyDoorExplorer
from mouse.tasks.learners import learner_class
from mouse.tasks.minigrid_explorer import MiniGridExplorer
from mouse.tasks.policies import AnnealedPolicy, ExpertPolicy, Policy, RandomPolicy
from mouse.tasks.teachers import GridExplorer, ThompsonPolicy, UCBPolicy

POLICIES: tuple[str, ...] = ("random", "expert", "annealed", "explorer", "ucb", "thompson", "learner")
BANDIT_ONLY = ("ucb", "thompson")
Q_STAR_POLICIES = ("expert", "annealed")  # need the family's exact Q*
# Policies whose actions depend on the whole stream so far (cross-episode memory or a schedule over the
# stream): a model imitating them must see the stream from its first record (`data.sampling=start`).
STREAM_POLICIES: tuple[str, ...] = ("explorer", "annealed", "learner", "ucb", "thompson")


def _policy_class(name: str, family: TaskFamily) -> tuple[type[Policy], dict]:
    """The class implementing `name` for `family` and fixed constructor arguments."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; valid policies: {', '.join(POLICIES)}")
    if name in BANDIT_ONLY and family.name != "bandit":
        raise ValueError(f"policy {name!r} is for the bandit family only, not {family.name!r}")
    if name in Q_STAR_POLICIES and not family.has_q_star:
        raise ValueError(
            f"policy {name!r} acts on exact Q*, which task family {family.name!r} does not have; "
            "use policy=learner (an RL learner per task) or policy=random"
        )
    if name == "explorer":  # each family's exploring teacher
        if family.name == "bandit":
            return UCBPolicy, {}
        if family.name == "keydoor":
            return KeyDoorExplorer, {}
        if family.name == "minigrid":
            return MiniGridExplorer, {}
        return GridExplorer, {"start_known": family.name == "frozenlake"}
    if name == "learner":  # Algorithm Distillation's learner: tabular Q-learning, else a DQN per stream
        return learner_class(family), {}
    simple = {"random": RandomPolicy, "expert": ExpertPolicy, "annealed": AnnealedPolicy}
    return {**simple, "ucb": UCBPolicy, "thompson": ThompsonPolicy}[name], {}


def policy_parameters(name: str, family: TaskFamily) -> dict[str, object]:
    """The user-settable parameters of policy `name` on `family`, with their defaults."""
    cls, fixed = _policy_class(name, family)
    sig = inspect.signature(cls.__init__)
    return {k: p.default for k, p in sig.parameters.items() if k not in ("self", "family", *fixed)}


def make_policy(name: str, family: TaskFamily, **params: object) -> Policy:
    """Build behaviour policy `name` for `family`. "explorer" is the family's exploring teacher (Dark
    Room / FrozenLake grid explorer, key-to-door explorer, minigrid room explorer, bandit UCB1). Unknown
    names or parameters raise ValueError."""
    cls, fixed = _policy_class(name, family)
    valid = policy_parameters(name, family)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown} for policy {name!r} on {family.name!r}; "
            f"valid: {', '.join(valid) or '(none)'}"
        )
    return cls(family, **fixed, **params)
