"""WindowLoader: windows stay inside streams, dtypes, seeding, resumable position, short streams."""

import json
import threading

import numpy as np
import pytest
import torch

from mouse.data import StepDataset, WindowLoader, synthetic_columns


@pytest.fixture(scope="module")
def dataset():
    # streams of different lengths, so a window crossing a boundary would be visible
    cols, spec = synthetic_columns(
        num_streams=6, steps_per_stream=[30, 17, 45, 20, 64, 33], num_actions=4, seed=3
    )
    return StepDataset.from_columns(cols, spec)


def _same(a, b):
    assert a.keys() == b.keys()
    for key in a.keys():
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


@pytest.mark.parametrize("sampling", ["random", "sequential", "last"])
def test_windows_never_cross_streams(dataset, sampling):
    S = 16
    with WindowLoader(
        dataset, batch_size=5, seq_len=S, sampling=sampling, keys=["stream_id", "time", "done"]
    ) as loader:
        for _, batch in zip(range(12), loader):
            sid = batch["stream_id"]
            assert (sid == sid[:, :1]).all()
            # consecutive records inside one stream: time follows the contract
            time, done = batch["time"], batch["done"]
            expected = torch.where(done[:, :-1] > 0, torch.zeros_like(time[:, 1:]), time[:, :-1] + 1)
            assert (time[:, 1:] == expected).all()


def test_keys_and_dtypes(dataset):
    loader = WindowLoader(dataset, batch_size=3, seq_len=8, prefetch=0)
    batch = next(iter(loader))
    assert batch.batch_size == torch.Size([3, 8])
    expected = {
        "action": torch.int64,
        "reward": torch.float32,
        "done": torch.int64,
        "time": torch.int64,
        "obs_discrete": torch.int64,
        "q_star": torch.float32,
        "behavior_logits": torch.float32,
        "teacher_logits": torch.float32,
    }
    assert {k: batch[k].dtype for k in batch.keys()} == expected
    assert batch["q_star"].shape == (3, 8, 4)
    # values equal the dataset rows the window starts at
    starts = loader.batch_starts(0)
    np.testing.assert_array_equal(
        batch["reward"].numpy(), dataset.columns["reward"][starts[:, None] + np.arange(8)]
    )
    with pytest.raises(KeyError, match=r"keys \['rewards'\] are not columns"):
        WindowLoader(dataset, batch_size=3, seq_len=8, keys=["rewards"])


def test_random_covers_all_window_starts_uniformly(dataset):
    S = 16
    loader = WindowLoader(dataset, batch_size=256, seq_len=S, prefetch=0)
    lengths = dataset.stream_lengths
    assert loader.num_windows == int((lengths - S + 1).sum())
    starts = np.concatenate([loader.batch_starts(k) for k in range(400)])
    valid = np.concatenate([o + np.arange(n - S + 1) for o, n in zip(dataset.stream_offsets[:-1], lengths)])
    counts = np.bincount(starts, minlength=dataset.num_records)
    assert set(np.flatnonzero(counts)) == set(valid)
    expected = len(starts) / len(valid)
    assert counts[valid].min() > 0.6 * expected and counts[valid].max() < 1.4 * expected


def test_sequential_epochs_visit_each_window_once_and_reshuffle(dataset):
    S = 8
    loader = WindowLoader(dataset, batch_size=4, seq_len=S, sampling="sequential", prefetch=0)
    n = loader.num_windows
    expected = np.concatenate(
        [
            o + np.arange(0, ln - S + 1, S)
            for o, ln in zip(dataset.stream_offsets[:-1], dataset.stream_lengths)
        ]
    )
    assert n == len(expected)
    flat = np.concatenate([loader.batch_starts(k) for k in range(-(-3 * n // 4))])
    epoch0, epoch1 = flat[:n], flat[n : 2 * n]
    assert sorted(epoch0) == sorted(expected) == sorted(epoch1)
    assert not np.array_equal(epoch0, epoch1)
    overlapping = WindowLoader(dataset, batch_size=4, seq_len=S, sampling="sequential", stride=1, prefetch=0)
    assert overlapping.num_windows == int((dataset.stream_lengths - S + 1).sum())


def test_last_windows_in_stream_order(dataset):
    loader = WindowLoader(dataset, batch_size=4, seq_len=10, sampling="last", keys=["stream_id", "time"])
    batches = list(loader)
    assert len(batches) == len(loader) == 2 and batches[1].batch_size[0] == 2
    sid = torch.cat([b["stream_id"][:, -1] for b in batches])
    assert sid.tolist() == dataset.columns["stream_id"][dataset.stream_offsets[1:] - 1].tolist()
    assert len(list(loader)) == 2  # a new pass starts over


@pytest.mark.parametrize("sampling", ["random", "sequential"])
def test_determinism_by_seed(dataset, sampling):
    def take(seed, prefetch):
        with WindowLoader(dataset, 4, 8, sampling=sampling, seed=seed, prefetch=prefetch) as loader:
            return [b for _, b in zip(range(6), loader)]

    a, b, c = take(0, 2), take(0, 0), take(1, 2)
    for x, y in zip(a, b):
        _same(x, y)
    assert any(not torch.equal(x["reward"], y["reward"]) for x, y in zip(a, c))


@pytest.mark.parametrize("sampling", ["random", "sequential", "last"])
def test_state_dict_restores_the_exact_position(dataset, sampling):
    def run(n):
        return [b for _, b in zip(range(n), loader)]

    loader = WindowLoader(dataset, 2, 8, sampling=sampling, seed=7)
    reference = run(5)
    loader.close()

    loader = WindowLoader(dataset, 2, 8, sampling=sampling, seed=7)
    run(2)
    state = json.loads(json.dumps(loader.state_dict()))  # plain JSON
    assert state["batches_yielded"] == 2
    loader.close()
    resumed = WindowLoader(dataset, 2, 8, sampling=sampling, seed=7)
    resumed.load_state_dict(state)
    loader = resumed
    for x, y in zip(run(3), reference[2:]):
        _same(x, y)
    resumed.close()
    with pytest.raises(ValueError, match="seed: saved 7, loader 8"):
        WindowLoader(dataset, 2, 8, sampling=sampling, seed=8).load_state_dict(state)


def test_short_streams_error_or_skip(dataset):
    with pytest.raises(ValueError, match=r"stream 1 \(stream_id 1\) has 17 records, shorter than seq_len=18"):
        WindowLoader(dataset, 2, 18)
    loader = WindowLoader(dataset, 2, 31, allow_short_streams=True, keys=["stream_id"])
    assert loader.num_skipped_streams == 3  # the streams of 30, 17 and 20 records
    batch = next(iter(loader))
    assert set(batch["stream_id"][:, 0].tolist()) <= {2, 4, 5}
    loader.close()
    with pytest.raises(ValueError, match="every stream is shorter than seq_len=65"):
        WindowLoader(dataset, 2, 65, allow_short_streams=True)


def test_bad_arguments(dataset):
    with pytest.raises(ValueError, match="sampling must be one of"):
        WindowLoader(dataset, 2, 8, sampling="shuffled")
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        WindowLoader(dataset, 0, 8)
    with pytest.raises(ValueError, match="stride=2 needs sampling='sequential'"):
        WindowLoader(dataset, 2, 8, stride=2)


def test_close_stops_the_prefetch_thread(dataset):
    before = threading.active_count()
    loader = WindowLoader(dataset, 2, 8, prefetch=3)
    next(iter(loader))
    assert loader._thread is not None and loader._thread.daemon
    loader.close()
    assert loader._thread is None and threading.active_count() == before
    next(iter(loader))  # restarts after close
    loader.close()


def test_a_dropped_loader_stops_its_thread(dataset):
    import gc
    import time

    loader = WindowLoader(dataset, 2, 8, prefetch=2)
    next(iter(loader))
    thread = loader._thread
    del loader
    gc.collect()
    deadline = time.time() + 5
    while thread.is_alive() and time.time() < deadline:
        time.sleep(0.01)
    assert not thread.is_alive()
