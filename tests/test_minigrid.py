"""The `minigrid` random-goal room family: layouts per task id, the numpy view vs minigrid's own
observation, the BFS oracle vs a scripted shortest-path actor, images, and `mouse-collect task=minigrid`."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from minigrid.minigrid_env import MiniGridEnv

from mouse.data import load_dataset
from mouse.rollout import ReturnRecorder, collect_streams, rollout_returns, run_streams
from mouse.tasks import make_family, make_policy
from mouse.tasks.minigrid import RandomGoalRoomEnv, shortest_actions

SCRIPT = Path(sys.executable).parent / "mouse-collect"


def test_family_fields_and_distinct_layouts():
    fam = make_family("minigrid")
    assert (fam.num_actions, fam.horizon, fam.obs_image_size, fam.obs_image_shape) == (3, 32, 147, (7, 7, 3))
    assert (fam.obs_discrete_size, fam.obs_continuous_dim, fam.has_q_star) == (0, 0, False)
    assert len(fam.all_task_ids()) == 16 * 15 * 4
    layouts = [fam.make_task(i) for i in fam.all_task_ids()]
    assert len({(t.goal, t.start, t.start_dir) for t in layouts}) == len(layouts)  # no two ids share one
    assert all(
        t.goal != t.start and 1 <= min(*t.goal, *t.start) and max(*t.goal, *t.start) <= 4 for t in layouts
    )
    assert make_family("minigrid", seed=1).make_task(0) != layouts[0]
    assert make_family("minigrid", num_tasks_pool=10).all_task_ids() == list(range(10))
    with pytest.raises(ValueError, match="num_tasks_pool=1000 exceeds the 960 distinct layouts"):
        make_family("minigrid", num_tasks_pool=1000)


def test_shortest_actions_on_hand_made_layouts():
    # minigrid directions: 0 right (+x), 1 down (+y), 2 left, 3 up; actions 0 left, 1 right, 2 forward
    assert shortest_actions(6, goal=(4, 1), start=(1, 1), start_dir=0) == [2, 2, 2]
    assert len(shortest_actions(6, goal=(4, 1), start=(1, 1), start_dir=2)) == 5  # turn twice, 3 forward
    assert shortest_actions(6, goal=(1, 4), start=(1, 1), start_dir=0) == [1, 2, 2, 2]
    assert len(shortest_actions(6, goal=(4, 4), start=(1, 1), start_dir=0)) == 7
    assert shortest_actions(6, goal=(2, 3), start=(2, 2), start_dir=3) in ([0, 0, 2], [1, 1, 2])


def test_numpy_view_equals_minigrids_observation():
    for size in (5, 7):
        fam = make_family("minigrid", size=size)
        for task_id in (0, 1, 2):
            t = fam.make_task(task_id)
            env = RandomGoalRoomEnv(size, t.goal, t.start, t.start_dir, fam.horizon)
            env.reset(seed=0)
            for x in range(1, size - 1):
                for y in range(1, size - 1):
                    for d in range(4):
                        env.agent_pos, env.agent_dir = (x, y), d
                        ours, theirs = env.gen_obs()["image"], MiniGridEnv.gen_obs(env)["image"]
                        np.testing.assert_array_equal(ours, theirs)


class PlanActor:
    """Replays a precomputed shortest action sequence per stream, indexed by the record's time."""

    name = "plan"

    def __init__(self, plans):
        self.plans = plans

    def reset(self, env, num_actions, rng):
        pass

    def act(self, record):
        time = record["time"].numpy()
        return torch.tensor([p[min(int(t), len(p) - 1)] for p, t in zip(self.plans, time)])


def test_bfs_oracle_equals_a_scripted_shortest_path_actor():
    fam = make_family("minigrid")
    ids = [0, 5, 17, 123, 400, 959]
    env = fam.make_vec_env(ids, seed=0)
    plans = [fam.shortest_path(i) for i in ids]
    returns = ReturnRecorder(3)
    stats = run_streams(
        env, PlanActor(plans), [returns], rng=np.random.default_rng(0), episodes=3, num_records=200
    )
    res = returns.result(stats)
    oracle = fam.oracle_returns(ids)
    np.testing.assert_allclose(res.returns, np.repeat(oracle[:, None], 3, axis=1), rtol=1e-6)
    np.testing.assert_array_equal(res.lengths, np.repeat([[len(p)] for p in plans], 3, axis=1))
    np.testing.assert_allclose(oracle, [1.0 - 0.9 * len(p) / 32 for p in plans])
    assert oracle.max() < 1.0 and oracle.min() > 0.7
    discounted = fam.oracle_returns(ids, gamma=0.9)
    np.testing.assert_allclose(discounted, oracle * 0.9 ** (np.array([len(p) for p in plans]) - 1))


def test_layout_fixed_across_episodes_and_images():
    fam = make_family("minigrid", horizon=12)
    ids, T = [3, 4, 5, 6], 120
    cols = collect_streams(fam, ids, make_policy("random", fam), T, seed=0)
    img = cols["obs_image"]
    assert img.dtype == np.uint8 and img.shape == (len(ids) * T, 147)
    img, time, done = img.reshape(len(ids), T, 147), cols["time"].reshape(-1, T), cols["done"].reshape(-1, T)
    assert (done != 0).sum(1).min() >= 3  # several episodes per stream
    for i in range(len(ids)):
        starts = img[i, time[i] == 0]
        assert (starts == starts[0]).all()  # every episode of a task starts from the same layout and pose
    starts = [img[i, 0] for i in range(len(ids))]
    assert len({s.tobytes() for s in starts}) > 1
    assert set(np.unique(done)) <= {0, 1, 2} and (cols["action"] <= 2).all()
    again = collect_streams(fam, ids, make_policy("random", fam), T, seed=0)
    assert all(np.array_equal(cols[k], again[k]) for k in cols)
    env = fam.make_vec_env([0], seed=0)
    env.reset()
    with pytest.raises(ValueError, match=r"action 3 of stream 0 is outside \[0, 3\)"):
        env.step(np.array([3]), np.array([True]))


def test_random_is_well_below_the_oracle():
    fam = make_family("minigrid")
    ids = list(range(16))
    random = rollout_returns(fam, ids, make_policy("random", fam), 4, seed=0)
    assert random.shape == (16, 4) and random.mean() < 0.5 * fam.oracle_returns(ids).mean()


@pytest.mark.skipif(not SCRIPT.exists(), reason="mouse-collect is not installed (pip install -e .)")
def test_mouse_collect_task_minigrid(tmp_path):
    args = [
        "task=minigrid",
        "policy=random",
        "num_tasks=4",
        "steps_per_task=50",
        "output=ds",
        "show_progress=false",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    ds = load_dataset(tmp_path / "ds")
    spec = ds.spec
    assert (spec.task_family, spec.num_actions, spec.obs_image_size, spec.horizon) == ("minigrid", 3, 147, 32)
    assert tuple(spec.obs_image_shape) == (7, 7, 3) and ds.columns["obs_image"].shape == (200, 147)
