"""Online mode (``mouse-train mode=online``): the actor–learner loop, its replay, its records, its resume.

In-process on tiny bandit / Dark Room configs (a few seconds each), plus the console script once.
"""

from __future__ import annotations

import copy
import json
import math
import os

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from mouse.losses.vtrace import from_logits
from mouse.online import ExploringActor, LinearSchedule, WindowReplay, mixture_logits
from mouse.online.trainer import OnlineTrainer, episode_returns
from test_train import SCRIPT, compose_cfg, losses, run_cli

TINY_MODEL = [
    "model.hidden_dim=16",
    "backbone.num_hidden_layers=1",
    "backbone.num_attention_heads=2",
    "backbone.num_key_value_heads=2",
    "backbone.intermediate_size=32",
    "trainer.log_every=1",
    "optim.warmup_steps=2",
    "logger=none",
]
# 5-armed bandits of 6 pulls, windows of 2 episodes (14 records), 8 streams per round
BANDIT = [
    "mode=online",
    "data=bandit",
    "loss=vtrace",
    "data.collect.task.horizon=6",
    "data.collect.task.num_tasks_pool=40",
    "data.episodes=2",
    "mode.num_envs=8",
    "mode.replay_capacity=16",
    "mode.steps_per_round=2",
    "trainer.batch_size=4",
    "trainer.eval_num_tasks=3",
    *TINY_MODEL,
]


def make_trainer(tmp_path, overrides: list[str], name: str = "run") -> OnlineTrainer:
    cfg = compose_cfg([*BANDIT, *overrides])
    return OnlineTrainer(cfg, tmp_path / name)


def params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------------------------ pieces
def test_linear_schedule():
    s = LinearSchedule(1.0, 0.0, steps=100)
    assert [s(0), s(50), s(100), s(1000)] == [1.0, 0.5, 0.0, 0.0]
    assert LinearSchedule(0.3, 0.1, steps=0)(0) == 0.1


def test_mixture_logits_is_the_sampled_distribution():
    scores = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 5.0]])
    p = mixture_logits(scores, temperature=0.5, epsilon=0.3).exp()
    expected = 0.7 * torch.softmax(scores / 0.5, -1) + 0.1
    torch.testing.assert_close(p, expected)
    greedy = mixture_logits(scores, temperature=0.0, epsilon=0.0).exp()
    assert torch.equal(greedy, torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))


def test_replay_is_bounded_fifo():
    replay = WindowReplay(capacity=5)
    for r in range(4):
        n = 3
        w = TensorDict(
            {
                "reward": torch.full((n, 4), float(r)),
                "weights_step": torch.full((n,), r),
                "round": torch.full((n,), r),
                "task_id": torch.arange(n),
            },
            batch_size=[n],
        )
        replay.extend(w)
        assert len(replay) == min(3 * (r + 1), 5)
    assert replay.added == 12
    batch, meta = replay.sample(200, torch.Generator().manual_seed(0))
    assert batch.batch_size == torch.Size([200, 4])
    # only the 5 newest windows are left: round 3 (3 windows) and the last 2 of round 2
    assert set(meta["round"].tolist()) == {2, 3}
    assert (meta["round"] == 2).sum() > 0
    with pytest.raises(ValueError, match="capacity"):
        WindowReplay(0)


def test_episode_returns():
    reward = np.array([[0, 1, 1, 0, 0, 2, 5]], dtype=np.float32)
    done = np.array([[0, 0, 2, 0, 0, 2, 0]])  # episodes: [0..2] return 2, [3..5] return 2, then unfinished
    out = episode_returns(reward, done)
    assert out == {"return_mean": 2.0, "return_ep1": 2.0, "return_last": 2.0, "episodes": 2.0}
    assert episode_returns(reward, np.zeros_like(done)) == {}


# ------------------------------------------------------------------------------------------ the loop
def test_actor_learner_loop_logs_online_metrics_and_keeps_the_replay_bounded(tmp_path):
    trainer = make_trainer(tmp_path, ["trainer.steps=12"])
    result = trainer.run()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "train/loss" in r]
    assert len(steps) == 12
    for key in (
        "online/env_steps_per_s", "online/policy_lag_mean", "online/policy_lag_max", "online/replay_fill",
        "online/return_mean", "online/return_ep1", "perf/steps_per_s", "train/vtrace_pg_loss",
    ):  # fmt: skip
        assert all(key in r for r in steps if r["step"] % 1 == 0), key
    assert max(r["online/replay_windows"] for r in steps) <= 16
    assert steps[-1]["online/replay_fill"] == 1.0
    # min_replay = batch 4 -> 1 warm-up round, then one round per 2 learner steps
    assert steps[-1]["online/round"] == 1 + 11 // 2
    assert steps[-1]["online/env_steps"] == 6 * 8 * 14
    # sync every step: the windows sampled at step s were acted with weights of steps <= s - 1
    assert all(0 <= r["online/policy_lag_mean"] <= r["online/policy_lag_max"] for r in steps)
    assert result.eval_metrics["eval/score_mean"] == pytest.approx(result.eval_metrics["eval/score_mean"])
    spec = json.loads((result.checkpoint / "dataset_spec.json").read_text())
    assert spec["policy"] == "online" and spec["task_family"] == "bandit"
    from mouse.models import load_model

    assert load_model(str(result.checkpoint)).config == trainer.model.config


def test_recorded_behavior_logits_are_the_acting_policys(tmp_path):
    trainer = make_trainer(
        tmp_path, ["mode.temperature.start=0.7", "mode.temperature.end=0.7", "mode.epsilon.end=0.2"]
    )
    trainer.setup()
    try:
        result = trainer._act_round(0, weights_step=0)
        w = result.windows
        batch = TensorDict(
            {k: w.get(k) for k in ("action", "reward", "done", "time", "obs_discrete")}, batch_size=[8, 14]
        )
        with torch.no_grad():
            out, _ = trainer.model(batch)
        expected = mixture_logits(out["sp"].reshape(-1, 5), 0.7, 0.2).reshape(8, 14, 5)
        alive = w.get("done") == 0
        torch.testing.assert_close(w.get("behavior_logits")[alive], expected[alive], atol=1e-5, rtol=1e-5)
        # the actions of the next records were drawn from those distributions (all in range, both modes)
        assert bool((w.get("action")[:, 1:] < 5).all())
        assert float(w.get("behavior_logits")[alive].exp().min()) >= 0.2 / 5 - 1e-6  # the ε floor
    finally:
        trainer.cleanup()


def test_vtrace_on_policy_equals_the_n_step_return(tmp_path):
    """With lag 0, temperature 1 and ε 0 the behaviour is the target policy: every ratio is 1 and the
    V-trace target is the n-step bootstrapped return (γ, cut at terminal records)."""
    trainer = make_trainer(tmp_path, ["data.collect.task.horizon=20", "data.episodes=1"])
    trainer.setup()
    try:
        w = trainer._act_round(0, weights_step=0).windows
        batch = TensorDict(
            {k: w.get(k) for k in ("action", "reward", "done", "time", "obs_discrete")}, batch_size=[8, 21]
        )
        with torch.no_grad():
            out, _ = trainer.model(batch)
        gamma = 0.9
        logits, value = out["sp"][:, :-1], out["value"]
        behavior = w.get("behavior_logits")[:, :-1]
        torch.testing.assert_close(torch.log_softmax(logits, -1), behavior, atol=1e-5, rtol=1e-5)
        actions, rewards = w.get("action")[:, 1:], w.get("reward")[:, 1:]
        discounts = torch.full_like(rewards, gamma)  # bandit episodes end truncated (done=2) at record 20
        ret = from_logits(
            behavior.transpose(0, 1), logits.transpose(0, 1), value[:, :-1].transpose(0, 1), value[:, -1],
            actions.transpose(0, 1), discounts.transpose(0, 1), rewards.transpose(0, 1),
        )  # fmt: skip
        torch.testing.assert_close(ret.log_rhos, torch.zeros_like(ret.log_rhos), atol=1e-5, rtol=0)
        S = 21
        n_step = torch.zeros(8, S - 1)
        for t in range(S - 1):
            g = value[:, -1] * gamma ** (S - 1 - t)
            for k in range(t, S - 1):
                g = g + gamma ** (k - t) * rewards[:, k]
            n_step[:, t] = g
        torch.testing.assert_close(ret.vs.transpose(0, 1), n_step, atol=1e-4, rtol=1e-5)
    finally:
        trainer.cleanup()


@pytest.mark.parametrize("overlap", [False, True])
def test_online_resume_computes_the_same_losses(tmp_path, overlap):
    common = ["trainer.steps=8", "trainer.checkpoint_every=3", f"mode.overlap={str(overlap).lower()}", "optim.schedule=constant",
              "trainer.eval_num_tasks=0", "mode.actor_sync_every=2"]  # fmt: skip
    full = make_trainer(tmp_path, common, "full")
    full.run()
    part = make_trainer(tmp_path, [*common, "trainer.steps=3"], "part")
    part.run()
    resumed = make_trainer(tmp_path, [*common, "trainer.resume=true"], "part")
    resumed.run()
    a, b = losses(tmp_path / "full"), losses(tmp_path / "part")
    assert sorted(a) == sorted(b) == list(range(1, 9))
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-6, abs=1e-7), step
    pa, pb = params(full.model), params(resumed.model)
    for k in pa:
        torch.testing.assert_close(pa[k], pb[k], rtol=1e-6, atol=1e-7)


def test_overlapped_acting_is_deterministic(tmp_path):
    args = ["trainer.steps=6", "mode.overlap=true", "trainer.eval_num_tasks=0"]
    make_trainer(tmp_path, args, "a").run()
    make_trainer(tmp_path, args, "b").run()
    assert losses(tmp_path / "a") == losses(tmp_path / "b")


def test_dqn_online_on_darkroom_with_epsilon_greedy(tmp_path):
    cfg = compose_cfg(
        [
            "mode=online", "data=darkroom", "loss=dqn", "heads=dqn", "data.collect.task.size=3",
            "data.collect.task.horizon=6", "data.episodes=2", "mode.num_envs=6", "mode.replay_capacity=12",
            "trainer.batch_size=4", "trainer.steps=4", "trainer.eval_num_tasks=2",
            "mode.temperature.end=0", "mode.epsilon.start=1.0", "mode.epsilon.end=0.1", "mode.epsilon.steps=200",
            *TINY_MODEL,
        ]
    )  # fmt: skip
    trainer = OnlineTrainer(cfg, tmp_path / "dqn")
    result = trainer.run()
    rows = [json.loads(x) for x in (tmp_path / "dqn" / "metrics.jsonl").read_text().splitlines()]
    eps = [r["online/epsilon"] for r in rows if "online/epsilon" in r]
    assert eps[0] > eps[-1] >= 0.1 and eps[0] <= 1.0
    assert trainer.model.action_head == "dqn"
    assert math.isfinite(result.final_metrics["train/dqn_loss"])


# ------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("mode.replay_capacity=2", "mode.replay_capacity=2 windows must hold one batch"),
        ("mode.actor_sync_every=0", "mode.actor_sync_every=0 must be >= 1"),
        ("mode.min_replay=1000", "mode.min_replay=1000 must lie in"),
        ("mode.epsilon.end=1.5", "mode.epsilon.end=1.5 must be in"),
        ("data.path=/nonexistent", "mode=online acts in data.collect.task and reads no dataset"),
        ("trainer.strategy=fsdp", "use trainer.strategy=ddp"),
    ],
)
def test_bad_online_settings_fail_at_start(tmp_path, override, message):
    from mouse.train.config import validate_config

    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace(".", r"\.")):
        validate_config(compose_cfg([*BANDIT, override]))


def test_a_family_without_a_batched_env_is_named(tmp_path, monkeypatch):
    from mouse.tasks.bandit import BanditFamily

    def no_env(self, task_ids, seed):
        raise NotImplementedError("no vectorised env")

    monkeypatch.setattr(BanditFamily, "make_vec_env", no_env)
    with pytest.raises(ValueError, match="data.collect.task.name=bandit"):
        make_trainer(tmp_path, []).setup()


def test_a_loss_needing_teacher_logits_is_refused(tmp_path):
    with pytest.raises(
        ValueError, match="loss.sp \\(target teacher\\) needs the dataset column 'teacher_logits'"
    ):
        make_trainer(tmp_path, ["loss.sp.weight=1", "loss.sp.target=teacher"]).setup()


def test_offline_trainer_refuses_online_mode(tmp_path):
    from mouse.train.trainer import Trainer

    with pytest.raises(ValueError, match="OnlineTrainer"):
        Trainer(compose_cfg(BANDIT), tmp_path / "x").setup()


def test_mouse_train_mode_online_as_typed(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    proc = run_cli([*BANDIT, "trainer.steps=3", f"hydra.run.dir={tmp_path / 'cli'}"], env, tmp_path)
    assert "online bandit: 8 streams x 14 records per round" in proc.stderr + proc.stdout
    assert (tmp_path / "cli" / "checkpoints" / "last").exists()
    assert SCRIPT


def test_exploring_actor_refuses_more_records_than_a_round(tmp_path):
    trainer = make_trainer(tmp_path, [])
    trainer.setup()
    try:
        actor = ExploringActor(copy.deepcopy(trainer.model), context_steps=2)
        env = trainer.family.make_vec_env([0, 1], seed=0)
        actor.reset(env, 5, np.random.default_rng(0))
        rec = TensorDict(
            {k: torch.zeros(2, dtype=torch.int64) for k in ("action", "done", "time", "obs_discrete")}
            | {"reward": torch.zeros(2)},
            batch_size=[2],
        )
        actor.act(rec)
        actor.act(rec)
        with pytest.raises(RuntimeError, match="holds 2 records"):
            actor.act(rec)
    finally:
        trainer.cleanup()


@pytest.mark.parametrize(
    "recipe",
    [
        ["data=frozenlake", "data.collect.task.size=4", "data.collect.task.horizon=8"],
        ["data=cartpole", "data.collect.task.horizon=10", "data.collect.task.num_tasks_pool=10"],
    ],
    ids=["frozenlake", "gym-cartpole"],
)
def test_online_on_other_families(tmp_path, recipe):
    cfg = compose_cfg(
        [
            "mode=online", "loss=vtrace", *recipe, "data.episodes=1", "mode.num_envs=4", "mode.replay_capacity=8",
            "trainer.batch_size=4", "trainer.steps=2", "trainer.eval_num_tasks=2", *TINY_MODEL,
        ]
    )  # fmt: skip
    result = OnlineTrainer(cfg, tmp_path / "run").run()
    assert result.step == 2 and math.isfinite(result.final_metrics["train/loss"])
    assert "eval/return_mean" in result.eval_metrics


@pytest.mark.parametrize("name", ["online_bandit", "online_darkroom", "online_darkroom_finetune"])
def test_the_readme_experiments_compose_and_validate(name):
    from mouse.train.config import ModeKind, resolve_layout

    cfg = resolve_layout(compose_cfg([f"experiment={name}", "trainer.init_from=some/checkpoint"]))
    assert cfg.mode.kind is ModeKind.online
    assert cfg.loss.vtrace.weight > 0
    if name == "online_bandit":
        assert cfg.trainer.seq_len == 101 and cfg.data.collect.task.horizon == 100
