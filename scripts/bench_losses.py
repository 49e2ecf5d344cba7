"""Time forward + backward of every MOUSE loss on hand-made model outputs.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_losses.py            # B=64, S=128, A=18, CPU
    .venv/bin/python scripts/bench_losses.py --device cuda --repeats 50

Prints one line per loss (and per sp loss_type): median milliseconds of forward + backward, then
the ratios vec_dqn / dqn and two-hot / symlog-MSE value loss.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from tensordict import TensorDict

from mouse.losses import LOSSES
from mouse.losses.sp import SP_LOSS_TYPES, SpLossConfig


def make_batch(b: int, s: int, a: int, d: int, bins: int, device: str) -> tuple[TensorDict, TensorDict]:
    """A random step stream with episode ends every 16 steps and matching model outputs."""
    g = torch.Generator().manual_seed(0)
    done = torch.zeros(b, s, dtype=torch.long)
    done[:, 15::16] = 1
    q_star = torch.randn(b, s, a, generator=g)
    q_star[done != 0] = -torch.inf
    stream = TensorDict(
        action=torch.randint(0, a, (b, s), generator=g),
        reward=torch.randn(b, s, generator=g),
        done=done,
        time=torch.zeros(b, s, dtype=torch.long),
        q_star=q_star,
        behavior_logits=torch.randn(b, s, a, generator=g),
        teacher_logits=torch.randn(b, s, a, generator=g),
        batch_size=[b, s],
    ).to(device)
    out = TensorDict(
        sp=torch.randn(b, s, a, generator=g),
        dqn=torch.randn(b, s, a, generator=g),
        dqn_target=torch.randn(b, s, a, generator=g),
        vec_dqn=torch.randn(b, s, a, d, generator=g),
        vec_dqn_target=torch.randn(b, s, a, d, generator=g),
        sv=torch.randn(b, s, a, generator=g),
        value=torch.randn(b, s, generator=g),
        batch_size=[b, s],
    ).to(device)
    two_hot = torch.randn(b, s, bins, generator=g).to(device)
    return stream, out.set("value_bins", two_hot)


def time_it(fn, repeats: int, device: str) -> float:
    """Median wall-clock milliseconds of ``fn()`` after two warm-up calls."""
    times = []
    for i in range(repeats + 2):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= 2:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--actions", type=int, default=18)
    parser.add_argument("--vec-dim", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    stream, out = make_batch(args.batch, args.seq, args.actions, args.vec_dim, 255, args.device)

    cases = [(name, spec, spec.config_cls(weight=1.0), {}) for name, spec in LOSSES.items()]
    cases += [
        (f"sp[{t}]", LOSSES["sp"], SpLossConfig(weight=1.0, loss_type=t), {}) for t in SP_LOSS_TYPES[1:]
    ]
    cases.append(
        ("sp[teacher,js]", LOSSES["sp"], SpLossConfig(weight=1.0, loss_type="js", target="teacher"), {})
    )
    value_cfg = LOSSES["value"].config_cls(weight=1.0, loss_type="two_hot")
    cases.append(("value[two_hot]", LOSSES["value"], value_cfg, {"value": "value_bins"}))

    print(
        f"B={args.batch} S={args.seq} A={args.actions} D={args.vec_dim} device={args.device} "
        f"threads={torch.get_num_threads()} torch={torch.__version__}"
    )
    medians: dict[str, float] = {}
    for label, spec, cfg, remap in cases:
        leaves = {k: out[k].detach().clone().requires_grad_(True) for k in out.keys()}
        for dst, src in remap.items():
            leaves[dst] = leaves[src]
        model_out = TensorDict(leaves, batch_size=out.batch_size)

        def step(spec=spec, cfg=cfg, model_out=model_out):
            loss, _ = spec.compute(stream, model_out, cfg)
            loss.backward()

        medians[label] = time_it(step, args.repeats, args.device)
        print(f"{label:>18s}: {medians[label]:8.2f} ms (forward + backward + metrics)")
    print(
        f"ratios: vec_dqn / dqn = {medians['vec_dqn'] / medians['dqn']:.1f}, "
        f"value[two_hot] / value (symlog-MSE) = {medians['value[two_hot]'] / medians['value']:.1f}"
    )


if __name__ == "__main__":
    main()
