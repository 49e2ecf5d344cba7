"""`make bench-icrl [TASK=keydoor]`: collect -> train -> evaluate in context on held-out tasks, timed.

    python scripts/bench_icrl.py                         # the default recipe, fresh data, all held-out goals
    python scripts/bench_icrl.py --task keydoor --steps 900 --num-tasks 256   # Dark Key-to-Door (data=keydoor)
    python scripts/bench_icrl.py --steps 400 optim.lr=2e-3 trainer.seq_len=160   # tune: Hydra overrides
    python scripts/bench_icrl.py --smoke                 # a seconds-long plumbing check (meaningless scores)

``--task NAME`` picks the recipe ``data=NAME`` (conf/data/NAME.yaml; default darkroom).

1. collect: ``mouse.data.ensure_dataset`` with the composed ``mouse-train`` config's ``data.collect``
   (its layout resolved from the family, ``mouse.train.config.resolve_layout``)
   (into ``<out>/datasets`` unless ``--cache-dir``: a fresh collection, so its time counts);
2. train: the ``mouse-train`` console script with the same overrides (run dir ``<out>/train``);
3. evaluate: ``mouse-eval``'s engine on the held-out tasks (all, or the first ``--num-tasks``) x ``--seeds``
   env seeds, ``--episodes`` each, with the dataset's teacher run beside the model
   (results.json, curves.png and the table in ``<out>/eval``).

The last line is exactly ``icrl: score_ep1=<a> score_ep2=<b> score_ep4_10=<c> minutes=<m>``
(score_ep4_10 = mean normalised score over episodes 4..10; minutes = total wall clock).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

SMOKE_OVERRIDES = [
    "data.collect.num_tasks=8",
    "data.collect.steps_per_task=60",
    "trainer.batch_size=2",
    "trainer.seq_len=24",
    "trainer.log_every=1",
    "model.hidden_dim=16",
    "backbone.num_hidden_layers=1",
    "backbone.intermediate_size=32",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("overrides", nargs="*", help="extra mouse-train Hydra overrides (key=value)")
    p.add_argument("--task", default="darkroom", help="the recipe: data=TASK (conf/data/TASK.yaml)")
    p.add_argument("--steps", type=int, default=None, help="trainer.steps (default: the recipe's)")
    p.add_argument("--episodes", type=int, default=10, help="episodes per held-out goal (default 10)")
    p.add_argument("--seeds", type=int, default=4, help="env/sampling seeds per goal (default 4)")
    p.add_argument("--num-tasks", type=int, default=None, help="held-out goals to evaluate (default: all)")
    p.add_argument("--temperature", type=float, default=None, help="default: trainer.eval_temperature")
    p.add_argument("--out", type=Path, default=None, help="default: outputs/bench_icrl/<date>_<time>")
    p.add_argument("--cache-dir", type=Path, default=None, help="reuse a dataset cache (default: fresh)")
    p.add_argument("--smoke", action="store_true", help="tiny data/model/steps: checks the plumbing only")
    args = p.parse_args(argv)
    for name in ("episodes", "seeds"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.steps is not None and args.steps < 1:
        p.error(f"--steps must be >= 1, got {args.steps}")
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        p.error(f"overrides must look like key=value, got {bad}")
    return args


def train_overrides(args: argparse.Namespace, cache_dir: Path) -> list[str]:
    """The mouse-train overrides of this bench: the user's, then the bench's own settings."""
    ours = [
        f"data={args.task}",
        f"data.cache_dir={cache_dir}",
        "trainer.eval_num_tasks=0",
    ]  # evaluates itself
    if not any(o.split("=", 1)[0].lstrip("+") == "logger" for o in args.overrides):
        ours.append("logger=none")
    if args.smoke:
        ours = [*SMOKE_OVERRIDES, "trainer.steps=2", *ours]
    if args.steps is not None:
        ours.append(f"trainer.steps={args.steps}")
    return [*ours, *args.overrides]


def compose_train(overrides: list[str]):
    """The typed ``TrainConfig`` mouse-train would run with these overrides."""
    from hydra import compose, initialize_config_module

    from mouse.cli.common import to_config
    from mouse.train.config import TrainConfig, register_configs, resolve_layout

    register_configs()
    with initialize_config_module(config_module="mouse.conf", version_base=None):
        return resolve_layout(to_config(compose(config_name="train", overrides=overrides), TrainConfig))


def _console(name: str) -> list[str]:
    script = Path(sys.executable).parent / name
    return [str(script)] if script.exists() else [sys.executable, "-m", f"mouse.cli.{name.split('-')[1]}"]


def main(argv: list[str] | None = None) -> float:
    args = parse_args(argv)
    start = time.perf_counter()
    out = args.out or Path("outputs/bench_icrl") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out = out.resolve()
    cache_dir = (args.cache_dir or out / "datasets").resolve()
    overrides = train_overrides(args, cache_dir)
    cfg = compose_train(overrides)  # fails fast on a misspelt override

    from mouse.data import ensure_dataset

    t = time.perf_counter()
    data_path = ensure_dataset(cfg.data.collect, cache_dir=cache_dir)
    print(f"[bench] data: {data_path} ({time.perf_counter() - t:.0f} s)", flush=True)

    t = time.perf_counter()
    train_dir = out / "train"
    cmd = [*_console("mouse-train"), *overrides, f"hydra.run.dir={train_dir}"]
    print(f"[bench] train: {' '.join(cmd)}", flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline")})
    print(f"[bench] train: {time.perf_counter() - t:.0f} s", flush=True)

    t = time.perf_counter()
    result = evaluate(args, cfg, train_dir, out / "eval")
    print(f"[bench] eval: {time.perf_counter() - t:.0f} s", flush=True)

    minutes = (time.perf_counter() - start) / 60.0
    if "teacher" in result.returns:  # the teacher on the same runs, in the same units
        print(curve_line("teacher", result, "teacher"))
    if not result.normalized:  # no oracle reference: raw mean returns instead of scores
        print(curve_line("returns", result, "model"))
    score = result.score[0]
    ep4_10 = result.score_over(4, 10) if result.episodes >= 4 else float("nan")
    print(
        f"icrl: score_ep1={score[0]:.3f} score_ep2={_at(score, 1):.3f} score_ep4_10={ep4_10:.3f} minutes={minutes:.1f}"
    )
    return ep4_10


def curve_line(label: str, result, who: str) -> str:
    """``<label>: ep1=.. ep2=.. ep4_10=..``: ``who``'s normalised score (raw mean return when the
    family gives no oracle reference) at episodes 1, 2 and averaged over 4..10."""
    import numpy as np

    if result.normalized:
        from mouse.eval.metrics import normalized_score

        values = normalized_score(result.returns[who], result.returns["oracle"], result.returns["random"])[0]
    else:
        values = result.curve(who).mean
    tail = float(np.mean(values[3:10])) if len(values) >= 4 else float("nan")
    kind = "score" if result.normalized else "return"
    return f"{label}: {kind}_ep1={values[0]:.3f} {kind}_ep2={_at(values, 1):.3f} {kind}_ep4_10={tail:.3f}"


def evaluate(args: argparse.Namespace, train_cfg, checkpoint: Path, output: Path):
    """mouse-eval's run() on the trained checkpoint: all held-out goals x seeds."""
    from hydra import compose, initialize_config_module

    from mouse.cli.common import to_config
    from mouse.eval.config import EvalConfig, register_configs
    from mouse.eval.run import run_eval

    temperature = args.temperature if args.temperature is not None else train_cfg.trainer.eval_temperature
    overrides = [
        f"checkpoint={checkpoint}",
        f"episodes={args.episodes}",
        f"seeds={args.seeds}",
        f"temperature={temperature}",
        f"output={output}",
    ]
    if args.num_tasks is not None:
        overrides.append(f"num_tasks={args.num_tasks}")
    register_configs()
    with initialize_config_module(config_module="mouse.conf", version_base=None):
        cfg = compose(config_name="eval", overrides=overrides)
    report = run_eval(to_config(cfg, EvalConfig), output)
    print(report.summary())
    return report.result


def _at(values: list[float], i: int) -> float:
    return values[i] if i < len(values) else float("nan")


if __name__ == "__main__":
    main()
