"""The logger interface: W&B offline run files, TensorBoard events, none, metrics.jsonl."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest

from mouse.train.logger import JsonlWriter, NoneLogger, make_logger


def read_wandb_history(run_file: Path) -> list[dict[str, float]]:
    """The history rows of an offline ``run-<id>.wandb`` file (LevelDB-style log of protobuf records)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = run_file.read_bytes()
    block, pos, records, partial = 32768, 7, [], b""  # 7-byte file header
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:
            records.append(chunk)
        elif kind in (2, 3):
            partial = (b"" if kind == 2 else partial) + chunk
        elif kind == 4:
            records.append(partial + chunk)
    rows = []
    for raw in records:
        record = pb.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "history":
            rows.append(
                {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in record.history.item}
            )
    return rows


def test_wandb_offline_run_files_hold_the_logged_metrics(tmp_path):
    logger = make_logger(
        "wandb", run_dir=tmp_path, config={"trainer": {"steps": 2}}, mode="offline", group="g"
    )
    try:
        logger.log({"train/loss": 0.5, "optim/lr": 1e-3}, step=1)
        logger.log({"train/loss": 0.25}, step=2)
    finally:
        logger.finish()
    logger.finish()  # idempotent
    assert logger.run_dir is not None and logger.run_dir.parent == tmp_path / "wandb"
    (run_file,) = logger.run_dir.glob("run-*.wandb")
    assert logger.run_id in run_file.name
    # wandb's service process writes the file; on a loaded machine the last records can land a moment
    # after finish() returns (seen once in a full CI run): read again for a few seconds before judging
    deadline = time.monotonic() + 15
    rows = read_wandb_history(run_file)
    while len(rows) < 2 and time.monotonic() < deadline:
        time.sleep(0.25)
        rows = read_wandb_history(run_file)
    assert [(r["_step"], r["train/loss"]) for r in rows] == [(1, 0.5), (2, 0.25)]
    assert rows[0]["optim/lr"] == pytest.approx(1e-3)


def test_tensorboard_writes_event_files(tmp_path):
    logger = make_logger("tensorboard", run_dir=tmp_path, config={})
    logger.log({"train/loss": 1.0}, step=1)
    logger.finish()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [(1, 1.0)]


def test_none_logger_and_unknown_kind(tmp_path):
    logger = make_logger("none", run_dir=tmp_path, config={})
    assert isinstance(logger, NoneLogger) and logger.run_id is None
    logger.log({"a": 1.0}, 1)
    logger.finish()
    with pytest.raises(ValueError, match="logger.kind='mlflow'"):
        make_logger("mlflow", run_dir=tmp_path, config={})
    with pytest.raises(ValueError, match="logger.mode='onlin'"):
        make_logger("wandb", run_dir=tmp_path, config={}, mode="onlin")


def test_jsonl_writer_appends_valid_json(tmp_path):
    writer = JsonlWriter(tmp_path / "m.jsonl")
    writer.write({"train/loss": 1.5}, 1)
    writer.write({"train/loss": float("nan")}, 2)
    writer.close()
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert rows == [{"step": 1, "train/loss": 1.5}, {"step": 2, "train/loss": "nan"}]
