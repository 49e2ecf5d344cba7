"""Behaviour policies and exploring teachers: clean vs executed distributions, memory, learning curves."""

import numpy as np
import pytest

from mouse.rollout import rollout_returns
from mouse.tasks import (
    POLICIES,
    make_family,
    make_policy,
    oracle_returns,
    random_returns,
)
from mouse.tasks.grid import path_lengths_from, shortest_path_lengths


def _reset(policy, family, ids, seed=0, num_steps=None):
    tasks = [family.make_task(i) for i in ids]
    rng = np.random.default_rng(seed)
    policy.reset(tasks, rng, num_steps=num_steps)
    return tasks, rng


def test_random_policy_is_uniform():
    family = make_family("darkroom", size=3)
    policy = make_policy("random", family)
    _, rng = _reset(policy, family, [0, 1])
    action, behavior, teacher = policy.act(np.array([4, 4]), np.zeros(2, np.int64), rng)
    assert action.dtype == np.int64 and behavior.dtype == np.float32 and teacher.shape == (2, 5)
    np.testing.assert_allclose(np.exp(behavior), 0.2, rtol=1e-6)
    np.testing.assert_array_equal(behavior, teacher)


def test_expert_teacher_is_uniform_over_optimal_actions_and_epsilon_mixes_behaviour():
    family = make_family("darkroom", size=5, horizon=8)
    policy = make_policy("expert", family, epsilon=0.2)
    tasks, rng = _reset(policy, family, [0, 24])  # goals in two opposite corners
    action, behavior, teacher = policy.act(np.array([12, 12]), np.zeros(2, np.int64), rng)
    # from the centre, corner 0 is reached by up or left, corner 24 by down or right
    assert np.isfinite(teacher).tolist() == [
        [True, False, True, False, False],
        [False, True, False, True, False],
    ]
    np.testing.assert_allclose(np.exp(teacher[np.isfinite(teacher)]), 0.5)
    np.testing.assert_allclose(np.exp(behavior), 0.8 * np.exp(teacher) + 0.2 / 5, rtol=1e-6)
    q = np.stack([t.q_star(family.gamma)[0, 12] for t in tasks])
    greedy = q == q.max(-1, keepdims=True)
    np.testing.assert_array_equal(greedy, np.isfinite(teacher))


def test_expert_actions_follow_the_ties():
    family = make_family("darkroom", size=5, horizon=8)
    policy = make_policy("expert", family)
    _, rng = _reset(policy, family, [0] * 2000)
    action, _, _ = policy.act(np.full(2000, 12), np.zeros(2000, np.int64), rng)
    counts = np.bincount(action, minlength=5)
    assert counts[[1, 3, 4]].sum() == 0 and abs(counts[0] - 1000) < 150


def test_annealed_epsilon_goes_from_one_to_zero_over_episodes():
    family = make_family("darkroom", size=5, horizon=8)
    policy = make_policy("annealed", family)
    _reset(policy, family, [0, 1], num_steps=5 * 9)
    assert policy.current_epsilon().tolist() == [1.0, 1.0]
    for _ in range(2):
        policy.on_episode_end(np.array([True, False]))
    assert policy.current_epsilon().tolist() == [0.5, 1.0]
    for _ in range(5):
        policy.on_episode_end(np.array([True, True]))
    assert policy.current_epsilon().tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="episodes"):
        make_policy("annealed", family).reset([family.make_task(0)], np.random.default_rng(0))


def test_annealed_streams_improve():
    family = make_family("darkroom")
    ids = family.all_task_ids()
    returns = rollout_returns(family, ids, make_policy("annealed", family, episodes=6), 6, seed=0)
    per_episode = returns.mean(0)
    assert per_episode[0] < 2.0 and per_episode[-1] == pytest.approx(oracle_returns(family, ids).mean())
    assert (np.diff(per_episode) > 0).all()


def test_darkroom_explorer_tests_the_start_then_commits_to_a_uniform_nearest_cell():
    family = make_family("darkroom")
    n = 2000
    policy = make_policy("explorer", family, epsilon_min=0.0, epsilon_max=0.0)
    _, rng = _reset(policy, family, [0] * n)
    centre, t0 = np.full(n, 40), np.zeros(n, np.int64)
    _, _, teacher = policy.act(centre, t0, rng)
    assert (np.exp(teacher) == [0, 0, 0, 0, 1]).all()  # the unentered start is the nearest cell: stay there
    policy.observe(centre, np.full(n, 4), np.zeros(n), centre, np.zeros(n))
    action, _, teacher = policy.act(centre, t0, rng)
    assert (np.exp(teacher).max(-1) == 1).all()  # one committed neighbour, one move to it
    counts = np.bincount(action, minlength=5)
    assert counts[4] == 0 and np.abs(counts[:4] - n / 4).max() < 100  # drawn uniformly among the 4


def test_darkroom_explorer_keeps_its_target_while_it_is_nearest():
    family = make_family("darkroom")
    policy = make_policy("explorer", family, epsilon_min=0.0, epsilon_max=0.0)
    _, rng = _reset(policy, family, [0])
    t0 = np.zeros(1, np.int64)
    policy.visited[0, [40, 31, 49, 39, 41]] = True  # centre and its 4 neighbours: nearest cells 2 moves away
    policy.target[0] = 30  # committed to (3, 3), up-left of the centre
    _, _, teacher = policy.act(np.array([40]), t0, rng)
    assert policy.target.tolist() == [30] and np.exp(teacher).tolist() == [[0.5, 0, 0.5, 0, 0]]  # up or left
    _, _, teacher = policy.act(np.array([31]), t0, rng)  # went up: (2, 4) is as near as (3, 3) now
    assert policy.target.tolist() == [30] and np.exp(teacher).tolist() == [[0, 0, 1, 0, 0]]  # no switch
    _, _, teacher = policy.act(np.array([49]), t0, rng)  # slipped below the centre: (3, 3) is 3 moves away
    assert policy.target[0] in (48, 50, 58) and np.exp(teacher).max() == 1  # redrawn among the nearest
    policy.observe(np.array([40]), np.array([0]), np.ones(1), np.array([31]), np.zeros(1))  # rewarded above
    _, _, teacher = policy.act(np.array([40]), t0, rng)
    assert np.exp(teacher).tolist() == [[1, 0, 0, 0, 0]]  # straight to the goal
    _, _, teacher = policy.act(np.array([31]), t0, rng)
    assert np.exp(teacher).tolist() == [[0, 0, 0, 0, 1]]  # and stay


def test_path_lengths_from_avoids_blocked_cells():
    family = make_family("darkroom", size=3)
    nxt = family.next_cells
    np.testing.assert_array_equal(path_lengths_from(nxt, np.arange(9)), shortest_path_lengths(nxt))
    blocked = np.zeros((1, 9), dtype=bool)
    blocked[0, [1, 4]] = True  # top-middle and centre: from the top-left corner, around by the left column
    dist = path_lengths_from(nxt, np.array([0]), blocked)
    assert dist[0, 2] == 6 and np.isinf(dist[0, [1, 4]]).all()
    until = np.zeros((1, 9), dtype=bool)
    until[0, 3] = True  # stop at the first layer that reaches cell 3
    assert np.isinf(path_lengths_from(nxt, np.array([0]), blocked, until)[0, 2])


def test_darkroom_explorer_learning_curve():
    """The ε=0 explorer's normalised score rises over episodes to the oracle (issue: ~.17 .43 .68 .90 1,
    0.99 over episodes 4-10; ours ~.14 .40 .63 .82 .95 1 over 100 seeds: with one new cell per step
    episode 1 cannot pass 0.159, and the walk back from the reset start costs later episodes)."""
    family = make_family("darkroom")
    ids = family.all_task_ids()
    policy = make_policy("explorer", family, epsilon_min=0.0, epsilon_max=0.0)
    returns = np.mean([rollout_returns(family, ids, policy, 10, seed=s).mean(0) for s in range(2)], 0)
    opt, rnd = oracle_returns(family, ids).mean(), random_returns(family, ids).mean()
    score = (returns - rnd) / (opt - rnd)
    assert (np.diff(score) >= -1e-9).all()
    assert 0.08 < score[0] < 0.2 and 0.3 < score[1] < 0.5 and score[3] > 0.7 and score[6] > 0.99
    assert score[3:].mean() >= 0.85


def test_frozenlake_explorer_avoids_known_holes_and_reaches_the_goal():
    family = make_family("frozenlake", size=5, hole_prob=0.3)
    ids = list(range(20))
    policy = make_policy("explorer", family, epsilon_min=0.0, epsilon_max=0.0)
    returns = rollout_returns(family, ids, policy, 25, seed=0)
    np.testing.assert_array_equal(returns[:, -3:], 1.0)  # every map solved in the end
    assert returns[:, 0].mean() < 1.0
    # a stream never falls twice into the same hole: its memory blocks every move into one
    policy.reset([family.make_task(i) for i in ids], np.random.default_rng(0))
    policy.hole[:, 1] = True  # pretend cell (0, 1) was a hole: from the start only "down" remains
    _, _, teacher = policy.act(np.zeros(20, np.int64), np.zeros(20, np.int64), np.random.default_rng(0))
    assert np.isneginf(teacher[:, 2]).all()


def test_explorer_epsilon_is_per_stream_and_only_in_behaviour():
    family = make_family("darkroom")
    policy = make_policy("explorer", family, epsilon_min=0.1, epsilon_max=0.3)
    _, rng = _reset(policy, family, list(range(50)))
    eps = policy.noise.epsilon
    assert eps.shape == (50,) and (eps >= 0.1).all() and (eps <= 0.3).all() and eps.std() > 0
    action, behavior, teacher = policy.act(np.full(50, 40), np.zeros(50, np.int64), rng)
    np.testing.assert_allclose(
        np.exp(behavior), (1 - eps[:, None]) * np.exp(teacher) + eps[:, None] / 5, rtol=1e-5
    )
    assert np.isfinite(behavior[np.arange(50), action]).all()


@pytest.mark.parametrize("name", ["ucb", "thompson"])
@pytest.mark.parametrize("dist", ["bernoulli", "gaussian"])
def test_bandit_teachers_find_the_best_arm(name, dist):
    family = make_family("bandit", reward_dist=dist, horizon=200)
    ids = list(range(30))
    policy = make_policy(name, family, epsilon_min=0.0, epsilon_max=0.0)
    returns = rollout_returns(family, ids, policy, 1, seed=0)[:, 0]
    opt, rnd = oracle_returns(family, ids), random_returns(family, ids)
    assert ((returns - rnd) / (opt - rnd)).mean() > 0.4  # UCB1 (c=1) still explores a lot at 200 pulls


def test_ucb_tries_every_arm_first_then_is_greedy_on_its_index():
    family = make_family("bandit", num_arms=4)
    policy = make_policy("ucb", family, epsilon_min=0.0, epsilon_max=0.0)
    _, rng = _reset(policy, family, [0])
    seen = []
    for _ in range(4):
        action, _, teacher = policy.act(np.zeros(1, np.int64), np.zeros(1, np.int64), rng)
        assert np.isneginf(teacher[0, seen]).all()
        seen.append(int(action[0]))
        policy.observe(np.zeros(1), action, np.array([0.5]), np.zeros(1), np.zeros(1))
    assert sorted(seen) == [0, 1, 2, 3]
    _, _, teacher = policy.act(np.zeros(1, np.int64), np.zeros(1, np.int64), rng)
    assert np.isfinite(teacher).all()  # equal means and counts: the index ties across all arms


def test_thompson_clean_distribution():
    family = make_family("bandit", num_arms=3)
    policy = make_policy("thompson", family, num_samples=1, epsilon_min=0.0, epsilon_max=0.0)
    _, rng = _reset(policy, family, [0, 1])
    _, behavior, teacher = policy.act(np.zeros(2, np.int64), np.zeros(2, np.int64), rng)
    assert (np.isfinite(teacher).sum(-1) == 1).all()  # one posterior sample: one-hot
    policy = make_policy("thompson", family, num_samples=64)
    _, rng = _reset(policy, family, [0, 1])
    _, _, teacher = policy.act(np.zeros(2, np.int64), np.zeros(2, np.int64), rng)
    np.testing.assert_allclose(np.exp(teacher).sum(-1), 1.0, rtol=1e-6)


def test_make_policy_errors():
    assert POLICIES == ("random", "expert", "annealed", "explorer", "ucb", "thompson", "learner")
    darkroom = make_family("darkroom")
    with pytest.raises(ValueError, match="valid policies: random, expert"):
        make_policy("greedy", darkroom)
    with pytest.raises(ValueError, match="bandit family only"):
        make_policy("ucb", darkroom)
    with pytest.raises(ValueError, match="valid: epsilon"):
        make_policy("expert", darkroom, eps=0.1)
    with pytest.raises(ValueError, match="epsilon_min=0.5 must be <= epsilon_max=0.2"):
        make_policy("explorer", darkroom, epsilon_min=0.5, epsilon_max=0.2)
    with pytest.raises(ValueError, match="epsilon=1.5 is out of range"):
        make_policy("expert", darkroom, epsilon=1.5)
    assert type(make_policy("explorer", make_family("bandit"))).__name__ == "UCBPolicy"
