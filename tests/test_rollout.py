"""The rollout engine: stream contract, episode accounting, scripted oracle, KV cache vs no cache."""

import numpy as np
import pytest
import torch

from mouse.eval import ModelActor, OracleActor, PolicyActor, RandomActor, StreamPolicyActor, rollout
from mouse.eval.metrics import curve, normalized_score
from mouse.rollout import (
    ActorOutput,
    ColumnRecorder,
    ReturnRecorder,
    VecEnv,
    collect_streams,
    rollout_returns,
    run_streams,
)
from mouse.tasks import TabularVecEnv, episode_returns, make_family, make_policy


def _rollout(actor, tasks, episodes, env_seed, num_actions, rng=None, record_actions=False):
    """``rollout`` over one TabularVecEnv of ``tasks`` (seed ``env_seed``; the actor's rng defaults to it)."""
    env = TabularVecEnv(tasks, seed=env_seed)
    rng = rng if rng is not None else np.random.default_rng(env_seed)
    return rollout(actor, env, episodes, num_actions, rng=rng, record_actions=record_actions)


def _darkroom():
    return make_family("darkroom", size=5, horizon=8)


def _recording(policy_fn):
    """A StreamPolicyActor that keeps the last stream it saw (to check the records themselves)."""
    seen = {}

    def fn(stream):
        seen["stream"] = stream
        return policy_fn(stream)

    return StreamPolicyActor(fn), seen


def _q_star_policy(tasks, gamma):
    """Greedy on Q*, looked up from the stream's own last obs_discrete and time (no env access)."""

    def policy(stream):
        last = stream[:, -1]
        obs, time = last["obs_discrete"].numpy(), last["time"].numpy()
        return np.array(
            [t.q_star(gamma)[min(int(time[i]), t.horizon - 1), obs[i]].argmax() for i, t in enumerate(tasks)]
        )

    return policy


def test_scripted_oracle_reproduces_the_oracle_return_exactly():
    fam = _darkroom()
    tasks = [fam.make_task(i) for i in fam.all_task_ids()]
    res = _rollout(StreamPolicyActor(_q_star_policy(tasks, fam.gamma)), tasks, 3, env_seed=7, num_actions=5)
    expected = np.array([t.optimal_return() for t in tasks])
    np.testing.assert_array_equal(res.returns, np.repeat(expected[:, None], 3, axis=1))
    np.testing.assert_array_equal(res.lengths, np.full((len(tasks), 3), fam.horizon))
    oracle = _rollout(OracleActor(), tasks, 3, env_seed=7, num_actions=5)
    np.testing.assert_array_equal(oracle.returns, res.returns)
    assert res.num_steps == len(tasks) * 3 * fam.horizon


def test_stream_follows_the_step_record_contract():
    fam = _darkroom()
    tasks = [fam.make_task(i) for i in (0, 6, 12, 24)]
    rng = np.random.default_rng(0)
    actor, seen = _recording(lambda s: rng.integers(0, 5, size=s.batch_size[0]))
    res = _rollout(actor, tasks, 3, env_seed=0, num_actions=5)
    s = seen["stream"]
    done, time, action, reward = (s[k].numpy() for k in ("done", "time", "action", "reward"))
    obs = s["obs_discrete"].numpy()
    start = fam.start_cell
    # record 0 is the reset record; after each truncated record comes the next episode's reset record
    resets = np.zeros_like(done, dtype=bool)
    resets[:, 0] = True
    resets[:, 1:] = done[:, :-1] != 0
    assert (action[resets] == 0).all() and (reward[resets] == 0).all()
    assert (done[resets] == 0).all() and (time[resets] == 0).all() and (obs[resets] == start).all()
    # time counts transitions in the episode; the record at time == horizon is the truncated one
    assert ((done == 2) == (time == fam.horizon)).all()
    assert (time[:, 1:][~resets[:, 1:]] == time[:, :-1][~resets[:, 1:]] + 1).all()
    # each transition's reward is R(previous obs, action) of its own task; obs_continuous is the cell's
    for i, task in enumerate(tasks):
        moved = ~resets[i, 1:]
        np.testing.assert_array_equal(reward[i, 1:][moved], task.R[obs[i, :-1][moved], action[i, 1:][moved]])
        np.testing.assert_array_equal(s["obs_continuous"][i].numpy(), task.obs_continuous[obs[i]])
    # the engine's returns agree with the stream's own episodes (the last record is not fed: add it)
    np.testing.assert_array_equal(res.returns[:, :2], episode_returns(reward, done, 2))


def test_terminal_episodes_of_different_lengths_are_counted_per_env():
    fam = make_family("frozenlake", size=4, horizon=12)
    tasks = [fam.make_task(i) for i in range(6)]
    rng = np.random.default_rng(1)
    actor, seen = _recording(lambda s: rng.integers(0, fam.num_actions, size=s.batch_size[0]))
    res = _rollout(actor, tasks, 4, env_seed=3, num_actions=fam.num_actions, record_actions=True)
    done = seen["stream"]["done"].numpy()
    assert (done == 1).any(), "random play on FrozenLake should fall into a hole or reach the goal"
    assert ((res.lengths >= 1) & (res.lengths <= fam.horizon)).all()
    reward = seen["stream"]["reward"].numpy()
    complete = 0
    for i in range(len(tasks)):  # an env keeps stepping after its 4th episode; only 4 are counted
        k = min(int((done[i] != 0).sum()), 4)  # the very last record (ending the batch) is never fed
        complete += k == 4
        np.testing.assert_array_equal(
            res.returns[i, :k], episode_returns(reward[i : i + 1], done[i : i + 1], k)[0]
        )
    assert complete >= 2 and len(set(res.lengths.sum(1).tolist())) > 1  # envs finish at different ticks
    assert (res.actions[done[:, : res.actions.shape[1]] != 0] == -1).all()  # no action from a done record


def test_policy_actor_matches_the_explorer_teacher_curve_shape():
    fam = _darkroom()
    tasks = [fam.make_task(i) for i in fam.all_task_ids()]
    explorer = make_policy("explorer", fam, epsilon_min=0.0, epsilon_max=0.0)
    res = _rollout(PolicyActor(explorer), tasks, 4, env_seed=0, num_actions=5)
    oracle = np.array([t.optimal_return() for t in tasks])
    mean = res.returns.mean(0)
    assert mean[0] < mean[-1] <= oracle.mean() + 1e-9  # explores first, then exploits what it found


def test_actor_choosing_an_invalid_action_is_an_error():
    fam = _darkroom()
    actor = StreamPolicyActor(lambda s: np.full(s.batch_size[0], 5))
    with pytest.raises(ValueError, match=r"outside \[0, 5\)"):
        _rollout(actor, [fam.make_task(0)], 1, env_seed=0, num_actions=5)


class _Spy(torch.nn.Module):
    """Wraps a model: records each forward's step count and the acting logits of the last step."""

    def __init__(self, model):
        super().__init__()
        self.model, self.sizes, self.logits = model, [], []

    @property
    def config(self):
        return self.model.config

    def forward(self, stream, **kwargs):
        out, cache = self.model(stream, **kwargs)
        self.sizes.append(int(stream.batch_size[1]))
        self.logits.append(out["sp"][:, -1].clone())
        return out, cache

    def get_action(self, out, temperature, num_actions=None):
        return self.model.get_action(out, temperature, num_actions=num_actions)


def tiny_model(num_actions=5, num_states=25, horizon=8, seed=0):
    from mouse.models import ModelLlama

    torch.manual_seed(seed)
    model = ModelLlama(
        hidden_dim=32,
        backbone_kwargs=dict(
            num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
            max_position_embeddings=256,
        ),
        embedding_kwargs=dict(
            max_num_actions=num_actions, max_num_time_steps=horizon + 1, include_obs_discrete=True,
            max_num_obs_discrete=num_states, include_obs_continuous=True, max_num_obs_continuous=2,
            fourier_in_min=0.0, fourier_in_max=4.0,
        ),
        sp_head_kwargs=dict(num_layers=1),
    )  # fmt: skip
    return model.eval()


@pytest.mark.parametrize("context_steps", [None, 16])
def test_kv_cache_rollout_chooses_the_same_actions_as_a_no_cache_rollout(context_steps):
    torch.set_num_threads(1)
    fam = _darkroom()
    tasks = [fam.make_task(i) for i in (1, 7, 13, 19, 23)]
    runs = {}
    for use_cache in (True, False):
        spy = _Spy(tiny_model())
        actor = ModelActor(spy, temperature=0.0, context_steps=context_steps, use_cache=use_cache)
        res = _rollout(actor, tasks, 3, env_seed=5, num_actions=5, record_actions=True)
        runs[use_cache] = (res, spy, actor)
    (cached, spy_c, actor_c), (full, spy_f, actor_f) = runs[True], runs[False]
    np.testing.assert_array_equal(cached.actions, full.actions)
    np.testing.assert_array_equal(cached.returns, full.returns)
    assert len(np.unique(cached.actions[cached.actions >= 0])) > 1, "degenerate test: one action only"
    torch.testing.assert_close(torch.stack(spy_c.logits), torch.stack(spy_f.logits), atol=1e-4, rtol=1e-4)
    ticks = cached.actions.shape[1]
    if context_steps is None:  # one prefill record, then one record of compute per tick
        assert spy_c.sizes == [1] * ticks
        assert spy_f.sizes == list(range(1, ticks + 1))
    else:  # sliding window: re-prefill the last K = W // 2 records whenever the context would exceed W
        keep = context_steps // 2
        assert actor_c.reprefills == actor_f.reprefills > 0
        assert set(spy_c.sizes) == {1, keep} and spy_c.sizes.count(keep) == actor_c.reprefills
        assert max(spy_f.sizes) == context_steps


class _Tap:
    """Wraps an actor: keeps every record it was given and every action it answered, tick by tick."""

    def __init__(self, actor):
        self.actor, self.name, self.records, self.actions = actor, actor.name, [], []

    def reset(self, env, num_actions, rng):
        self.actor.reset(env, num_actions, rng)

    def act(self, record):
        self.records.append(record.clone())
        action = self.actor.act(record)
        self.actions.append(torch.as_tensor(action).clone())
        return action


def _window_start(t, context_steps, keep_steps):
    """First record of the context at tick ``t``, from the documented schedule alone (closed form).

    Records 0..W-1 grow the context from 0. Record W is the first overflow: the context becomes the
    last K records [W-K+1, W]. From then on the context grows by one per tick up to W records, so the
    overflows fall at ticks W + r * (W - K + 1), r = 0, 1, ..., each leaving the last K records.
    """
    if t < context_steps:
        return 0
    period = context_steps - keep_steps + 1
    last_overflow = context_steps + ((t - context_steps) // period) * period
    return last_overflow - keep_steps + 1


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize(("context_steps", "keep_steps"), [(16, None), (10, 3), (6, 6), (5, 1)])
def test_sliding_window_acts_on_the_most_recent_keep_steps_records(context_steps, keep_steps, use_cache):
    """Independent reference: from the full recorded stream, build by hand the window each tick should
    see (the documented saw-tooth between K and W records) and run the bare model on exactly that window,
    without cache; the actor's logits and actions must match at every tick."""
    torch.set_num_threads(1)
    fam = _darkroom()
    tasks = [fam.make_task(i) for i in (1, 7, 13, 19, 23)]
    model = tiny_model()
    spy = _Spy(model)
    actor = ModelActor(
        spy, temperature=0.0, context_steps=context_steps, keep_steps=keep_steps, use_cache=use_cache
    )
    tap = _Tap(actor)
    _rollout(tap, tasks, 4, env_seed=5, num_actions=5)
    keep = keep_steps if keep_steps is not None else context_steps // 2
    ticks = len(tap.records)
    assert ticks > context_steps + 2 * (context_steps - keep + 1), "degenerate test: too few overflows"
    assert len(spy.logits) == ticks  # one forward per tick
    keys = ["action", "reward", "done", "time", "obs_discrete", "obs_continuous"]  # tiny_model's inputs
    stream = torch.stack([r.select(*keys) for r in tap.records], dim=1)  # [N, ticks], the full stream
    expected_reprefills = 0
    with torch.inference_mode():
        for t in range(ticks):
            start = _window_start(t, context_steps, keep)
            assert t + 1 - start <= context_steps
            if t >= context_steps:
                assert t - start >= keep - 1  # every position sees at least K - 1 records of history
            if t >= context_steps and start == t - keep + 1:
                expected_reprefills += 1
            out, _ = model(stream[:, start : t + 1], cache=None, use_cache=False)
            logits = out["sp"][:, -1]
            torch.testing.assert_close(spy.logits[t], logits, atol=1e-4, rtol=1e-4, msg=f"tick {t}")
            torch.testing.assert_close(tap.actions[t], logits[:, :5].argmax(-1), msg=f"tick {t}")
    assert actor.reprefills == expected_reprefills > 0
    if use_cache:  # a re-prefill is one K-record forward, every other tick one record
        assert spy.sizes.count(keep) >= actor.reprefills and set(spy.sizes) <= {1, keep}
    assert len(np.unique(torch.stack(tap.actions).numpy())) > 1, "degenerate test: one action only"


def test_temperature_sampling_is_reproducible_and_validated():
    fam = _darkroom()
    tasks = [fam.make_task(i) for i in (2, 9)]
    model = tiny_model()
    acts = []
    for _ in range(2):
        torch.manual_seed(3)
        res = _rollout(ModelActor(model, temperature=1.0), tasks, 2, 0, 5, record_actions=True)
        acts.append(res.actions)
    np.testing.assert_array_equal(*acts)
    with pytest.raises(ValueError, match="temperature"):
        ModelActor(model, temperature=-1.0)
    with pytest.raises(ValueError, match="keep_steps"):
        ModelActor(model, context_steps=8, keep_steps=9)


def test_random_actor_is_uniform_over_the_family_actions():
    fam = _darkroom()
    tasks = [fam.make_task(i) for i in range(25)]
    res = _rollout(RandomActor(), tasks, 4, 0, 5, rng=np.random.default_rng(0), record_actions=True)
    counts = np.bincount(res.actions[res.actions >= 0], minlength=5)
    assert counts.min() > 0.15 * counts.sum()


def test_curve_ci_and_normalized_score():
    x = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 7.0]])
    c = curve(x)
    np.testing.assert_allclose(c.mean, [3.0, 5.0])
    np.testing.assert_allclose(c.ci95, 1.96 * x.std(0, ddof=1) / np.sqrt(3))
    assert c.n == 3 and curve(x[:1]).ci95 == [0.0, 0.0]
    oracle, rand = np.full_like(x, 10.0), np.full_like(x, 1.0)
    score, ci = normalized_score(x, oracle, rand)
    np.testing.assert_allclose(score, [(3 - 1) / 9, (5 - 1) / 9])
    np.testing.assert_allclose(ci, np.array(c.ci95) / 9)
    score, _ = normalized_score(x, rand, rand)  # the oracle does not beat random: undefined
    assert np.isnan(score).all()
    with pytest.raises(ValueError, match="shape"):
        normalized_score(x, oracle[:2], rand)


# --- the one stream engine (mouse.rollout): any VecEnv x any actor x recorders ---


def test_tabular_vec_env_is_a_vec_env_and_records_its_obs_fields():
    fam = _darkroom()
    env = TabularVecEnv([fam.make_task(i) for i in (0, 3)], seed=0)
    assert isinstance(env, VecEnv)
    fields = env.record_fields(env.reset())
    assert list(fields) == ["obs_discrete", "obs_continuous"]
    assert fields["obs_discrete"].dtype == np.int64 and fields["obs_continuous"].dtype == np.float32
    bandit = make_family("bandit", num_arms=3, horizon=4)
    assert list(TabularVecEnv([bandit.make_task(0)], seed=0).record_fields(np.zeros(1, np.int64))) == [
        "obs_discrete"
    ]


def test_column_and_return_recorders_agree_on_one_run():
    fam = make_family("frozenlake", size=4, horizon=12)
    env = TabularVecEnv([fam.make_task(i) for i in range(5)], seed=2)
    cols, rets = ColumnRecorder(), ReturnRecorder(3)
    stats = run_streams(env, RandomActor(), [cols, rets], rng=np.random.default_rng(0), num_records=200)
    c = cols.columns()
    assert stats.ticks == 200 and stats.records == 5 * 200 and len(c["action"]) == 5 * 200
    assert "behavior_logits" not in c and "q_star" in c  # RandomActor reports no logits; the env has Q*
    reward, done = c["reward"].reshape(5, 200), c["done"].reshape(5, 200)
    np.testing.assert_array_equal(rets.result(stats).returns, episode_returns(reward, done, 3))


def test_rollout_returns_are_the_episode_returns_of_the_collected_streams():
    """Teacher curves (stopped after E episodes) = the first E episodes of the collected streams."""
    for name, params, policy in [
        ("darkroom", {"size": 5, "horizon": 8}, "explorer"),
        ("frozenlake", {"size": 4, "slippery": True}, "annealed"),
        ("bandit", {"num_arms": 3, "horizon": 5}, "thompson"),
    ]:
        fam, ids, episodes = make_family(name, **params), [0, 1, 2, 3], 4
        steps = episodes * (fam.horizon + 1) + 1
        cols = collect_streams(fam, ids, make_policy(policy, fam), steps, seed=3)
        reward, done = cols["reward"].reshape(4, steps), cols["done"].reshape(4, steps)
        np.testing.assert_array_equal(
            rollout_returns(fam, ids, make_policy(policy, fam), episodes, seed=3),
            episode_returns(reward, done, episodes),
        )


class _Line:
    """A gymnasium-like vector env with continuous observations only (no discrete id, no Q*).

    Each stream walks a line from 0: action 1 moves right (+1 reward at position 3, terminal),
    action 0 stays; truncated after 5 steps.
    """

    num_actions = 2

    def __init__(self, n):
        self.num_envs, self.pos, self.t = n, np.zeros(n), np.zeros(n, np.int64)

    def reset(self):
        self.pos[:], self.t[:] = 0.0, 0
        return self.pos[:, None].astype(np.float32)

    def reset_where(self, mask):
        self.pos[mask], self.t[mask] = 0.0, 0
        return self.pos[:, None].astype(np.float32)

    def step(self, actions, active):
        self.pos = np.where(active, self.pos + actions, self.pos)
        self.t = np.where(active, self.t + 1, self.t)
        reward = np.where(active & (self.pos == 3), 1.0, 0.0).astype(np.float32)
        done = np.where(self.pos == 3, 1, np.where(self.t >= 5, 2, 0))
        return self.pos[:, None].astype(np.float32), reward, np.where(active, done, 0), self.t.copy()

    def record_fields(self, obs):
        return {"obs_continuous": obs}


class _SelfRecording:
    """An actor that reports the logits it sampled from (as an online learner's actor does)."""

    name = "learner"

    def reset(self, env, num_actions, rng):
        self.rng = rng

    def act(self, record):
        n = record.batch_size[0]
        logits = np.log(np.tile([[0.25, 0.75]], (n, 1))).astype(np.float32)
        return ActorOutput(self.rng.integers(0, 2, n), behavior_logits=logits, teacher_logits=logits)


def test_the_engine_drives_a_non_tabular_env_and_records_the_actors_own_logits():
    env = _Line(3)
    cols, rets = ColumnRecorder(), ReturnRecorder(2)
    stats = run_streams(env, _SelfRecording(), [cols, rets], rng=np.random.default_rng(0), num_records=40)
    c = {k: v.reshape(3, 40, *v.shape[1:]) for k, v in cols.columns().items()}
    assert list(c) == [
        "action",
        "reward",
        "done",
        "time",
        "obs_continuous",
        "behavior_logits",
        "teacher_logits",
    ]
    ended = c["done"] != 0
    assert (
        ended.any()
        and (c["behavior_logits"][ended] == 0).all()
        and np.isneginf(c["teacher_logits"][ended]).all()
    )
    np.testing.assert_allclose(
        c["behavior_logits"][~ended], np.log([0.25, 0.75]).astype(np.float32)[None].repeat((~ended).sum(), 0)
    )
    reset = np.concatenate([np.ones((3, 1), bool), ended[:, :-1]], axis=1)
    assert (c["obs_continuous"][reset] == 0).all() and (c["time"][reset] == 0).all()
    np.testing.assert_array_equal(rets.result(stats).returns, episode_returns(c["reward"], c["done"], 2))


def test_the_engine_stops_after_every_env_finished_its_episodes():
    env = _Line(4)
    rets = ReturnRecorder(3, record_actions=True)
    stats = run_streams(env, _SelfRecording(), [rets], rng=np.random.default_rng(1), episodes=3)
    res = rets.result(stats)
    assert (rets.completed >= 3).all() and stats.records == 4 * (stats.ticks - 1)  # last record not acted on
    assert res.actions.shape == (4, stats.ticks - 1)
    with pytest.raises(ValueError, match="needs a stop"):
        run_streams(env, _SelfRecording(), [rets], rng=np.random.default_rng(1))
    with pytest.raises(ValueError, match="records-per-stream limit"):
        run_streams(env, _SelfRecording(), [ColumnRecorder()], rng=np.random.default_rng(1), episodes=1)
    short = ReturnRecorder(50)
    stats = run_streams(env, _SelfRecording(), [short], rng=np.random.default_rng(1), num_records=10)
    with pytest.raises(ValueError, match="fewer than episodes=50"):
        short.result(stats)


def test_layering_tasks_below_rollout_below_eval():
    import subprocess
    import sys

    code = (
        "import sys, mouse.tasks; "
        "bad = [m for m in sys.modules if m.startswith(('mouse.rollout', 'mouse.eval', 'mouse.data'))]; "
        "assert not bad, bad"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    import mouse.eval
    import mouse.rollout

    for name in ("Actor", "ModelActor", "OracleActor", "PolicyActor", "RandomActor", "StreamPolicyActor"):
        assert getattr(mouse.eval, name) is getattr(mouse.rollout, name)
