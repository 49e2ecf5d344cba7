"""README claims that had no test, each run at tiny settings and checked against what the README says.

``datasets.load_dataset`` on a ``mouse-collect`` folder (no split argument); ``data=frozenlake`` and
``data=bandit`` training; ``logger=tensorboard``; ``trainer.eval_every``; ``trainer.keep_last`` during a
run; ``mouse-eval task=<another family>``, ``split=train|all`` and several batches; the non-finite
gradient-norm stop; ``data.augment`` restored on resume.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from test_eval import _checkpoint, _compose, _spec, run
from test_train import TINY, compose_cfg, env, in_process, kill_then_resume, losses  # noqa: F401  (fixtures)

# TINY without its Dark Room task keys: the family-specific ones are added per family.
TINY_ANY = [o for o in TINY if not o.startswith("data.collect.task.")]
QUIET = ["logger=none", "trainer.eval_num_tasks=0"]


def _checkpoints(run_dir: Path) -> list[int]:
    """The steps of the ``checkpoints/step-N`` folders, sorted."""
    return sorted(int(p.name.split("-")[1]) for p in (run_dir / "checkpoints").glob("step-*"))


# ------------------------------------------------------------------------------------------ datasets
def test_hf_datasets_reads_a_mouse_collect_folder_without_a_split(tmp_path, monkeypatch):
    """README: a dataset folder holds data/<split>-00000-of-00001.arrow, spec.json and a card, "so
    ``datasets.load_dataset("data/darkroom")`` reads it too" (no split argument)."""
    datasets = pytest.importorskip("datasets")
    from hydra import compose, initialize_config_module

    from mouse.cli.common import to_config
    from mouse.data import load_dataset
    from mouse.data.collect import run_collect
    from mouse.data.config import CollectConfig, register_configs

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.chdir(tmp_path)
    register_configs()
    with initialize_config_module(config_module="mouse.conf", version_base=None):
        cfg = compose(
            "collect",
            overrides=[
                "task=darkroom",
                "task.size=3",
                "task.horizon=6",
                "num_tasks=4",
                "steps_per_task=30",
                "show_progress=false",
                "output=data/darkroom",
            ],
        )
    path, _ = run_collect(to_config(cfg, CollectConfig), tmp_path / "collect_run")
    assert path == tmp_path / "data" / "darkroom"
    assert (path / "data" / "train-00000-of-00001.arrow").is_file() and (path / "spec.json").is_file()

    hf = datasets.load_dataset("data/darkroom", cache_dir=str(tmp_path / "hf_cache"))
    assert list(hf) == ["train"]
    ours = load_dataset(path)
    assert hf["train"].num_rows == ours.num_records == 4 * 30
    np.testing.assert_array_equal(np.asarray(hf["train"]["action"]), ours.columns["action"])
    np.testing.assert_array_equal(np.asarray(hf["train"]["reward"], dtype=np.float32), ours.columns["reward"])


# ------------------------------------------------------------------------------------------ training
FAMILY_DATA = {
    "frozenlake": [
        "data.collect.task.size=3",
        "data.collect.task.horizon=6",
        "data.collect.task.num_tasks_pool=12",
        "data.collect.task.test_fraction=0.25",
    ],
    "bandit": [
        "data.collect.task.num_arms=3",
        "data.collect.task.horizon=5",
        "data.collect.task.num_tasks_pool=12",
        "data.collect.task.test_fraction=0.25",
    ],
    "keydoor": [
        "data.collect.task.size=3",
        "data.collect.task.horizon=6",
        "data.collect.task.test_fraction=0.25",
    ],
    "darkroom_ad": [
        "data.collect.task.size=3",
        "data.collect.task.horizon=6",
        "data.collect.task.test_fraction=0.25",
    ],
    "minigrid": [
        "data.collect.task.size=5",
        "data.collect.task.horizon=8",
        "data.collect.task.test_fraction=0.25",
    ],
    "cartpole": [
        "data.collect.task.horizon=20",
        "data.collect.task.num_tasks_pool=12",
        "data.collect.task.test_fraction=0.25",
        "data.collect.steps_per_task=60",
    ],
}


@pytest.mark.parametrize("family", sorted(FAMILY_DATA))
@pytest.mark.usefixtures("in_process")
def test_data_frozenlake_and_bandit_train(family, tmp_path):
    """README: ``mouse-train data=frozenlake`` (or ``data=bandit``, ``data=keydoor``, ``data=minigrid``,
    ``data=cartpole``, ``data=darkroom_ad``) trains on that family's data and evaluates on its held-out tasks
    at the end."""
    from mouse.train.trainer import run_training

    cfg = compose_cfg([f"data={family}", *FAMILY_DATA[family], *TINY_ANY, "logger=none", "trainer.steps=2"])
    assert cfg.data.collect.task.name == {"darkroom_ad": "darkroom", "cartpole": "gym"}.get(family, family)
    result = run_training(cfg, tmp_path / "run")
    assert result.step == 2
    got = losses(tmp_path / "run")
    assert sorted(got) == [1, 2] and all(np.isfinite(v) for v in got.values())
    last = tmp_path / "run" / "checkpoints" / "last"
    spec = json.loads((last / "dataset_spec.json").read_text())
    assert (
        spec["task_family"] == cfg.data.collect.task.name and spec["policy"] == cfg.data.collect.policy.name
    )
    config = json.loads((last / "config.json").read_text())
    assert config["embedding_kwargs"]["max_num_actions"] >= spec["num_actions"]
    evaluated = json.loads((tmp_path / "run" / "eval" / "step-2.json").read_text())
    assert evaluated["task"]["family"] == cfg.data.collect.task.name
    assert set(evaluated["task"]["task_ids"]) <= set(spec["test_task_ids"])


@pytest.mark.usefixtures("in_process")
def test_logger_tensorboard_writes_train_loss_events(tmp_path):
    """README: ``mouse-train logger=tensorboard`` → ``tensorboard/`` in the run dir holding the metrics."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mouse.train.trainer import run_training

    run_dir = tmp_path / "run"
    cfg = compose_cfg([*TINY, "logger=tensorboard", "trainer.steps=2", "trainer.eval_num_tasks=0"])
    run_training(cfg, run_dir)
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    logged = {e.step: e.value for e in acc.Scalars("train/loss")}
    assert logged == pytest.approx(losses(run_dir), rel=1e-6)
    assert sorted(logged) == [1, 2]


@pytest.fixture(scope="module")
def eval_every_run(env, tmp_path_factory):  # noqa: F811
    """One run of 4 steps with ``trainer.eval_every=2``, ``checkpoint_every=1``, ``keep_last=2``; the
    checkpoint folders present right after each ``save_checkpoint`` call are recorded."""
    from mouse.train.trainer import Trainer, run_training

    mp = pytest.MonkeyPatch()
    mp.setenv("MOUSE_CACHE_DIR", env["MOUSE_CACHE_DIR"])
    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("eval_every") / "run"
    seen: list[tuple[int, list[int], str]] = []
    original = Trainer.save_checkpoint

    def recording(self, push=True):
        out = original(self, push)
        seen.append((self.step, _checkpoints(run_dir), os.readlink(run_dir / "checkpoints" / "last")))
        return out

    mp.setattr(Trainer, "save_checkpoint", recording)
    try:
        overrides = [*TINY, "logger=none", "trainer.steps=4", "trainer.eval_every=2"]
        run_training(compose_cfg([*overrides, "trainer.checkpoint_every=1", "trainer.keep_last=2"]), run_dir)
    finally:
        mp.undo()
    return run_dir, seen


def test_trainer_eval_every_logs_eval_lines_and_step_files(eval_every_run):
    """README: evaluates "at the end (and every ``trainer.eval_every`` steps), logging ``eval/...``
    metrics"; the run dir holds ``metrics.jsonl`` (plus ``eval/`` lines) and ``eval/step-N.json``."""
    run_dir, _ = eval_every_run
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    eval_steps = [r["step"] for r in rows if any(k.startswith("eval/") for k in r)]
    assert eval_steps == [2, 4]
    assert all("eval/score_mean" in r and "eval/return_ep2" in r for r in rows if "eval/return_ep1" in r)
    assert sorted(p.name for p in (run_dir / "eval").iterdir()) == ["step-2.json", "step-4.json"]
    for step in (2, 4):
        data = json.loads((run_dir / "eval" / f"step-{step}.json").read_text())
        assert data["task"]["num_tasks"] == 2 and data["episodes"] == 2


def test_trainer_keep_last_prunes_during_the_run(eval_every_run):
    """README: "``trainer.keep_last`` prunes old ones" and ``checkpoints/last`` points at the newest:
    after every save only the newest K=2 checkpoints remain."""
    run_dir, seen = eval_every_run
    assert [s for s, _, _ in seen] == [1, 2, 3, 4, 4]  # the final one is written again after the eval
    for step, present, last in seen:
        assert present == list(range(max(1, step - 1), step + 1)), (step, present)
        assert last == f"step-{step}"
    assert _checkpoints(run_dir) == [3, 4]
    assert os.readlink(run_dir / "checkpoints" / "last") == "step-4"


# ------------------------------------------------------------------------------------------ NaN stop
@pytest.mark.usefixtures("in_process")
def test_non_finite_gradient_norm_stops_naming_the_step(tmp_path, monkeypatch):
    """README: "A NaN/inf loss or gradient norm stops the run with a message naming the loss and the step;
    the last good checkpoint stays in place." The loss stays finite; only its gradient is NaN."""
    from mouse.losses import LOSSES
    from mouse.train.trainer import NonFiniteLossError, run_training

    calls = {"n": 0}
    spec = LOSSES["sp"]

    def nan_gradient_on_third_call(step_stream, out, cfg):
        calls["n"] += 1
        loss, metrics = spec.fn(step_stream, out, cfg)
        if calls["n"] == 3:
            zero = (out["sp"] - out["sp"].detach()).sum()  # 0, with gradient 1 w.r.t. the logits
            loss = loss + 0.0 * torch.sqrt(zero)  # forward: + 0; backward: 0 * inf = nan
        return loss, metrics

    monkeypatch.setitem(LOSSES, "sp", dataclasses.replace(spec, fn=nan_gradient_on_third_call))
    overrides = [*TINY, *QUIET, "trainer.steps=5", "trainer.checkpoint_every=2"]
    with pytest.raises(NonFiniteLossError, match=r"gradient norm is nan at step 3.*checkpoints/step-2"):
        run_training(compose_cfg(overrides), tmp_path / "run")
    assert calls["n"] == 3
    assert os.readlink(tmp_path / "run" / "checkpoints" / "last") == "step-2"
    assert _checkpoints(tmp_path / "run") == [2]
    assert sorted(losses(tmp_path / "run")) == [1, 2]


# ------------------------------------------------------------------------------------------ augment
AUGMENT = [
    "data.augment.permute_actions=true",
    "data.augment.permute_obs_discrete=true",
    "data.augment.reward_scale_min=0.5",
    "data.augment.reward_scale_max=2.0",
]


@pytest.mark.usefixtures("in_process")
def test_augmented_run_killed_and_resumed_gives_the_same_losses(tmp_path, monkeypatch):
    """README: "the continued run's losses equal an uninterrupted run's", with ``data.augment`` on (the
    augmentation generator is part of the trainer state)."""
    from mouse.train.trainer import run_training

    overrides = [*TINY, *QUIET, *AUGMENT, "trainer.steps=6", "trainer.checkpoint_every=3"]
    run_training(compose_cfg(overrides), tmp_path / "straight")
    plain = tmp_path / "plain"  # the same run without augmentation: augmentation must change the losses
    run_training(compose_cfg([*TINY, *QUIET, "trainer.steps=2"]), plain)
    straight = losses(tmp_path / "straight")
    assert straight[2] != losses(plain)[2]

    # steps 1..4 done, checkpoint at 3: the kill loses step 4
    result = kill_then_resume(monkeypatch, overrides, tmp_path / "killed", kill_before_step=5)
    assert result.step == 6
    assert losses(tmp_path / "killed") == straight


# ------------------------------------------------------------------------------------------ mouse-eval
def test_mouse_eval_task_of_another_family(tmp_path):
    """README: ``mouse-eval checkpoint=... task=<family>``: "any task family" the model covers; a Dark
    Room checkpoint acts in FrozenLake maps (own split of that family)."""
    from mouse.tasks import make_family

    run_dir = _checkpoint(tmp_path)  # Dark Room 5x5, 5 actions, 25 obs ids, time table 9
    cfg = _compose(f"checkpoint={run_dir}", "task=frozenlake", "task.size=5", "task.horizon=8", "num_tasks=3",
                   "episodes=2")  # fmt: skip
    res = run(cfg, tmp_path / "out")
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    fam = make_family("frozenlake", size=5, horizon=8)
    _, test = fam.split(0, 0.2)
    assert data["task"]["family"] == "frozenlake" and data["task"]["params"] == fam.params
    assert data["task"]["task_ids"] == list(test[:3]) and data["task"]["num_runs"] == 3
    assert res.returns["model"].shape == (3, 2)


@pytest.mark.parametrize("split", ["train", "all"])
def test_mouse_eval_split_train_and_all(split, tmp_path):
    """eval.yaml: ``split: test (held-out tasks) | train | all``: the task ids are the split's, each once."""
    spec = _spec()
    expected = {
        "train": sorted(spec.train_task_ids),
        "all": sorted([*spec.train_task_ids, *spec.test_task_ids]),
    }
    run_dir = _checkpoint(tmp_path)
    run(_compose(f"checkpoint={run_dir}", f"split={split}", "episodes=1", "plot=false"), tmp_path / "out")
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["task"]["split"] == split
    ids = data["task"]["task_ids"]  # "all": the dataset's train ids, then its test ids
    assert sorted(ids) == expected[split] and len(set(ids)) == len(ids) == data["task"]["num_runs"]


def test_mouse_eval_over_several_batches(tmp_path):
    """``batch_size`` below the number of runs: every run is evaluated once, in the same order as in one
    batch, and the deterministic greedy policies (model at temperature 0, oracle) return the same."""
    run_dir = _checkpoint(tmp_path)
    common = [f"checkpoint={run_dir}", "episodes=2", "seeds=2", "plot=false"]
    one = run(_compose(*common, "batch_size=64"), tmp_path / "one")
    many = run(_compose(*common, "batch_size=2"), tmp_path / "many")
    ids = list(_spec().test_task_ids)
    assert len(ids) > 2  # so batch_size=2 really splits them
    for res in (one, many):
        assert res.runs == [(t, s) for s in range(2) for t in ids]
        assert res.to_dict()["task"]["num_runs"] == 2 * len(ids)
        for who in ("model", "oracle", "random"):
            assert res.returns[who].shape == (2 * len(ids), 2)
    np.testing.assert_array_equal(many.returns["oracle"], one.returns["oracle"])
    np.testing.assert_array_equal(many.returns["model"], one.returns["model"])
