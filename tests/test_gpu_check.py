"""``scripts/gpu_check.py`` without a GPU: it says so and exits 0; its checks run (and can fail) on CPU."""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    torch.set_num_threads(1)  # tiny models: more threads only wait on each other on a busy machine
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present: the script checks it")
def test_without_cuda_it_says_so_and_exits_0(tmp_path):
    done = subprocess.run(
        [sys.executable, str(SCRIPT)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("gpu_check: no CUDA device found")


def test_peak_table_prefers_the_longer_names(gpu_check):
    assert gpu_check.peak_bf16("NVIDIA H200") == 989e12
    assert gpu_check.peak_bf16("NVIDIA H100 80GB HBM3") == 989e12
    assert gpu_check.peak_bf16("NVIDIA H100 PCIe") == 756e12
    assert gpu_check.peak_bf16("NVIDIA A100-SXM4-80GB") == 312e12
    assert gpu_check.peak_bf16("NVIDIA L40S") == 362e12
    assert gpu_check.peak_bf16("NVIDIA GeForce GTX 1080") is None


def test_disagreement_names_the_quantity_and_the_difference(gpu_check):
    want = torch.tensor([1.0, 2.0])
    assert gpu_check.disagreement("x", want + 1e-7, want, atol=1e-6, rtol=0) is None
    assert "x: max abs difference 0.1" in gpu_check.disagreement("x", want + 0.1, want, atol=1e-6, rtol=0)
    assert "shape" in gpu_check.disagreement("x", want[:1], want, atol=1, rtol=1)


def test_model_checks_pass_on_cpu_and_catch_a_different_model(gpu_check, monkeypatch):
    assert gpu_check.check_cpu_vs_device("cpu") == []
    assert gpu_check.check_kv_cache("cpu") == []
    # a "device" copy with other weights: the agreement check must report it

    def perturbed(model):
        twin = copy.deepcopy(model)
        with torch.no_grad():
            next(twin.parameters()).add_(0.1)
        return twin

    monkeypatch.setattr(gpu_check, "copy", SimpleNamespace(deepcopy=perturbed))
    found = gpu_check.check_cpu_vs_device("cpu")
    assert any("loss" in f for f in found) and any("grad" in f for f in found)


def test_training_check_runs_on_cpu(gpu_check, tmp_path, monkeypatch):
    """Check 3 with device=cpu: fp32 equals fp32, bf16 autocast + checkpointing within bf16 tolerance,
    float32 master weights."""
    monkeypatch.setenv("MOUSE_CACHE_DIR", str(tmp_path))
    torch.set_num_threads(1)
    assert gpu_check.check_training("cpu", compile_=False) == []
