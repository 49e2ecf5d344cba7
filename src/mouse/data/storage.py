"""On-disk datasets: Arrow IPC files in the Hugging Face `datasets` layout, memory-mapped on load.

A dataset directory holds

    data/<split>-00000-of-00001.arrow   one row per step record (uncompressed Arrow IPC file format)
    spec.json                           the `DatasetSpec`
    README.md                           dataset card (mouse.hub.dataset_card) whose YAML front-matter
                                        points `datasets` at data/

so `datasets.load_dataset(path)` reads it too. `load_dataset` maps the Arrow file with
`pyarrow.memory_map` and exposes every column as a read-only numpy view of the mapping: records are
never expanded into Python objects. Vector columns ([N, W]) are Arrow fixed-size lists.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mouse.data.spec import COLUMN_ORDER, SCALAR_COLUMNS, DatasetSpec
from mouse.data.validate import check_spec_task_family, stream_offsets, validate_columns
from mouse.hub import (
    DATASET_CARD_FILE,
    DATASET_DATA_DIR,
    DATASET_SPEC_FILE,
    dataset_card,
    download_dataset,
    is_hub_id,
    push_dataset_to_hub,
)

# push_dataset_to_hub lives in mouse.hub and is re-exported here and in mouse.data.
__all__ = ["DATA_DIR", "SPEC_FILE", "StepDataset", "load_dataset", "push_dataset_to_hub", "save_dataset"]

# The folder layout (shared with the Hub repos, see mouse.hub).
SPEC_FILE = DATASET_SPEC_FILE
DATA_DIR = DATASET_DATA_DIR


def _data_file_name(split: str) -> str:
    return f"{split}-00000-of-00001.arrow"


def _read_only(arr: np.ndarray) -> np.ndarray:
    view = arr.view()
    view.flags.writeable = False
    return view


class StepDataset:
    """Validated step-record columns of one dataset split.

    `columns` maps names to read-only numpy arrays ([N] or [N, W], contract dtypes), memory-mapped
    when loaded from disk. Streams are contiguous row blocks: stream `i` is rows
    `stream_offsets[i]:stream_offsets[i + 1]`. `len(dataset)` is the number of records.
    """

    def __init__(
        self,
        columns: dict[str, np.ndarray],
        spec: DatasetSpec,
        path: Path | None = None,
        _keepalive: Any = None,
    ) -> None:
        self.spec = validate_columns(columns, spec)
        self.columns = {name: _read_only(columns[name]) for name in COLUMN_ORDER if name in columns}
        self.stream_offsets = _read_only(stream_offsets(self.columns["stream_id"]))
        self.path = path
        self._keepalive = _keepalive  # the Arrow table / memory map the columns point into

    @classmethod
    def from_columns(cls, columns: dict[str, np.ndarray], spec: DatasetSpec) -> StepDataset:
        """An in-memory dataset (validated; counts filled into the spec)."""
        return cls(columns, spec)

    @property
    def num_records(self) -> int:
        return int(self.stream_offsets[-1])

    @property
    def num_streams(self) -> int:
        return len(self.stream_offsets) - 1

    @property
    def stream_lengths(self) -> np.ndarray:
        """int64 [num_streams] records per stream."""
        return np.diff(self.stream_offsets)

    def __len__(self) -> int:
        return self.num_records

    def stream(self, index: int) -> dict[str, np.ndarray]:
        """Views of every column over stream `index` (0-based position, not the stream_id value)."""
        if not 0 <= index < self.num_streams:
            raise IndexError(f"stream index {index} out of range [0, {self.num_streams})")
        lo, hi = int(self.stream_offsets[index]), int(self.stream_offsets[index + 1])
        return {name: col[lo:hi] for name, col in self.columns.items()}

    def window(self, index: int, start: int, length: int) -> dict[str, np.ndarray]:
        """Views of `length` records of stream `index` from record `start` (must lie inside the stream)."""
        n = int(self.stream_lengths[index]) if 0 <= index < self.num_streams else 0
        if not 0 <= start or start + length > n or length < 1:
            raise IndexError(
                f"window start={start} length={length} does not fit in stream {index} of {n} records"
            )
        return {name: col[start : start + length] for name, col in self.stream(index).items()}

    def __repr__(self) -> str:
        return (
            f"StepDataset(task_family={self.spec.task_family!r}, split={self.spec.split!r}, "
            f"num_streams={self.num_streams}, num_records={self.num_records}, columns={list(self.columns)})"
        )


def _to_arrow(columns: dict[str, np.ndarray]) -> pa.RecordBatch:
    arrays, names = [], []
    for name in COLUMN_ORDER:
        if name not in columns:
            continue
        arr = np.ascontiguousarray(columns[name])
        if name in SCALAR_COLUMNS:
            arrays.append(pa.array(arr))
        else:
            arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1)), arr.shape[1]))
        names.append(name)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def save_dataset(
    columns: dict[str, np.ndarray], spec: DatasetSpec, path: str | os.PathLike, overwrite: bool = False
) -> Path:
    """Validate `columns` and write them with `spec` as a dataset directory at `path`; return the path.

    Written into a temporary sibling directory and renamed into place, so readers never see a partial
    dataset; the same input gives the same bytes. An existing `path` raises FileExistsError unless
    `overwrite=True`. The written spec has counts and the continuous range filled in.
    """
    path = Path(path).absolute()
    if path.exists() and not overwrite:
        raise FileExistsError(f"dataset directory {path} already exists; pass overwrite=True to replace it")
    spec = validate_columns(columns, spec)
    batch = _to_arrow(columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        (tmp / DATA_DIR).mkdir(parents=True)
        with pa.OSFile(str(tmp / DATA_DIR / _data_file_name(spec.split)), "wb") as sink:
            with pa.ipc.new_file(sink, batch.schema) as writer:
                writer.write_batch(batch)
        (tmp / SPEC_FILE).write_text(spec.to_json())
        (tmp / DATASET_CARD_FILE).write_text(dataset_card(spec.to_dict()))
        if path.exists():  # overwrite=True: swap the old directory out, then delete it
            trash = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(path, trash)
            os.replace(tmp, path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _arrow_to_numpy(name: str, column: pa.ChunkedArray) -> np.ndarray:
    """Zero-copy numpy view of a single-chunk Arrow column ([N] or [N, W])."""
    if column.null_count:
        raise ValueError(f"column {name!r} holds {column.null_count} null values; step records have no nulls")
    if column.num_chunks != 1:
        column = pa.chunked_array([pa.concat_arrays(column.chunks)]) if column.num_chunks else column
    arr = column.chunk(0)
    if pa.types.is_fixed_size_list(arr.type):
        width = arr.type.list_size
        return arr.flatten().to_numpy(zero_copy_only=True).reshape(len(arr), width)
    if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        raise ValueError(
            f"column {name!r} is a variable-length list; vector columns must be fixed-size lists of the spec width"
        )
    return arr.to_numpy(zero_copy_only=True)


def _resolve(path_or_repo_id: str | os.PathLike, split: str | None, revision: str | None) -> Path:
    """The local dataset folder: an existing directory, else a download of Hub dataset ``ORG/NAME``."""
    path = Path(path_or_repo_id).expanduser()
    if not path.exists():
        text = str(path_or_repo_id)
        if not is_hub_id(text):
            raise FileNotFoundError(
                f"dataset {text!r} is neither an existing directory nor a Hub dataset id 'ORG/NAME'"
            )
        path = download_dataset(text, split=split, revision=revision)
    if not (path / SPEC_FILE).exists() and split is not None and (path / split / SPEC_FILE).exists():
        path = path / split
    if not (path / SPEC_FILE).exists():
        raise FileNotFoundError(
            f"{path} has no {SPEC_FILE}: not a MOUSE dataset directory (see save_dataset)"
        )
    return path


def load_dataset(
    path_or_repo_id: str | os.PathLike, split: str | None = None, revision: str | None = None
) -> StepDataset:
    """Load a dataset directory, or a Hub dataset repo `ORG/NAME`, memory-mapped and validated.

    A path that does not exist and reads `ORG/NAME` (`mouse.hub.is_hub_id`) is downloaded with
    `mouse.hub.download_dataset` (only the files read here). `split`, when given, must match the
    spec's split (a directory may also hold one sub-folder per split, `<path>/<split>/spec.json`).
    `revision` selects a Hub revision.
    """
    path = _resolve(path_or_repo_id, split, revision)
    spec_file = path / SPEC_FILE
    try:
        spec = DatasetSpec.from_json(spec_file.read_text())
        check_spec_task_family(spec)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"{spec_file}: {err}") from err
    if split is not None and split != spec.split:
        raise ValueError(f"dataset {path} holds split {spec.split!r}, not the requested split {split!r}")
    files = sorted((path / DATA_DIR).glob("*.arrow"))
    if len(files) != 1:
        raise FileNotFoundError(
            f"expected exactly one Arrow file under {path / DATA_DIR}, found {[f.name for f in files]}"
        )
    try:
        source = pa.memory_map(str(files[0]), "r")
        table = pa.ipc.open_file(source).read_all()
    except (pa.ArrowException, OSError) as err:
        raise ValueError(
            f"{files[0]}: not a readable Arrow IPC file ({type(err).__name__}: {err}); the dataset is "
            f"truncated or corrupt: re-collect it (mouse-collect ... output={path} overwrite=true)"
        ) from err
    columns = {name: _arrow_to_numpy(name, table.column(name)) for name in table.column_names}
    return StepDataset(columns, spec, path=path, _keepalive=(source, table))
