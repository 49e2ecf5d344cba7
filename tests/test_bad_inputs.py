"""Every bad input gives one clear error naming the file or field, the bad value and the fix."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from mouse.data import DatasetSpec, StepDataset, WindowLoader, load_dataset, save_dataset, synthetic_columns
from mouse.models import ModelLlama, load_model
from mouse.tasks import make_family

EMB = {"max_num_actions": 4, "include_obs_discrete": True, "max_num_obs_discrete": 9}
LLAMA = {"num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 16}


def _dataset(tmp_path: Path, **spec_updates) -> Path:
    cols, spec = synthetic_columns(num_streams=2, steps_per_stream=20, num_actions=4, horizon=6)
    path = save_dataset(cols, spec, tmp_path / "ds")
    if spec_updates:
        spec_file = path / "spec.json"
        spec_file.write_text(json.dumps({**json.loads(spec_file.read_text()), **spec_updates}))
    return path


def _darkroom_dataset(tmp_path: Path, **spec_updates) -> Path:
    """A small contract-valid dataset whose spec names Dark Room (size 3, horizon 4)."""
    fam = make_family("darkroom", size=3, horizon=4)
    train, test = fam.split(0, 0.3)
    cols, _ = synthetic_columns(
        num_streams=2, steps_per_stream=12, num_actions=fam.num_actions, horizon=fam.horizon,
        obs_discrete_size=fam.num_states,
    )  # fmt: skip
    spec = DatasetSpec(
        num_actions=fam.num_actions, horizon=fam.horizon, obs_discrete_size=fam.num_states,
        task_family="darkroom", task_params=fam.params, train_task_ids=train, test_task_ids=test,
    )  # fmt: skip
    path = save_dataset(cols, spec, tmp_path / "dark")
    spec_file = path / "spec.json"
    spec_file.write_text(json.dumps({**json.loads(spec_file.read_text()), **spec_updates}))
    return path


# 1. a truncated or non-Arrow .arrow file
def test_truncated_arrow_file_names_the_file_and_the_fix(tmp_path):
    path = _dataset(tmp_path)
    arrow = next((path / "data").glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"train-00000-of-00001\.arrow.*re-collect.*overwrite=true") as info:
        load_dataset(path)
    assert "\n" not in str(info.value)
    arrow.write_text("not arrow at all")
    with pytest.raises(ValueError, match=r"\.arrow: not a readable Arrow IPC file"):
        load_dataset(path)


# 2. spec.json that is not JSON, or a field of the wrong type
def test_spec_json_not_json_or_wrong_type(tmp_path):
    path = _dataset(tmp_path)
    (path / "spec.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"spec\.json: spec is not valid JSON"):
        load_dataset(path)
    path = _dataset(tmp_path / "b", horizon="abc")
    with pytest.raises(ValueError, match=r"spec\.json: DatasetSpec\.horizon must be an integer, got 'abc'"):
        load_dataset(path)
    path = _dataset(tmp_path / "c", test_task_ids="3")
    with pytest.raises(
        ValueError, match=r"spec\.json: DatasetSpec\.test_task_ids must be a list of integers"
    ):
        load_dataset(path)
    path = _dataset(tmp_path / "d", task_params=[1, 2])
    with pytest.raises(ValueError, match=r"spec\.json: DatasetSpec\.task_params must be a JSON object"):
        load_dataset(path)
    with pytest.raises(ValueError, match="gamma must be a number, got 'x'"):
        DatasetSpec(num_actions=2, horizon=3, gamma="x")


# 3. unknown task_family / task ids outside the family's range fail at load
def test_unknown_family_or_task_ids_fail_at_load(tmp_path):
    assert load_dataset(_darkroom_dataset(tmp_path / "ok")).spec.task_family == "darkroom"
    with pytest.raises(
        ValueError, match=r"spec\.json: task_family 'darkrom' is unknown; valid families: darkroom"
    ):
        load_dataset(_darkroom_dataset(tmp_path / "a", task_family="darkrom"))
    with pytest.raises(ValueError, match=r"spec\.json: test_task_ids holds \[9, 40\], outside .*\[0, 8\]"):
        load_dataset(_darkroom_dataset(tmp_path / "b", test_task_ids=[1, 9, 40]))
    with pytest.raises(ValueError, match=r"train_task_ids holds \[-1\]"):
        load_dataset(_darkroom_dataset(tmp_path / "c", train_task_ids=[-1, 2]))


# 4. task_params inconsistent with the observation size
def test_task_params_inconsistent_with_obs_size(tmp_path):
    with pytest.raises(
        ValueError, match=r"spec\.json: spec obs_discrete_size=9 but .*'size': 5.* obs_discrete_size 25"
    ):
        load_dataset(_darkroom_dataset(tmp_path / "a", task_params={"size": 5, "horizon": 4, "gamma": 1.0}))
    with pytest.raises(ValueError, match=r"spec horizon=4 but .* horizon 20"):
        load_dataset(_darkroom_dataset(tmp_path / "b", task_params={"size": 3}))
    with pytest.raises(ValueError, match=r"task_params .* do not build task family 'darkroom'"):
        load_dataset(_darkroom_dataset(tmp_path / "c", task_params={"size": "big"}))


def _saved_model(path: Path) -> Path:
    torch.manual_seed(0)
    model = ModelLlama(
        hidden_dim=8, backbone_kwargs=LLAMA, embedding_kwargs=EMB, sp_head_kwargs={"num_layers": 1}
    )
    return model.save_pretrained(path)


# 5. config.json with a wrong type
def test_config_json_wrong_type(tmp_path):
    folder = _saved_model(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden_dim": "abc"}))
    with pytest.raises(ValueError, match=r"config\.json: key 'hidden_dim' must be an integer, got 'abc'"):
        load_model(folder)
    (folder / "config.json").write_text(json.dumps({**config, "embedding_kwargs": [1]}))
    with pytest.raises(ValueError, match=r"config\.json: key 'embedding_kwargs' must be a JSON object"):
        load_model(folder)
    bad_emb = {**config["embedding_kwargs"], "max_num_actions": 0}
    (folder / "config.json").write_text(json.dumps({**config, "embedding_kwargs": bad_emb}))
    with pytest.raises(ValueError, match=r"config\.json: .*max_num_actions.* re-save the model"):
        load_model(folder)


# 6. a truncated model.safetensors names the file and the previous valid checkpoint
def test_truncated_weights_name_the_previous_checkpoint(tmp_path):
    root = tmp_path / "run" / "checkpoints"
    _saved_model(root / "step-1")
    _saved_model(root / "step-2")
    weights = _saved_model(root / "step-3") / "model.safetensors"
    os.symlink("step-3", root / "last")
    weights.write_bytes(weights.read_bytes()[:200])
    (root / "step-2" / "model.safetensors").write_bytes(b"\x00" * 4)  # step-2 is broken too
    for folder in (root / "step-3", root / "last"):
        with pytest.raises(ValueError, match=r"model\.safetensors: corrupt or unreadable.*step-1 instead"):
            load_model(folder)
    with pytest.raises(ValueError, match=r"step-1.*model\.safetensors: corrupt.*re-save or re-download"):
        (root / "step-1" / "model.safetensors").write_bytes(b"junk")
        load_model(root / "step-1")


# 7. step streams: wrong dtypes and empty windows
def test_step_stream_dtypes_and_empty_windows():
    cols, spec = synthetic_columns(num_streams=2, steps_per_stream=20, num_actions=4, horizon=6)
    with pytest.raises(ValueError, match=r"column 'reward' has dtype float64, expected float32"):
        StepDataset.from_columns({**cols, "reward": cols["reward"].astype(np.float64)}, spec)
    with pytest.raises(ValueError, match=r"unknown columns \['rewards'\]; allowed columns: stream_id"):
        StepDataset.from_columns({**cols, "rewards": cols["reward"]}, spec)
    ds = StepDataset.from_columns(cols, spec)
    with pytest.raises(ValueError, match="seq_len must be >= 1, got 0"):
        WindowLoader(ds, batch_size=2, seq_len=0, prefetch=0)
    with pytest.raises(KeyError, match=r"keys \['q'\] are not columns of the dataset; available"):
        WindowLoader(ds, batch_size=2, seq_len=4, prefetch=0, keys=["action", "q"])
    with pytest.raises(IndexError, match="length=0 does not fit"):
        ds.window(0, 0, 0)


def test_step_stream_int_dtype_through_model():
    torch.manual_seed(0)
    model = ModelLlama(
        hidden_dim=8, backbone_kwargs=LLAMA, embedding_kwargs=EMB, sp_head_kwargs={"num_layers": 1}
    ).eval()
    B, S = 2, 3
    td = TensorDict(
        {
            "action": torch.zeros(B, S, dtype=torch.int32),
            "reward": torch.zeros(B, S),
            "done": torch.zeros(B, S, dtype=torch.long),
            "time": torch.zeros(B, S, dtype=torch.long),
            "obs_discrete": torch.zeros(B, S, dtype=torch.long),
        },
        batch_size=[B, S],
    )
    with pytest.raises(ValueError, match=r"step_stream\['action'\] must be int64, got torch\.int32"):
        model(td)


def _stream(B: int = 2, S: int = 3, **fields: torch.Tensor) -> TensorDict:
    base = {
        "action": torch.zeros(B, S, dtype=torch.long),
        "reward": torch.zeros(B, S),
        "done": torch.zeros(B, S, dtype=torch.long),
        "time": torch.zeros(B, S, dtype=torch.long),
        "obs_discrete": torch.zeros(B, S, dtype=torch.long),
    }
    return TensorDict({**base, **fields}, batch_size=[B, S])


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (
            lambda: _stream(reward=torch.zeros(2, 3, dtype=torch.float64)),
            r"\['reward'\] must be floating point float32, got torch\.float64",
        ),
        (lambda: _stream(S=0), r"S=0 steps; a window needs at least one step"),
        (
            lambda: _stream(rewards=torch.zeros(2, 3)),
            r"unknown field\(s\) \['rewards'\]; the step record's fields are",
        ),
        (
            lambda: _stream(pad=torch.tensor([[False, True, False], [True, True, True]])),
            r"every step of window 1 as PAD",
        ),
    ],
)
def test_model_rejects_float64_reward_empty_or_all_pad_windows_and_unknown_fields(stream, message):
    torch.manual_seed(0)
    model = ModelLlama(
        hidden_dim=8, backbone_kwargs=LLAMA, embedding_kwargs=EMB, sp_head_kwargs={"num_layers": 1}
    ).eval()
    with pytest.raises(ValueError, match=message):
        model(stream())
    model(_stream(q_star=torch.zeros(2, 3, 5)))  # a contract field the model does not embed is ignored


# 8. evaluate's context limit message is formatted
def test_context_limit_message_is_formatted():
    from mouse.eval.evaluate import _check_context

    class Fake:
        max_context_steps = 7

    with pytest.raises(ValueError, match=r"context_steps=9 .* pass context_steps<=7$"):
        _check_context(Fake(), 9)
