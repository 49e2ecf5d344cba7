"""Vectorised validation of step-record columns against a `DatasetSpec` and the DESIGN.md contract.

Every check is a numpy reduction over whole columns; the first offending row is named in the error
together with its stream id and the expected value.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mouse.data.spec import (
    ACTION_WIDTH_COLUMNS,
    COLUMN_ORDER,
    REQUIRED_COLUMNS,
    SCALAR_COLUMNS,
    VECTOR_COLUMNS,
    DatasetSpec,
    column_dtype,
)

_MODALITY_COLUMNS = {
    "obs_discrete": "obs_discrete_size",
    "obs_continuous": "obs_continuous_dim",
    "obs_image": "obs_image_size",
}


def _first(mask: np.ndarray) -> int:
    """Index of the first True along axis 0 (mask is [N] or [N, W])."""
    if mask.ndim > 1:
        mask = mask.reshape(mask.shape[0], -1).any(axis=1)
    return int(np.argmax(mask))


def stream_offsets(stream_id: np.ndarray) -> np.ndarray:
    """int64 [num_streams + 1] row offsets of the contiguous stream blocks of a sorted `stream_id`."""
    starts = np.flatnonzero(np.diff(stream_id)) + 1
    return np.concatenate([[0], starts, [len(stream_id)]]).astype(np.int64)


def _check_presence(columns: dict[str, np.ndarray], spec: DatasetSpec) -> None:
    unknown = sorted(set(columns) - set(COLUMN_ORDER))
    if unknown:
        raise ValueError(f"unknown columns {unknown}; allowed columns: {', '.join(COLUMN_ORDER)}")
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"missing required column(s) {missing}; required: {', '.join(REQUIRED_COLUMNS)}")
    for col, size_field in _MODALITY_COLUMNS.items():
        size = getattr(spec, size_field)
        if size > 0 and col not in columns:
            raise ValueError(f"missing column {col!r}: the spec has {size_field}={size}")
        if size == 0 and col in columns:
            raise ValueError(
                f"column {col!r} is present but the spec has {size_field}=0; set {size_field} in the spec"
            )


def _check_dtypes_and_shapes(columns: dict[str, np.ndarray], spec: DatasetSpec) -> int:
    num_records = None
    for name, arr in columns.items():
        if not isinstance(arr, np.ndarray):
            raise ValueError(f"column {name!r} must be a numpy array, got {type(arr).__name__}")
        expected = column_dtype(name)
        if arr.dtype != expected:
            raise ValueError(f"column {name!r} has dtype {arr.dtype}, expected {expected}")
        if name in SCALAR_COLUMNS and arr.ndim != 1:
            raise ValueError(f"column {name!r} must have shape [N], got {list(arr.shape)}")
        if name in VECTOR_COLUMNS:
            width = spec.vector_width(name)
            if arr.ndim != 2 or arr.shape[1] != width:
                what = "num_actions" if name in ACTION_WIDTH_COLUMNS else f"the {name} size"
                raise ValueError(
                    f"column {name!r} has shape {list(arr.shape)}, expected [N, {width}] ({what} of the spec)"
                )
        if num_records is None:
            num_records = arr.shape[0]
        elif arr.shape[0] != num_records:
            raise ValueError(
                f"column {name!r} has {arr.shape[0]} rows but column 'stream_id' has {num_records}"
            )
    if not num_records:
        raise ValueError("the columns hold no records (0 rows)")
    return int(num_records)


def _check_range(
    name: str, arr: np.ndarray, lo: float, hi: float, stream_id: np.ndarray, hint: str = ""
) -> None:
    bad = (arr < lo) | (arr > hi)
    if bad.any():
        i = _first(bad)
        raise ValueError(
            f"column {name!r} row {i} (stream {stream_id[i]}) has value {arr[i]}, "
            f"expected {lo} <= {name} <= {hi}{hint}"
        )


def _check_values(columns: dict[str, np.ndarray], spec: DatasetSpec) -> None:
    sid = columns["stream_id"]
    _check_range("action", columns["action"], 0, spec.num_actions - 1, sid, " (spec.num_actions)")
    _check_range("done", columns["done"], 0, 2, sid, " (0 alive, 1 terminal, 2 truncated)")
    _check_range("time", columns["time"], 0, spec.horizon, sid, " (spec.horizon)")
    if "obs_discrete" in columns:
        hi = spec.obs_discrete_size - 1
        _check_range("obs_discrete", columns["obs_discrete"], 0, hi, sid, " (spec.obs_discrete_size)")
    for name in ("reward", "xformed_reward", "obs_continuous"):
        if name in columns and not np.isfinite(columns[name]).all():
            i = _first(~np.isfinite(columns[name]))
            raise ValueError(
                f"column {name!r} row {i} (stream {sid[i]}) holds {columns[name][i]}: expected finite values"
            )
    if "obs_continuous" in columns:
        lo, hi = spec.obs_continuous_min, spec.obs_continuous_max
        obs = columns["obs_continuous"]
        if lo is not None:
            _check_range("obs_continuous", obs, lo, np.inf, sid, " (spec.obs_continuous_min)")
        if hi is not None:
            _check_range("obs_continuous", obs, -np.inf, hi, sid, " (spec.obs_continuous_max)")
    for name in ACTION_WIDTH_COLUMNS:
        if name in columns:
            arr = columns[name]
            bad = np.isnan(arr) | (arr == np.inf)
            if bad.any():
                i = _first(bad)
                raise ValueError(
                    f"column {name!r} row {i} (stream {sid[i]}) holds {arr[i].tolist()}: "
                    "expected finite values or -inf (invalid action)"
                )


def _check_contract(columns: dict[str, np.ndarray], offsets: np.ndarray) -> None:
    """Stream-major order, one task per stream, reset records and time steps as in DESIGN.md."""
    sid, time, done = columns["stream_id"], columns["time"], columns["done"]
    step = np.diff(sid)
    if (step < 0).any():
        i = _first(step < 0) + 1
        raise ValueError(
            f"column 'stream_id' decreases at row {i} ({sid[i - 1]} -> {sid[i]}): records must be "
            "stream-major (each stream contiguous, streams in ascending stream_id order)"
        )
    tid = columns["task_id"]
    same_stream = step == 0
    changed = same_stream & (np.diff(tid) != 0)
    if changed.any():
        i = _first(changed) + 1
        raise ValueError(
            f"column 'task_id' changes inside stream {sid[i]} at row {i} ({tid[i - 1]} -> {tid[i]}): "
            "a stream holds records of one task"
        )
    first = offsets[:-1]
    if (time[first] != 0).any():
        i = int(first[_first(time[first] != 0)])
        raise ValueError(
            f"column 'time' row {i} (first record of stream {sid[i]}) is {time[i]}, expected 0 (a reset record)"
        )
    expected = np.where(done[:-1] > 0, 0, time[:-1] + 1)
    bad = same_stream & (time[1:] != expected)
    if bad.any():
        i = _first(bad) + 1
        raise ValueError(
            f"column 'time' row {i} (stream {sid[i]}) is {time[i]}, expected {expected[i - 1]} "
            f"(previous record: time {time[i - 1]}, done {done[i - 1]}; a reset record follows done > 0)"
        )
    reset = time == 0
    for name in ("action", "reward", "done"):
        bad = reset & (columns[name] != 0)
        if bad.any():
            i = _first(bad)
            raise ValueError(
                f"column {name!r} row {i} (stream {sid[i]}) is {columns[name][i]} on a reset record "
                "(time 0), expected 0"
            )
    if "q_star" in columns:
        bad = (done > 0) & np.isfinite(columns["q_star"]).any(axis=1)
        if bad.any():
            i = _first(bad)
            raise ValueError(
                f"column 'q_star' row {i} (stream {sid[i]}, done {done[i]}) is {columns['q_star'][i].tolist()}: "
                "expected all -inf on terminal/truncated records (no action is taken there)"
            )


def validate_columns(columns: dict[str, np.ndarray], spec: DatasetSpec) -> DatasetSpec:
    """Check step-record columns against `spec`; return the spec with counts and ranges filled in.

    Raises ValueError naming the column, the first bad row and its stream, and the expected value.
    Counts in `spec` that are 0 (num_records, num_streams) and a None continuous range are filled in
    from the data; non-zero counts must match. `steps_per_task > 0` requires every stream to have
    exactly that many records.
    """
    _check_presence(columns, spec)
    num_records = _check_dtypes_and_shapes(columns, spec)
    _check_values(columns, spec)
    offsets = stream_offsets(columns["stream_id"])
    _check_contract(columns, offsets)
    num_streams = len(offsets) - 1
    for name, actual in (("num_records", num_records), ("num_streams", num_streams)):
        declared = getattr(spec, name)
        if declared and declared != actual:
            raise ValueError(f"spec.{name}={declared} but the columns hold {actual}")
    lengths = np.diff(offsets)
    if spec.steps_per_task and (lengths != spec.steps_per_task).any():
        s = _first(lengths != spec.steps_per_task)
        raise ValueError(
            f"stream {columns['stream_id'][offsets[s]]} has {lengths[s]} records, expected "
            f"spec.steps_per_task={spec.steps_per_task} (set steps_per_task=0 for variable-length streams)"
        )
    updates: dict = {"num_records": num_records, "num_streams": num_streams}
    if "obs_continuous" in columns:
        obs = columns["obs_continuous"]
        if spec.obs_continuous_min is None:
            updates["obs_continuous_min"] = float(obs.min())
        if spec.obs_continuous_max is None:
            updates["obs_continuous_max"] = float(obs.max())
    return dataclasses.replace(spec, **updates)


# Task families of datasets that come from no environment (mouse.data.synthetic, hand-made columns).
NO_ENV_FAMILIES = ("", "synthetic")


def check_spec_task_family(spec: DatasetSpec) -> None:
    """Check the spec's `task_family`, `task_params` and task-id lists against the family they name.

    A `task_family` of "" or "synthetic" (no environment) is not checked. Otherwise the family must be
    known (`mouse.tasks.FAMILIES`) and buildable from `task_params`, every `train_task_ids` /
    `test_task_ids` entry must lie in the family's task-id range, and the sizes the family fixes
    (`num_actions`, `horizon`, `obs_discrete_size`, `obs_continuous_dim`, `obs_image_size`) must agree with it, so a
    dataset whose evaluation would fail is rejected when it is loaded. ValueError names the field,
    both values and the fix.
    """
    if spec.task_family in NO_ENV_FAMILIES:
        return
    from mouse.tasks import FAMILIES, make_family

    fix = "fix spec.json or re-collect the dataset (mouse-collect ... overwrite=true)"
    if spec.task_family not in FAMILIES:
        raise ValueError(
            f"task_family {spec.task_family!r} is unknown; valid families: {', '.join(FAMILIES)} "
            f"(or {' / '.join(repr(f) for f in NO_ENV_FAMILIES)} for data from no environment); {fix}"
        )
    try:
        family = make_family(spec.task_family, **spec.task_params)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"task_params {spec.task_params} do not build task family {spec.task_family!r}: {err}; {fix}"
        ) from err
    ids = family.all_task_ids()
    lo, hi = ids[0], ids[-1]
    for name in ("train_task_ids", "test_task_ids"):
        bad = [i for i in getattr(spec, name) if not lo <= i <= hi]
        if bad:
            raise ValueError(
                f"{name} holds {bad[:5]}{' ...' if len(bad) > 5 else ''}, outside the task-id range "
                f"[{lo}, {hi}] of task family {spec.task_family!r} with task_params {family.params}; {fix}"
            )
    params = f"task family {spec.task_family!r} with task_params {family.params}"
    checks = (
        ("num_actions", spec.num_actions, family.num_actions, "actions"),
        ("horizon", spec.horizon, family.horizon, "horizon"),
    )
    for name, value, expected, what in checks:
        if value != expected:
            raise ValueError(f"spec {name}={value} but {params} has {what} {expected}; {fix}")
    sizes = (
        ("obs_discrete_size", spec.obs_discrete_size, family.obs_discrete_size),
        ("obs_continuous_dim", spec.obs_continuous_dim, family.obs_continuous_dim),
        ("obs_image_size", spec.obs_image_size, family.obs_image_size),
    )
    for name, value, expected in sizes:
        if value not in (0, expected):
            raise ValueError(f"spec {name}={value} but {params} has {name} {expected}; {fix}")
