"""The minigrid room explorer: its room tables vs the env and the family's BFS, pose tracking vs the env,
never reading the goal, committing to a nearest viewpoint, and its learning curve vs the BFS oracle."""

import dataclasses
import types

import numpy as np
import pytest

from mouse.rollout import collect_streams, rollout_returns
from mouse.tasks import make_family, make_policy
from mouse.tasks.minigrid import MiniGridFamily, RandomGoalRoomEnv, make_room_env, shortest_actions
from mouse.tasks.minigrid_explorer import GOAL, MiniGridExplorer, room_tables


def _cell(size, xy):
    return (xy[1] - 1) * (size - 2) + xy[0] - 1


def test_registry_builds_the_minigrid_explorer_and_checks_its_family():
    fam = make_family("minigrid")
    policy = make_policy("explorer", fam, epsilon_min=0.1, epsilon_max=0.2)
    assert isinstance(policy, MiniGridExplorer) and policy.obs_key == "obs_image"
    assert (policy.noise.epsilon_min, policy.noise.epsilon_max) == (0.1, 0.2)
    with pytest.raises(ValueError, match="needs the minigrid family, got 'darkroom'"):
        MiniGridExplorer(make_family("darkroom"))
    with pytest.raises(ValueError, match="task entry 0 .* has no start / start_dir"):
        policy.reset([object()], np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"starts at \(5, 1\) facing 0, outside the interior 1..4"):
        policy.reset([types.SimpleNamespace(start=(5, 1), start_dir=0)], np.random.default_rng(0))


def test_room_tables_match_the_env_view_and_the_family_bfs():
    size = 6
    fam, room = make_family("minigrid", size=size), room_tables(size)
    assert room.poses.shape == (64, 3) and room.dist.shape == (64, 64) and room.view_cells.shape == (64, 49)
    t = fam.make_task(7)
    env = RandomGoalRoomEnv(size, t.goal, t.start, t.start_dir, fam.horizon)
    env.reset(seed=0)
    goal = _cell(size, t.goal)
    for p, (x, y, d) in enumerate(room.poses):
        env.agent_pos, env.agent_dir = (int(x), int(y)), int(d)
        objects = env.view()[..., 0].reshape(-1)  # image[view_x, view_y] flattened, as obs_image is
        expected = np.where(room.view_cells[p] >= 0, 1, 2)
        expected[room.view_cells[p] == goal] = GOAL
        expected[3 * 7 + 6] = 1  # the agent's own cell
        np.testing.assert_array_equal(objects, expected)
        assert room.pose_index(int(x), int(y), int(d)) == p
        for g in range(0, 16, 3):  # fewest actions onto a cell = the family's BFS
            gx, gy = room.cell_xy(g)
            if (gx, gy) != (x, y):
                bfs = len(shortest_actions(size, (gx, gy), (int(x), int(y)), int(d)))
                assert room.dist[p, 4 * g : 4 * g + 4].min() == bfs
    assert room.dist[room.pose_index(1, 1, 0), room.pose_index(1, 1, 2)] == 2  # turn around
    assert room.dist[room.pose_index(1, 1, 0), room.pose_index(4, 1, 0)] == 3


def test_pose_tracking_matches_the_env_over_random_actions():
    fam = make_family("minigrid", size=6, horizon=15)
    rng = np.random.default_rng(0)
    for task_id in (0, 11):
        task = fam.make_task(task_id)
        env = make_room_env(fam.size, task, fam.horizon)
        policy = make_policy("explorer", fam)
        policy.reset([task], rng)
        obs, _ = env.reset(seed=0)
        episodes = 0
        for _ in range(300):
            policy.perceive(obs.reshape(1, -1))  # also checks the view against the tracked pose
            action = int(rng.integers(3))
            nxt, reward, terminated, truncated, _ = env.step(action)
            policy.observe(obs.reshape(1, -1), np.array([action]), np.array([reward]), nxt.reshape(1, -1),
                           np.array([1 if terminated else 2 if truncated else 0]))  # fmt: skip
            x, y, d = policy.current_pose()[0]
            assert (x, y, d) == (*env.unwrapped.agent_pos, env.unwrapped.agent_dir)
            obs = nxt
            if terminated or truncated:
                episodes += 1
                policy.on_episode_end(np.array([True]))
                obs, _ = env.reset(seed=0)
                assert tuple(policy.current_pose()[0]) == (*task.start, task.start_dir)
        assert episodes >= 10
    with pytest.raises(ValueError, match="disagrees with its tracked pose"):
        policy.perceive(np.roll(obs.reshape(1, -1), 3, axis=1))


class _GoalHiddenFamily(MiniGridFamily):
    """Hands policies task entries with only (start, start_dir, seed), or a wrong goal."""

    def __init__(self, wrong_goal=False, **kwargs):
        super().__init__(**kwargs)
        self.wrong_goal = wrong_goal

    def make_vec_env(self, task_ids, seed):
        env = super().make_vec_env(task_ids, seed)
        if self.wrong_goal:
            env.tasks = [dataclasses.replace(t, goal=(1, 1)) for t in env.tasks]
        else:
            env.tasks = [
                types.SimpleNamespace(start=t.start, start_dir=t.start_dir, seed=t.seed) for t in env.tasks
            ]
        return env


def test_explorer_never_reads_the_goal_from_the_task():
    ids = list(range(8))
    fam = make_family("minigrid", size=6)
    reference = rollout_returns(fam, ids, make_policy("explorer", fam), 3, seed=1)
    for wrong_goal in (False, True):
        hidden = _GoalHiddenFamily(wrong_goal=wrong_goal, size=6)
        got = rollout_returns(hidden, ids, make_policy("explorer", hidden), 3, seed=1)
        np.testing.assert_array_equal(got, reference)


def test_explorer_commits_to_a_nearest_viewpoint_then_takes_the_shortest_path():
    fam = make_family("minigrid", size=8)
    room = room_tables(8)
    # start in the top-left corner facing up at the wall: the view shows row y=1, x 1..4; goal (6, 6) unseen
    task = types.SimpleNamespace(start=(1, 1), start_dir=3, seed=0)
    turns = {room.pose_index(1, 1, 0): 1, room.pose_index(1, 1, 2): 0}  # viewpoint -> the turn to it
    drawn = set()
    for seed in range(12):
        env = RandomGoalRoomEnv(8, (6, 6), (1, 1), 3, fam.horizon)
        env.reset(seed=0)
        policy = make_policy("explorer", fam, epsilon_min=0.0, epsilon_max=0.0)
        rng = np.random.default_rng(seed)
        policy.reset([task], rng)
        policy.perceive(env.view().reshape(1, -1))
        assert policy.goal[0] == -1 and policy.seen[0].sum() == 4
        # both turns show unseen cells (1 action): the target is one of them, drawn uniformly
        target = int(policy.update_targets(rng)[0])
        assert target in turns
        drawn.add(target)
        np.testing.assert_allclose(policy.clean_distribution()[0], np.eye(3)[turns[target]])
        for _ in range(fam.horizon):
            if policy.goal[0] >= 0:
                break
            before = int(policy.target[0])
            probs = policy.clean_distribution()[0]
            action = int(rng.choice(3, p=probs))
            env.step(action)
            policy.observe(None, np.array([action]), np.zeros(1), None, np.zeros(1, dtype=np.int64))
            assert tuple(policy.current_pose()[0]) == (*env.agent_pos, env.agent_dir)
            policy.perceive(env.view().reshape(1, -1))
            unseen = ~policy.seen[0]
            dist = np.where(room.visible[:, unseen].any(-1), room.dist[policy.pose[0]], 10**6)
            after = int(policy.update_targets(rng)[0])
            if policy.goal[0] < 0:
                assert dist[after] == dist.min()  # always a nearest viewpoint ...
                if dist[before] == dist.min():
                    assert after == before  # ... and the committed one while it stays nearest
        assert policy.goal[0] == _cell(8, (6, 6)) and policy.target[0] == -1
        # goal known: uniform over the actions that start a shortest path to it
        probs = policy.clean_distribution()[0]
        x, y, d = (int(v) for v in policy.current_pose()[0])
        best = len(shortest_actions(8, (6, 6), (x, y), d))
        for a in range(3):
            nx, ny, nd = (int(v) for v in room.poses[room.moves[policy.pose[0], a]])
            starts_path = (nx, ny) == (6, 6) or 1 + len(shortest_actions(8, (6, 6), (nx, ny), nd)) == best
            assert (probs[a] > 0) == starts_path
        assert np.allclose(probs[probs > 0], probs.max())
    assert drawn == set(turns)


def test_explorer_learning_curve_reaches_the_oracle_from_episode_two():
    fam = make_family("minigrid", size=8)
    ids = list(range(32))
    oracle = fam.oracle_returns(ids)
    returns = rollout_returns(fam, ids, make_policy("explorer", fam, epsilon_max=0.0), 6, seed=0)
    assert returns.shape == (32, 6)
    assert (returns[:, 0] <= oracle + 1e-6).all()
    found = returns[:, 0] > 0  # episode 1 reached the goal, so the goal was seen
    assert found.all()
    np.testing.assert_allclose(returns[:, 1:], np.repeat(oracle[:, None], 5, axis=1), rtol=1e-6)
    curve = returns.mean(0)
    assert curve[0] < curve[1] and abs(curve[1:].mean() - oracle.mean()) < 0.02
    assert (returns[:, 0] < oracle - 1e-6).sum() >= 3  # some first episodes paid for exploring


def test_epsilon_is_per_stream_and_only_in_the_executed_action():
    fam = make_family("minigrid", size=6)
    ids = list(range(6))
    policy = make_policy("explorer", fam, epsilon_min=0.1, epsilon_max=0.3)
    cols = collect_streams(fam, ids, policy, 60, seed=0)
    eps = policy.noise.epsilon
    assert eps.shape == (6,) and ((eps >= 0.1) & (eps <= 0.3)).all() and len(set(eps)) == 6
    acted = cols["done"] == 0  # no action (nor logits) is taken from a terminal / truncated record
    eps_rows = np.repeat(eps, 60)[acted, None]
    teacher = np.exp(cols["teacher_logits"][acted].astype(np.float64))
    behavior = np.exp(cols["behavior_logits"][acted].astype(np.float64))
    np.testing.assert_allclose(behavior, (1 - eps_rows) * teacher + eps_rows / 3, atol=1e-6)
    assert np.allclose(teacher.sum(-1), 1.0)
    assert set(np.round(teacher.max(-1), 6)) <= {1.0, 0.5, round(1 / 3, 6)}  # uniform over path starts
    noisy = rollout_returns(fam, list(range(16)), make_policy("explorer", fam), 4, seed=0)  # eps ~ U[0, 0.3]
    rand = rollout_returns(fam, list(range(16)), make_policy("random", fam), 4, seed=0)
    assert noisy.mean() > rand.mean() + 0.3 and noisy.mean() <= fam.oracle_returns(range(16)).mean()
