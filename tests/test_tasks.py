"""Task families, exact Q* by value iteration, the gymnasium envs and the vectorised env."""

import itertools

import gymnasium
import numpy as np
import pytest
from gymnasium.envs.toy_text.frozen_lake import FrozenLakeEnv, generate_random_map

from mouse.tasks import FAMILIES, TabularTask, TabularVecEnv, family_parameters, make_family, value_iteration


def random_mdp(seed: int, nS: int = 3, A: int = 2, H: int = 3, terminal: bool = True) -> TabularTask:
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(nS), size=(nS, A))
    term = np.zeros(nS, dtype=bool)
    if terminal:
        term[-1] = True
        P[-1] = np.eye(nS)[-1]  # absorbing
    start = np.zeros(nS)
    start[:-1] = 1.0 / (nS - 1)
    return TabularTask(
        P=P,
        R=rng.normal(size=(nS, A)),
        terminal=term,
        start=start,
        horizon=H,
        obs_continuous=np.zeros((nS, 0)),
    )


def brute_force_optimal_return(task: TabularTask, gamma: float) -> float:
    """Max over every deterministic time-dependent policy (t, s) -> a of its exact expected return."""
    H, nS, A = task.horizon, task.num_states, task.num_actions
    best = -np.inf
    for flat in itertools.product(range(A), repeat=H * nS):
        pi = np.array(flat).reshape(H, nS)
        dist, ret = task.start.copy(), 0.0
        for t in range(H):
            a = pi[t]
            ret += gamma**t * (dist * task.R[np.arange(nS), a]).sum()
            dist = dist @ task.P[np.arange(nS), a]
            dist = dist * ~task.terminal  # episodes that entered a terminal state stop
        best = max(best, ret)
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("gamma", [1.0, 0.8])
def test_value_iteration_matches_brute_force(seed, gamma):
    task = random_mdp(seed)
    assert task.optimal_return(gamma) == pytest.approx(brute_force_optimal_return(task, gamma), abs=1e-9)
    q = value_iteration(task, gamma)
    assert q.shape == (3, 3, 2) and q.dtype == np.float32
    assert np.isneginf(q[:, task.terminal]).all() and np.isfinite(q[:, ~task.terminal]).all()


def test_q_star_is_cached_readonly_and_time_dependent():
    task = make_family("darkroom", size=5, horizon=6).make_task(0)
    q = task.q_star(1.0)
    assert q is task.q_star(1.0) and not q.flags.writeable
    assert q.shape == (6, 25, 5)
    # the last step is worth at most 1 (reward of one transition), the first up to the horizon
    assert q[-1].max() == 1.0 and q[0].max() == 6.0


@pytest.mark.parametrize("goal", [0, 12, 13, 24])
def test_darkroom_optimal_return_closed_form(goal):
    family = make_family("darkroom", size=5, horizon=6)
    task = family.make_task(goal)
    rows, cols = divmod(goal, 5)
    d = abs(rows - 2) + abs(cols - 2)
    expected = 6 if d == 0 else max(0, 6 - d + 1)  # arrive after d moves, then stay on the goal
    assert task.optimal_return() == expected
    assert task.random_return() < expected


def test_darkroom_layout():
    family = make_family("darkroom")
    assert (family.num_states, family.num_actions, family.obs_continuous_dim, family.horizon) == (
        81,
        5,
        2,
        20,
    )
    assert family.params == {"size": 9, "horizon": 20, "gamma": 1.0}
    assert family.all_task_ids() == list(range(81))
    task = family.make_task(3)
    assert task.start.argmax() == 40 and not task.terminal.any()
    assert task.obs_continuous[3].tolist() == [0.0, 3.0]
    # actions: up, down, left, right, stay from the centre (row 4, col 4)
    assert task.P[40].argmax(-1).tolist() == [31, 49, 39, 41, 40]
    # into the goal (row 0, col 3): left from 4, right from 2, up from 12, and stay / up-into-the-wall on it
    assert np.argwhere(task.R == 1.0).tolist() == [[2, 3], [3, 0], [3, 4], [4, 2], [12, 0]]


def test_frozenlake_mirrors_gymnasium():
    family = make_family("frozenlake", size=5, hole_prob=0.3, slippery=True)
    task = family.make_task(7)
    desc = generate_random_map(size=5, p=0.7, seed=7)
    assert task.params["map"] == desc
    env = FrozenLakeEnv(desc=desc, is_slippery=True)
    for s in range(25):
        for a in range(4):
            expected = np.zeros(25)
            for prob, s2, _, _ in env.P[s][a]:
                expected[s2] += prob
            np.testing.assert_allclose(task.P[s, a], expected)
    cells = "".join(desc)
    assert task.terminal.tolist() == [c in "HG" for c in cells]
    assert task.optimal_return() > 0  # the goal is reachable


def test_frozenlake_greedy_q_star_is_optimal_in_expectation():
    family = make_family("frozenlake", size=4, slippery=True, gamma=1.0, horizon=30)
    task = family.make_task(3)
    env = TabularVecEnv([task] * 4000, seed=0)
    obs, q = env.reset(), task.q_star(1.0)
    total = np.zeros(4000)
    alive = np.ones(4000, dtype=bool)
    for t in range(task.horizon):
        alive &= ~env.finished()
        actions = q[t, obs].argmax(-1)
        obs, reward, _, _ = env.step(np.where(alive, actions, 0), active=alive)
        total += reward
    stderr = total.std() / np.sqrt(len(total)) + 1e-9
    assert abs(total.mean() - task.optimal_return(1.0)) < 4 * stderr


def test_bandit_family():
    family = make_family("bandit", num_arms=3, horizon=10, reward_dist="gaussian")
    task = family.make_task(5)
    assert (task.num_states, task.num_actions, task.obs_continuous_dim) == (1, 3, 0)
    np.testing.assert_array_equal(task.R[0], family.arm_means(5))
    np.testing.assert_array_equal(family.arm_means(5), make_family("bandit", num_arms=3).arm_means(5))
    assert task.reward_noise == "gaussian" and task.reward_std == 0.3
    assert task.optimal_return() == pytest.approx(10 * task.R.max())
    assert task.random_return() == pytest.approx(10 * task.R.mean())


def test_split_is_deterministic_and_partitions():
    family = make_family("darkroom")
    train, test = family.split(seed=3, test_fraction=0.25)
    assert (train, test) == family.split(seed=3, test_fraction=0.25)
    assert sorted(train + test) == family.all_task_ids() and len(test) == 20
    assert test != family.split(seed=4, test_fraction=0.25)[1]
    with pytest.raises(ValueError, match="test_fraction"):
        family.split(seed=0, test_fraction=1.0)


def test_family_errors_name_the_problem():
    with pytest.raises(ValueError, match="darkroom, frozenlake, bandit"):
        make_family("gridworld")
    with pytest.raises(ValueError, match="valid: size, horizon, gamma"):
        make_family("darkroom", sise=9)
    with pytest.raises(ValueError, match="hole_prob"):
        make_family("frozenlake", hole_prob=0.9)
    with pytest.raises(ValueError, match="reward_dist"):
        make_family("bandit", reward_dist="poisson")
    with pytest.raises(ValueError, match=r"task_id 81 .*\[0, 80\]"):
        make_family("darkroom").make_task(81)
    assert FAMILIES[:3] == ("darkroom", "frozenlake", "bandit") and "keydoor" in FAMILIES


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_has_a_task_config_and_a_schema(name):
    """`task=<name>` works in all three commands: a conf/task yaml that starts with its schema."""
    from pathlib import Path

    from mouse.data.config import TASK_CONFIGS

    conf = Path(__file__).resolve().parents[1] / "conf" / "task" / f"{name}.yaml"
    assert conf.is_file(), f"missing {conf}"
    assert f"{name}_schema" in conf.read_text()
    assert TASK_CONFIGS[name]().name == name
    schema = {f for f in TASK_CONFIGS[name].__dataclass_fields__} - {"name", "test_fraction", "split_seed"}
    assert schema <= set(family_parameters(name)), f"schema fields the family does not take: {schema}"


def test_tabular_task_validation():
    task = random_mdp(0)
    with pytest.raises(ValueError, match="probability vector"):
        TabularTask(
            P=task.P * 2,
            R=task.R,
            terminal=task.terminal,
            start=task.start,
            horizon=3,
            obs_continuous=np.zeros((3, 0)),
        )
    with pytest.raises(ValueError, match="reward_noise"):
        TabularTask(
            P=task.P,
            R=task.R,
            terminal=task.terminal,
            start=task.start,
            horizon=3,
            obs_continuous=np.zeros((3, 0)),
            reward_noise="poisson",
        )
    with pytest.raises(ValueError, match="terminal"):
        TabularTask(
            P=task.P,
            R=task.R,
            terminal=np.ones(3, bool),
            start=task.start,
            horizon=3,
            obs_continuous=np.zeros((3, 0)),
        )


@pytest.mark.parametrize(
    "env_id, kwargs",
    [
        ("mouse/DarkRoom-v0", {"goal": 3}),
        ("mouse/FrozenLake-v0", {"task_id": 2}),
        ("mouse/Bandit-v0", {"task_id": 1, "horizon": 7}),
    ],
)
def test_gymnasium_envs(env_id, kwargs):
    env = gymnasium.make(env_id, **kwargs)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and info["time"] == 0
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        steps += 1
    horizon = env.unwrapped.task.horizon
    assert steps <= horizon and (terminated or steps == horizon) and info["time"] == steps


def test_gymnasium_darkroom_reward_on_goal():
    env = gymnasium.make("mouse/DarkRoom-v0", goal=31, size=9)  # the cell above the centre
    env.reset(seed=0)
    assert env.step(0)[1] == 1.0 and env.step(4)[1] == 1.0 and env.step(1)[1] == 0.0


def test_vec_env_steps_truncates_and_does_not_auto_reset():
    family = make_family("darkroom", size=3, horizon=2)
    env = TabularVecEnv([family.make_task(i) for i in range(9)], seed=0)
    obs = env.reset()
    assert obs.dtype == np.int64 and (obs == 4).all()
    obs, reward, done, time = env.step(np.full(9, 0))  # up
    assert (obs == 1).all() and reward.dtype == np.float32 and reward[1] == 1.0 and reward.sum() == 1
    assert (done == 0).all() and (time == 1).all() and done.dtype == np.int64
    obs, reward, done, time = env.step(np.full(9, 4))
    assert (done == 2).all() and (time == 2).all()
    assert np.isneginf(env.q_star(obs, time)).all()
    with pytest.raises(ValueError, match="reset_where"):
        env.step(np.zeros(9, dtype=np.int64))
    obs = env.reset_where(np.arange(9) < 4)
    assert (obs[:4] == 4).all() and (obs[4:] == 1).all() and (env.time[:4] == 0).all()
    with pytest.raises(ValueError, match=r"action 5 of stream 0 is outside \[0, 4\]"):
        env.step(np.full(9, 5), active=np.arange(9) < 4)


def test_vec_env_matches_transition_probabilities_and_rewards():
    task = make_family("frozenlake", size=4, hole_prob=0.0, slippery=True).make_task(0)
    env = TabularVecEnv([task] * 20000, seed=1)
    env.reset()
    obs, _, _, _ = env.step(np.full(20000, 1))  # down from the start: down / left(wall) / right
    freq = np.bincount(obs, minlength=16) / 20000
    np.testing.assert_allclose(freq, task.P[0, 1], atol=0.02)
    bandit = make_family("bandit", num_arms=2, horizon=5).make_task(0)
    env = TabularVecEnv([bandit] * 20000, seed=2)
    env.reset()
    _, reward, _, _ = env.step(np.zeros(20000, dtype=np.int64))
    assert set(np.unique(reward)) <= {0.0, 1.0}
    assert reward.mean() == pytest.approx(bandit.R[0, 0], abs=0.02)


def test_vec_env_q_star_and_terminal_rows():
    family = make_family("frozenlake", size=4, hole_prob=0.3)
    tasks = [family.make_task(i) for i in range(6)]
    env = TabularVecEnv(tasks, seed=0)
    assert env.gamma == family.gamma
    obs, time = env.reset(), np.zeros(6, dtype=np.int64)
    q = env.q_star(obs, time)
    np.testing.assert_array_equal(q, np.stack([t.q_star(family.gamma)[0, 0] for t in tasks]))
    goal = np.full(6, 15)
    assert np.isneginf(env.q_star(goal, time)).all()
    assert env.obs_continuous(goal).tolist() == [[3.0, 3.0]] * 6
