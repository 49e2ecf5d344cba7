"""Check and benchmark MOUSE on a CUDA device: what runs when a GPU is lent to the project.

    python scripts/gpu_check.py                          # cuda:0; without CUDA: says so, exits 0
    python scripts/gpu_check.py --device cuda:1 --compile   # also trainer.compile=true on the device
    python scripts/gpu_check.py --skip-train --bench-steps 50 --batch 32 --seq 2048

1. CPU vs CUDA: one tiny model (the same weights on both), one batch, fp32 with TF32 off: the sp + dqn
   loss and every gradient agree (fast path and transformers path).
2. KV-cache decoding on CUDA (fp32): step-by-step decoding with the cache equals the full forward.
3. ``mouse-train`` on CUDA (a tiny Dark Room run, ``trainer.device=<device>``): the fp32 losses equal
   the CPU run's; bf16 autocast with gradient checkpointing keeps fp32 master weights and stays within
   bf16 tolerance of them (``--compile``: also ``trainer.compile=true``).
4. Benchmark (bf16 autocast, fp32 weights, fused AdamW): train steps/s, tokens/s and MFU = model
   FLOP/s (counted by ``torch.utils.flop_counter`` on the transformers forward, as
   ``scripts/bench_model.py`` does) / the device's dense bf16 peak (``PEAK_BF16``; an unknown device:
   a measured bf16 matmul rate, and it says so); then the peak CUDA memory of a train step at
   ``--long-seq`` steps (d=512, 8 layers, batch 1) with and without gradient checkpointing.

Exit code 1 when a check fails (the benchmark still runs), else 0.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_model: the benchmark model and stream

# Dense bf16 tensor-core FLOP/s from the vendors' datasheets (no sparsity); the first name contained in
# torch.cuda.get_device_name() wins, so the longer names come first.
PEAK_BF16: list[tuple[str, float]] = [
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H200", 989e12),
    ("H100", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("A10", 125e12),
]

# A tiny Dark Room run (3x3 goals) and a tiny Llama: the mouse-train overrides of check 3.
TINY_TRAIN = [
    "data.collect.task.size=3",
    "data.collect.task.horizon=6",
    "data.collect.task.test_fraction=0.25",
    "data.collect.num_tasks=6",
    "data.collect.steps_per_task=60",
    "data.collect.show_progress=false",
    "data.prefetch=0",
    "model.hidden_dim=32",
    "backbone.num_hidden_layers=2",
    "backbone.num_attention_heads=2",
    "backbone.num_key_value_heads=2",
    "backbone.intermediate_size=64",
    "heads.sp.num_layers=1",
    "trainer.batch_size=4",
    "trainer.seq_len=16",
    "trainer.log_every=1",
    "trainer.eval_num_tasks=2",
    "trainer.eval_episodes=2",
    "trainer.steps=4",
    "optim.warmup_steps=2",
    "logger=none",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--compile", action="store_true", help="check 3 also with trainer.compile=true")
    p.add_argument("--skip-train", action="store_true", help="skip check 3 (mouse-train on the device)")
    p.add_argument("--hidden", type=int, default=512, help="benchmark model width")
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=1024, help="benchmark steps per sequence (1 token each)")
    p.add_argument("--bench-steps", type=int, default=20, help="timed benchmark steps")
    p.add_argument("--long-seq", type=int, default=4096, help="memory benchmark length; 0 = skip")
    return p.parse_args(argv)


def peak_bf16(name: str) -> float | None:
    """The datasheet dense bf16 FLOP/s of the device called ``name``; None when it is not in the table."""
    for key, flops in PEAK_BF16:
        if key in name:
            return flops
    return None


def disagreement(what: str, got: torch.Tensor, want: torch.Tensor, atol: float, rtol: float) -> str | None:
    """None when ``got`` (any device) equals ``want`` within ``atol + rtol * |want|``, else a message."""
    got, want = got.detach().float().cpu(), want.detach().float().cpu()
    if got.shape != want.shape:
        return f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    err = (got - want).abs()
    if bool((err <= atol + rtol * want.abs()).all()):
        return None
    return f"{what}: max abs difference {err.max().item():.3g} (atol {atol}, rtol {rtol})"


def _bench_args(device: str, **kw: Any) -> SimpleNamespace:
    """The fields ``bench_model.build_model`` / ``make_stream`` read (bench_model's defaults)."""
    defaults = {
        "backbone": "llama",
        "hidden": 32,
        "layers": 2,
        "heads": 4,
        "kv_heads": 2,
        "intermediate": 64,
        "attn": "sdpa",
        "num_actions": 5,
        "obs_discrete": 64,
        "concat": False,
        "compute_tokens": 0,
        "head_layers": 1,
        "device": device,
    }
    return SimpleNamespace(**{**defaults, **kw})


def _loss_and_grads(model: torch.nn.Module, td: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    import bench_model

    loss_fn, _ = bench_model.losses()
    model.zero_grad(set_to_none=True)
    out, _ = model(td)
    loss = loss_fn(td, out)
    loss.backward()
    return loss.detach(), {k: p.grad for k, p in model.named_parameters() if p.grad is not None}


def check_cpu_vs_device(device: str, atol: float = 1e-5, rtol: float = 1e-4) -> list[str]:
    """Check 1: the same tiny model and batch on CPU and on ``device`` (fp32): loss and gradients agree.

    Returns the failures (empty when everything agrees).
    """
    import bench_model

    torch.manual_seed(0)
    cpu_model = bench_model.build_model(_bench_args("cpu"))
    dev_model = copy.deepcopy(cpu_model).to(device)
    td = bench_model.make_stream(_bench_args("cpu"), 4, 24)
    failures = []
    for fast in (True, False):
        path = "fast path" if fast else "transformers path"
        cpu_model.use_fast_path = dev_model.use_fast_path = fast
        cpu_loss, cpu_grads = _loss_and_grads(cpu_model, td)
        dev_loss, dev_grads = _loss_and_grads(dev_model, td.to(device))
        failures.append(disagreement(f"{path} loss", dev_loss, cpu_loss, atol, rtol))
        for name, grad in cpu_grads.items():
            failures.append(disagreement(f"{path} grad {name}", dev_grads[name], grad, atol, rtol))
        print(
            f"  {path}: loss cpu {cpu_loss.item():.6f} {device} {dev_loss.item():.6f}; "
            f"{len(cpu_grads)} gradients compared"
        )
    return [f for f in failures if f]


def check_kv_cache(device: str, atol: float = 1e-5, rtol: float = 1e-4) -> list[str]:
    """Check 2: decoding one step at a time with the KV cache equals the full forward on ``device``."""
    import bench_model

    torch.manual_seed(0)
    model = bench_model.build_model(_bench_args(device)).eval()
    steps = 24
    td = bench_model.make_stream(_bench_args(device), 4, steps)
    with torch.no_grad():
        full, _ = model(td)
        cache, parts = None, []
        for t in range(steps):
            out, cache = model(td[:, t : t + 1], cache=cache, use_cache=True)
            parts.append(out)
    failures = []
    for key in full.keys():
        decoded = torch.cat([p[key] for p in parts], dim=1)
        failures.append(disagreement(f"KV-cache decoding {key}", decoded, full[key], atol, rtol))
        print(f"  {key}: max |cached - full| = {(decoded - full[key]).abs().max().item():.3g}")
    return [f for f in failures if f]


def _train(overrides: list[str], run_dir: Path) -> tuple[dict[int, float], Any]:
    """Run the mouse-train ``Trainer`` in-process on ``TINY_TRAIN + overrides``: (step → loss, trainer)."""
    from hydra import compose, initialize_config_module

    from mouse.cli.common import to_config
    from mouse.train.config import TrainConfig, register_configs
    from mouse.train.trainer import Trainer

    register_configs()
    with initialize_config_module(config_module="mouse.conf", version_base=None):
        cfg = to_config(compose(config_name="train", overrides=[*TINY_TRAIN, *overrides]), TrainConfig)
    trainer = Trainer(cfg, run_dir)
    trainer.run()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}, trainer


def check_training(device: str, compile_: bool) -> list[str]:
    """Check 3: tiny mouse-train runs on CPU and ``device``: fp32 losses agree; bf16 autocast (+ gradient
    checkpointing) keeps fp32 weights and stays within bf16 tolerance; optionally trainer.compile."""
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MOUSE_CACHE_DIR"] = str(Path(tmp) / "datasets")
        cpu, _ = _train(["trainer.device=cpu"], Path(tmp) / "cpu")
        runs = {
            "fp32": (["trainer.precision=fp32"], 1e-4),
            "bf16 + checkpointing": (["trainer.precision=bf16", "model.gradient_checkpointing=true"], 5e-2),
        }
        if compile_:
            runs["bf16 + compile"] = (["trainer.precision=bf16", "trainer.compile=true"], 5e-2)
        for name, (overrides, rtol) in runs.items():
            t0 = time.perf_counter()
            got, trainer = _train([f"trainer.device={device}", *overrides], Path(tmp) / name.replace(" ", ""))
            seconds = time.perf_counter() - t0
            print(
                f"  {name}: losses {[round(v, 5) for v in got.values()]} vs cpu fp32 "
                f"{[round(v, 5) for v in cpu.values()]} ({seconds:.1f} s)"
            )
            if sorted(got) != sorted(cpu):
                failures.append(f"mouse-train {name}: steps {sorted(got)} != {sorted(cpu)}")
                continue
            failures.append(
                disagreement(
                    f"mouse-train {name} losses",
                    torch.tensor(list(got.values())),
                    torch.tensor(list(cpu.values())),
                    atol=1e-5,
                    rtol=rtol,
                )
            )
            dtypes = {p.dtype for p in trainer.model.parameters()}
            if dtypes != {torch.float32}:
                failures.append(f"mouse-train {name}: parameters are {dtypes}, not float32 master weights")
            if next(trainer.model.parameters()).device.type != torch.device(device).type:
                failures.append(f"mouse-train {name}: the model is not on {device}")
    return [f for f in failures if f]


def matmul_bf16_rate(device: str, n: int = 8192, repeats: int = 10) -> float:
    """Best measured FLOP/s of an ``n x n x n`` bf16 matmul on ``device``."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    torch.mm(a, b)
    best = math.inf
    for _ in range(repeats):
        torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def _train_step(model: torch.nn.Module, td: Any) -> Any:
    """A benchmark train step on ``td``: bf16 autocast forward (fp32 weights), sp + dqn losses,
    backward, fused AdamW, Polyak update."""
    import bench_model

    loss_fn, _ = bench_model.losses()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out, _ = model(td)
        loss = loss_fn(td, out.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.polyak_update(dqn_tau=0.01)

    return step


def benchmark(args: argparse.Namespace) -> None:
    """Check 4: bf16 train-step throughput and MFU, then the long-context memory with/without
    gradient checkpointing."""
    from torch.utils.flop_counter import FlopCounterMode

    import bench_model

    device = args.device
    name = torch.cuda.get_device_name(device)
    measured = matmul_bf16_rate(device)
    peak = peak_bf16(name)
    if peak is None:
        print(f"  {name!r} is not in PEAK_BF16: MFU below is against the measured bf16 matmul rate")
        peak = measured
    else:
        print(f"  peak dense bf16 {peak / 1e12:.0f} TFLOP/s (datasheet, {name})")
    print(
        f"  measured bf16 matmul 8192^3: {measured / 1e12:.0f} TFLOP/s ({measured / peak:.0%} of that peak)"
    )

    bargs = _bench_args(
        device,
        hidden=args.hidden,
        layers=args.layers,
        heads=args.heads,
        kv_heads=args.heads,
        intermediate=4 * args.hidden,
        head_layers=2,
    )
    torch.manual_seed(0)
    model = bench_model.build_model(bargs).train()
    td = bench_model.make_stream(bargs, args.batch, args.seq)
    step = _train_step(model, td)
    model.use_fast_path = False  # FLOPs of the reference forward (as bench_model counts them)
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    model.use_fast_path = True
    best, median = bench_model.timed(step, args.bench_steps, device)
    tokens = args.batch * args.seq * model.tokens_per_step
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(
        f"  train step d={args.hidden} L={args.layers} B={args.batch} S={args.seq} ({params:.1f}M params, "
        f"bf16 autocast): {1 / median:.2f} steps/s, {tokens / median:,.0f} tokens/s (median of "
        f"{args.bench_steps}; best {1 / best:.2f}), {flops / 1e12:.2f} TFLOP/step, "
        f"MFU {flops / median / peak:.1%} (best {flops / best / peak:.1%})"
    )
    del model, td, step
    if args.long_seq:
        long_args = _bench_args(
            device, hidden=512, layers=8, heads=8, kv_heads=8, intermediate=2048, head_layers=2
        )
        for checkpointing in (False, True):
            torch.manual_seed(0)
            model = bench_model.build_model(long_args).train()
            model.set_gradient_checkpointing(checkpointing)
            step = _train_step(model, bench_model.make_stream(long_args, 1, args.long_seq))
            step()  # optimizer state allocated
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            times = []
            for _ in range(3):
                torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                step()
                torch.cuda.synchronize(device)
                times.append(time.perf_counter() - t0)
            peak_mem = torch.cuda.max_memory_allocated(device) / 2**20
            print(
                f"  seq_len={args.long_seq} d=512 L=8 B=1 bf16, gradient checkpointing "
                f"{'on ' if checkpointing else 'off'}: peak CUDA memory {peak_mem:,.0f} MiB, "
                f"{statistics.median(times) * 1e3:.1f} ms/step"
            )
            del model, step


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print(
            f"gpu_check: no CUDA device found (torch {torch.__version__}, CUDA build "
            f"{torch.version.cuda or 'none'}); nothing to check"
        )
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 in the agreement checks
    torch.backends.cudnn.allow_tf32 = False
    device = args.device
    props = torch.cuda.get_device_properties(device)
    print(
        f"gpu_check: {device} = {props.name} ({props.total_memory / 2**30:.0f} GiB, "
        f"sm_{props.major}{props.minor}), torch {torch.__version__}, CUDA {torch.version.cuda}"
    )
    failures: list[str] = []
    checks = [
        ("1. CPU vs CUDA loss and gradients (fp32)", lambda: check_cpu_vs_device(device)),
        ("2. KV-cache decoding = full forward on CUDA (fp32)", lambda: check_kv_cache(device)),
    ]
    if not args.skip_train:
        checks.append(("3. mouse-train on CUDA", lambda: check_training(device, args.compile)))
    for title, check in checks:
        print(title)
        found = check()
        failures += found
        print("  ok" if not found else "  FAILED:\n    " + "\n    ".join(found))
    print("4. benchmark")
    benchmark(args)
    print(f"gpu_check: {'all checks passed' if not failures else f'{len(failures)} check(s) FAILED'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
