"""Atomic checkpoints, the `last` pointer, pruning and the pickle-free trainer state."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from mouse.train.checkpoint import (
    STATE_JSON,
    STATE_TENSORS,
    capture_rng_state,
    decode_state,
    encode_state,
    find_last_checkpoint,
    list_checkpoints,
    load_state,
    restore_rng_state,
    save_checkpoint,
)


def _write_model(folder: Path) -> None:
    (folder / "model.safetensors").write_bytes(b"weights")


def _save(root: Path, step: int, keep_last: int = 0) -> Path:
    return save_checkpoint(root, step, write_model=_write_model, state={"step": step}, keep_last=keep_last)


def test_state_codec_roundtrips_optimizer_state_without_pickle(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.8, 0.9))
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {"optimizer": opt.state_dict(), "np": np.arange(3, dtype=np.uint32), "t": (1, "a", None)}
    from mouse.train.checkpoint import save_state

    save_state(tmp_path, state)
    assert json.loads((tmp_path / STATE_JSON).read_text())  # plain JSON
    loaded = load_state(tmp_path)
    assert loaded["t"] == (1, "a", None)
    assert loaded["np"].dtype == np.uint32 and loaded["np"].tolist() == [0, 1, 2]
    assert loaded["optimizer"]["param_groups"][0]["betas"] == (0.8, 0.9)
    for k, v in opt.state_dict()["state"][0].items():
        assert torch.equal(loaded["optimizer"]["state"][0][k], v)
    opt2 = torch.optim.AdamW(model.parameters(), lr=0.1)
    opt2.load_state_dict(loaded["optimizer"])  # accepted by torch as is


def test_state_codec_rejects_non_data():
    with pytest.raises(TypeError, match="t.fn"):
        encode_state({"fn": lambda x: x}, {})


def test_rng_state_roundtrip_restores_all_generators(tmp_path):
    from mouse.train.checkpoint import save_state

    torch.manual_seed(1)
    random.seed(2)
    np.random.seed(3)
    save_state(tmp_path, {"rng": capture_rng_state()})
    expected = (torch.rand(3), random.random(), np.random.rand())
    restore_rng_state(load_state(tmp_path)["rng"])
    got = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(expected[0], got[0]) and expected[1:] == got[1:]


def test_save_checkpoint_layout_last_pointer_and_pruning(tmp_path):
    root = tmp_path / "checkpoints"
    for step in (2, 4, 6):
        _save(root, step, keep_last=2)
    assert [s for s, _ in list_checkpoints(root)] == [4, 6]
    assert os.readlink(root / "last") == "step-6"
    last = find_last_checkpoint(root)
    assert last == root / "step-6"
    assert {p.name for p in last.iterdir()} == {"model.safetensors", STATE_JSON, STATE_TENSORS}
    assert load_state(last)["step"] == 6
    assert not list(root.glob(".tmp-*"))


def test_keep_last_zero_keeps_everything_and_resave_replaces(tmp_path):
    root = tmp_path / "ck"
    for step in (1, 2, 3):
        _save(root, step)
    save_checkpoint(root, 3, write_model=_write_model, state={"step": 33})
    assert [s for s, _ in list_checkpoints(root)] == [1, 2, 3]
    assert load_state(root / "step-3")["step"] == 33


def test_killed_save_leaves_previous_checkpoint(tmp_path):
    root = tmp_path / "ck"
    _save(root, 1)

    def crash(folder: Path) -> None:
        (folder / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt  # a kill in the middle of the save

    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(root, 2, write_model=crash, state={"step": 2})
    assert find_last_checkpoint(root) == root / "step-1"
    assert [s for s, _ in list_checkpoints(root)] == [1]
    _save(root, 3)  # the next save cleans the leftover temporary folder
    assert not list(root.glob(".tmp-*"))
    assert find_last_checkpoint(root) == root / "step-3"


def test_find_last_without_checkpoints_and_bad_keep_last(tmp_path):
    assert find_last_checkpoint(tmp_path / "missing") is None
    with pytest.raises(ValueError, match="keep_last"):
        _save(tmp_path / "ck", 1, keep_last=-1)
    with pytest.raises(FileNotFoundError, match="trainer_state"):
        load_state(tmp_path)


def test_decode_plain_values_pass_through():
    assert decode_state({"a": [1, 2.5, None, "x"]}, {}) == {"a": [1, 2.5, None, "x"]}


# ------------------------------------------------------------- reading a checkpoint (mouse.checkpoint_io)
def test_checkpoint_io_is_what_train_and_eval_share(tmp_path):
    import mouse.checkpoint_io as io
    import mouse.train.checkpoint as train_ckpt

    assert train_ckpt.find_last_checkpoint is io.find_last_checkpoint
    assert train_ckpt.list_checkpoints is io.list_checkpoints
    _save(tmp_path / "ck", 4)
    assert io.find_last_checkpoint(tmp_path / "ck") == tmp_path / "ck" / "step-4"


def test_checkpoint_files_are_read_as_data(tmp_path, monkeypatch):
    from mouse.checkpoint_io import read_dataset_spec, read_model_config, read_train_config, trained_seq_len

    monkeypatch.setenv("MOUSE_TEST_SECRET", "leaked")
    (tmp_path / "train_config.yaml").write_text(
        "trainer:\n  seq_len: 12\n  lr: 1e-3\nnote: ${oc.env:MOUSE_TEST_SECRET}\nother: ${trainer.seq_len}\n"
    )
    config = read_train_config(tmp_path)
    assert config == {
        "trainer": {"seq_len": 12, "lr": 1e-3},
        "note": "${oc.env:MOUSE_TEST_SECRET}",
        "other": "${trainer.seq_len}",
    }
    assert trained_seq_len(config) == 12 and trained_seq_len(None) is None and trained_seq_len({}) is None
    with pytest.raises(ValueError, match="seq_len must be an integer"):
        trained_seq_len({"trainer": {"seq_len": "${x}"}})
    assert read_dataset_spec(tmp_path) is None  # optional files
    assert read_train_config(tmp_path / "nowhere") is None
    (tmp_path / "dataset_spec.json").write_text('{"task_family": "darkroom"}')
    assert read_dataset_spec(tmp_path) == {"task_family": "darkroom"}
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object"):
        read_model_config(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read the model config"):
        read_model_config(tmp_path)
    (tmp_path / "train_config.yaml").write_text("- a list\n")
    with pytest.raises(ValueError, match="expected a YAML mapping"):
        read_train_config(tmp_path)
