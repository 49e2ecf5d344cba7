"""`WindowLoader`: seeded, resumable batches of fixed-length windows that never cross streams.

Windows are gathered by index arithmetic over the contiguous columns (`starts[:, None] + arange(S)`
fancy indexing), one numpy gather per column and batch. Batch `k` is a pure function of
(seed, k), so the loader's position is one integer and `load_state_dict` restores it exactly.
"""

from __future__ import annotations

import queue
import threading
import warnings
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict

from mouse.data.spec import STEP_KEYS
from mouse.data.storage import StepDataset

SAMPLING_MODES = ("random", "sequential", "last", "start")
_END = object()


class WindowLoader:
    """Iterable of `TensorDict[B, S]` windows, each lying inside one stream.

    sampling:
      - "random": starts drawn uniformly over all valid window starts, with replacement (infinite).
      - "sequential": epochs over the window starts `stream_start + j * stride` (stride defaults to
        seq_len: non-overlapping), shuffled afresh each epoch; batches run on across epoch ends, so
        each epoch yields every window once and every batch is full (infinite).
      - "last": the last window of each stream in stream order (finite; the final batch may be smaller;
        a new `for` loop starts over).
      - "start": the first window of each stream (starting at its reset record, as an evaluation stream
        does), streams drawn uniformly with replacement (infinite). For data whose behaviour policy
        acts on the whole stream so far (exploring teachers, learners): the context then explains it.
    Keys are the DESIGN.md step-record columns present in the dataset (or `keys`), with their
    contract dtypes (int64, float32, uint8 for obs_image). `keys` may also name `stream_id`/`task_id`.
    Streams shorter than `seq_len` raise ValueError unless `allow_short_streams=True`, which skips
    them and counts them in `num_skipped_streams`. `prefetch > 0` builds batches in a daemon thread
    (queue of `prefetch` batches); call `close()` or use the loader as a context manager.
    """

    def __init__(
        self,
        dataset: StepDataset,
        batch_size: int,
        seq_len: int,
        sampling: str = "random",
        seed: int = 0,
        prefetch: int = 2,
        pin_memory: bool = False,
        device: str | torch.device = "cpu",
        allow_short_streams: bool = False,
        keys: Sequence[str] | None = None,
        stride: int | None = None,
    ) -> None:
        if sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {sampling!r}")
        for name, value, low in (
            ("batch_size", batch_size, 1),
            ("seq_len", seq_len, 1),
            ("prefetch", prefetch, 0),
        ):
            if int(value) < low:
                raise ValueError(f"WindowLoader {name} must be >= {low}, got {value}")
        if stride is not None and (sampling != "sequential" or int(stride) < 1):
            raise ValueError(
                f"stride={stride} needs sampling='sequential' and stride >= 1 (got {sampling!r})"
            )
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.seq_len = int(seq_len)
        self.sampling = sampling
        self.seed = int(seed)
        self.prefetch = int(prefetch)
        self.device = torch.device(device)
        self.pin_memory = bool(pin_memory)
        if self.pin_memory and not torch.cuda.is_available():
            warnings.warn("WindowLoader(pin_memory=True) has no effect without CUDA", stacklevel=2)
            self.pin_memory = False
        self.stride = int(stride) if stride is not None else self.seq_len
        self.keys = self._select_keys(keys)
        self._columns = [(k, dataset.columns[k]) for k in self.keys]
        self._arange = np.arange(self.seq_len, dtype=np.int64)
        self._init_starts(allow_short_streams)
        self._position = 0  # index of the next batch handed out
        self._perm_cache: dict[int, np.ndarray] = {}
        self._thread: threading.Thread | None = None
        self._queue: queue.Queue | None = None
        self._stop: threading.Event | None = None

    # ------------------------------------------------------------------ setup
    def _select_keys(self, keys: Sequence[str] | None) -> list[str]:
        available = list(self.dataset.columns)
        if keys is None:
            return [k for k in STEP_KEYS if k in self.dataset.columns]
        unknown = [k for k in keys if k not in self.dataset.columns]
        if unknown:
            raise KeyError(
                f"WindowLoader keys {unknown} are not columns of the dataset; available: {available}"
            )
        return list(keys)

    def _init_starts(self, allow_short_streams: bool) -> None:
        offsets = self.dataset.stream_offsets
        lengths = np.diff(offsets)
        short = lengths < self.seq_len
        if short.any() and not allow_short_streams:
            s = int(np.argmax(short))
            sid = int(self.dataset.columns["stream_id"][offsets[s]])
            raise ValueError(
                f"stream {s} (stream_id {sid}) has {lengths[s]} records, shorter than seq_len={self.seq_len}; "
                "lower seq_len or pass allow_short_streams=True to skip such streams "
                "(mouse-train: trainer.seq_len, data.allow_short_streams=true)"
            )
        self.num_skipped_streams = int(short.sum())
        if self.num_skipped_streams == len(lengths):
            raise ValueError(
                f"every stream is shorter than seq_len={self.seq_len} (longest: {lengths.max()})"
            )
        first, lengths = offsets[:-1][~short], lengths[~short]
        if self.sampling == "random":
            counts = lengths - self.seq_len + 1
            self._cum_counts = np.cumsum(counts)
            self._base = first - (self._cum_counts - counts)  # start = u + base[stream of u]
            self.num_windows = int(self._cum_counts[-1])
        elif self.sampling == "sequential":
            counts = (lengths - self.seq_len) // self.stride + 1
            within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            self._starts = np.repeat(first, counts) + within * self.stride
            self.num_windows = len(self._starts)
        elif self.sampling == "start":
            self._starts = first
            self.num_windows = len(self._starts)
        else:
            self._starts = first + lengths - self.seq_len
            self.num_windows = len(self._starts)

    # ------------------------------------------------------------------ batches
    @property
    def num_batches(self) -> int | None:
        """Batches per pass for "last"; None for the infinite modes."""
        return self.batches_per_epoch if self.sampling == "last" else None

    @property
    def batches_per_epoch(self) -> int:
        """ceil(num_windows / batch_size): batches that cover each window once (sequential, last)."""
        return -(-self.num_windows // self.batch_size)

    @property
    def epoch(self) -> int:
        """Epoch of the next window to be handed out (sequential), or batches / batches_per_epoch."""
        return self._position * self.batch_size // self.num_windows

    def _epoch_perm(self, epoch: int) -> np.ndarray:
        perm = self._perm_cache.get(epoch)
        if perm is None:
            perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_windows)
            self._perm_cache = {epoch: perm, **{e: p for e, p in self._perm_cache.items() if e == epoch - 1}}
        return perm

    def batch_starts(self, k: int) -> np.ndarray:
        """int64 [B] global record index of the first record of each window of batch `k`."""
        if self.sampling == "random":
            u = np.random.default_rng([self.seed, k]).integers(0, self.num_windows, size=self.batch_size)
            return u + self._base[np.searchsorted(self._cum_counts, u, side="right")]
        if self.sampling == "last":
            return self._starts[k * self.batch_size : (k + 1) * self.batch_size]
        if self.sampling == "start":
            u = np.random.default_rng([self.seed, k]).integers(0, self.num_windows, size=self.batch_size)
            return self._starts[u]
        g = k * self.batch_size + np.arange(self.batch_size)
        epochs, pos = np.divmod(g, self.num_windows)
        out = np.empty(self.batch_size, dtype=np.int64)
        for e in np.unique(epochs):  # one or two epochs per batch (more only if B > num_windows)
            sel = epochs == e
            out[sel] = self._starts[self._epoch_perm(int(e))[pos[sel]]]
        return out

    def make_batch(self, k: int) -> TensorDict:
        """Batch `k` (deterministic given the seed), on CPU (pinned if `pin_memory`)."""
        starts = self.batch_starts(k)
        idx = starts[:, None] + self._arange
        data = {key: torch.from_numpy(col[idx]) for key, col in self._columns}
        td = TensorDict(data, batch_size=[len(starts), self.seq_len])
        return td.pin_memory() if self.pin_memory else td

    # ------------------------------------------------------------------ iteration
    @staticmethod
    def _producer(ref: weakref.ref, start: int, q: queue.Queue, stop: threading.Event) -> None:
        """Build batches start, start+1, ... into `q` until stopped, the pass ends, or the loader is
        garbage-collected (only a weak reference is held between batches, so a dropped loader that
        was never closed still stops its thread via `__del__`)."""
        k = start
        while not stop.is_set():
            loader = ref()
            if loader is None:
                return
            if loader.num_batches is not None and k >= loader.num_batches:
                item: Any = _END
            else:
                try:
                    item = (k, loader.make_batch(k))
                except BaseException as exc:  # handed to the consumer, raised there
                    item = exc
            del loader
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.05)
                    break
                except queue.Full:
                    continue
            if item is _END or isinstance(item, BaseException):
                return
            k += 1

    def _start_thread(self) -> None:
        self._queue = queue.Queue(maxsize=self.prefetch)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=WindowLoader._producer,
            args=(weakref.ref(self), self._position, self._queue, self._stop),
            name="mouse-window-loader",
            daemon=True,
        )
        self._thread.start()

    def _next_batch(self) -> TensorDict | None:
        if self.prefetch == 0:
            if self.num_batches is not None and self._position >= self.num_batches:
                return None
            return self.make_batch(self._position)
        if self._thread is None:
            self._start_thread()
        item = self._queue.get()
        if item is _END:
            self._stop_thread()
            return None
        if isinstance(item, BaseException):
            self._stop_thread()
            raise item
        k, td = item
        assert k == self._position, f"prefetch thread out of step: batch {k}, expected {self._position}"
        return td

    def __iter__(self) -> Iterator[TensorDict]:
        return self

    def __next__(self) -> TensorDict:
        td = self._next_batch()
        if td is None:  # "last" pass done: the next iteration starts over
            self._position = 0
            raise StopIteration
        self._position += 1
        if self.device.type != "cpu":
            td = td.to(self.device, non_blocking=self.pin_memory)
        return td

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError(f"WindowLoader(sampling={self.sampling!r}) is infinite: it has no len()")
        return self.num_batches

    # ------------------------------------------------------------------ state
    def _fingerprint(self) -> dict[str, Any]:
        return {
            "sampling": self.sampling,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "stride": self.stride,
            "num_windows": self.num_windows,
        }

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-able position: the number of batches handed out, plus settings it depends on."""
        return {"batches_yielded": self._position, **self._fingerprint()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict()` position; the settings it was taken with must match this loader's."""
        mismatched = {k: (state.get(k), v) for k, v in self._fingerprint().items() if state.get(k) != v}
        if mismatched:
            details = ", ".join(f"{k}: saved {a!r}, loader {b!r}" for k, (a, b) in mismatched.items())
            raise ValueError(f"WindowLoader state does not match this loader ({details})")
        position = int(state["batches_yielded"])
        if position < 0:
            raise ValueError(f"WindowLoader state batches_yielded must be >= 0, got {position}")
        self._stop_thread()
        self._position = position

    # ------------------------------------------------------------------ shutdown
    def _stop_thread(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5.0)
        self._thread, self._queue, self._stop = None, None, None

    def close(self) -> None:
        """Stop the prefetch thread (the loader can be iterated again afterwards; it restarts it)."""
        self._stop_thread()

    def __enter__(self) -> WindowLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._stop_thread()
        except Exception:
            pass
