"""scripts/bench_icrl.py: argument parsing, the override list, and a seconds-long smoke run."""

import importlib.util
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_icrl.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_icrl", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_arguments_and_overrides():
    bench = _bench()
    args = bench.parse_args(["--steps", "300", "--seeds", "2", "optim.lr=2e-3"])
    assert (args.steps, args.seeds, args.episodes, args.overrides) == (300, 2, 10, ["optim.lr=2e-3"])
    over = bench.train_overrides(args, Path("/cache"))
    assert over[-1] == "optim.lr=2e-3" and "trainer.steps=300" in over and "data.cache_dir=/cache" in over
    assert "logger=none" in over and "trainer.eval_num_tasks=0" in over
    assert "logger=none" not in bench.train_overrides(bench.parse_args(["logger=wandb"]), Path("/c"))
    bench.compose_train(over)  # every override is a valid mouse-train key
    for bad in (["--seeds", "0"], ["--steps", "0"], ["lr"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)


def test_smoke_run_ends_with_the_icrl_line(tmp_path):
    cmd = [sys.executable, str(SCRIPT), "--smoke", "--out", str(tmp_path / "bench"), "--episodes", "4",
           "--seeds", "1", "--num-tasks", "2"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    number = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"  # a finite decimal: no nan, inf or empty value
    match = re.fullmatch(
        rf"icrl: score_ep1=({number}) score_ep2=({number}) score_ep4_10=({number}) minutes=(\d+\.\d)", last
    )
    assert match, last
    assert all(math.isfinite(float(v)) for v in match.groups()), last
    assert (tmp_path / "bench" / "eval" / "results.json").is_file()
    assert (tmp_path / "bench" / "train" / "checkpoints" / "last").exists()
