"""One acting round → windows, and the bounded FIFO replay the learner samples them from.

A round runs every stream of the batched environment for ``S`` ticks from a fresh reset, so each
stream yields one window ``[S]`` of step records (the contract of ``mouse.rollout.engine``), the same
layout as an offline window from a stream's start. Storage is torchrl's ``TensorDictReplayBuffer`` on
a ``LazyTensorStorage`` (capacity in windows; the oldest windows are overwritten first); indices are
drawn with the learner's own ``torch.Generator`` so sampling is reproducible and resumable.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tensordict import TensorDict

from mouse.rollout.recorders import ColumnRecorder

# per-window metadata stored beside the records (not part of the training batch)
META_KEYS = ("weights_step", "round", "task_id")


class WindowRecorder(ColumnRecorder):
    """Keeps every field of one round (``ColumnRecorder`` columns ``[N, S, ...]``) and hands them out as
    a TensorDict ``[N]`` of windows: record fields ``[N, S, ...]`` plus ``META_KEYS`` ``[N]``."""

    def windows(self, weights_step: int, round_index: int, task_ids: np.ndarray) -> TensorDict:
        n = len(task_ids)
        data = {k: torch.from_numpy(np.ascontiguousarray(v[:, : self.count])) for k, v in self.cols.items()}
        data["weights_step"] = torch.full((n,), int(weights_step), dtype=torch.int64)
        data["round"] = torch.full((n,), int(round_index), dtype=torch.int64)
        data["task_id"] = torch.as_tensor(np.asarray(task_ids, dtype=np.int64))
        return TensorDict(data, batch_size=[n])


class WindowReplay:
    """A bounded FIFO of windows: never holds more than ``capacity`` windows.

    ``extend(windows)`` appends a TensorDict ``[N]`` (from :meth:`WindowRecorder.windows`), overwriting
    the oldest windows once full; ``sample(batch_size, generator)`` draws windows uniformly with
    replacement and returns ``(batch, meta)``: the records as a TensorDict ``[B, S]`` and the
    ``META_KEYS`` tensors ``[B]``. The windows live in a torchrl ``LazyTensorStorage`` (allocated on the
    first round); the write cursor and the index draws are ours, so the state is plain tensors.
    """

    def __init__(self, capacity: int) -> None:
        from torchrl.data import LazyTensorStorage

        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1 window, got {capacity}")
        self.capacity = int(capacity)
        self.storage = LazyTensorStorage(self.capacity)
        self.size = 0
        self.cursor = 0  # next slot to write
        self.added = 0  # windows ever added

    def __len__(self) -> int:
        return self.size

    def extend(self, windows: TensorDict) -> None:
        n = int(windows.batch_size[0])
        if n > self.capacity:
            raise ValueError(f"{n} windows do not fit a replay of capacity {self.capacity}")
        slots = (torch.arange(n) + self.cursor) % self.capacity
        self.storage.set(slots, windows)
        self.cursor = (self.cursor + n) % self.capacity
        self.size = min(self.size + n, self.capacity)
        self.added += n

    def sample(
        self, batch_size: int, generator: torch.Generator
    ) -> tuple[TensorDict, dict[str, torch.Tensor]]:
        if self.size == 0:
            raise RuntimeError("the replay is empty: run an acting round before sampling")
        idx = torch.randint(0, self.size, (int(batch_size),), generator=generator)
        items = self.storage.get(idx)
        meta = {k: items.get(k) for k in META_KEYS}
        fields = {k: v for k, v in items.items() if k not in META_KEYS}
        seq_len = next(iter(fields.values())).shape[1]
        return TensorDict(fields, batch_size=[int(batch_size), seq_len]), meta

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors and ints: the stored windows (slot order), the cursor and the counters."""
        windows = self.storage.get(torch.arange(self.size)) if self.size else None
        return {
            "windows": None if windows is None else {k: v.clone() for k, v in windows.items()},
            "size": self.size,
            "cursor": self.cursor,
            "added": self.added,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        size = int(state["size"])
        if size > self.capacity:
            raise ValueError(
                f"the saved replay holds {size} windows, more than mode.replay_capacity={self.capacity}"
            )
        if size:
            self.storage.set(torch.arange(size), TensorDict(state["windows"], batch_size=[size]))
        self.size, self.cursor, self.added = size, int(state["cursor"]), int(state["added"])
