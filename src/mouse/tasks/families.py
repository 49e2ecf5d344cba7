"""The family registry: `make_family(name, **params)` and `FAMILIES`."""

from __future__ import annotations

import inspect

from mouse.tasks.bandit import BanditFamily
from mouse.tasks.core import TaskFamily
from mouse.tasks.darkroom import DarkRoomFamily
from mouse.tasks.frozenlake import FrozenLakeFamily
from mouse.tasks.gym import GymFamily
from mouse.tasks.keydoor import KeyDoorFamily
from mouse.tasks.minigrid import MiniGridFamily

_FAMILY_CLASSES: dict[str, type[TaskFamily]] = {
    "darkroom": DarkRoomFamily,
    "frozenlake": FrozenLakeFamily,
    "bandit": BanditFamily,
    "keydoor": KeyDoorFamily,
    "gym": GymFamily,
    "minigrid": MiniGridFamily,
}
FAMILIES: tuple[str, ...] = tuple(_FAMILY_CLASSES)


def family_parameters(name: str) -> dict[str, object]:
    """The parameters of family `name` with their defaults."""
    cls = _family_class(name)
    sig = inspect.signature(cls.__init__)
    return {k: p.default for k, p in sig.parameters.items() if k != "self"}


def _family_class(name: str) -> type[TaskFamily]:
    if name not in _FAMILY_CLASSES:
        raise ValueError(f"unknown task family {name!r}; valid families: {', '.join(FAMILIES)}")
    return _FAMILY_CLASSES[name]


def make_family(name: str, **params: object) -> TaskFamily:
    """Build task family `name` ("darkroom" | "frozenlake" | "bandit" | "keydoor" | "gym" |
    "minigrid") with keyword parameters.

    Unknown names or parameters raise ValueError listing the valid ones.
    """
    cls = _family_class(name)
    valid = family_parameters(name)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown} for task family {name!r}; valid: {', '.join(valid)}"
        )
    return cls(**params)
