"""Small argument checks that raise one clear ValueError naming the parameter, value and allowed range."""

from __future__ import annotations

import numbers


def check_int(owner: str, name: str, value: object, low: int, high: int | None = None) -> int:
    """`value` as int if it is an integer in [low, high] (high None = unbounded), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{owner}: {name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{owner}: {name}={value} is out of range; allowed {bound}")
    return int(value)


def check_float(owner: str, name: str, value: object, low: float, high: float) -> float:
    """`value` as float if it is a real number in [low, high], else ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{owner}: {name} must be a number, got {value!r}")
    if not low <= float(value) <= high:
        raise ValueError(f"{owner}: {name}={value} is out of range; allowed [{low}, {high}]")
    return float(value)


def check_choice(owner: str, name: str, value: object, allowed: tuple[str, ...]) -> str:
    """`value` if it is one of `allowed`, else ValueError listing them."""
    if value not in allowed:
        raise ValueError(f"{owner}: {name}={value!r} is not valid; allowed: {', '.join(allowed)}")
    return str(value)
