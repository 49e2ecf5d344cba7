"""Peak memory and step time of long-context training on CPU, with and without gradient checkpointing.

    python scripts/bench_memory.py                       # seq_len=4096, d=512, 8 layers, batch 1
    python scripts/bench_memory.py --seq-len 2048 --steps 2 --threads 2

Each setting runs in a fresh subprocess (peak RSS is per process and never goes down): build the
Llama model (one token per step, sp + dqn heads of 2 blocks, d=512, 8 heads, SwiGLU width 4d), then
train steps (forward, sp + dqn losses, backward, AdamW, Polyak) on one window of ``--seq-len``
records. Reported: the peak resident memory of the process (``resource.getrusage`` ``ru_maxrss``:
tensors live in malloc'd memory, which tracemalloc does not see), the resident memory before the
first step (model + data), and the median step time over ``--steps`` steps after one warm-up step.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_model: the benchmark model and stream


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seq-len", type=int, default=4096, help="records per window (1 token each)")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up step)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--child", choices=["off", "on"], help=argparse.SUPPRESS)  # one setting, JSON out
    return p.parse_args(argv)


def _rss_mib() -> float:
    """The current resident memory of this process in MiB (Linux /proc)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_setting(args: argparse.Namespace, checkpointing: bool) -> dict[str, float]:
    """Train ``args.steps + 1`` steps in this process; returns the measurements (MiB, seconds)."""
    import bench_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    margs = argparse.Namespace(
        backbone="llama", hidden=args.hidden, layers=args.layers, heads=args.heads, kv_heads=args.heads,
        intermediate=4 * args.hidden, attn="sdpa", num_actions=5, obs_discrete=64, concat=False,
        compute_tokens=0, head_layers=2, device="cpu",
    )  # fmt: skip
    model = bench_model.build_model(margs).train()
    model.set_gradient_checkpointing(checkpointing)
    loss_fn, _ = bench_model.losses()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    td = bench_model.make_stream(margs, 1, args.seq_len)
    before = _rss_mib()

    def step() -> None:
        out, _ = model(td)
        loss = loss_fn(td, out)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.polyak_update(dqn_tau=0.01)

    step()  # warm-up (allocates the AdamW state)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {
        "peak_rss_mib": _peak_rss_mib(),
        "rss_before_mib": before,
        "step_s": statistics.median(times),
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child is not None:
        print(json.dumps(run_setting(args, checkpointing=args.child == "on")))
        return
    forwarded = [
        f"--seq-len={args.seq_len}", f"--hidden={args.hidden}", f"--layers={args.layers}",
        f"--heads={args.heads}", f"--steps={args.steps}", f"--threads={args.threads}",
    ]  # fmt: skip
    print(
        f"config: llama d={args.hidden} layers={args.layers} heads={args.heads} seq_len={args.seq_len} "
        f"batch=1 (1 token/step) threads={args.threads}; median of {args.steps} steps after 1 warm-up"
    )
    results = {}
    for setting in ("off", "on"):
        done = subprocess.run(
            [sys.executable, __file__, *forwarded, f"--child={setting}"], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"bench_memory: the checkpointing={setting} run failed:\n{done.stderr[-3000:]}")
        results[setting] = r = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"gradient checkpointing {setting:>3}: peak RSS {r['peak_rss_mib']:,.0f} MiB "
            f"(before the first step {r['rss_before_mib']:,.0f} MiB; {r['params_m']:.1f}M params), "
            f"{r['step_s']:.2f} s/step"
        )
    off, on = results["off"], results["on"]
    print(
        f"checkpointing: peak RSS x{on['peak_rss_mib'] / off['peak_rss_mib']:.2f} "
        f"({on['peak_rss_mib'] - off['peak_rss_mib']:+,.0f} MiB), step time x{on['step_s'] / off['step_s']:.2f}"
    )


if __name__ == "__main__":
    main()
