"""Benchmark `WindowLoader` on a collected Dark Room dataset against the model's batch consumption.

    python scripts/bench_data.py                     # 200 tasks x 400 steps, B=64 S=128 and B=16 S=64
    python scripts/bench_data.py --no-model --model-steps-per-s 20

Prints windows/s and records/s of the loader (gather in the calling thread, and through the prefetch
thread) at B=64, S=128 and at the model benchmark's B=16, S=64, then the rate at which the foundation's
benchmark model (Llama hidden 128, 4 layers, 4 heads, intermediate 512, B=16, S=64) consumes batches
in train steps (forward, cross-entropy on the sp head, backward, AdamW), and the ratio (target >= 50x).
The dataset is collected once and cached by `mouse.data.ensure_dataset`.
"""

from __future__ import annotations

import argparse
import time

import torch

from mouse.data import WindowLoader, ensure_dataset, load_dataset


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-tasks", type=int, default=200)
    p.add_argument("--steps-per-task", type=int, default=400)
    p.add_argument("--policy", default="explorer")
    p.add_argument("--cache-dir", default=None, help="default: $MOUSE_CACHE_DIR or ~/.cache/mouse")
    p.add_argument("--seconds", type=float, default=2.0, help="time per loader measurement")
    p.add_argument("--sampling", default="random", choices=["random", "sequential"])
    p.add_argument("--threads", type=int, default=1, help="torch threads for the model measurement")
    p.add_argument("--model-steps", type=int, default=10, help="timed model train steps")
    p.add_argument("--no-model", action="store_true", help="skip the model; use --model-steps-per-s")
    p.add_argument("--model-steps-per-s", type=float, default=20.0)
    return p.parse_args()


def loader_rate(dataset, batch: int, seq: int, prefetch: int, seconds: float, sampling: str) -> float:
    """Batches per second handed out by a WindowLoader (after 5 warm-up batches)."""
    with WindowLoader(dataset, batch, seq, sampling=sampling, seed=0, prefetch=prefetch) as loader:
        it = iter(loader)
        for _ in range(5):
            next(it)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            next(it)
            n += 1
        return n / (time.perf_counter() - start)


def model_rate(dataset, steps: int) -> float:
    """Train steps per second of the foundation benchmark model on B=16, S=64 windows."""
    from mouse.models import ModelLlama

    backbone = {
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "intermediate_size": 512,
        "max_position_embeddings": 8192,
    }
    model = ModelLlama(
        hidden_dim=128,
        backbone_kwargs=backbone,
        embedding_kwargs=dataset.spec.embedding_kwargs(),
        sp_head_kwargs={"num_layers": 2},
        action_head="sp",
    )
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
    with WindowLoader(dataset, 16, 64, seed=0, prefetch=2) as loader:
        it = iter(loader)

        def step() -> None:
            batch = next(it)
            out, _ = model(batch)
            q = batch["q_star"]
            acting = torch.isfinite(q).any(-1)
            target = torch.where(acting, q.argmax(-1), torch.full_like(batch["action"], -100))
            loss = torch.nn.functional.cross_entropy(
                out["sp"].flatten(0, 1), target.flatten(), ignore_index=-100
            )
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()

        for _ in range(2):
            step()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        return steps / (time.perf_counter() - start)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    cfg = {
        "task": {"name": "darkroom"},
        "policy": {"name": args.policy},
        "num_tasks": args.num_tasks,
        "steps_per_task": args.steps_per_task,
        "show_progress": False,
    }
    start = time.perf_counter()
    path = ensure_dataset(cfg, cache_dir=args.cache_dir)
    dataset = load_dataset(path)
    print(f"dataset {path}: {dataset.num_streams} streams, {dataset.num_records} records "
          f"(ready in {time.perf_counter() - start:.1f} s)")  # fmt: skip
    rates = {}
    for batch, seq in ((64, 128), (16, 64)):
        for prefetch in (0, 2):
            r = loader_rate(dataset, batch, seq, prefetch, args.seconds, args.sampling)
            rates[(batch, seq, prefetch)] = r
            print(
                f"loader B={batch:3d} S={seq:3d} prefetch={prefetch}: {r:8.0f} batches/s "
                f"{r * batch:10.0f} windows/s {r * batch * seq / 1e6:8.2f} M records/s"
            )
    if args.no_model:
        consume, how = args.model_steps_per_s, "assumed (--model-steps-per-s)"
    else:
        consume, how = model_rate(dataset, args.model_steps), f"measured, {args.threads} thread(s)"
    supply = rates[(16, 64, 2)]
    print(f"model (Llama h128 L4, B=16 S=64) consumes {consume:.1f} batches/s ({how})")
    print(f"loader/model at B=16 S=64 through the prefetch thread: {supply / consume:.0f}x (target >= 50x)")


if __name__ == "__main__":
    main()
