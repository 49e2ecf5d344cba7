"""The shipped Hydra launchers and sweepers, run through the installed ``mouse-train`` on a tiny config.

A 2-trial Optuna search (``hparams_search=optuna``: the shipped search space, a seeded TPE sampler,
maximizing the final ``eval/score_mean``) and a 2-job ``hydra/launcher=submitit_local`` sweep (each
job in its own process and run folder). Every README "Scale out" command composes as typed (Slurm and
Ray need a cluster / the ``ray`` extra to run, so they are composed, not launched).
"""

from __future__ import annotations

import json
import pickle
import re
import shlex
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_module

from mouse.train.config import register_configs
from test_train import TINY, env, run_cli  # noqa: F401  (env is a fixture)

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the optuna extra (in dev)")
pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the slurm extra (in dev)")

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
SEARCH_SPACE = {"optim.lr", "optim.warmup_steps", "model.hidden_dim", "backbone.num_hidden_layers"}
# TINY without the keys the search space sets (a command-line value would pin them)
TINY_SEARCH = [o for o in TINY if o.split("=")[0] not in SEARCH_SPACE]
QUICK = ["trainer.steps=2", "logger=none"]


def _jobs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def _final_score(job: Path) -> float:
    rows = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
    return [r["eval/score_mean"] for r in rows if "eval/score_mean" in r][-1]


def _overrides(job: Path) -> dict[str, str]:
    """The job's command-line overrides (``.hydra/overrides.yaml``) as key → value."""
    return dict(o.split("=", 1) for o in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()))


def test_optuna_two_trials_search_the_shipped_space_and_record_the_best(tmp_path, env):  # noqa: F811
    sweep = tmp_path / "sweep"
    run_cli(
        [
            "-m",
            "hparams_search=optuna",
            *TINY_SEARCH,
            *QUICK,
            "hydra.sweeper.n_trials=2",
            f"hydra.sweep.dir={sweep}",
        ],
        env,
        cwd=tmp_path,
    )
    jobs = _jobs(sweep)
    assert [j.name for j in jobs] == ["0", "1"]
    trials = []
    for job in jobs:
        assert (job / "checkpoints" / "step-2" / "model.safetensors").is_file()
        assert (job / "eval" / "step-2.json").is_file()
        params = {k: yaml.safe_load(v) for k, v in _overrides(job).items() if k in SEARCH_SPACE}
        assert params.keys() == SEARCH_SPACE
        assert 1e-4 <= params["optim.lr"] <= 3e-3
        assert params["optim.warmup_steps"] in {20, 50, 100}
        assert params["model.hidden_dim"] in {64, 128, 256}
        assert params["backbone.num_hidden_layers"] in {2, 3, 4}
        trained = yaml.safe_load((job / "train_config.yaml").read_text())
        assert trained["model"]["hidden_dim"] == params["model.hidden_dim"]
        assert trained["backbone"]["num_hidden_layers"] == params["backbone.num_hidden_layers"]
        assert trained["optim"]["lr"] == params["optim.lr"]
        trials.append((params, _final_score(job)))
    assert trials[0][0] != trials[1][0]  # distinct trials

    # the objective: each trial's final eval/score_mean, maximized
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["name"] == "optuna"
    best = max(score for _, score in trials)
    assert results["best_value"] == best
    assert results["best_params"] in [params for params, score in trials if score == best]


def test_submitit_local_two_jobs_each_in_its_own_process_and_run_dir(tmp_path, env):  # noqa: F811
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=submitit_local", *TINY, *QUICK, "optim.lr=1e-3,2e-3"]
    run_cli([*args, "hydra.launcher.timeout_min=5", f"hydra.sweep.dir={sweep}"], env, cwd=tmp_path)
    jobs = _jobs(sweep)
    assert [j.name for j in jobs] == ["0", "1"]
    lrs = set()
    for job in jobs:
        assert (job / "checkpoints" / "step-2" / "model.safetensors").is_file()
        lrs.add(yaml.safe_load((job / "train_config.yaml").read_text())["optim"]["lr"])
    assert lrs == {0.001, 0.002}
    # submitit's own folders: one per job (the id is the local job's process id), each finished
    submitted = [p for p in (sweep / ".submitit").iterdir() if p.name.isdigit()]
    assert len(submitted) == 2
    returned = {}
    for folder in submitted:
        log = (folder / f"{folder.name}_0_log.out").read_text()
        assert "Job completed successfully" in log
        run_dir = re.search(r"run dir:\s+(\S+)", log).group(1)
        status, job_return = pickle.loads((folder / f"{folder.name}_0_result.pkl").read_bytes())
        assert status == "success"
        returned[run_dir] = job_return.return_value
    # each job returned its final eval/score_mean to the launcher
    assert returned == {str(job): pytest.approx(_final_score(job)) for job in jobs}


# ------------------------------------------------------------------------------------------ README
def _readme_commands(marker: str) -> list[str]:
    lines = [line.split("  #")[0].strip() for line in README.splitlines() if line.startswith("mouse-train")]
    found = [line for line in lines if marker in line]
    assert found, f"README shows no mouse-train command with {marker!r}"
    return found


def _compose_command(line: str):
    """Compose a README ``mouse-train -m ...`` command's config (sweep values reduced to their first)."""
    overrides = []
    for arg in shlex.split(line)[1:]:
        if arg == "-m":
            continue
        key, _, value = arg.partition("=")
        if "," in value and not value.startswith(("[", "{", "tag(", "choice(", "interval(")):
            value = value.split(",")[0]
        overrides.append(f"{key}={value}")
    register_configs()
    with initialize_config_module(config_module="mouse.conf", version_base=None):
        return compose(config_name="train", overrides=overrides, return_hydra_config=True)


def test_readme_slurm_and_local_commands_compose():
    slurm = [_compose_command(line) for line in _readme_commands("hydra/launcher=submitit_slurm")]
    for cfg in slurm:
        launcher = cfg.hydra.launcher
        assert launcher._target_.endswith("SlurmLauncher")
        assert launcher.partition == "gpu" and launcher.gpus_per_node == 1
    # the requeue recipe: a job past its time limit comes back and continues from its checkpoint
    assert any(c.hydra.launcher.max_num_timeout > 0 and c.trainer.resume == "auto" for c in slurm)
    for line in _readme_commands("hydra/launcher=submitit_local"):
        assert _compose_command(line).hydra.launcher._target_.endswith("LocalLauncher")


def test_readme_optuna_commands_compose_with_the_search():
    for line in _readme_commands("hparams_search=optuna"):
        sweeper = _compose_command(line).hydra.sweeper
        assert sweeper._target_.endswith("OptunaSweeper")
        assert sweeper.direction == "maximize" and sweeper.sampler.seed == 0
        assert set(sweeper.params) == SEARCH_SPACE


def test_readme_ray_commands_compose_when_the_ray_extra_is_installed():
    lines = _readme_commands("hydra/launcher=ray")
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="the ray extra (not in dev)")
    for line in lines:
        assert _compose_command(line).hydra.launcher._target_.endswith("RayLauncher")


@pytest.mark.parametrize("marker", ["trainer.compile=true", "model.gradient_checkpointing=true"])
def test_readme_gpu_training_commands_compose_and_validate(marker):
    from mouse.cli.common import to_config
    from mouse.train.config import TrainConfig, validate_config

    (line,) = _readme_commands(marker)
    cfg = _compose_command(line)
    del cfg.hydra  # the typed config mouse-train converts
    typed = to_config(cfg, TrainConfig)
    validate_config(typed)
    key, _, value = marker.partition("=")
    section, name = key.split(".")
    assert getattr(getattr(typed, section), name) is (value == "true")
