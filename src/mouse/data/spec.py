"""The dataset spec and the on-disk column schema of the step-record contract (DESIGN.md).

A dataset is one split of reset-free streams from one task family, collected by one behaviour
policy. `DatasetSpec` is its small JSON description (`spec.json`): sizes the model's `StepEmbedder`
needs, where the data came from, and counts that loading checks against the columns.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mouse.contract import STEP_KEYS

FORMAT_VERSION = 1
SPLITS = ("train", "test")

# Columns stored one value per record (shape [N]) and their exact dtypes.
SCALAR_COLUMNS: dict[str, np.dtype] = {
    "stream_id": np.dtype(np.int64),
    "task_id": np.dtype(np.int64),
    "action": np.dtype(np.int64),
    "reward": np.dtype(np.float32),
    "done": np.dtype(np.int64),
    "time": np.dtype(np.int64),
    "obs_discrete": np.dtype(np.int64),
    "xformed_reward": np.dtype(np.float32),
}
# Columns stored as a fixed-width vector per record (shape [N, W]) and their exact dtypes.
VECTOR_COLUMNS: dict[str, np.dtype] = {
    "obs_continuous": np.dtype(np.float32),
    "obs_image": np.dtype(np.uint8),
    "q_star": np.dtype(np.float32),
    "behavior_logits": np.dtype(np.float32),
    "teacher_logits": np.dtype(np.float32),
}
# Canonical column order on disk.
COLUMN_ORDER: tuple[str, ...] = ("stream_id", "task_id", *STEP_KEYS)
REQUIRED_COLUMNS: tuple[str, ...] = ("stream_id", "task_id", "action", "reward", "done", "time")
# The model-facing step record is mouse.contract.STEP_KEYS; stream_id/task_id are bookkeeping.
ACTION_WIDTH_COLUMNS: tuple[str, ...] = ("q_star", "behavior_logits", "teacher_logits")


_INT_FIELDS = (
    "num_actions",
    "horizon",
    "obs_discrete_size",
    "obs_continuous_dim",
    "obs_image_size",
    "split_seed",
    "seed",
    "num_streams",
    "num_records",
    "steps_per_task",
    "format_version",
)
_STR_FIELDS = ("task_family", "policy", "split")


def _spec_int(name: str, value: Any) -> int:
    """`value` as int when it is an integer (an integral float such as 20.0 too), else ValueError."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError(
        f"DatasetSpec.{name} must be an integer, got {value!r} ({type(value).__name__}); "
        f"fix the {name!r} field of spec.json"
    )


def _spec_float(name: str, value: Any) -> float:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    raise ValueError(
        f"DatasetSpec.{name} must be a number, got {value!r} ({type(value).__name__}); "
        f"fix the {name!r} field of spec.json"
    )


def column_dtype(name: str) -> np.dtype:
    """The exact numpy dtype of column `name`; KeyError naming the known columns otherwise."""
    if name in SCALAR_COLUMNS:
        return SCALAR_COLUMNS[name]
    if name in VECTOR_COLUMNS:
        return VECTOR_COLUMNS[name]
    raise KeyError(f"unknown column {name!r}; known columns: {', '.join(COLUMN_ORDER)}")


def _check_image_shape(spec: DatasetSpec) -> None:
    """Normalise `spec.obs_image_shape` to a tuple of ints >= 1 whose product is `obs_image_size`."""
    shape = spec.obs_image_shape
    if isinstance(shape, str | bytes | Mapping) or not hasattr(shape, "__iter__"):
        raise ValueError(
            f"DatasetSpec.obs_image_shape must be a list of integers such as [7, 7, 3], got {shape!r} "
            f"({type(shape).__name__}); fix the 'obs_image_shape' field of spec.json"
        )
    shape = tuple(_spec_int(f"obs_image_shape[{j}]", d) for j, d in enumerate(shape))
    if any(d < 1 for d in shape):
        raise ValueError(
            f"DatasetSpec.obs_image_shape must hold integers >= 1, got {list(shape)}; "
            "fix the 'obs_image_shape' field of spec.json"
        )
    size = spec.obs_image_size  # already an int
    if shape and size and int(np.prod(shape)) != size:
        raise ValueError(
            f"DatasetSpec.obs_image_shape={list(shape)} holds {int(np.prod(shape))} pixels but "
            f"obs_image_size={size}; fix the 'obs_image_shape' field of spec.json"
        )
    object.__setattr__(spec, "obs_image_shape", shape)


@dataclass(frozen=True)
class DatasetSpec:
    """JSON-serialisable description of one dataset split (saved as `spec.json`).

    Observation kinds are encoded by sizes, 0 meaning absent: `obs_discrete_size` (number of discrete
    observation ids), `obs_continuous_dim` (C of `obs_continuous` [N, C]), `obs_image_size` (P of the
    flattened uint8 `obs_image` [N, P]); `obs_image_shape` is the unflattened [H, W, C] of those P
    pixels, channels last (() = unknown; a list in JSON). `obs_continuous_min/max` record the data
    range (filled in by `save_dataset` when left None). Counts left 0 are filled in by `save_dataset`;
    `steps_per_task=0` means streams may have different lengths.
    """

    num_actions: int
    horizon: int
    gamma: float = 1.0
    obs_discrete_size: int = 0
    obs_continuous_dim: int = 0
    obs_image_size: int = 0
    obs_image_shape: tuple[int, ...] = ()
    obs_continuous_min: float | None = None
    obs_continuous_max: float | None = None
    task_family: str = ""
    task_params: dict[str, Any] = field(default_factory=dict)
    policy: str = ""
    policy_params: dict[str, Any] = field(default_factory=dict)
    split: str = "train"
    split_seed: int = 0
    train_task_ids: tuple[int, ...] = ()
    test_task_ids: tuple[int, ...] = ()
    seed: int = 0
    num_streams: int = 0
    num_records: int = 0
    steps_per_task: int = 0
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in _INT_FIELDS:
            set_(self, name, _spec_int(name, getattr(self, name)))
        set_(self, "gamma", _spec_float("gamma", self.gamma))
        for name in ("obs_continuous_min", "obs_continuous_max"):
            if getattr(self, name) is not None:
                set_(self, name, _spec_float(name, getattr(self, name)))
        for name in _STR_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, str):
                raise ValueError(
                    f"DatasetSpec.{name} must be a string, got {value!r} ({type(value).__name__}); "
                    f"fix the {name!r} field of spec.json"
                )
        for name in ("train_task_ids", "test_task_ids"):
            ids = getattr(self, name)
            if isinstance(ids, str | bytes | Mapping) or not hasattr(ids, "__iter__"):
                raise ValueError(
                    f"DatasetSpec.{name} must be a list of integers, got {ids!r} ({type(ids).__name__}); "
                    f"fix the {name!r} field of spec.json"
                )
            set_(self, name, tuple(_spec_int(f"{name}[{j}]", i) for j, i in enumerate(ids)))
        _check_image_shape(self)
        for name in ("task_params", "policy_params"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise ValueError(
                    f"DatasetSpec.{name} must be a JSON object (mapping), got {value!r} "
                    f"({type(value).__name__}); fix the {name!r} field of spec.json"
                )
            set_(self, name, dict(value))
        if int(self.num_actions) < 1:
            raise ValueError(f"DatasetSpec.num_actions must be >= 1, got {self.num_actions}")
        if int(self.horizon) < 1:
            raise ValueError(f"DatasetSpec.horizon must be >= 1, got {self.horizon}")
        if not 0.0 < float(self.gamma) <= 1.0:
            raise ValueError(f"DatasetSpec.gamma must be in (0, 1], got {self.gamma}")
        for name in (
            "obs_discrete_size",
            "obs_continuous_dim",
            "obs_image_size",
            "num_streams",
            "num_records",
            "steps_per_task",
        ):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"DatasetSpec.{name} must be >= 0, got {getattr(self, name)}")
        if self.split not in SPLITS:
            raise ValueError(f"DatasetSpec.split must be one of {SPLITS}, got {self.split!r}")
        if self.format_version != FORMAT_VERSION:
            raise ValueError(
                f"DatasetSpec.format_version {self.format_version} is not supported by this mouse "
                f"(expected {FORMAT_VERSION}); upgrade mouse or re-collect the dataset"
            )
        lo, hi = self.obs_continuous_min, self.obs_continuous_max
        if lo is not None and hi is not None and float(lo) > float(hi):
            raise ValueError(f"DatasetSpec.obs_continuous_min={lo} is greater than obs_continuous_max={hi}")

    @property
    def obs_kinds(self) -> tuple[str, ...]:
        """The observation modalities present, e.g. ("discrete",)."""
        sizes = {
            "discrete": self.obs_discrete_size,
            "continuous": self.obs_continuous_dim,
            "image": self.obs_image_size,
        }
        return tuple(k for k, v in sizes.items() if v > 0)

    def vector_width(self, column: str) -> int:
        """The expected width W of a vector column [N, W] under this spec."""
        widths = {
            "obs_continuous": self.obs_continuous_dim,
            "obs_image": self.obs_image_size,
            "q_star": self.num_actions,
            "behavior_logits": self.num_actions,
            "teacher_logits": self.num_actions,
        }
        if column not in widths:
            raise KeyError(f"{column!r} is not a vector column; vector columns: {', '.join(widths)}")
        return widths[column]

    def embedding_kwargs(self) -> dict[str, Any]:
        """Data-dependent `StepEmbedder` kwargs (sizes, modalities, Fourier input range).

        Architecture choices (token_data_len, num_compute_tokens, concat_modalities, std,
        obs_continuous_encoder) are left to the model config. A degenerate continuous range
        (min == max) is widened to [min, min + 1] so Fourier features stay well defined.
        """
        kwargs: dict[str, Any] = {
            "max_num_actions": int(self.num_actions),
            "include_action_token": True,
            "include_reward_token": True,
            "include_done_token": True,
            "include_time_token": True,
            "max_num_time_steps": int(self.horizon) + 1,
            "include_obs_discrete": self.obs_discrete_size > 0,
            "max_num_obs_discrete": int(self.obs_discrete_size),
            "include_obs_continuous": self.obs_continuous_dim > 0,
            "max_num_obs_continuous": int(self.obs_continuous_dim),
            "include_obs_image": self.obs_image_size > 0,
            "max_num_obs_image": int(self.obs_image_size),
        }
        if self.obs_image_size > 0:
            kwargs["obs_image_shape"] = list(self.obs_image_shape)
        if self.obs_continuous_dim > 0:
            if self.obs_continuous_min is None or self.obs_continuous_max is None:
                raise ValueError(
                    "DatasetSpec.obs_continuous_min/max are None: save the dataset with save_dataset "
                    "(which records the data range) or set them before calling embedding_kwargs()"
                )
            lo, hi = float(self.obs_continuous_min), float(self.obs_continuous_max)
            kwargs["fourier_in_min"] = lo
            kwargs["fourier_in_max"] = hi if hi > lo else lo + 1.0
        return kwargs

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["train_task_ids"] = list(self.train_task_ids)
        d["test_task_ids"] = list(self.test_task_ids)
        d["obs_image_shape"] = list(self.obs_image_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetSpec:
        """Inverse of `to_dict`; unknown or missing keys raise a ValueError naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown DatasetSpec keys {unknown}; valid keys: {sorted(names)}")
        missing = sorted(
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
            and f.name not in d
        )
        if missing:
            raise ValueError(f"DatasetSpec is missing required keys {missing}")
        return cls(**d)

    def to_json(self) -> str:
        """Deterministic JSON text (sorted keys, trailing newline)."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> DatasetSpec:
        """Parse spec JSON text; invalid JSON or a non-object raises ValueError saying so."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"spec is not valid JSON ({err.msg} at line {err.lineno} column {err.colno}); "
                "fix the file or re-collect the dataset"
            ) from err
        if not isinstance(data, dict):
            raise ValueError(f"spec must be a JSON object, got {type(data).__name__}")
        return cls.from_dict(data)
