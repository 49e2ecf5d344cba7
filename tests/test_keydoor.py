"""Dark Key-to-Door: task ids, dynamics and rewards, exact Q*, the exploring teacher, configs and collection."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import gymnasium
import numpy as np
import pytest

from mouse.data import load_dataset
from mouse.data.config import KeyDoorTaskConfig, task_config, task_kwargs
from mouse.rollout import rollout_returns
from mouse.tasks import make_family, make_policy
from mouse.tasks.grid import shortest_path_lengths
from mouse.tasks.keydoor import KeyDoorExplorer, KeyDoorFamily

SCRIPT = Path(sys.executable).parent / "mouse-collect"


def _reset(policy, family, ids, seed=0):
    rng = np.random.default_rng(seed)
    policy.reset([family.make_task(i) for i in ids], rng)
    return rng


def _probs(teacher):
    return np.exp(teacher).round(6).tolist()


def test_task_id_bijection_round_trips_and_rejects_bad_ids():
    family = make_family("keydoor", size=3)
    ids = family.all_task_ids()
    assert ids == list(range(72))
    pairs = [family.task_cells(i) for i in ids]
    assert sorted(pairs) == [(k, d) for k in range(9) for d in range(9) if k != d]  # every pair once
    assert [family.task_id_of(k, d) for k, d in pairs] == ids
    assert (
        family.task_cells(0) == (0, 1) and family.task_cells(8) == (1, 0) and family.task_cells(71) == (8, 7)
    )
    for bad in (-1, 72):
        with pytest.raises(ValueError, match=rf"keydoor: task_id {bad} is outside the valid range \[0, 71\]"):
            family.make_task(bad)
    with pytest.raises(ValueError, match="key and door must be different cells"):
        family.task_id_of(3, 3)
    with pytest.raises(ValueError, match="door=9 is out of range"):
        family.task_id_of(0, 9)
    assert len(make_family("keydoor").all_task_ids()) == 81 * 80


def test_dynamics_rewards_and_terminal_of_a_hand_checked_task():
    family = make_family("keydoor", size=3, horizon=10)
    task = family.make_task(family.task_id_of(0, 8))  # key top-left, door bottom-right; start = centre 4
    up, down, left, right, stay = range(5)
    assert (task.num_states, task.num_actions, task.obs_continuous_dim) == (18, 5, 3)
    assert task.start.tolist() == [1.0 if s == 4 else 0.0 for s in range(18)]
    assert np.flatnonzero(task.terminal).tolist() == [9 + 8]  # (door, has_key) only
    assert (task.P.max(-1) == 1).all()  # deterministic

    def step(s, a):
        return int(task.P[s, a].argmax()), float(task.R[s, a])

    assert step(1, left) == (9, 1.0)  # entering the key without it: pick it up (state 9 = cell 0 + key)
    assert step(3, up) == (9, 1.0)
    assert step(9, stay) == (9, 0.0) and step(10, left) == (9, 0.0)  # the key pays once
    assert step(5, down) == (8, 0.0) and step(8, stay) == (8, 0.0)  # the door without the key: nothing
    assert step(14, down) == (17, 1.0) and step(16, right) == (17, 1.0)  # with the key: paid, and terminal
    assert step(4, right) == (5, 0.0) and step(13, up) == (10, 0.0)  # plain moves keep has_key
    np.testing.assert_array_equal(task.obs_continuous[[4, 13, 17]], [[1, 1, 0], [1, 1, 1], [2, 2, 1]])
    assert task.params == {"size": 3, "horizon": 10, "gamma": 1.0, "key": 0, "door": 8}


def test_make_task_is_fast():
    family = make_family("keydoor")
    ids = range(0, 6480, 97)
    t0 = time.perf_counter()
    for i in ids:
        family.make_task(i)
    assert (time.perf_counter() - t0) / len(ids) < 5e-3  # ~0.7 ms measured


@pytest.mark.parametrize("key_door", [((4, 4), (0, 0)), ((0, 0), (8, 8)), ((4, 4), (4, 5)), ((2, 7), (6, 1))])
def test_q_star_return_is_the_shortest_path_arithmetic(key_door):
    (kr, kc), (dr, dc) = key_door
    family = make_family("keydoor")
    key, door = kr * 9 + kc, dr * 9 + dc
    task = family.make_task(family.task_id_of(key, door))
    dist = shortest_path_lengths(family.cell_moves)
    d1 = max(dist[family.start_cell, key], 1.0)  # a key on the start cell is entered by staying
    d2 = dist[key, door]
    g = 0.9
    assert task.optimal_return(1.0) == 2.0
    assert task.optimal_return(g) == pytest.approx(g ** (d1 - 1) + g ** (d1 + d2 - 1), rel=1e-12)
    short = make_family("keydoor", horizon=int(d1 + d2 - 1)).make_task(task.task_id)
    assert short.optimal_return(1.0) == 1.0  # one step short of the door: only the key
    if d1 > 1:
        assert make_family("keydoor", horizon=int(d1 - 1)).make_task(task.task_id).optimal_return() == 0.0


def test_q_star_greedy_expert_gets_the_optimal_return():
    family = make_family("keydoor")
    ids = [family.task_id_of(k, d) for k, d in [(40, 0), (0, 80), (40, 41), (25, 55), (80, 72)]]
    returns = rollout_returns(family, ids, make_policy("expert", family), 3, seed=0)
    np.testing.assert_array_equal(returns, 2.0)
    np.testing.assert_array_equal(family.oracle_returns(ids), 2.0)
    short = make_family("keydoor", horizon=9)  # (0, 80): key 8 moves away, door 16 more: key only
    r = rollout_returns(short, [short.task_id_of(0, 80)], make_policy("expert", short), 2, seed=0)
    np.testing.assert_array_equal(r, 1.0)
    rnd = family.random_returns(ids)
    assert (rnd > 0).all() and (rnd < 1).all()


def test_explorer_tests_the_start_then_takes_key_and_door_by_shortest_paths():
    family = make_family("keydoor", size=3)
    policy = make_policy("explorer", family, epsilon_min=0.0, epsilon_max=0.0)
    assert isinstance(policy, KeyDoorExplorer) and policy.obs_key == "obs_discrete"
    rng = _reset(policy, family, [family.task_id_of(0, 8)])
    t0, one = np.zeros(1, np.int64), np.ones(1)
    _, _, teacher = policy.act(np.array([4]), t0, rng)
    assert _probs(teacher) == [[0, 0, 0, 0, 1]]  # the unentered start is the nearest candidate
    policy.observe(np.array([4]), np.array([4]), np.zeros(1), np.array([4]), np.zeros(1))
    _, _, teacher = policy.act(np.array([4]), t0, rng)
    assert policy.target[0] in (1, 3, 5, 7) and np.exp(teacher).max() == 1  # committed to one neighbour
    policy.observe(np.array([4]), np.array([0]), np.zeros(1), np.array([1]), np.zeros(1))  # 4 -> 1: nothing
    policy.observe(np.array([1]), np.array([2]), one, np.array([9]), np.zeros(1))  # 1 -> 0: the key
    assert policy.key.tolist() == [0] and policy.visited[0, 1].tolist() == [True] + [False] * 8
    _, _, teacher = policy.act(np.array([9]), t0, rng)  # with the key at cell 0: nearest unkeyed cells 1, 3
    assert policy.target[0] in (1, 3)
    # entered cells 1 and 3 with the key (no door): from 0, the nearest candidates are 2, 4, 6 (2 moves)
    policy.observe(np.array([9]), np.array([3]), np.zeros(1), np.array([10]), np.zeros(1))
    policy.observe(np.array([10]), np.array([2]), np.zeros(1), np.array([9]), np.zeros(1))
    policy.observe(np.array([9]), np.array([1]), np.zeros(1), np.array([12]), np.zeros(1))
    policy.observe(np.array([12]), np.array([0]), np.zeros(1), np.array([9]), np.zeros(1))
    policy.act(np.array([9]), t0, rng)
    assert policy.target[0] in (2, 4, 6)
    policy.observe(np.array([14]), np.array([1]), one, np.array([17]), one)  # 5 -> 8 with the key: the door
    policy.on_episode_end(np.ones(1, bool))
    _, _, teacher = policy.act(np.array([4]), t0, rng)  # new episode: straight to the key (up or left) ...
    assert policy.target[0] == 0 and _probs(teacher) == [[0.5, 0, 0.5, 0, 0]]
    _, _, teacher = policy.act(np.array([9 + 4]), t0, rng)  # ... then to the door (down or right)
    assert policy.target[0] == 8 and _probs(teacher) == [[0, 0.5, 0, 0.5, 0]]
    _, _, teacher = policy.act(np.array([9 + 5]), t0, rng)
    assert _probs(teacher) == [[0, 1, 0, 0, 0]]


def test_explorer_keeps_its_target_while_it_is_nearest():
    family = make_family("keydoor")
    policy = make_policy("explorer", family, epsilon_min=0.0, epsilon_max=0.0)
    rng = _reset(policy, family, [family.task_id_of(0, 1)])
    t0 = np.zeros(1, np.int64)
    policy.visited[0, 0, [40, 31, 49, 39, 41]] = True  # centre and its 4 neighbours: candidates 2 moves away
    policy.target[0] = 30
    _, _, teacher = policy.act(np.array([40]), t0, rng)
    assert policy.target.tolist() == [30] and _probs(teacher) == [[0.5, 0, 0.5, 0, 0]]
    _, _, teacher = policy.act(np.array([31]), t0, rng)  # went up: (2, 4) is as near now, no switch
    assert policy.target.tolist() == [30] and _probs(teacher) == [[0, 0, 1, 0, 0]]
    policy.act(np.array([49]), t0, rng)  # below the centre: (3, 3) is 3 moves away, redrawn
    assert policy.target[0] in (48, 50, 58)
    policy.act(np.array([81 + 49]), t0, rng)  # holding the key: nothing entered with it yet, test here
    assert policy.target[0] == 49


def test_explorer_epsilon_is_per_stream_and_only_in_behaviour():
    family = make_family("keydoor")
    policy = make_policy("explorer", family, epsilon_min=0.1, epsilon_max=0.3)
    rng = _reset(policy, family, list(range(40)))
    eps = policy.noise.epsilon
    assert eps.shape == (40,) and (eps >= 0.1).all() and (eps <= 0.3).all() and eps.std() > 0
    action, behavior, teacher = policy.act(np.full(40, 40), np.zeros(40, np.int64), rng)
    np.testing.assert_allclose(
        np.exp(behavior), (1 - eps[:, None]) * np.exp(teacher) + eps[:, None] / 5, rtol=1e-5
    )
    assert np.isfinite(behavior[np.arange(40), action]).all()


def test_explorer_returns_two_once_it_has_opened_the_door():
    family = make_family("keydoor")
    _, test = family.split(0, 0.2)
    ids = test[:64]
    policy = make_policy("explorer", family, epsilon_min=0.0, epsilon_max=0.0)
    returns = rollout_returns(family, ids, policy, 6, seed=0)  # [64, 6]
    opened = returns == 2.0  # the door pays only with the key, so the door's first episode returns 2
    first = opened.argmax(-1)
    assert opened.any(-1).all()  # every door found within 6 episodes
    assert (opened >= (np.arange(6)[None, :] >= first[:, None])).all()  # and 2 in every later episode
    assert (first <= 4).all() and (first == 0).sum() < (first >= 1).sum()  # episode 1 rarely does it all
    np.testing.assert_array_equal(
        np.stack([policy.key, policy.door], -1), [family.task_cells(i) for i in ids]
    )


def test_explorer_learning_curve_rises_with_noise():
    family = make_family("keydoor")
    _, test = family.split(0, 0.2)
    ids = test[:64]
    policy = make_policy("explorer", family)  # eps ~ U[0, 0.3]
    curve = rollout_returns(family, ids, policy, 10, seed=0).mean(0)
    rnd = family.random_returns(ids).mean()
    assert rnd < 0.3 < curve[0] < 0.9  # measured ~0.57 (3 seeds)
    assert curve[1] > curve[0] + 0.4 and curve[2] > curve[1] and curve[-3:].min() > 1.9


def test_registry_config_and_gym_env():
    family = make_family("keydoor", size=5, horizon=20)
    assert isinstance(family, KeyDoorFamily) and family.num_states == 50 and family.obs_discrete_size == 50
    ids = [0, 7]
    for name in ("random", "annealed", "expert"):
        r = rollout_returns(
            family,
            ids,
            make_policy(name, family, **({"episodes": 3} if name == "annealed" else {})),
            3,
            seed=0,
        )
        assert r.shape == (2, 3)
    with pytest.raises(ValueError, match="needs the keydoor family"):
        KeyDoorExplorer(make_family("darkroom"))
    cfg = task_config({"name": "keydoor"})
    assert isinstance(cfg, KeyDoorTaskConfig) and task_kwargs(cfg) == {"size": 9, "horizon": 50}
    env = gymnasium.make("mouse/KeyDoor-v0", task_id=family.task_id_of(12, 13), size=5, horizon=20)
    obs, info = env.reset(seed=0)
    assert obs == 12 and info["obs_continuous"].tolist() == [2, 2, 0]
    obs, reward, terminated, _, _ = env.step(4)  # the key is on the start cell: stay to take it
    assert (obs, reward, terminated) == (25 + 12, 1.0, False)
    obs, reward, terminated, _, _ = env.step(3)
    assert (obs, reward, terminated) == (25 + 13, 1.0, True)


@pytest.mark.skipif(not SCRIPT.exists(), reason="mouse-collect is not installed (pip install -e .)")
def test_console_script_collects_keydoor(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    args = ["task=keydoor", "policy=explorer", "num_tasks=4", "steps_per_task=60", "output=ds"]
    result = subprocess.run(
        [str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    spec = json.loads((tmp_path / "ds" / "spec.json").read_text())
    assert spec["task_family"] == "keydoor" and spec["obs_discrete_size"] == 162
    assert spec["obs_continuous_dim"] == 3 and spec["horizon"] == 50
    ds = load_dataset(tmp_path / "ds")
    assert ds.num_records == 240 and ds.columns["q_star"].shape == (240, 5)
    assert ds.columns["teacher_logits"].shape == (240, 5)
