"""Benchmark the MOUSE model on CPU/GPU: train-step throughput and MFU, KV-cache decoding.

    python scripts/bench_model.py                       # default: Llama h128 L4 H4 i512, B=16 S=64
    python scripts/bench_model.py --backbone qwen3 --threads 1 --decode-steps 32
    python scripts/bench_model.py --profile             # also print the top ops of a train step

Reports (1) the full train step (forward, sp + dqn losses, backward, AdamW, Polyak) in steps/s and
tokens/s, with MFU = achieved FLOP/s / the fp32 matmul rate measured here on the same machine
(FLOPs counted by ``torch.utils.flop_counter`` on one step); (2) decoding ``--decode-steps`` steps for
all B sequences with the KV cache and without it (re-running the whole prefix each step).
Best-of-N times are reported (with medians): on a shared machine they are the least disturbed.
Tip: glibc returns freed large blocks to the OS, so every step page-faults fresh activations;
``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=1073741824``
avoids that (a few % faster training on CPU).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from tensordict import TensorDict


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", choices=["llama", "qwen3", "none"], default="llama")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=None, help="default: --heads")
    p.add_argument("--intermediate", type=int, default=512)
    p.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=64, help="steps per sequence")
    p.add_argument("--num-actions", type=int, default=5)
    p.add_argument("--obs-discrete", type=int, default=64, help="obs_discrete table size; 0 = off")
    p.add_argument("--concat", action="store_true", help="concat mode (one token per modality)")
    p.add_argument("--compute-tokens", type=int, default=0)
    p.add_argument("--head-layers", type=int, default=2, help="SwiGLU blocks of the sp and dqn heads")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--train-steps", type=int, default=20, help="timed train steps (best is reported)")
    p.add_argument("--decode-steps", type=int, default=64)
    p.add_argument("--repeats", type=int, default=10, help="timed decode loops (best is reported)")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--all-heads", action="store_true", help="decode with every head, not just the acting one")
    p.add_argument("--reference", action="store_true", help="run the transformers forward, not the fast path")
    p.add_argument("--no-fused-adamw", action="store_true", help="for-loop AdamW instead of fused=True")
    return p.parse_args()


def build_model(args: argparse.Namespace):
    from mouse.models import ModelLlama, ModelNone, ModelQwen3

    backbone = {
        "num_hidden_layers": args.layers,
        "num_attention_heads": args.heads,
        "num_key_value_heads": args.kv_heads or args.heads,
        "intermediate_size": args.intermediate,
        "max_position_embeddings": 8192,
        "attn_implementation": args.attn,
    }
    cls = {"llama": ModelLlama, "qwen3": ModelQwen3, "none": ModelNone}[args.backbone]
    if args.backbone == "qwen3":
        backbone["head_dim"] = args.hidden // args.heads
    if args.backbone == "none":
        backbone = {}
    embedding = {
        "max_num_actions": args.num_actions,
        "max_num_time_steps": 1024,
        "include_obs_discrete": args.obs_discrete > 0,
        "max_num_obs_discrete": args.obs_discrete,
        "concat_modalities": args.concat,
        "num_compute_tokens": args.compute_tokens,
    }
    heads = {"num_layers": args.head_layers}
    return cls(
        hidden_dim=args.hidden, backbone_kwargs=backbone, embedding_kwargs=embedding,
        sp_head_kwargs=heads, dqn_head_kwargs=heads, sv_head_kwargs={}, vec_dqn_head_kwargs={},
        action_head="sp",
    ).to(args.device)  # fmt: skip


def make_stream(args: argparse.Namespace, B: int, S: int) -> TensorDict:
    g = torch.Generator().manual_seed(0)
    A = args.num_actions
    td = {
        "action": torch.randint(0, A, (B, S), generator=g),
        "reward": torch.rand(B, S, generator=g),
        "done": (torch.rand(B, S, generator=g) < 0.05).long(),
        "time": torch.randint(0, 100, (B, S), generator=g),
        "q_star": torch.randn(B, S, A, generator=g),
    }
    if args.obs_discrete:
        td["obs_discrete"] = torch.randint(0, args.obs_discrete, (B, S), generator=g)
    return TensorDict(td, batch_size=[B, S]).to(args.device)


def losses():
    """(sp, dqn) loss functions: the real ones when mouse.losses provides them, else stand-in sums."""
    try:
        from mouse.losses.dqn import DqnLossConfig, dqn_loss
        from mouse.losses.sp import SpLossConfig, sp_loss

        sp_cfg, dqn_cfg = SpLossConfig(weight=1.0), DqnLossConfig(weight=1.0)
        return (lambda td, out: sp_loss(td, out["sp"], sp_cfg)[0] + dqn_loss(td, out, dqn_cfg)[0]), "real"
    except ImportError:
        return (lambda td, out: out["sp"].square().mean() + out["dqn"].square().mean()), "stand-in"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, repeats: int, device: str) -> tuple[float, float]:
    """``(best, median)`` wall time of ``fn()`` over ``repeats`` runs after one warm-up run.

    The best run is the figure least disturbed by other processes on a shared machine.
    """
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def print_profile(fn) -> None:
    """Run ``fn()`` once under the CPU profiler and print its 25 ops with the most self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def matmul_rate(device: str, repeats: int) -> tuple[float, dict[str, float]]:
    """Best fp32 matmul FLOP/s over a few square and model-like shapes (best of ``repeats`` runs)."""
    rates = {}
    for m, k, n in [(1024, 1024, 1024), (2048, 2048, 2048), (1024, 128, 512), (1024, 512, 128)]:
        a, b = torch.randn(m, k, device=device), torch.randn(k, n, device=device)
        reps = max(1, int(2e8 / (2 * m * k * n)))

        def run(a=a, b=b, reps=reps):
            for _ in range(reps):
                torch.mm(a, b)

        rates[f"{m}x{k}x{n}"] = 2 * m * k * n * reps / timed(run, repeats, device)[0]
    return max(rates.values()), rates


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args)
    loss_fn, loss_kind = losses()
    model.use_fast_path = not args.reference
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=not args.no_fused_adamw)
    td = make_stream(args, args.batch, args.seq)
    tokens = args.batch * args.seq * model.tokens_per_step
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(
        f"config: {args.backbone} hidden={args.hidden} layers={args.layers} heads={args.heads} "
        f"intermediate={args.intermediate} attn={args.attn} B={args.batch} S={args.seq} "
        f"tokens/step={model.tokens_per_step} threads={args.threads} device={args.device} "
        f"trainable params={n_params / 1e6:.2f}M losses={loss_kind} "
        f"path={'transformers' if args.reference else 'fast'} adamw_fused={not args.no_fused_adamw}"
    )

    def train_step():
        out, _ = model(td)
        loss = loss_fn(td, out)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.polyak_update(dqn_tau=0.01)

    model.train()
    from torch.utils.flop_counter import FlopCounterMode

    # Model FLOPs are counted on the reference (transformers) forward, so that implementation tricks
    # of the fast path cannot change the MFU numerator.
    model.use_fast_path = False
    with FlopCounterMode(display=False) as counter:
        train_step()
    flops = counter.get_total_flops()
    model.use_fast_path = not args.reference

    (t, t_med), (peak, rates) = timed(train_step, args.train_steps, args.device), matmul_rate(args.device, 10)
    print(
        f"fp32 matmul rate: peak {peak / 1e9:.1f} GFLOP/s  ({', '.join(f'{k}: {v / 1e9:.1f}' for k, v in rates.items())})"
    )
    print(
        f"train step (best of {args.train_steps}): {1 / t:.2f} steps/s, {tokens / t:,.0f} tokens/s, "
        f"{t * 1e3:.2f} ms/step (median {t_med * 1e3:.2f}), {flops / 1e9:.3f} GFLOP/step, "
        f"{flops / t / 1e9:.1f} GFLOP/s, MFU {flops / t / peak:.1%} (median {flops / t_med / peak:.1%})"
    )
    if args.profile:
        print_profile(train_step)

    # ---- decoding: one forward acts for all B sequences
    model.eval()
    n = args.decode_steps
    # Acting reads one head: skip the target heads and (unless --all-heads) the other heads.
    act_kw = {"compute_targets": False, "heads": None if args.all_heads else (model.action_head,)}
    dec = make_stream(args, args.batch, n)

    @torch.no_grad()
    def decode_cached():
        cache = None
        for t in range(n):
            out, cache = model(dec[:, t : t + 1], cache=cache, use_cache=True, **act_kw)
            model.get_action(out, temperature=1.0)

    @torch.no_grad()
    def decode_nocache():
        for t in range(n):
            out, _ = model(dec[:, : t + 1], **act_kw)
            model.get_action(out, temperature=1.0)

    (t_kv, t_kv_med), (t_full, _) = (
        timed(decode_cached, args.repeats, args.device),
        timed(decode_nocache, 2, args.device),
    )
    print(
        f"decode {n} steps x B={args.batch} (best of {args.repeats}): KV cache {n / t_kv:,.0f} steps/s "
        f"({t_kv / n * 1e3:.3f} ms/step, median {n / t_kv_med:,.0f} steps/s), no cache {n / t_full:,.0f} "
        f"steps/s; speed-up {t_full / t_kv:.1f}x"
    )
    if args.profile:
        print_profile(decode_cached)


if __name__ == "__main__":
    main()
