"""Algorithm-Distillation learners: Q-learning arithmetic, ε schedules, learning, determinism, batched DQN."""

import numpy as np
import pytest
import torch

from mouse.rollout import collect_streams, rollout_returns
from mouse.tasks import make_family, make_policy, policy_parameters
from mouse.tasks.core import TabularTask, TaskFamily
from mouse.tasks.learners import (
    BatchedAdam,
    DQNLearner,
    QLearner,
    batched_mlp,
    init_batched_mlp,
    linear_epsilon,
)
from mouse.tasks.tabular import TabularFamily


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batched matmuls: threads only add contention
    yield
    torch.set_num_threads(threads)


class TwoStates(TabularFamily):
    """s0 --a1 (r=1)--> s1 (terminal), s0 --a0 (r=0)--> s0; horizon 3."""

    name = "two_states"

    def __init__(self, gamma: float = 0.5) -> None:
        self.params, self.num_states, self.num_actions, self.horizon, self.gamma = {}, 2, 2, 3, gamma

    def all_task_ids(self) -> list[int]:
        return [0]

    def make_task(self, task_id: int) -> TabularTask:
        P = np.zeros((2, 2, 2))
        P[0, 0, 0] = P[0, 1, 1] = P[1, :, 1] = 1.0
        R = np.array([[0.0, 1.0], [0.0, 0.0]])
        return TabularTask(P, R, np.array([False, True]), np.array([1.0, 0.0]), 3, np.zeros((2, 0)))


def _observe(policy, s, a, r, s2, done):
    policy.observe(np.array([s]), np.array([a]), np.array([r], np.float32), np.array([s2]), np.array([done]))


def test_q_learning_update_arithmetic():
    family = TwoStates(gamma=0.5)
    policy = QLearner(family, alpha=0.5, decay_episodes=4)
    policy.reset([family.make_task(0)], np.random.default_rng(0))
    _observe(policy, 0, 1, 1.0, 1, 1)  # terminal: Q(0,1) = 0 + 0.5 * (1 - 0) = 0.5
    np.testing.assert_array_equal(policy.q[0], [[0.0, 0.5], [0.0, 0.0]])
    _observe(policy, 0, 0, 0.0, 0, 0)  # Q(0,0) = 0.5 * (0 + 0.5 * max(0, 0.5)) = 0.125
    np.testing.assert_array_equal(policy.q[0], [[0.125, 0.5], [0.0, 0.0]])
    _observe(policy, 0, 1, 1.0, 1, 1)  # Q(0,1) = 0.5 + 0.5 * (1 - 0.5) = 0.75
    _observe(policy, 0, 0, 0.0, 0, 2)  # truncated, bootstraps: 0.125 + 0.5 * (0.5 * 0.75 - 0.125)
    np.testing.assert_allclose(policy.q[0, 0], [0.25, 0.75])
    stop = QLearner(family, alpha=0.5, decay_episodes=4, bootstrap_truncation=False)
    stop.reset([family.make_task(0)], np.random.default_rng(0))
    stop.q[0, 0] = [0.125, 0.75]
    _observe(stop, 0, 0, 0.0, 0, 2)  # truncation as a terminal: 0.125 + 0.5 * (0 - 0.125)
    np.testing.assert_allclose(stop.q[0, 0], [0.0625, 0.75])


def test_q_learning_updates_only_active_rows_and_own_streams():
    family = TwoStates()
    policy = QLearner(family, alpha=1.0, decay_episodes=2)
    policy.reset([family.make_task(0)] * 3, np.random.default_rng(0))
    ones = np.ones(3, np.int64)
    policy.observe(
        np.zeros(3, np.int64), ones, np.ones(3, np.float32), ones, ones, active=np.array([1, 0, 1], bool)
    )
    np.testing.assert_array_equal(policy.q[:, 0, 1], [1.0, 0.0, 1.0])


def test_greedy_ties_uniform_and_logits():
    family = TwoStates()
    policy = QLearner(family, epsilon_start=0.5, epsilon_end=0.5, decay_episodes=1)
    policy.reset([family.make_task(0)] * 2, np.random.default_rng(0))
    policy.q[1, 0] = [0.0, 1.0]
    action, behavior, teacher = policy.act(
        np.zeros(2, np.int64), np.zeros(2, np.int64), np.random.default_rng(0)
    )
    np.testing.assert_allclose(np.exp(behavior), [[0.5, 0.5], [0.25, 0.75]])
    np.testing.assert_array_equal(behavior, teacher)  # AD imitates the learner's own ε-greedy choice
    draws = np.stack(
        [policy.act(np.zeros(2, np.int64), None, np.random.default_rng(s))[0] for s in range(400)]
    )
    assert 0.4 < draws[:, 0].mean() < 0.6 and 0.65 < draws[:, 1].mean() < 0.85


def test_epsilon_schedules():
    np.testing.assert_allclose(linear_epsilon(1.0, 0.1, np.array([0, 2, 4, 9]), 4), [1.0, 0.55, 0.1, 0.1])
    family = make_family("darkroom", size=3, horizon=4)
    tasks = [family.make_task(0)] * 2
    policy = make_policy("learner", family, epsilon_end=0.2)
    policy.reset(tasks, np.random.default_rng(0), num_steps=5 * 5 + 1)  # 5 episodes of H + 1 records
    eps = []
    for _ in range(6):
        eps.append(policy.current_epsilon()[0])
        policy.on_episode_end(np.array([True, False]))
    np.testing.assert_allclose(eps, [1.0, 0.8, 0.6, 0.4, 0.2, 0.2])
    assert policy.current_epsilon()[1] == 1.0  # per stream: stream 1 never ended an episode
    one = make_policy("learner", family, decay_episodes=1, epsilon_end=0.3)
    one.reset(tasks, np.random.default_rng(0))
    assert one.current_epsilon()[0] == 0.3
    dqn = DQNLearner(family, obs_key="obs_continuous", epsilon_end=0.0, decay_steps=4)
    dqn.reset(tasks, np.random.default_rng(0))
    dqn.steps[:] = [2, 8]
    np.testing.assert_allclose(dqn.current_epsilon(), [0.5, 0.0])
    with pytest.raises(ValueError, match="set `decay_episodes` or pass num_steps"):
        make_policy("learner", family).reset(tasks, np.random.default_rng(0))


def test_q_learner_learns_darkroom():
    family = make_family("darkroom", size=5, horizon=10)
    ids = list(range(25)) + list(range(7))
    returns = rollout_returns(family, ids, make_policy("learner", family), 60, seed=0)
    first, last = returns[:, :10].mean(), returns[:, -10:].mean()
    assert last > first + 3.0 and last > 0.5 * family.oracle_returns(ids).mean(), (first, last)


def test_same_seed_same_streams():
    family = make_family("darkroom", size=3, horizon=4)
    policy = make_policy("learner", family)
    a = collect_streams(family, [0, 4, 8], policy, 60, seed=3)
    b = collect_streams(family, [0, 4, 8], policy, 60, seed=3)
    c = collect_streams(family, [0, 4, 8], policy, 60, seed=4)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["action"], c["action"])
    dqn = DQNLearner(family, obs_key="obs_continuous", learning_starts=8, batch_size=4)
    a = collect_streams(family, [0, 4], dqn, 40, seed=3)
    b = collect_streams(family, [0, 4], dqn, 40, seed=3)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_batched_mlp_equals_per_stream_loop():
    gen = torch.Generator().manual_seed(0)
    layers = init_batched_mlp([3, 8, 8, 4], 5, gen)
    x = torch.randn(5, 7, 3, generator=gen)
    out = batched_mlp(layers, x)
    for n in range(5):
        h = x[n]
        for i, (w, b) in enumerate(layers):
            h = h @ w[n] + b[n]
            h = torch.relu(h) if i < len(layers) - 1 else h
        torch.testing.assert_close(out[n], h)
    bound = 1 / 3**0.5  # nn.Linear's init range for fan_in 3
    assert layers[0][0].abs().max() <= bound and layers[0][0].abs().max() > 0.9 * bound


def test_batched_adam_matches_torch_adam_per_stream():
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(3, 4, 2, generator=gen), torch.randn(3, 2, generator=gen)]
    refs = [[p[n].clone().requires_grad_() for p in params] for n in range(3)]
    opts = [torch.optim.Adam(r, lr=0.01) for r in refs]
    batched = BatchedAdam(params, lr=0.01)
    for step in range(4):
        grads = [torch.randn(p.shape, generator=gen) for p in params]
        mask = torch.tensor([True, step % 2 == 0, True])  # stream 1 updates every other step only
        batched.step(grads, mask)
        for n in range(3):
            if mask[n]:
                for r, g in zip(refs[n], grads):
                    r.grad = g[n].clone()
                opts[n].step()
    for n in range(3):
        for p, r in zip(params, refs[n]):
            torch.testing.assert_close(p[n], r.detach())


def test_dqn_learns_darkroom_features():
    family = make_family("darkroom", size=3, horizon=6)
    ids = list(range(9)) + list(range(7))
    policy = DQNLearner(family, obs_key="obs_continuous", learning_starts=50, target_every=50)
    returns = rollout_returns(family, ids, policy, 30, seed=0)
    first, last = returns[:, :5].mean(), returns[:, -5:].mean()
    assert last > first + 2.0, (first, last)


def test_dqn_updates_only_due_streams():
    family = make_family("darkroom", size=3, horizon=6)
    policy = DQNLearner(family, obs_key="obs_continuous", learning_starts=1, batch_size=2, target_every=2)
    policy.reset([family.make_task(0)] * 2, np.random.default_rng(0), num_steps=20)
    before = [p.detach().clone() for p in policy.params]
    obs = np.ones((2, 2), np.float32)  # nonzero inputs: every weight gets a gradient
    policy.observe(
        obs, np.zeros(2, np.int64), np.ones(2, np.float32), obs, np.zeros(2, np.int64), np.array([1, 0], bool)
    )
    moved = [not torch.equal(p[0], q[0]) for p, q in zip(policy.params, before)]
    still = [torch.equal(p[1], q[1]) for p, q in zip(policy.params, before)]
    assert all(moved) and all(still) and policy.updates.tolist() == [1, 0]
    policy.observe(
        obs, np.zeros(2, np.int64), np.ones(2, np.float32), obs, np.zeros(2, np.int64), np.array([1, 0], bool)
    )
    torch.testing.assert_close(policy.target[0][0][0], policy.online[0][0][0])  # synced after 2 updates


def test_registry_dispatch_and_config():
    from mouse.data.config import POLICY_CONFIGS, LearnerPolicyConfig, policy_kwargs

    darkroom = make_family("darkroom", size=3)
    assert type(make_policy("learner", darkroom)) is QLearner
    assert "alpha" in policy_parameters("learner", darkroom)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['hidden_dim'\]"):
        make_policy("learner", darkroom, hidden_dim=32)
    assert POLICY_CONFIGS["learner"] is LearnerPolicyConfig
    kwargs = policy_kwargs(LearnerPolicyConfig(alpha=0.3))
    assert kwargs == {"epsilon_start": 1.0, "bootstrap_truncation": True, "alpha": 0.3}
    assert make_policy("learner", darkroom, **kwargs).alpha == 0.3
    assert make_policy("learner", darkroom).gamma == 0.99  # family gamma 1: the learner discounts
    assert make_policy("learner", make_family("frozenlake", size=4)).gamma == 0.99


class NoObs(TaskFamily):
    name, params, num_actions, horizon, gamma = "blind", {}, 2, 5, 0.9

    def all_task_ids(self) -> list[int]:
        return [0]

    def make_vec_env(self, task_ids, seed):
        raise NotImplementedError


def test_learner_errors():
    with pytest.raises(ValueError, match="blind learner: DQN needs continuous or image observations"):
        make_policy("learner", NoObs())
    darkroom = make_family("darkroom", size=3)
    with pytest.raises(ValueError, match="obs_key='obs_image' but the family has no obs_image"):
        DQNLearner(darkroom, obs_key="obs_image")
    with pytest.raises(ValueError, match="gamma=1 with bootstrap_truncation has no fixed point"):
        make_policy("learner", darkroom, gamma=1.0)
    assert make_policy("learner", darkroom, gamma=1.0, bootstrap_truncation=False).gamma == 1.0
    with pytest.raises(ValueError, match="alpha=1.5 is out of range"):
        make_policy("learner", darkroom, alpha=1.5)


@pytest.mark.parametrize("env_id", ["CartPole-v1"])
def test_dqn_cartpole_smoke(env_id):
    pytest.importorskip("mouse.tasks.gym")
    family = make_family("gym", env_id=env_id, num_tasks_pool=4)
    policy = make_policy("learner", family, learning_starts=20, batch_size=8)
    assert type(policy) is DQNLearner and policy.obs_key == "obs_continuous"
    cols = collect_streams(family, [0, 1, 2, 3], policy, 120, seed=0)
    assert cols["obs_continuous"].shape == (4 * 120, 4) and (policy.updates > 0).all()


def test_dqn_image_observations_smoke():
    pytest.importorskip("minigrid")
    family = make_family("minigrid", size=5)
    policy = make_policy("learner", family, learning_starts=10, batch_size=4, hidden_dim=16)
    assert (policy.obs_key, policy.obs_scale) == ("obs_image", 0.1)  # symbolic ids, not pixels
    collect_streams(family, [0, 1], policy, 40, seed=0)
    assert (
        policy.buf_obs.dtype == torch.uint8 and int(policy.buf_obs.max()) > 1 and (policy.updates > 0).all()
    )
