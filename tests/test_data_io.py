"""DatasetSpec, save_dataset/load_dataset round trips, the Hub helpers and every bad input of §7."""

import json
from pathlib import Path

import numpy as np
import pytest

from mouse.data import (
    DatasetSpec,
    StepDataset,
    load_dataset,
    push_dataset_to_hub,
    save_dataset,
    synthetic_columns,
)


@pytest.fixture
def data():
    return synthetic_columns(num_streams=5, steps_per_stream=40, num_actions=4, horizon=6, seed=1)


def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_spec_json_round_trip_and_strict_keys():
    spec = DatasetSpec(num_actions=5, horizon=20, task_params={"size": 9}, train_task_ids=[3, 1])
    again = DatasetSpec.from_json(spec.to_json())
    assert again == spec and again.train_task_ids == (3, 1)
    with pytest.raises(ValueError, match="unknown DatasetSpec keys.*'num_action'"):
        DatasetSpec.from_dict({**spec.to_dict(), "num_action": 5})
    with pytest.raises(ValueError, match="missing required keys.*horizon"):
        DatasetSpec.from_dict({"num_actions": 5})
    with pytest.raises(ValueError, match="split must be one of"):
        DatasetSpec(num_actions=5, horizon=20, split="val")
    with pytest.raises(ValueError, match="format_version 99"):
        DatasetSpec(num_actions=5, horizon=20, format_version=99)


def test_embedding_kwargs_follow_the_spec():
    cols, spec = synthetic_columns(
        num_streams=2, steps_per_stream=20, num_actions=3, horizon=5, obs_continuous_dim=2
    )
    ds = StepDataset.from_columns(cols, spec)
    kw = ds.spec.embedding_kwargs()
    assert kw["max_num_actions"] == 3 and kw["max_num_time_steps"] == 6
    assert kw["include_obs_discrete"] and kw["max_num_obs_discrete"] == spec.obs_discrete_size
    assert kw["include_obs_continuous"] and kw["max_num_obs_continuous"] == 2
    assert kw["fourier_in_min"] == pytest.approx(float(cols["obs_continuous"].min()))
    assert kw["fourier_in_max"] == pytest.approx(float(cols["obs_continuous"].max()))
    assert not kw["include_obs_image"]


def test_embedding_kwargs_build_the_step_embedder():
    import mouse.models.embedding as embedding  # MOUSE's own module: missing must fail, not skip

    cols, spec = synthetic_columns(num_streams=2, steps_per_stream=20, obs_continuous_dim=2)
    kw = StepDataset.from_columns(cols, spec).spec.embedding_kwargs()
    embedding.StepEmbedder(hidden_dim=8, **kw)


def test_save_load_round_trip_memory_mapped(tmp_path, data):
    cols, spec = data
    path = save_dataset(cols, spec, tmp_path / "ds")
    assert (path / "spec.json").exists() and (path / "README.md").exists()
    ds = load_dataset(path)
    assert ds.num_streams == 5 and ds.num_records == 200 and len(ds) == 200
    assert ds.spec.num_records == 200 and ds.spec.num_streams == 5
    np.testing.assert_array_equal(ds.stream_offsets, np.arange(0, 201, 40))
    for name, arr in cols.items():
        np.testing.assert_array_equal(ds.columns[name], arr)
        assert ds.columns[name].dtype == arr.dtype
        assert not ds.columns[name].flags.writeable
        assert not ds.columns[name].flags.owndata  # a view into the Arrow memory map
    window = ds.window(2, 5, 10)
    np.testing.assert_array_equal(window["time"], cols["time"][85:95])


def test_same_input_same_bytes_and_no_silent_overwrite(tmp_path, data):
    cols, spec = data
    a = save_dataset(cols, spec, tmp_path / "a")
    b = save_dataset(cols, spec, tmp_path / "b")
    assert _files(a) == _files(b)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_dataset(cols, spec, a)
    save_dataset(cols, spec, a, overwrite=True)
    assert _files(a) == _files(b)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no temp dirs left behind


def test_hf_datasets_can_read_it(tmp_path, data, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    cols, spec = data
    path = save_dataset(cols, spec, tmp_path / "ds")
    hf = datasets.load_dataset(str(path), split="train", cache_dir=str(tmp_path / "hf_cache"))
    assert hf.num_rows == 200
    np.testing.assert_array_equal(np.asarray(hf["action"]), cols["action"])
    np.testing.assert_array_equal(np.asarray(hf[7]["q_star"], dtype=np.float32), cols["q_star"][7])


def test_load_split_argument(tmp_path, data):
    cols, spec = data
    path = save_dataset(cols, spec, tmp_path / "ds")
    assert load_dataset(path, split="train").spec.split == "train"
    with pytest.raises(ValueError, match="holds split 'train', not the requested split 'test'"):
        load_dataset(path, split="test")
    # a folder with one sub-folder per split
    save_dataset(cols, spec, tmp_path / "multi" / "train")
    assert load_dataset(tmp_path / "multi", split="train").num_records == 200


def test_missing_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither an existing directory nor a Hub dataset id"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="not a local directory, and downloading it from the Hub"):
        load_dataset("no-such-org/no-such-dataset")  # HF_HUB_OFFLINE=1 (tests/conftest.py)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no spec.json"):
        load_dataset(tmp_path / "empty")


def test_hub_round_trip_through_mocks(tmp_path, data, monkeypatch):
    import huggingface_hub

    cols, spec = data
    path = save_dataset(cols, spec, tmp_path / "ds")
    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, **kw):
            calls.append(("create_repo", kw))

        def upload_folder(self, **kw):
            calls.append(("upload_folder", kw))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    url = push_dataset_to_hub(path, "org/name", private=True, token="t")
    assert url.endswith("datasets/org/name")
    assert calls[1] == (
        "create_repo",
        {"repo_id": "org/name", "repo_type": "dataset", "private": True, "exist_ok": True},
    )
    assert calls[2][1]["folder_path"] == str(path) and calls[2][1]["repo_type"] == "dataset"

    def fake_snapshot(repo_id, repo_type, revision, allow_patterns):
        assert (repo_id, repo_type, revision) == ("org/name", "dataset", "v1")
        assert allow_patterns == ["spec.json", "README.md", "data/*.arrow"]  # only what load_dataset reads
        return str(path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    assert load_dataset("org/name", revision="v1").num_records == 200


# ----------------------------------------------------------------------------- bad input (§7)
def _bad(cols, spec, match, tmp_path=None):
    with pytest.raises(ValueError, match=match):
        StepDataset.from_columns(cols, spec)
    if tmp_path is not None:
        with pytest.raises(ValueError, match=match):
            save_dataset(cols, spec, tmp_path / "bad")
        assert not (tmp_path / "bad").exists()


def test_missing_and_unknown_columns(data, tmp_path):
    cols, spec = data
    _bad(
        {k: v for k, v in cols.items() if k != "reward"},
        spec,
        r"missing required column\(s\) \['reward'\]",
        tmp_path,
    )
    _bad(
        {k: v for k, v in cols.items() if k != "obs_discrete"},
        spec,
        "missing column 'obs_discrete'.*obs_discrete_size=9",
    )
    _bad({**cols, "rewards": cols["reward"]}, spec, r"unknown columns \['rewards'\]")


def test_wrong_dtype_and_shape(data, tmp_path):
    cols, spec = data
    _bad(
        {**cols, "action": cols["action"].astype(np.int32)},
        spec,
        "'action' has dtype int32, expected int64",
        tmp_path,
    )
    _bad(
        {**cols, "reward": cols["reward"].astype(np.float64)},
        spec,
        "'reward' has dtype float64, expected float32",
    )
    _bad({**cols, "time": cols["time"][:-1]}, spec, "'time' has 199 rows")


def test_ids_outside_the_spec(data, tmp_path):
    cols, spec = data
    action = cols["action"].copy()
    i = int(np.flatnonzero(cols["time"] > 0)[3])
    action[i] = 4
    _bad(
        {**cols, "action": action},
        spec,
        rf"'action' row {i} \(stream 0\) has value 4, expected 0 <= action <= 3",
        tmp_path,
    )
    obs = cols["obs_discrete"].copy()
    obs[123] = 9
    _bad({**cols, "obs_discrete": obs}, spec, r"'obs_discrete' row 123 \(stream 3\) has value 9.*<= 8")
    obs[123] = -1
    _bad({**cols, "obs_discrete": obs}, spec, r"'obs_discrete' row 123 .* value -1")
    done = cols["done"].copy()
    done[50] = 3
    _bad({**cols, "done": done}, spec, r"'done' row 50 \(stream 1\) has value 3")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_rewards(data, value, tmp_path):
    cols, spec = data
    reward = cols["reward"].copy()
    reward[77] = value
    _bad(
        {**cols, "reward": reward},
        spec,
        rf"'reward' row 77 \(stream 1\) holds {value}: expected finite",
        tmp_path,
    )


def test_q_star_width_and_values(data, tmp_path):
    cols, spec = data
    _bad(
        {**cols, "q_star": cols["q_star"][:, :3]},
        spec,
        r"'q_star' has shape \[200, 3\], expected \[N, 4\] \(num_actions",
        tmp_path,
    )
    q = cols["q_star"].copy()
    q[10, 1] = np.nan
    _bad({**cols, "q_star": q}, spec, r"'q_star' row 10 \(stream 0\).*finite values or -inf")
    q = cols["q_star"].copy()
    row = int(np.flatnonzero(cols["done"] > 0)[0])
    q[row, 0] = 1.0
    _bad({**cols, "q_star": q}, spec, rf"'q_star' row {row} .*all -inf on terminal/truncated")


def test_contract_violations(data):
    cols, spec = data
    sid = cols["stream_id"].copy()
    sid[45] = 0
    _bad({**cols, "stream_id": sid}, spec, r"'stream_id' decreases at row 45 \(1 -> 0\)")
    tid = cols["task_id"].copy()
    tid[45] += 1
    _bad({**cols, "task_id": tid}, spec, "'task_id' changes inside stream 1 at row 45")
    time = cols["time"].copy()
    i = int(np.flatnonzero(cols["time"] > 1)[0])
    time[i] += 1
    _bad({**cols, "time": time}, spec, rf"'time' row {i} \(stream 0\) is {time[i]}, expected {time[i] - 1}")
    reward = cols["reward"].copy()
    reset = int(np.flatnonzero(cols["time"] == 0)[2])
    reward[reset] = 0.5
    _bad({**cols, "reward": reward}, spec, rf"'reward' row {reset} .* on a reset record")


def test_counts_must_match(data):
    cols, spec = data
    import dataclasses

    _bad(cols, dataclasses.replace(spec, num_records=199), "spec.num_records=199 but the columns hold 200")
    _bad(
        cols,
        dataclasses.replace(spec, steps_per_task=41),
        "stream 0 has 40 records, expected spec.steps_per_task=41",
    )


def test_loading_a_tampered_dataset_fails(tmp_path, data):
    cols, spec = data
    path = save_dataset(cols, spec, tmp_path / "ds")
    d = json.loads((path / "spec.json").read_text())
    d["obs_discrete_size"] = 5
    (path / "spec.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"'obs_discrete' row \d+ .* expected 0 <= obs_discrete <= 4"):
        load_dataset(path)
    d["obs_discrete_size"], d["num_actions"] = 9, 3
    (path / "spec.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"'q_star' has shape \[200, 4\], expected \[N, 3\]"):
        load_dataset(path)


def test_image_and_xformed_reward_columns_round_trip(tmp_path):
    import dataclasses

    cols, spec = synthetic_columns(num_streams=3, steps_per_stream=30)
    cols["obs_image"] = np.random.default_rng(0).integers(0, 256, (90, 12)).astype(np.uint8)
    cols["xformed_reward"] = cols["reward"] * 2
    with pytest.raises(ValueError, match="'obs_image' is present but the spec has obs_image_size=0"):
        StepDataset.from_columns(cols, spec)
    ds = load_dataset(save_dataset(cols, dataclasses.replace(spec, obs_image_size=12), tmp_path / "ds"))
    np.testing.assert_array_equal(ds.columns["obs_image"], cols["obs_image"])
    np.testing.assert_array_equal(ds.columns["xformed_reward"], cols["xformed_reward"])
    assert (
        ds.spec.embedding_kwargs()["include_obs_image"]
        and ds.spec.embedding_kwargs()["max_num_obs_image"] == 12
    )
