"""Every new kind of data through the whole application on tiny settings (network off):
mouse-collect (the composed collect config) → mouse-train (data=local data.path=...) → mouse-eval.

Key-to-Door (tabular, exact Q*, explorer), the gym family on CartPole (continuous observations, no
q_star: raw returns unless a reference is given), MiniGrid (image observations, BFS oracle) and the
AD learner policy; plus the errors for a loss that needs a column the family cannot give.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module

from mouse.cli.common import to_config
from mouse.data import load_dataset
from mouse.data.collect import collect_dataset
from mouse.data.config import CollectConfig
from mouse.data.config import register_configs as register_collect
from mouse.eval.config import EvalConfig
from mouse.eval.config import register_configs as register_eval
from mouse.eval.run import run_eval
from mouse.train import run_training
from mouse.train.config import TrainConfig
from mouse.train.config import register_configs as register_train

TINY_MODEL = [
    "model.hidden_dim=16",
    "backbone.num_hidden_layers=1",
    "backbone.num_attention_heads=2",
    "backbone.num_key_value_heads=2",
    "backbone.intermediate_size=32",
    "heads.sp.num_layers=1",
    "trainer.batch_size=4",
    "trainer.steps=3",
    "trainer.log_every=1",
    "trainer.eval_num_tasks=2",
    "trainer.checkpoint_every=0",
    "optim.warmup_steps=1",
    "data.prefetch=0",
    "logger=none",
]


def _compose(config: str, overrides: list[str], schema: type, register) -> object:
    register()
    with initialize_config_module(config_module="mouse.conf", version_base=None):
        return to_config(compose(config_name=config, overrides=overrides), schema)


def collect(tmp: Path, overrides: list[str]) -> Path:
    cfg = _compose(
        "collect",
        [*overrides, "show_progress=false", f"output={tmp / 'data'}"],
        CollectConfig,
        register_collect,
    )
    return collect_dataset(cfg)


def train(tmp: Path, data: Path, overrides: list[str]) -> Path:
    torch.set_num_threads(1)
    cfg = _compose(
        "train", ["data=local", f"data.path={data}", *TINY_MODEL, *overrides], TrainConfig, register_train
    )
    run_training(cfg, tmp / "run")
    return tmp / "run"


def evaluate(tmp: Path, run: Path, overrides: list[str] = ()) -> dict:
    cfg = _compose(
        "eval", [f"checkpoint={run}", "episodes=3", "num_tasks=2", f"output={tmp / 'eval'}", *overrides],
        EvalConfig, register_eval,
    )  # fmt: skip
    report = run_eval(cfg, tmp / "eval")
    assert report.summary().splitlines()[0].startswith("episode")
    return json.loads(report.results_path.read_text())


def test_keydoor_explorer_collect_train_eval(tmp_path):
    data = collect(tmp_path, ["task=keydoor", "task.size=4", "task.horizon=12", "policy=explorer",
                              "num_tasks=6", "steps_per_task=39"])  # fmt: skip
    ds = load_dataset(str(data))
    assert (
        ds.spec.task_family == "keydoor"
        and ds.spec.obs_discrete_size == 32
        and ds.spec.obs_continuous_dim == 3
    )
    assert {"q_star", "teacher_logits", "behavior_logits"} <= set(ds.columns)
    run = train(tmp_path, data, ["data.episodes=3", "loss.sp.target=teacher"])
    cfg = (run / "train_config.yaml").read_text()
    assert "seq_len: 39" in cfg and "sampling: start" in cfg  # 3 episodes x (12 + 1), from the family
    res = evaluate(tmp_path, run)
    assert res["normalized"] is True and res["oracle_kind"] == "q_star"
    assert res["teacher_policy"] == "explorer" and len(res["teacher"]["mean"]) == 3
    assert res["oracle"]["mean"][0] == pytest.approx(2.0)  # key then door, both reachable


def test_gym_cartpole_continuous_collect_train_eval_raw_returns(tmp_path):
    data = collect(tmp_path, ["task=gym", "task.env_id=CartPole-v1", "task.horizon=20", "task.num_tasks_pool=40",
                              "+task.attr_ranges.force_mag=[5,15]", "policy=random", "num_tasks=4",
                              "steps_per_task=42"])  # fmt: skip
    ds = load_dataset(str(data))
    assert ds.spec.obs_continuous_dim == 4 and ds.spec.obs_discrete_size == 0 and "q_star" not in ds.columns
    assert ds.columns["obs_continuous"].dtype == np.float32
    with pytest.raises(ValueError, match=r"loss.sp \(target q_star\) needs the dataset column 'q_star'"):
        train(tmp_path, data, ["data.episodes=2", "loss.sp.target=q_star"])
    with pytest.raises(ValueError, match=r"loss.sv needs the dataset column 'q_star'"):
        train(tmp_path, data, ["data.episodes=2", "loss.sv.weight=1"])
    run = train(tmp_path, data, ["data.episodes=2", "trainer.eval_episodes=2"])
    res = evaluate(tmp_path, run)
    assert res["normalized"] is False and res["score"] is None and res["oracle_kind"] is None
    assert "oracle" not in res and len(res["model"]["mean"]) == 3 and res["teacher_policy"] == "random"
    assert all(1.0 <= r <= 20.0 for r in res["model"]["mean"])  # CartPole pays 1 per step, capped at 20
    assert (tmp_path / "eval" / "curves.png").is_file()
    # with a reference return given for the evaluated family, scores are defined
    res = evaluate(
        tmp_path, run, ["task=gym", "task.horizon=20", "task.num_tasks_pool=40", "task.reference_return=20"]
    )
    assert res["normalized"] is True and res["oracle_kind"] == "reference"
    assert res["oracle"]["mean"] == [20.0, 20.0, 20.0]


def test_minigrid_image_collect_train_eval(tmp_path):
    data = collect(tmp_path, ["task=minigrid", "task.size=5", "task.horizon=10", "policy=random", "num_tasks=4",
                              "steps_per_task=33"])  # fmt: skip
    ds = load_dataset(str(data))
    assert ds.spec.obs_image_size == 147 and ds.columns["obs_image"].dtype == np.uint8
    run = train(tmp_path, data, ["data.episodes=3"])
    res = evaluate(tmp_path, run)
    assert res["normalized"] is True and res["oracle_kind"] == "reference"  # the BFS oracle
    assert 0.5 < res["oracle"]["mean"][0] <= 1.0


def test_minigrid_grids_get_the_cell_encoder_by_default(tmp_path):
    from mouse.models.loading import load_model

    data = collect(tmp_path, ["task=minigrid", "task.size=5", "task.horizon=8", "policy=random", "num_tasks=2",
                              "steps_per_task=27"])  # fmt: skip
    assert load_dataset(str(data)).spec.obs_image_shape == (7, 7, 3)
    run = train(tmp_path, data, ["data.episodes=3", "trainer.eval_num_tasks=0"])
    emb = load_model(run / "checkpoints" / "last").config["embedding_kwargs"]
    assert emb["obs_image_encoder"] == "cells" and emb["obs_image_shape"] == [7, 7, 3]
    with pytest.raises(ValueError, match="obs_image_encoder"):
        train(tmp_path / "x", data, ["data.episodes=3", "model.embedding.obs_image_encoder=pixels"])


def test_q_star_policies_refuse_families_without_exact_values():
    from mouse.tasks import make_family, make_policy

    fam = make_family("gym", env_id="CartPole-v1", horizon=20)
    for name in ("expert", "annealed"):
        with pytest.raises(ValueError, match=rf"policy '{name}' acts on exact Q\*.*'gym'.*policy=learner"):
            make_policy(name, fam)


def test_layout_follows_from_the_family_and_one_knob():
    from mouse.train.config import resolve_layout

    def layout(overrides):
        cfg = resolve_layout(_compose("train", overrides, TrainConfig, register_train))
        return (
            cfg.trainer.seq_len,
            cfg.data.collect.steps_per_task,
            cfg.trainer.eval_episodes,
            str(cfg.data.sampling),
        )

    assert layout([]) == (210, 210, 10, "start")  # Dark Room: 10 x (20 + 1); the explorer remembers
    assert layout(["data=keydoor"]) == (255, 255, 5, "start")  # 5 x (50 + 1)
    assert layout(["data=keydoor", "data.episodes=2"]) == (102, 102, 2, "start")
    assert layout(["policy@data.collect.policy=random"]) == (
        210,
        210,
        10,
        "random",
    )  # no memory: windows anywhere
    assert layout(["trainer.seq_len=50", "trainer.eval_episodes=3"]) == (50, 50, 3, "start")  # set ones win
    with pytest.raises(ValueError, match=r"trainer.seq_len and data.episodes are both null.*21 records"):
        layout(["data.episodes=null"])
