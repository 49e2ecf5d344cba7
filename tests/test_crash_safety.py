"""Crash safety of a real ``mouse-train``: ``kill -9`` at random moments (during steps, checkpoint
writes and pruning), then ``trainer.resume=auto`` until the run finishes (slow: ``make test-slow``).

After every kill: ``checkpoints/last`` (when any checkpoint exists) loads with ``load_model``; at most
``checkpoint_every`` logged steps are lost. At the end: the per-step losses equal an uninterrupted
run's and ``metrics.jsonl`` holds every step exactly once, in order.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from test_train import SCRIPT, TINY

STEPS, EVERY = 40, 4
ARGS = [
    *TINY,
    "logger=none",
    f"trainer.steps={STEPS}",
    f"trainer.checkpoint_every={EVERY}",
    "trainer.keep_last=2",
    "trainer.eval_num_tasks=0",
    "trainer.resume=auto",
]


def _train_steps(run_dir: Path) -> list[int]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [row["step"] for row in rows if "train/loss" in row]


def _losses(run_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {row["step"]: row["train/loss"] for row in rows if "train/loss" in row}


def _last_step(run_dir: Path) -> int | None:
    from mouse.checkpoint_io import find_last_checkpoint
    from mouse.models import load_model

    last = find_last_checkpoint(run_dir / "checkpoints")
    if last is None:
        return None
    load_model(str(last))  # loadable, strictly
    return int(last.name.split("-")[1])


def _launch(run: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [SCRIPT, *ARGS, f"hydra.run.dir={run}"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_auto(tmp_path):
    env = {**os.environ, "MOUSE_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    straight = tmp_path / "straight"
    subprocess.run(
        [SCRIPT, *ARGS, f"hydra.run.dir={straight}"], env=env, check=True, capture_output=True, timeout=600
    )

    run = tmp_path / "killed"
    rng = random.Random(0)
    # kill once the run has logged a chosen step, then a random few ms later: inside a step, a
    # checkpoint write (every EVERY steps) or the pruning that follows it
    targets = sorted(rng.sample(range(2, STEPS - 1), 6))
    kills = 0
    for target in targets:
        proc = _launch(run, env)
        deadline = time.monotonic() + 300
        while proc.poll() is None and max(_train_steps(run), default=0) < target:
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.05))
        if proc.poll() is not None:  # it finished before the kill landed
            break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        logged, saved = _train_steps(run), _last_step(run)
        if logged:
            assert (saved or 0) >= max(logged) - EVERY, f"kill {kills}: logged {max(logged)}, saved {saved}"
    assert kills >= 3, "the kills never landed while training ran"
    final = _launch(run, env)
    assert final.wait(timeout=600) == 0
    assert _train_steps(run) == list(range(1, STEPS + 1))
    assert _losses(run) == _losses(straight)
