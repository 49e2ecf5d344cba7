"""The names of the step-record contract (DESIGN.md, "The step record"): one list for every package.

A stream's record ``t`` holds the observation at ``t`` with the action, reward and done of the
transition that arrived at ``t``; the fields, dtypes and shapes are specified in DESIGN.md and
checked where data enters (``mouse.data.validate`` for datasets, ``StepEmbedder.validate`` for model
inputs). ``pad`` is the optional bool mask of PAD steps.
"""

from __future__ import annotations

__all__ = ["PAD_KEY", "STEP_KEYS"]

# Every field a step stream may carry, in the canonical on-disk column order.
STEP_KEYS: tuple[str, ...] = (
    "action",
    "reward",
    "done",
    "time",
    "obs_discrete",
    "obs_continuous",
    "obs_image",
    "q_star",
    "behavior_logits",
    "teacher_logits",
    "xformed_reward",
)
PAD_KEY = "pad"
