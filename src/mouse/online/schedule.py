"""Exploration schedules over environment steps (records the actors acted on)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LinearSchedule:
    """``start`` at env step 0, moving linearly to ``end`` at ``steps`` env steps, then ``end``.

    ``steps == 0`` is the constant ``end``.
    """

    start: float
    end: float
    steps: int = 0

    def __call__(self, env_steps: int) -> float:
        if self.steps <= 0 or env_steps >= self.steps:
            return float(self.end)
        frac = max(env_steps, 0) / self.steps
        return float(self.start + frac * (self.end - self.start))
