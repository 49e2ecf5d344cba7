"""Data parallel under ``torchrun`` on CPU (Gloo, 2 processes), in the default suite (what CI runs).

One launch trains and checkpoints, one resumes it, one makes rank 1's loss NaN. Checked: gradients are
averaged (every parameter equal across ranks after the steps), each rank draws its own windows, only
rank 0 writes the run directory, a NaN on one rank stops every rank at the same step, and a run
resumes under torchrun to the same parameters on both ranks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from test_train import TINY, losses

TORCHRUN = str(Path(sys.executable).parent / "torchrun")
DRIVER = str(Path(__file__).with_name("dist_driver.py"))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from mouse.data import save_dataset, synthetic_columns

    path = tmp_path_factory.mktemp("dist") / "data"
    columns, spec = synthetic_columns(num_streams=8, steps_per_stream=60, num_actions=5, horizon=7)
    save_dataset(columns, spec, path)
    return path


def _launch(out: Path, mode: str, data: Path, *overrides: str) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    args = [
        "data=local",
        f"data.path={data}",
        *TINY[6:],
        "trainer.eval_num_tasks=0",
        "logger=none",
        *overrides,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run(
        [TORCHRUN, "--standalone", "--nproc-per-node=2", DRIVER, str(out), mode, *args],
        env=env, cwd=out, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


def _params_equal(out: Path) -> bool:
    p0, p1 = (torch.load(out / f"params{r}.pt") for r in (0, 1))
    assert p0.keys() == p1.keys()
    return all(torch.equal(p0[k], p1[k]) for k in p0)


def test_ddp_train_resume_and_nan_stop(tmp_path, data):
    first = _launch(tmp_path / "a", "train", data, "trainer.steps=3", "trainer.checkpoint_every=3")
    assert [r["outcome"] for r in first] == ["finished", "finished"] and [r["step"] for r in first] == [3, 3]
    assert _params_equal(tmp_path / "a")  # gradients averaged: both ranks took the same steps
    assert all(w0 != w1 for w0, w1 in zip(first[0]["windows"], first[1]["windows"]))  # own windows
    run = tmp_path / "a" / "run"
    assert sorted(losses(run)) == [1, 2, 3] and os.readlink(run / "checkpoints" / "last") == "step-3"
    assert not list(tmp_path.rglob("outputs"))  # rank 1 wrote no run directory of its own

    resumed = _launch(tmp_path / "a", "train", data, "trainer.steps=5", "trainer.resume=true")
    assert [r["step"] for r in resumed] == [5, 5] and _params_equal(tmp_path / "a")
    assert [len(r["windows"]) for r in resumed] == [2, 2]  # steps 4 and 5 only
    assert sorted(losses(run)) == [1, 2, 3, 4, 5]

    stopped = _launch(tmp_path / "b", "nan", data, "trainer.steps=4")
    assert all(r["outcome"].startswith("stopped: loss.sp is nan at step 2") for r in stopped), stopped
    assert [r["step"] for r in stopped] == [1, 1]
