"""`collect_streams` follows THE step-record contract (DESIGN.md) and is fast and deterministic."""

import numpy as np
import pytest

from mouse.rollout import collect_streams
from mouse.tasks import POLICIES, episode_returns, make_family, make_policy

CASES = [
    ("darkroom", {"size": 5, "horizon": 6}),
    ("frozenlake", {"size": 4, "hole_prob": 0.3, "slippery": True}),
    ("bandit", {"num_arms": 3, "horizon": 5}),
]


def _collect(name, params, policy="random", ids=(0, 1, 2), steps=60, seed=0, **policy_params):
    family = make_family(name, **params)
    cols = collect_streams(family, list(ids), make_policy(policy, family, **policy_params), steps, seed)
    return family, cols


def _grid(cols, key, n, steps):
    return cols[key].reshape(n, steps, *cols[key].shape[1:])


@pytest.mark.parametrize("name, params", CASES)
def test_columns_dtypes_and_stream_major_layout(name, params):
    family, cols = _collect(name, params, steps=40)
    n, a = 3, family.num_actions
    ints = ("stream_id", "task_id", "action", "done", "time", "obs_discrete")
    for key in ints:
        assert cols[key].dtype == np.int64 and cols[key].shape == (n * 40,)
    assert cols["reward"].dtype == np.float32 and cols["reward"].shape == (n * 40,)
    for key in ("q_star", "behavior_logits", "teacher_logits"):
        assert cols[key].dtype == np.float32 and cols[key].shape == (n * 40, a)
    assert ("obs_continuous" in cols) == (family.obs_continuous_dim > 0)
    np.testing.assert_array_equal(cols["stream_id"], np.repeat(np.arange(3), 40))
    np.testing.assert_array_equal(cols["task_id"], np.repeat([0, 1, 2], 40))


@pytest.mark.parametrize("name, params", CASES)
@pytest.mark.parametrize("policy", ["random", "expert", "explorer"])
def test_step_record_contract(name, params, policy):
    family, cols = _collect(name, params, policy=policy)
    n, steps, H = 3, 60, family.horizon
    action, reward, done, tm, obs = (
        _grid(cols, k, n, steps) for k in ("action", "reward", "done", "time", "obs_discrete")
    )
    q, beh, tea = (_grid(cols, k, n, steps) for k in ("q_star", "behavior_logits", "teacher_logits"))
    tasks = [family.make_task(i) for i in range(3)]
    # every stream starts with a reset record, and a record after an ended episode is a reset record
    prev_done = np.concatenate([np.ones((n, 1), np.int64), done[:, :-1]], axis=1)
    reset = prev_done != 0
    assert (action[reset] == 0).all() and (reward[reset] == 0).all() and (done[reset] == 0).all()
    assert (tm[reset] == 0).all()
    for i, task in enumerate(tasks):
        assert task.start[obs[i, reset[i]]].min() > 0
    # otherwise time counts the transitions of the episode, and done codes follow terminal/truncation
    assert (tm[~reset] == tm[:, :-1][~reset[:, 1:]] + 1).all()
    for i, task in enumerate(tasks):
        terminal = task.terminal[obs[i]]
        assert (done[i][terminal & ~reset[i]] == 1).all()
        assert (done[i][~terminal & (tm[i] == H)] == 2).all()
        assert (done[i][~terminal & (tm[i] < H)] == 0).all()
        # q_star at t is Q*_{time t}(obs t); rows that take no action are all -inf, logits masked
        alive = done[i] == 0
        np.testing.assert_array_equal(q[i][alive], task.q_star(family.gamma)[tm[i][alive], obs[i][alive]])
    ended = done != 0
    assert np.isneginf(q[ended]).all() and np.isneginf(tea[ended]).all() and (beh[ended] == 0).all()
    # the executed action (stored at t+1) had a finite behaviour logit at t
    took = done[:, :-1] == 0
    taken = np.take_along_axis(beh[:, :-1], action[:, 1:, None], axis=-1)[..., 0]
    assert np.isfinite(taken[took]).all()
    np.testing.assert_allclose(np.exp(beh[~ended]).sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.exp(tea[~ended]).sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name, params", CASES)
def test_expert_action_at_t_plus_1_is_greedy_on_q_star_at_t(name, params):
    family, cols = _collect(name, params, policy="expert", epsilon=0.0)
    q, action, done = _grid(cols, "q_star", 3, 60), _grid(cols, "action", 3, 60), _grid(cols, "done", 3, 60)
    took = done[:, :-1] == 0
    chosen = np.take_along_axis(q[:, :-1], action[:, 1:, None], axis=-1)[..., 0]
    best = q[:, :-1].max(-1)
    assert took.any() and np.allclose(chosen[took], best[took], rtol=1e-6, atol=1e-6)


def test_obs_continuous_are_the_cell_coordinates():
    family, cols = _collect("darkroom", {"size": 5, "horizon": 6})
    np.testing.assert_array_equal(cols["obs_continuous"], np.stack(np.divmod(cols["obs_discrete"], 5), -1))
    assert cols["obs_continuous"].dtype == np.float32


@pytest.mark.parametrize("policy", POLICIES)
def test_same_seed_same_arrays(policy):
    kwargs = {"name": "bandit", "params": {"num_arms": 3, "horizon": 5}, "policy": policy}
    _, a = _collect(**kwargs, seed=7)
    _, b = _collect(**kwargs, seed=7)
    _, c = _collect(**kwargs, seed=8)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    if policy != "expert":  # the expert's bandit actions are deterministic
        assert not np.array_equal(a["action"], c["action"])


def test_darkroom_collection_at_scale():
    """200 streams x 400 records in one call (no wall-clock bound in the test suite: `scripts/bench_data.py` times collection, "ready in N s")."""
    family = make_family("darkroom")
    policy = make_policy("explorer", family)
    task_ids = list(range(81)) * 2 + list(range(38))
    cols = collect_streams(family, task_ids, policy, 400, seed=0)
    assert len(cols["action"]) == 200 * 400


def test_collect_errors():
    family = make_family("darkroom")
    policy = make_policy("random", family)
    with pytest.raises(ValueError, match="steps_per_task=0 is out of range"):
        collect_streams(family, [0], policy, 0, seed=0)
    with pytest.raises(ValueError, match="task_ids is empty"):
        collect_streams(family, [], policy, 10, seed=0)
    with pytest.raises(ValueError, match="task_id 100"):
        collect_streams(family, [100], policy, 10, seed=0)


def test_episode_returns():
    reward = np.array([[0, 1, 1, 0, 0, 2, 5], [0, 3, 0, 1, 0, 0, 0]], dtype=np.float32)
    done = np.array([[0, 0, 2, 0, 0, 1, 0], [0, 1, 0, 2, 0, 0, 0]])
    np.testing.assert_array_equal(episode_returns(reward, done, 2), [[2, 2], [3, 1]])
    with pytest.raises(ValueError, match="stream 0 completed 2 episodes"):
        episode_returns(reward, done, 3)
