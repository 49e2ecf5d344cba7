"""End to end: the installed ``mouse-train`` console script on a tiny Dark Room config.

train 3 steps → checkpoint → resume to 6 (same losses as an uninterrupted run) → ``load_model``;
the W&B offline run holds the metrics; ``--cfg job``; a typo rejected; a 2-job multirun; a killed run
resumed; the NaN stop; the Hub push through a loopback server with the token kept out of every file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module

from mouse.train.config import register_configs

SCRIPT = shutil.which("mouse-train") or str(Path(sys.executable).parent / "mouse-train")

# A tiny Dark Room (3x3 goals, 2 held out) and a tiny Llama: a few seconds per run on one core.
TINY = [
    "data.collect.task.size=3",
    "data.collect.task.horizon=6",
    "data.collect.task.test_fraction=0.25",
    "data.collect.num_tasks=6",
    "data.collect.steps_per_task=60",
    "data.collect.show_progress=false",
    "data.prefetch=0",
    "model.hidden_dim=16",
    "backbone.num_hidden_layers=1",
    "backbone.num_attention_heads=2",
    "backbone.num_key_value_heads=2",
    "backbone.intermediate_size=32",
    "heads.sp.num_layers=1",
    "trainer.batch_size=4",
    "trainer.seq_len=16",
    "trainer.log_every=1",
    "trainer.eval_num_tasks=2",
    "trainer.eval_episodes=2",
    "optim.warmup_steps=2",
]


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """Subprocess environment: one dataset cache for the module, one thread, offline."""
    cache = tmp_path_factory.mktemp("mouse_cache")
    return {**os.environ, "MOUSE_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path, check: bool = True
) -> subprocess.CompletedProcess:
    proc = subprocess.run([SCRIPT, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"mouse-train {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def losses(run_dir: Path) -> dict[int, float]:
    """step → train/loss from metrics.jsonl (the last line of a step wins, as after a resume)."""
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "train/loss" in row:
            out[row["step"]] = row["train/loss"]
    return out


def compose_cfg(overrides: list[str]):
    """The typed TrainConfig mouse-train would run with ``overrides`` (composed, converted once)."""
    from mouse.cli.common import to_config
    from mouse.train.config import TrainConfig

    register_configs()
    with initialize_config_module(config_module="mouse.conf", version_base=None):
        return to_config(compose(config_name="train", overrides=overrides), TrainConfig)


@pytest.fixture
def in_process(env, monkeypatch):
    monkeypatch.setenv("MOUSE_CACHE_DIR", env["MOUSE_CACHE_DIR"])
    torch.set_num_threads(1)


# --------------------------------------------------------------------------------------------------
def test_train_resume_load_model_and_wandb(tmp_path, env, in_process):
    from mouse.models import load_model
    from mouse.train.trainer import run_training
    from test_logger import read_wandb_history

    run = tmp_path / "run"
    common = [*TINY, "optim.schedule=constant", f"hydra.run.dir={run}"]
    first = run_cli([*common, "trainer.steps=3"], env, cwd=tmp_path)
    assert f"checkpoint: {run / 'checkpoints' / 'step-3'}" in first.stdout
    assert "wandb run:" in first.stdout and f"run dir:    {run}" in first.stdout
    run_cli([*common, "trainer.steps=6", "trainer.resume=true"], env, cwd=tmp_path)
    straight = tmp_path / "straight"  # the uninterrupted reference, in process
    run_training(compose_cfg([*TINY, "optim.schedule=constant", "trainer.steps=6", "logger=none"]), straight)

    resumed, reference = losses(run), losses(straight)
    assert sorted(resumed) == [1, 2, 3, 4, 5, 6]
    assert resumed == reference  # exactly the same per-step losses

    last = run / "checkpoints" / "last"
    assert os.readlink(last) == "step-6"
    files = {p.name for p in last.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "dataset_spec.json",
        "train_config.yaml",
        "README.md",
    } <= files
    model = load_model(last)
    config = json.loads((last / "config.json").read_text())
    assert config == model.config and config["embedding_kwargs"]["max_num_actions"] == 5
    spec = json.loads((last / "dataset_spec.json").read_text())
    assert spec["task_family"] == "darkroom" and spec["test_task_ids"]
    assert not set(spec["test_task_ids"]) & set(spec["train_task_ids"])
    assert "seq_len: 16" in (last / "train_config.yaml").read_text()
    assert (run / "eval" / "step-6.json").is_file()

    # one W&B run continued across the resume, holding the logged metrics
    (wandb_run,) = {p.name.split("-")[-1] for p in (run / "wandb").glob("offline-run-*")}
    rows = [
        r for f in sorted((run / "wandb").glob("offline-run-*/run-*.wandb")) for r in read_wandb_history(f)
    ]
    logged = {r["_step"]: r["train/loss"] for r in rows if "train/loss" in r}
    assert logged == pytest.approx(resumed)
    assert any("eval/score_mean" in r for r in rows)
    assert wandb_run in json.dumps(
        json.loads((run / "checkpoints" / "step-6" / "trainer_state.json").read_text())
    )


def test_cfg_job_and_the_design_card_command(tmp_path, env, in_process):
    from mouse.train.trainer import run_training

    job = run_cli(["--cfg", "job", "backbone=qwen3", "loss.dqn.weight=1"], env, cwd=tmp_path)
    assert "head_dim: 32" in job.stdout and "dqn:\n    weight: 1" in job.stdout
    run = tmp_path / "qwen"
    qwen = [*TINY, "backbone=qwen3", "backbone.head_dim=8", "loss.dqn.weight=1", "logger=none"]
    run_training(compose_cfg([*qwen, "trainer.steps=2", "trainer.eval_num_tasks=0"]), run)
    config = json.loads((run / "checkpoints" / "last" / "config.json").read_text())
    assert config["backbone_kwargs"]["head_dim"] == 8
    assert config["dqn_head_kwargs"]["num_layers"] == 2  # enabled because loss.dqn.weight > 0
    assert "train/dqn_loss" in json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])


def test_typos_and_wrong_types_fail_at_start_naming_the_key(tmp_path, env, in_process):
    from hydra.errors import ConfigCompositionException
    from omegaconf.errors import ValidationError

    bad = run_cli(["loss.dqn.wieght=1"], env, cwd=tmp_path, check=False)
    assert bad.returncode != 0 and "loss.dqn.wieght" in bad.stderr
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("checkpoints"))
    with pytest.raises(ConfigCompositionException, match="trainer.steps"):
        compose_cfg(["trainer.steps=many"])
    (tmp_path / "conf" / "optim").mkdir(parents=True)
    (tmp_path / "conf" / "optim" / "typo.yaml").write_text("lr: 1.0e-3\nwarmup_stpes: 5\n")
    with pytest.raises((ConfigCompositionException, ValidationError)) as err:
        compose_cfg(["optim=typo", f"hydra.searchpath=[file://{tmp_path / 'conf'}]"])
    assert "warmup_stpes" in str(err.value) + str(err.value.__cause__)


def test_multirun_two_jobs_each_with_own_run_and_wandb_group(tmp_path, env):
    sweep = tmp_path / "sweep"
    args = ["-m", *TINY, "trainer.steps=2", "trainer.eval_num_tasks=0", "optim.lr=1e-3,2e-3"]
    run_cli([*args, f"hydra.sweep.dir={sweep}"], env, cwd=tmp_path)
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"]
    lrs, run_ids = set(), set()
    for job in jobs:
        assert (job / "checkpoints" / "step-2" / "model.safetensors").is_file()
        (wandb_file,) = job.glob("wandb/offline-run-*/run-*.wandb")
        # the W&B group is the sweep folder joined with "-" (a string no path in the run holds: paths use "/")
        group = f"{sweep.parent.name}-{sweep.name}"
        assert f"{sweep.parent.name}/{sweep.name}".encode() in wandb_file.read_bytes()  # the path is there
        assert group.encode() in wandb_file.read_bytes() and group != sweep.name
        run_ids.add(wandb_file.name)
        lrs.add((job / "train_config.yaml").read_text().split("lr: ")[1].split("\n")[0])
    assert lrs == {"0.001", "0.002"} and len(run_ids) == 2


def test_cross_field_checks_before_any_work(tmp_path, in_process):
    from mouse.train.trainer import run_training

    with pytest.raises(FileNotFoundError, match="trainer.resume=true.*no checkpoint"):
        run_training(compose_cfg([*TINY, "trainer.resume=true"]), tmp_path / "empty")
    with pytest.raises(ValueError, match="hub.push_every_checkpoint=true needs hub.repo_id"):
        run_training(compose_cfg([*TINY, "hub.push_every_checkpoint=true"]), tmp_path / "x")
    with pytest.raises(ValueError, match="every loss weight is 0"):
        run_training(compose_cfg([*TINY, "loss.sp.weight=0"]), tmp_path / "x")
    from hydra.errors import ConfigCompositionException

    # an enum now: refused while composing, naming the key (the choices are in the cause)
    with pytest.raises(ConfigCompositionException, match="loss.sp.loss_type") as err:
        run_training(compose_cfg([*TINY, "loss.sp.loss_type=hinge"]), tmp_path / "x")
    assert "ce-soft-fwd" in str(err.value.__cause__)
    with pytest.raises(ValueError, match="heads.action_head='dqn' but that head is disabled"):
        run_training(compose_cfg([*TINY, "heads.action_head=dqn"]), tmp_path / "x")
    assert not (tmp_path / "x").exists() and not (tmp_path / "empty").exists()


# ------------------------------------------------------------------------------------- in process
def kill_then_resume(monkeypatch, overrides: list[str], run_dir: Path, kill_before_step: int):
    """Train ``overrides`` into ``run_dir``, interrupted as step ``kill_before_step`` begins (steps
    before it are done), then resume with ``trainer.resume=true``; returns the resumed TrainResult."""
    from mouse.train.trainer import Trainer, run_training

    original = Trainer.train_step

    def killed(self, batch):
        if self.step == kill_before_step - 1:
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(Trainer, "train_step", killed)
    with pytest.raises(KeyboardInterrupt):
        run_training(compose_cfg(overrides), run_dir)
    monkeypatch.setattr(Trainer, "train_step", original)
    return run_training(compose_cfg([*overrides, "trainer.resume=true"]), run_dir)


def test_killed_run_resumes_to_the_same_losses(tmp_path, in_process, monkeypatch):
    """A kill after the step-3 checkpoint (cosine schedule over 6 steps), then resume → same losses."""
    from mouse.train.trainer import run_training

    overrides = [
        *TINY,
        "logger=none",
        "trainer.steps=6",
        "trainer.checkpoint_every=3",
        "trainer.eval_num_tasks=0",
    ]
    run_training(compose_cfg(overrides), tmp_path / "straight")

    result = kill_then_resume(monkeypatch, overrides, tmp_path / "killed", kill_before_step=5)
    assert result.step == 6
    assert losses(tmp_path / "killed") == losses(tmp_path / "straight")


def _steps(run_dir: Path) -> list[int]:
    """The step of every train line of metrics.jsonl, in file order."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [row["step"] for row in rows if "train/loss" in row]


def test_resume_auto_and_metrics_one_line_per_step(tmp_path, in_process, monkeypatch):
    """resume=auto starts fresh without a checkpoint and continues with one; the lines a killed run
    wrote past its checkpoint are dropped, so metrics.jsonl holds each step once, in order."""
    from mouse.train.trainer import Trainer, run_training

    overrides = [
        *TINY,
        "logger=none",
        "trainer.steps=6",
        "trainer.checkpoint_every=2",
        "trainer.eval_num_tasks=0",
    ]
    original = Trainer.train_step

    def killed_at_step_4(self, batch):
        if self.step == 3:  # steps 1..3 logged, checkpoint at 2: step 3 is done again after the resume
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(Trainer, "train_step", killed_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        run_training(
            compose_cfg([*overrides, "trainer.resume=auto"]), tmp_path / "run"
        )  # fresh: no checkpoint
    assert _steps(tmp_path / "run") == [1, 2, 3]
    monkeypatch.setattr(Trainer, "train_step", original)
    result = run_training(compose_cfg([*overrides, "trainer.resume=auto"]), tmp_path / "run")
    assert result.step == 6 and _steps(tmp_path / "run") == [1, 2, 3, 4, 5, 6]
    with pytest.raises(ValueError, match="trainer.resume='maybe' is unknown"):
        run_training(compose_cfg([*overrides, "trainer.resume=maybe"]), tmp_path / "other")


def test_final_checkpoint_is_written_before_the_final_evaluation(tmp_path, in_process, monkeypatch):
    from mouse.train.trainer import Trainer, run_training

    def failing_evaluate(self):
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(Trainer, "evaluate", failing_evaluate)
    with pytest.raises(RuntimeError, match="evaluation failed"):
        run_training(compose_cfg([*TINY, "logger=none", "trainer.steps=3"]), tmp_path / "run")
    assert os.readlink(tmp_path / "run" / "checkpoints" / "last") == "step-3"
    assert (tmp_path / "run" / "checkpoints" / "step-3" / "model.safetensors").is_file()


def test_nan_loss_stops_naming_loss_and_step_and_keeps_last_checkpoint(tmp_path, in_process, monkeypatch):
    from mouse.losses import LOSSES
    from mouse.train.trainer import NonFiniteLossError, run_training

    calls = {"n": 0}
    spec = LOSSES["sp"]

    def nan_on_third_call(step_stream, out, cfg):
        calls["n"] += 1
        loss, metrics = spec.fn(step_stream, out, cfg)
        return (loss * float("nan") if calls["n"] == 3 else loss), metrics

    monkeypatch.setitem(LOSSES, "sp", dataclasses.replace(spec, fn=nan_on_third_call))
    overrides = [
        *TINY,
        "logger=none",
        "trainer.steps=5",
        "trainer.checkpoint_every=2",
        "trainer.eval_num_tasks=0",
    ]
    with pytest.raises(NonFiniteLossError, match=r"loss\.sp is nan at step 3.*checkpoints/step-2"):
        run_training(compose_cfg(overrides), tmp_path / "run")
    assert os.readlink(tmp_path / "run" / "checkpoints" / "last") == "step-2"
    assert sorted(losses(tmp_path / "run")) == [1, 2]


def test_hub_push_at_end_through_loopback_server(tmp_path, env):
    from mouse.hub import HUB_FILES
    from test_hub import SECRET, FakeHub

    run = tmp_path / "run"
    with FakeHub() as hub:
        # the loopback Hub speaks git-lfs, not Xet: huggingface_hub must take the LFS path
        hub_env = {
            **env,
            "HF_HUB_OFFLINE": "0",
            "HF_ENDPOINT": hub.url,
            "HF_TOKEN": SECRET,
            "HF_HUB_DISABLE_XET": "1",
        }
        proc = run_cli(
            [*TINY, "trainer.steps=2", "hub.repo_id=alice/tiny-mouse", f"hydra.run.dir={run}"],
            hub_env,
            cwd=tmp_path,
        )
    last = run / "checkpoints" / "last"
    arrived = hub.files["alice/tiny-mouse"]
    assert set(arrived) == set(HUB_FILES)
    assert hub.modes["alice/tiny-mouse"]["model.safetensors"] == "lfs"  # the real Hub's path for weights
    for name, content in arrived.items():
        assert content == (last / name).read_bytes(), name
    card = arrived["README.md"].decode()
    assert (
        "## Evaluation (held-out tasks)" in card
        and "eval/score_mean" in card
        and "| obs_discrete | yes |" in card
    )
    assert "alice/tiny-mouse" in proc.stdout
    assert all(a == f"Bearer {SECRET}" for a in hub.auth)
    assert SECRET not in proc.stdout + proc.stderr
    for path in run.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_torchrun_two_ranks_share_one_run_dir(tmp_path, env):
    """Data parallel under torchrun (Gloo on CPU) through the console script: one run dir, resolved
    alike by every rank and written by rank 0 only (in the default suite: CI runs it)."""
    from mouse.data import save_dataset, synthetic_columns

    columns, spec = synthetic_columns(num_streams=8, steps_per_stream=60, num_actions=5, horizon=7)
    save_dataset(columns, spec, tmp_path / "data")
    torchrun = str(Path(sys.executable).parent / "torchrun")
    args = [
        "--standalone",
        "--nproc-per-node=2",
        "-m",
        "mouse.cli.train",
        "data=local",
        f"data.path={tmp_path / 'data'}",
    ]
    args += [*TINY[6:], "trainer.steps=2", "trainer.eval_num_tasks=0", "logger=none"]
    proc = subprocess.run(
        [torchrun, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    (run,) = (tmp_path / "outputs" / "torchrun").iterdir()
    assert proc.stdout.count("run dir:") == 1  # rank 0 prints
    assert sorted(losses(run)) == [1, 2] and len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert os.readlink(run / "checkpoints" / "last") == "step-2"


def test_settings_that_do_not_fit_the_data_fail_before_training(tmp_path, in_process, monkeypatch):
    import huggingface_hub

    from mouse.train.trainer import run_training

    with pytest.raises(
        ValueError, match=r"model.embedding.max_num_actions=3 is smaller than the dataset's 5"
    ):
        run_training(compose_cfg([*TINY, "model.embedding.max_num_actions=3"]), tmp_path / "a")
    with pytest.raises(ValueError, match=r"trainer.seq_len=16 needs 16 positions.*max_position_embeddings=8"):
        run_training(compose_cfg([*TINY, "backbone.max_position_embeddings=8"]), tmp_path / "b")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="hub.repo_id='me/model' asks for a Hub push but HF_HUB_OFFLINE"):
        run_training(compose_cfg([*TINY, "hub.repo_id=me/model"]), tmp_path / "c")
    assert not any((tmp_path / d / "checkpoints").exists() for d in "abc")


def test_resume_with_another_model_size_names_the_key(tmp_path, in_process):
    from mouse.train.trainer import run_training

    overrides = [*TINY, "logger=none", "trainer.steps=2", "trainer.eval_num_tasks=0"]
    run_training(compose_cfg(overrides), tmp_path / "run")
    bigger = [*overrides, "trainer.steps=4", "trainer.resume=true", "backbone.num_hidden_layers=2"]
    with pytest.raises(ValueError, match=r"backbone.num_hidden_layers=2 \(checkpoint: 1\)"):
        run_training(compose_cfg(bigger), tmp_path / "run")


def test_resume_from_a_truncated_or_dangling_last(tmp_path, in_process):
    from mouse.train.trainer import run_training

    overrides = [
        *TINY,
        "logger=none",
        "trainer.steps=4",
        "trainer.checkpoint_every=2",
        "trainer.eval_num_tasks=0",
    ]
    run_training(compose_cfg(overrides), tmp_path / "run")
    ckpts = tmp_path / "run" / "checkpoints"
    weights = ckpts / "step-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a kill in the middle of the write
    again = [*overrides, "trainer.steps=6", "trainer.resume=true"]
    with pytest.raises(
        ValueError,
        match=r"step-4/model.safetensors is truncated or corrupt; point checkpoints/last at step-2",
    ):
        run_training(compose_cfg(again), tmp_path / "run")
    shutil.rmtree(ckpts / "step-4")  # now `last` dangles: loud warning, then the newest step
    with pytest.warns(
        RuntimeWarning,
        match=r"points to 'step-4', which does not exist; using the newest checkpoint .*step-2",
    ):
        result = run_training(compose_cfg(again), tmp_path / "run")
    assert result.step == 6


def test_short_streams_error_offers_the_config_key_that_skips_them(tmp_path, in_process):
    from mouse.train.trainer import run_training

    short = [*TINY, "logger=none", "trainer.steps=1", "trainer.eval_num_tasks=0", "trainer.seq_len=61"]
    with pytest.raises(ValueError, match=r"shorter than seq_len=61.*data.allow_short_streams=true"):
        run_training(compose_cfg(short), tmp_path / "a")
    with pytest.raises(ValueError, match=r"every stream is shorter than seq_len=61"):  # the key is real
        run_training(compose_cfg([*short, "data.allow_short_streams=true"]), tmp_path / "b")


def test_console_script_prints_one_line_errors(tmp_path, env):
    """A bad input is one ``mouse-train: error: ...`` line on stderr and exit code 2, no traceback
    (``HYDRA_FULL_ERROR=1`` brings it back)."""
    quiet = {k: v for k, v in env.items() if k != "HYDRA_FULL_ERROR"}
    bad = run_cli(["data=local", f"data.path={tmp_path / 'nope'}"], quiet, cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("mouse-train: error: dataset ")
    loud = run_cli(["data=local", f"data.path={tmp_path / 'nope'}"], env, cwd=tmp_path, check=False)
    assert loud.returncode != 0 and "Traceback" in loud.stderr
