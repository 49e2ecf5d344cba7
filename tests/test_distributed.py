"""Data parallel under ``torchrun`` on CPU (Gloo, 2 processes), in the default suite (what CI runs).

One launch (tests/dist_driver.py) runs five jobs in the same two processes: DDP 3 steps with the
dataset collected by ``data.collect``, its resume to 5, FSDP 3 steps, its resume to 5, and a run
whose rank-1 loss turns NaN. Checked here, against single-process runs in this process fed the same
windows: DDP's parameters equal a single process's with the combined batch; so do
``trainer.grad_accum_steps=2`` micro-batches; FSDP trains the same, writes consolidated checkpoints
that ``load_model`` reads (same outputs as the sharded model) and resumes; only rank 0 wrote a run
directory; the dataset was collected once; a NaN on one rank stops every rank at the same step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from test_train import TINY, compose_cfg, losses

TORCHRUN = str(Path(sys.executable).parent / "torchrun")
DRIVER = str(Path(__file__).with_name("dist_driver.py"))
B = 4  # windows per rank (TINY's trainer.batch_size)
ATOL = 2e-5  # fp32: the same sums in another order, through a few Adam steps
# sp + dqn (a Polyak target head). One window per stream (2 whole episodes): every window masks the
# same pairs, so the mean of the ranks' (or micro-batches') means is exactly the combined batch's mean.
COMMON = [
    *TINY,
    "data.collect.num_tasks=16",
    "data.collect.steps_per_task=14",
    "trainer.seq_len=14",
    "loss.dqn.weight=1",
    "trainer.eval_num_tasks=0",
    "logger=none",
    "optim.schedule=constant",
    "trainer.checkpoint_every=3",
]


def _phase(name: str, run: str, *overrides: str, nan: bool = False, own_dir: bool = False) -> dict:
    return {"name": name, "run": run, "overrides": [*COMMON, *overrides], "nan": nan, "own_dir": own_dir}


@pytest.fixture(scope="module")
def launch(tmp_path_factory) -> Path:
    """Run the plan once under torchrun; returns its output folder."""
    out = tmp_path_factory.mktemp("dist")
    cache = f"data.cache_dir={out / 'cache'}"
    plan = [
        _phase("ddp", "run_ddp", cache, "trainer.steps=3", own_dir=True),
        _phase("ddp_resume", "run_ddp", cache, "trainer.steps=5", "trainer.resume=true"),
        _phase("fsdp", "run_fsdp", cache, "trainer.steps=3", "trainer.strategy=fsdp", own_dir=True),
        _phase("fsdp_resume", "run_fsdp", cache, "trainer.steps=5", "trainer.strategy=fsdp", "trainer.resume=true", "trainer.eval_num_tasks=2"),
        _phase("nan", "run_nan", cache, "trainer.steps=4", "heads.sv.num_layers=1", nan=True, own_dir=True),
    ]  # fmt: skip
    (out / "plan.json").write_text(json.dumps(plan))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run(
        [TORCHRUN, "--standalone", "--nproc-per-node=2", DRIVER, str(out), str(out / "plan.json")],
        env=env, cwd=out, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def _records(out: Path, phase: str) -> list[dict]:
    return [json.loads((out / phase / f"rank{r}.json").read_text()) for r in (0, 1)]


def _load(path: Path) -> object:
    return torch.load(path, weights_only=False)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = ATOL) -> None:
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= atol, worst


def _metrics(run: Path) -> dict[int, dict[str, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {row["step"]: row for row in rows if "train/loss" in row}


@pytest.fixture(scope="module")
def reference(launch, tmp_path_factory) -> dict[str, Path]:
    """Single-process runs (this process) fed the windows the two DDP ranks drew, 5 steps: one batch of
    2B windows per step (``single``), and B + B as two micro-batches (``accum``)."""
    from mouse.train.trainer import Trainer

    per_rank = [
        _load(launch / "ddp" / f"batches{r}.pt") + _load(launch / "ddp_resume" / f"batches{r}.pt")
        for r in (0, 1)
    ]
    assert [len(b) for b in per_rank] == [5, 5]
    combined = [torch.cat([b0, b1]) for b0, b1 in zip(*per_rank)]
    micro = [[b0, b1] for b0, b1 in zip(*per_rank)]

    class Fixed(Trainer):
        feed: list

        def batches(self):
            return iter(self.feed)

    root = tmp_path_factory.mktemp("reference")
    runs = {}
    cache = f"data.cache_dir={launch / 'cache'}"
    for name, feed, overrides in (
        ("single", combined, [f"trainer.batch_size={2 * B}"]),
        ("accum", [m for pair in micro for m in pair], ["trainer.grad_accum_steps=2"]),
    ):
        torch.set_num_threads(1)
        trainer = Fixed(compose_cfg([*COMMON, cache, "trainer.steps=5", *overrides]), root / name)
        trainer.feed = feed
        trainer.run()
        runs[name] = root / name
    return runs


# ------------------------------------------------------------------------------------------------ DDP
def test_ddp_equals_single_process_with_the_combined_batch(launch, reference):
    first, resumed = _records(launch, "ddp"), _records(launch, "ddp_resume")
    assert [r["outcome"] for r in first] == ["finished", "finished"] and [r["step"] for r in first] == [3, 3]
    assert [r["step"] for r in resumed] == [5, 5] and [len(r["windows"]) for r in resumed] == [2, 2]
    assert all(w0 != w1 for w0, w1 in zip(first[0]["windows"], first[1]["windows"]))  # own windows
    p0, p1 = (_load(launch / "ddp_resume" / f"params{r}.pt") for r in (0, 1))
    assert all(torch.equal(p0[k], p1[k]) for k in p0)  # every rank took the same steps
    assert any(".target." in k for k in p0)  # the Polyak targets (requires_grad=False) too

    run, single = launch / "run_ddp", reference["single"] / "checkpoints"
    assert sorted(losses(run)) == [1, 2, 3, 4, 5] and os.readlink(run / "checkpoints" / "last") == "step-5"
    _close(_weights(run / "checkpoints" / "step-3"), _weights(single / "step-3"))
    _close(_weights(run / "checkpoints" / "step-5"), _weights(single / "step-5"))  # resumed under torchrun
    ddp, ref = _metrics(run), _metrics(reference["single"])
    for step in range(1, 6):  # logged: means over the ranks, counts summed
        for key in ("train/loss", "optim/grad_norm"):  # (Adam hides a gradient scale; the norm does not)
            assert ddp[step][key] == pytest.approx(ref[step][key], rel=1e-5)
        for count in ("train/sp_rows", "train/dqn_pairs", "train/dqn_masked_pairs"):
            assert ddp[step][count] == ref[step][count] > 0
        assert ddp[step]["train/dqn_masked_pairs"] == 2 * B  # one terminal record per window starts no pair


def test_grad_accum_equals_the_double_batch(reference):
    single, accum = (reference[k] / "checkpoints" for k in ("single", "accum"))
    _close(_weights(accum / "step-5"), _weights(single / "step-5"))
    got, want = _metrics(reference["accum"]), _metrics(reference["single"])
    for count in ("train/sp_rows", "train/dqn_pairs"):
        assert [got[s][count] for s in got] == [want[s][count] for s in want]
    for key in ("train/loss", "optim/grad_norm"):
        assert [got[s][key] for s in got] == pytest.approx([want[s][key] for s in want], rel=1e-5)


def test_rank0_writes_and_the_dataset_is_collected_once(launch):
    assert [r["collected"] for r in _records(launch, "ddp")] == [1, 0]  # rank 1 waited, then read it
    assert all(r["collected"] == 0 for p in ("ddp_resume", "fsdp", "nan") for r in _records(launch, p))
    assert len([p for p in (launch / "cache").iterdir()]) == 1  # one dataset, no leftovers
    for run in ("run_ddp", "run_fsdp", "run_nan"):
        assert (launch / run / "metrics.jsonl").is_file()
        assert not (launch / f"{run}_rank1").exists()  # rank 1 wrote nothing
    assert not list(launch.rglob("outputs"))


def test_nan_on_one_rank_stops_every_rank(launch):
    """(That run also has an sv head no loss reads: DDP must look for unused parameters to reach step 2.)"""
    stopped = _records(launch, "nan")
    assert all(r["outcome"].startswith("stopped: loss.sp is nan at step 2") for r in stopped), stopped
    assert [r["step"] for r in stopped] == [1, 1]


# ----------------------------------------------------------------------------------------------- FSDP
def test_fsdp_trains_like_ddp_and_writes_consolidated_checkpoints(launch):
    from mouse.models import load_model

    first, resumed = _records(launch, "fsdp"), _records(launch, "fsdp_resume")
    assert [r["step"] for r in first + resumed] == [3, 3, 5, 5]
    assert all(r["local_fraction"] == pytest.approx(0.5, abs=0.02) for r in first)  # sharded over 2
    assert first[0]["windows"] == _records(launch, "ddp")[0]["windows"]  # the same data as the DDP run
    fsdp, ddp = launch / "run_fsdp" / "checkpoints", launch / "run_ddp" / "checkpoints"
    _close(_weights(fsdp / "step-3"), _weights(ddp / "step-3"))  # (FSDP runs the transformers forward)
    _close(_weights(fsdp / "step-5"), _weights(ddp / "step-5"))  # resumed: the optimizer state came back

    model = load_model(fsdp / "step-3")
    assert type(model).__name__ == "ModelLlama"
    batch = _load(launch / "fsdp" / "batches0.pt")[0]
    with torch.no_grad():
        out, _ = model.eval()(batch)
    sharded = _load(launch / "fsdp" / "outputs.pt")
    assert set(out.keys()) == set(sharded)
    assert all(torch.allclose(out[k], sharded[k], atol=1e-5) for k in sharded)
    assert "ModelLlama" in (fsdp / "step-3" / "README.md").read_text()
    assert (launch / "run_fsdp" / "eval" / "step-5.json").is_file()  # rank 0 evaluated a gathered copy
    assert (
        "eval/score_mean" in json.loads((fsdp / "step-5" / "trainer_state.json").read_text())["eval_metrics"]
    )


def test_config_checks():
    from mouse.train.config import validate_config

    with pytest.raises(ValueError, match=r"^trainer.grad_accum_steps=0 must be >= 1"):
        validate_config(compose_cfg([*COMMON, "trainer.grad_accum_steps=0"]))
    with pytest.raises(Exception, match="trainer.strategy"):
        compose_cfg([*COMMON, "trainer.strategy=zero3"])


def test_reduce_metrics_and_optimizer_state_by_name():
    """One process: the micro-batch reduction rules, and an optimizer state keyed by parameter name
    (what an FSDP checkpoint stores) restores into a plain model's optimizer exactly."""
    from mouse.train.dist import reduce_metrics
    from mouse.train.parallel import _to_names, wrap_model

    names = ["train/sp_loss", "train/sp_rows", "train/sv_abs_error_max", "train/vec_dqn_score_abs_min"]
    rows = torch.tensor([[1.0, 3.0, 5.0, 2.0], [2.0, 4.0, 7.0, 1.0]])
    assert reduce_metrics(names, rows) == dict(zip(names, [1.5, 7.0, 7.0, 1.0]))

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    by_name = _to_names(model, optimizer, optimizer.state_dict())
    assert sorted(by_name["state"]) == ["0.bias", "0.weight", "1.bias", "1.weight"]
    fresh = torch.optim.AdamW(model.parameters(), lr=0.1)
    wrap_model(model, "ddp", torch.device("cpu")).load_optimizer_state(fresh, by_name)  # one process
    want, got = optimizer.state_dict(), fresh.state_dict()
    assert got["param_groups"] == want["param_groups"]
    assert all(torch.equal(got["state"][i][k], v) for i, s in want["state"].items() for k, v in s.items())
