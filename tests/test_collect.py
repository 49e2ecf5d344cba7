"""`mouse-collect` end to end through the installed console script, its configs, and `ensure_dataset`."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mouse.tasks  # noqa: F401  MOUSE's own module: a missing one must fail, not skip
from mouse.data import load_dataset
from mouse.data.collect import collect_dataset, ensure_dataset, settings_hash, stream_task_ids
from mouse.data.config import POLICY_CONFIGS, TASK_CONFIGS, collect_config

SCRIPT = Path(sys.executable).parent / "mouse-collect"
CONF = Path(__file__).resolve().parents[1] / "conf"


def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _run(args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _small(**overrides):
    d = {
        "task": {"name": "darkroom", "size": 5, "horizon": 8},
        "policy": {"name": "explorer"},
        "num_tasks": 6,
        "steps_per_task": 30,
        "show_progress": False,
    }
    return {**d, **overrides}


@pytest.mark.skipif(not SCRIPT.exists(), reason="mouse-collect is not installed (pip install -e .)")
def test_console_script_end_to_end_same_seed_same_bytes(tmp_path):
    args = ["task=darkroom", "task.size=5", "num_tasks=6", "steps_per_task=50", "policy=annealed", "seed=3"]
    first = _run([*args, "output=a"], tmp_path)
    assert first.returncode == 0, first.stderr
    second = _run([*args, "output=sub/b", "show_progress=false"], tmp_path)
    assert second.returncode == 0, second.stderr
    assert _files(tmp_path / "a") == _files(tmp_path / "sub" / "b")  # relative output: the user's cwd
    ds = load_dataset(tmp_path / "a")
    assert ds.num_streams == 6 and ds.num_records == 300
    spec = ds.spec
    assert (spec.task_family, spec.policy, spec.seed, spec.split, spec.steps_per_task) == (
        "darkroom",
        "annealed",
        3,
        "train",
        50,
    )
    assert spec.task_params["size"] == 5 and spec.num_actions == 5 and spec.obs_discrete_size == 25
    assert set(ds.columns["task_id"].tolist()) <= set(spec.train_task_ids)
    assert not set(spec.train_task_ids) & set(spec.test_task_ids)
    assert (tmp_path / "outputs" / "collect").is_dir()  # Hydra's run dir, not the dataset folder


@pytest.mark.skipif(not SCRIPT.exists(), reason="mouse-collect is not installed (pip install -e .)")
def test_console_script_rejects_typos(tmp_path):
    result = _run(["task.sise=5", "output=x"], tmp_path)
    assert result.returncode != 0 and "task.sise" in result.stderr
    assert not (tmp_path / "x").exists()


def test_every_task_and_policy_yaml_composes():
    from hydra import compose, initialize_config_dir
    from hydra.errors import MissingConfigException

    from mouse.cli.common import to_config
    from mouse.data.config import CollectConfig, register_configs

    register_configs()
    tasks = sorted(p.stem for p in (CONF / "task").glob("*.yaml"))
    policies = sorted(p.stem for p in (CONF / "policy").glob("*.yaml"))
    assert set(tasks) == set(TASK_CONFIGS) and set(policies) == set(POLICY_CONFIGS)
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        for task in tasks:
            for policy in policies:
                cfg = compose("collect", overrides=[f"task={task}", f"policy={policy}", "output=x"])
                c = collect_config(to_config(cfg, CollectConfig))
                assert (c.task.name, c.policy.name) == (task, policy)
                assert isinstance(c.task, TASK_CONFIGS[task]) and isinstance(c.policy, POLICY_CONFIGS[policy])
        cfg = compose("collect", overrides=["policy=expert", "policy.epsilon=0.0"])
        assert collect_config(to_config(cfg, CollectConfig)).policy.epsilon == 0.0
        with pytest.raises(MissingConfigException, match="task/gridworld"):
            compose("collect", overrides=["task=gridworld"])


def test_policy_expert_epsilon_zero_collects(tmp_path):
    path = collect_dataset(_small(policy={"name": "expert", "epsilon": 0.0}), output=tmp_path / "ds")
    ds = load_dataset(path)
    assert ds.spec.policy == "expert" and ds.spec.policy_params == {"epsilon": 0.0}
    # the expert's action at t+1 is greedy on q_star at t (DESIGN.md alignment)
    q, a, t = ds.columns["q_star"][:-1], ds.columns["action"][1:], ds.columns["time"][1:]
    acting = t > 0
    np.testing.assert_array_equal(q[acting, a[acting]], q[acting].max(-1))


def test_test_split_draws_held_out_tasks(tmp_path):
    ds = load_dataset(collect_dataset(_small(split="test"), output=tmp_path / "ds"))
    assert ds.spec.split == "test"
    assert set(ds.columns["task_id"].tolist()) <= set(ds.spec.test_task_ids)


def test_stream_task_ids_cycle_a_permutation():
    ids = stream_task_ids([3, 5, 7], 7, seed=0)
    assert sorted(ids[:3].tolist()) == [3, 5, 7] and ids[3:6].tolist() == ids[:3].tolist()
    assert stream_task_ids([3, 5, 7], 7, seed=0).tolist() == ids.tolist()


def test_bad_collect_settings():
    with pytest.raises(ValueError, match="unknown task 'gridworld'; valid: darkroom, frozenlake, bandit"):
        collect_config(_small(task={"name": "gridworld"}))
    with pytest.raises(ValueError, match="unknown policy 'greedy'; valid: random, expert"):
        collect_config(_small(policy={"name": "greedy"}))
    with pytest.raises(ValueError, match=r"unknown task key\(s\) \['sise'\] for 'darkroom'"):
        collect_config(_small(task={"name": "darkroom", "sise": 3}))
    with pytest.raises(ValueError, match=r"(?s)bad policy config for 'expert'.*full_key: epsilon"):
        collect_config(_small(policy={"name": "expert", "epsilon": "high"}))
    with pytest.raises(ValueError, match=r"unknown collect key\(s\) \['num_task'\]"):
        collect_config({**_small(), "num_task": 3})
    with pytest.raises(ValueError, match="split must be one of"):
        collect_config(_small(split="val"))
    with pytest.raises(ValueError, match="num_tasks must be >= 1, got 0"):
        collect_config(_small(num_tasks=0))
    with pytest.raises(ValueError, match="policy 'ucb' is for the bandit family only"):
        collect_dataset(_small(policy={"name": "ucb"}), output="unused")


def test_ensure_dataset_collects_once(tmp_path, monkeypatch):
    monkeypatch.setenv("MOUSE_CACHE_DIR", str(tmp_path / "cache"))
    cfg = _small()
    path = ensure_dataset(cfg)
    assert path == tmp_path / "cache" / "datasets" / settings_hash(cfg)
    stamp = (path / "spec.json").stat().st_mtime_ns
    assert ensure_dataset({**cfg, "show_progress": True}) == path  # progress is not a setting of the data
    assert (path / "spec.json").stat().st_mtime_ns == stamp
    assert ensure_dataset({**cfg, "seed": 1}) != path
    other = ensure_dataset(cfg, cache_dir=tmp_path / "elsewhere")
    assert _files(other) == _files(path)
    assert [p.name for p in (tmp_path / "elsewhere").iterdir()] == [path.name]  # no temp dirs left


def test_console_script_prints_one_line_errors(tmp_path):
    """A bad input is one ``mouse-collect: error: ...`` line on stderr and exit code 2 (no traceback);
    ``hub.repo_id`` while offline fails before any collection work."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    cases = [
        ([], "mouse-collect needs output=DIR"),
        (
            [f"output={tmp_path / 'd'}", "hub.repo_id=me/data"],
            "asks for a Hub push but HF_HUB_OFFLINE is set",
        ),
    ]
    for args, message in cases:
        proc = subprocess.run(
            [SCRIPT, "task=darkroom", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 2, proc.stderr
        assert (
            proc.stderr.strip().splitlines()[-1].startswith("mouse-collect: error: ")
            and message in proc.stderr
        )
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "d").exists()
