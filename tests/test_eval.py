"""`mouse.eval.evaluate`, results.json, the plot, checkpoint resolution and the `mouse-eval` CLI."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException

from mouse.cli.common import to_config
from mouse.data import DatasetSpec
from mouse.eval import EvalResult, check_compatible, evaluate, plot_curves, resolve_checkpoint
from mouse.eval.config import EvalConfig, register_configs
from mouse.eval.run import run_eval
from mouse.tasks import make_family
from test_rollout import tiny_model

FAMILY = {"size": 5, "horizon": 8}


def _spec(num_actions=5) -> DatasetSpec:
    fam = make_family("darkroom", **FAMILY)
    train, test = fam.split(0, 0.2)
    return DatasetSpec(
        num_actions=num_actions, horizon=fam.horizon, gamma=fam.gamma, obs_discrete_size=fam.num_states,
        obs_continuous_dim=2, obs_continuous_min=0.0, obs_continuous_max=4.0, task_family="darkroom",
        task_params=fam.params, policy="explorer", train_task_ids=train, test_task_ids=test,
    )  # fmt: skip


def _checkpoint(tmp_path: Path, model=None, spec=None, seq_len=12) -> Path:
    """A tiny checkpoint laid out as the trainer writes it: run/checkpoints/step-3 + last symlink."""
    ckpt = tmp_path / "run" / "checkpoints" / "step-3"
    (model or tiny_model()).save_pretrained(ckpt)
    (ckpt / "dataset_spec.json").write_text((spec or _spec()).to_json())
    (ckpt / "train_config.yaml").write_text(f"trainer:\n  seq_len: {seq_len}\n")
    os.symlink("step-3", tmp_path / "run" / "checkpoints" / "last")
    return tmp_path / "run"


def _evaluate(**kw) -> EvalResult:
    torch.set_num_threads(1)
    return evaluate(tiny_model(), _spec(), num_tasks=3, episodes=3, seeds=2, **kw)


def test_evaluate_metrics_results_json_and_plot(tmp_path):
    res = _evaluate(temperature=1.0, context_steps=10)
    metrics = res.metrics()
    kinds = ("return", "score", "oracle_return", "random_return", "teacher_return")
    keys = {f"{p}_ep{k}" for p in kinds for k in (1, 2, 3)}
    assert set(metrics) == keys | {"score_mean", "return_mean", "steps_per_s"}
    assert all(isinstance(v, float) for v in metrics.values()) and metrics["steps_per_s"] > 0
    fam = make_family("darkroom", **FAMILY)
    oracle = [fam.make_task(t).optimal_return() for t in _spec().test_task_ids[:3]]
    assert metrics["oracle_return_ep2"] == pytest.approx(np.mean(oracle))
    data = json.loads(json.dumps(res.to_dict(), allow_nan=False))  # strict JSON
    assert data["task"] == {
        "family": "darkroom", "params": fam.params, "split": "test", "task_ids": list(_spec().test_task_ids[:3]),
        "num_tasks": 3, "seeds": 2, "num_runs": 6,
    }  # fmt: skip
    assert data["episode"] == [1, 2, 3] and data["temperature"] == 1.0
    assert (
        data["normalized"] is True
        and data["oracle_kind"] == "q_star"
        and data["teacher_policy"] == "explorer"
    )
    for who in ("model", "teacher", "oracle", "random"):
        assert len(data[who]["mean"]) == len(data[who]["ci95"]) == 3 and data[who]["n"] == 6
        assert np.array(data["returns"][who]).shape == (6, 3)
    assert len(data["score"]["mean"]) == 3 and data["score_mean"] == pytest.approx(
        np.mean(data["score"]["mean"])
    )
    assert data["context"]["context_steps"] == 10 and data["context"]["keep_steps"] == 5
    assert data["context"]["reprefills"] > 0 and "sliding_window" in data["context"]["policy"]
    png = plot_curves(res, tmp_path / "plots" / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_restores_training_mode_and_the_callers_rng():
    model = tiny_model().train()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    evaluate(model, _spec(), num_tasks=2, episodes=2, temperature=1.0, seed=5)
    assert model.training
    torch.testing.assert_close(torch.rand(3), expected)


def test_same_seed_same_result_and_seeds_differ():
    a, b = _evaluate(temperature=1.0), _evaluate(temperature=1.0)
    other = _evaluate(temperature=1.0, seed=1)
    for who in ("model", "oracle", "random"):
        np.testing.assert_array_equal(a.returns[who], b.returns[who])  # same seed: the same result
    assert a.runs == [(t, s) for s in range(2) for t in _spec().test_task_ids[:3]]
    for who in ("model", "random"):  # the actors that sample (temperature 1, uniform random)
        assert not np.array_equal(a.returns[who], other.returns[who]), f"{who}: seed 0 and seed 1 agree"
        # within one evaluation, env seed 0 and env seed 1 of the same tasks are different runs too
        assert not np.array_equal(a.returns[who][:3], a.returns[who][3:]), f"{who}: its two seeds agree"
    np.testing.assert_array_equal(a.returns["oracle"], other.returns["oracle"])  # greedy, deterministic task


def test_nan_score_is_written_as_null():
    res = _evaluate()
    res.returns["oracle"] = res.returns["random"].copy()
    data = res.to_dict()
    assert data["score"]["mean"] == [None] * 3 and data["score_mean"] is None
    assert math.isnan(res.metrics()["score_ep1"])


def test_resolve_checkpoint_forms_and_errors(tmp_path):
    run_dir = _checkpoint(tmp_path)
    step = run_dir / "checkpoints" / "step-3"
    assert resolve_checkpoint(run_dir).resolve() == step.resolve()
    assert resolve_checkpoint(step) == step
    with pytest.raises(FileNotFoundError, match="no-such-dir.*run dir"):
        resolve_checkpoint(tmp_path / "no-such-dir")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither a checkpoint dir"):
        resolve_checkpoint(tmp_path / "empty")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"lacks \['model.safetensors'\]"):
        resolve_checkpoint(tmp_path / "half")
    with pytest.raises(FileNotFoundError, match="could not be fetched from the Hub"):  # offline in tests
        resolve_checkpoint("mouse-test-nobody/no-such-model")


def test_model_that_cannot_cover_the_family_is_one_clear_error():
    small = tiny_model(num_actions=4)
    with pytest.raises(ValueError, match="it has 4 actions but darkroom needs 5"):
        check_compatible(small, make_family("darkroom", **FAMILY))
    with pytest.raises(ValueError, match="obs table has 25 ids but darkroom has 49 states"):
        check_compatible(tiny_model(), make_family("darkroom", size=7, horizon=8))


def _compose(*overrides):
    register_configs()
    with initialize_config_module(config_module="mouse.conf", version_base=None):
        return compose(config_name="eval", overrides=list(overrides))


def run(cfg, out_dir):
    """mouse-eval in process: the typed config once, run_eval, its printed summary; the result."""
    report = run_eval(to_config(cfg, EvalConfig), out_dir)
    print(report.summary())
    return report.result


def test_run_from_composed_config(tmp_path, capsys):
    run_dir = _checkpoint(tmp_path)
    cfg = _compose(f"checkpoint={run_dir}", "episodes=2", "num_tasks=2", "seeds=2")
    res = run(cfg, tmp_path / "out")
    assert res.context["context_steps"] == 12  # the trained seq_len from train_config.yaml
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["checkpoint_dir"].endswith("step-3") and data["task"]["num_runs"] == 4
    assert (tmp_path / "out" / "curves.png").is_file()
    out = capsys.readouterr().out
    assert "episode |" in out and "results:" in out


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigCompositionException, match="Could not override 'episdes'"):
        _compose("checkpoint=x", "episdes=3")
    run_dir = _checkpoint(tmp_path)
    with pytest.raises(ValueError, match="episodes=0"):
        run(_compose(f"checkpoint={run_dir}", "episodes=0"), tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        run(_compose(f"checkpoint={tmp_path / 'does-not-exist'}"), tmp_path / "out")


def test_task_override_the_model_cannot_cover(tmp_path):
    small = tiny_model(num_actions=4)
    run_dir = _checkpoint(tmp_path, model=small, spec=_spec(num_actions=4))
    cfg = _compose(f"checkpoint={run_dir}", "task=darkroom")
    with pytest.raises(ValueError, match="cannot act in task family 'darkroom'.*4 actions"):
        run(cfg, tmp_path / "out")


def _mouse_eval() -> str:
    script = Path(sys.executable).parent / "mouse-eval"
    if not script.exists():
        pytest.skip("the mouse-eval console script is not installed next to this Python")
    return str(script)


def test_mouse_eval_console_script_end_to_end(tmp_path):
    run_dir = _checkpoint(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [_mouse_eval(), f"checkpoint={run_dir}", "episodes=3", "seeds=2", "temperature=1.0"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    results = list((tmp_path / "outputs" / "eval").glob("*/*/results.json"))
    assert len(results) == 1, done.stdout
    data = json.loads(results[0].read_text())
    assert data["task"]["task_ids"] == list(_spec().test_task_ids) and data["episodes"] == 3
    assert (results[0].parent / "curves.png").is_file()
    assert "episode |" in done.stdout and str(results[0].parent / "curves.png") in done.stdout
    bad = subprocess.run([cmd[0], f"checkpoint={tmp_path / 'nope'}"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert bad.returncode != 0
    assert "checkpoint" in bad.stderr and "nope" in bad.stderr and "Traceback" not in bad.stderr


def test_a_checkpoint_cannot_read_a_secret_through_an_interpolation(tmp_path, monkeypatch):
    """train_config.yaml comes from the Hub too: ``${oc.env:HF_TOKEN}`` must never be resolved or echoed."""
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_123")
    run_dir = _checkpoint(tmp_path)
    (run_dir / "checkpoints" / "step-3" / "train_config.yaml").write_text(
        "trainer:\n  seq_len: ${oc.env:HF_TOKEN}\n"
    )
    with pytest.raises(ValueError) as err:
        run(_compose(f"checkpoint={run_dir}", "episodes=1"), tmp_path / "out")
    assert "trainer.seq_len must be an integer" in str(err.value)
    assert "hf_secret_value_123" not in str(err.value) and "${oc.env:HF_TOKEN}" in str(err.value)
