"""`make bench-online [TASK=darkroom]`: train online from the model's own experience, then evaluate in
context on held-out tasks beside reference policies on the same tasks and seeds.

    python scripts/bench_online.py                          # bandit: experiment=online_bandit, V-trace
    python scripts/bench_online.py --steps 300 mode.overlap=true   # any mouse-train override
    python scripts/bench_online.py --task darkroom --init outputs/bench_icrl/<run>/train   # fine-tune
    python scripts/bench_online.py --smoke                  # a seconds-long plumbing check

bandit (5-armed Bernoulli, 100 pulls): trains ``experiment=online_bandit`` with the ``mouse-train``
console script, evaluates the first episode on every held-out task x ``--seeds`` and runs Thompson
sampling and UCB on the same runs. Last line exactly
``online: task=bandit score_ep1=<a> thompson=<b> ucb=<c> minutes=<m>`` (normalised scores; minutes =
total wall clock, training and evaluation).

darkroom (9x9, 10 episodes): rows ``scratch-vtrace`` and ``scratch-dqn`` (``experiment=online_darkroom``
from scratch), then the distilled start (``--init``: a ``make bench-icrl`` run dir or checkpoint; without
it the default recipe is trained first, ``--icrl-steps`` steps) evaluated as is and fine-tuned online
(``experiment=online_darkroom_finetune trainer.init_from=<it>``), all on the same held-out goals and
seeds. Its last two lines are exactly ``start: score_ep1_3=<x> score_ep4_10=<y>`` and
``online: task=darkroom score_ep1_3=<a> score_ep4_10=<b> minutes=<m>``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

SMOKE = [
    "trainer.steps=2",
    "mode.num_envs=8",
    "trainer.batch_size=4",
    "mode.replay_capacity=16",
    "model.hidden_dim=16",
    "backbone.num_hidden_layers=1",
    "backbone.num_attention_heads=2",
    "backbone.num_key_value_heads=2",
    "backbone.intermediate_size=32",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("overrides", nargs="*", help="extra mouse-train Hydra overrides (key=value)")
    p.add_argument("--task", default="bandit", choices=("bandit", "darkroom"))
    p.add_argument("--steps", type=int, default=None, help="trainer.steps (default: the experiment's)")
    p.add_argument("--seeds", type=int, default=4, help="env/sampling seeds per held-out task (default 4)")
    p.add_argument("--num-tasks", type=int, default=None, help="held-out tasks to evaluate (default: all)")
    p.add_argument("--init", type=Path, default=None, help="darkroom: the distilled run dir or checkpoint")
    p.add_argument("--icrl-steps", type=int, default=1800, help="darkroom without --init: distillation steps")
    p.add_argument("--rows", default="scratch-vtrace,scratch-dqn", help="darkroom: from-scratch rows to run")
    p.add_argument("--out", type=Path, default=None, help="default: outputs/bench_online/<date>_<time>")
    p.add_argument("--smoke", action="store_true", help="tiny model and steps: checks the plumbing only")
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.steps is not None and args.steps < 1:
        p.error(f"--steps must be >= 1, got {args.steps}")
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        p.error(f"overrides must look like key=value, got {bad}")
    return args


def _console(name: str) -> list[str]:
    script = Path(sys.executable).parent / name
    return [str(script)] if script.exists() else [sys.executable, "-m", f"mouse.cli.{name.split('-')[1]}"]


def train(overrides: list[str], run_dir: Path) -> Path:
    """Run the ``mouse-train`` console script; return the run's last checkpoint."""
    cmd = [
        *_console("mouse-train"),
        *overrides,
        "logger=none",
        "trainer.eval_num_tasks=0",
        f"hydra.run.dir={run_dir}",
    ]
    print(f"[bench] train: {' '.join(cmd)}", flush=True)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline")})
    print(f"[bench] train: {time.perf_counter() - t:.0f} s", flush=True)
    return run_dir / "checkpoints" / "last"


def checkpoint_of(path: Path) -> Path:
    """A checkpoint folder from a run dir (its ``checkpoints/last``), a bench-icrl out dir (``train/``) or
    the folder itself."""
    for candidate in (path, path / "checkpoints" / "last", path / "train" / "checkpoints" / "last"):
        if (candidate / "config.json").exists():
            return candidate
    raise SystemExit(
        f"--init {path}: no checkpoint there (expected config.json in it or in checkpoints/last)"
    )


def held_out(checkpoint: Path, num_tasks: int | None) -> tuple[object, object, list[int]]:
    from mouse.checkpoint_io import read_dataset_spec
    from mouse.data.spec import DatasetSpec
    from mouse.models import load_model
    from mouse.tasks import make_family

    model = load_model(str(checkpoint))
    spec = DatasetSpec.from_dict(read_dataset_spec(checkpoint))
    family = make_family(spec.task_family, **dict(spec.task_params))
    ids = [int(i) for i in spec.test_task_ids][: num_tasks or None]
    return model, family, ids


def model_scores(
    checkpoint: Path,
    args: argparse.Namespace,
    episodes: int,
    teacher: object = None,
    temperature: float = 1.0,
):
    """The normalised score curve [E] of the checkpoint's model (sampled at temperature 1, its acting
    distribution) and, with ``teacher``, of that policy on the same runs."""
    from mouse.eval.evaluate import evaluate_model
    from mouse.eval.metrics import normalized_score

    model, family, ids = held_out(checkpoint, args.num_tasks)
    res = evaluate_model(
        model, family, ids, episodes, temperature=temperature, seeds=args.seeds, teacher=teacher
    )
    score = lambda who: normalized_score(res.returns[who], res.returns["oracle"], res.returns["random"])[0]  # noqa: E731
    return np.asarray(score("model")), (np.asarray(score("teacher")) if teacher is not None else None), family


def bench_bandit(args: argparse.Namespace, out: Path, start: float) -> None:
    from mouse.tasks import make_policy

    overrides = ["experiment=online_bandit", *(SMOKE if args.smoke else [])]
    if args.steps is not None:
        overrides.append(f"trainer.steps={args.steps}")
    ckpt = train([*overrides, *args.overrides], out / "train")
    t = time.perf_counter()
    _, family, _ = held_out(ckpt, args.num_tasks)
    model, thompson, _ = model_scores(ckpt, args, 1, teacher=make_policy("thompson", family))
    _, ucb, _ = model_scores(ckpt, args, 1, teacher=make_policy("ucb", family))
    greedy, _, _ = model_scores(ckpt, args, 1, temperature=0.0)
    print(f"model at temperature 0 (argmax of its policy): score_ep1={greedy[0]:.3f}")
    print(f"[bench] eval: {time.perf_counter() - t:.0f} s", flush=True)
    minutes = (time.perf_counter() - start) / 60
    print(
        f"online: task=bandit score_ep1={model[0]:.3f} thompson={thompson[0]:.3f} ucb={ucb[0]:.3f} minutes={minutes:.1f}"
    )


def _darkroom_line(scores: np.ndarray) -> str:
    return f"score_ep1_3={np.mean(scores[:3]):.3f} score_ep4_10={np.mean(scores[3:10]):.3f}"


def bench_darkroom(args: argparse.Namespace, out: Path, start: float) -> None:
    smoke = SMOKE if args.smoke else []
    steps = [f"trainer.steps={args.steps}"] if args.steps is not None else []
    rows = []
    for row in [r for r in args.rows.split(",") if r]:
        loss = {"scratch-vtrace": "", "scratch-dqn": "loss=dqn"}.get(row)
        if loss is None:
            raise SystemExit(f"--rows: unknown row {row!r}; choose from scratch-vtrace, scratch-dqn")
        extra = (
            [loss, "heads=dqn", "mode.temperature.end=0", "mode.epsilon.start=1", "mode.epsilon.end=0.05"]
            if loss
            else []
        )
        ckpt = train(["experiment=online_darkroom", *extra, *smoke, *steps, *args.overrides], out / row)
        scores, _, _ = model_scores(ckpt, args, 10)
        rows.append((row, scores))
        print(f"{row}: {_darkroom_line(scores)}", flush=True)
    t0 = time.perf_counter()
    if args.init is not None:
        init = checkpoint_of(args.init)
    else:
        icrl = [f"trainer.steps={args.icrl_steps}"] if not args.smoke else ["trainer.steps=2", *SMOKE[4:]]
        init = train([*icrl, "data.collect.show_progress=false"], out / "distill")
    minutes_distill = (time.perf_counter() - t0) / 60
    start_scores, _, _ = model_scores(init, args, 10)
    t1 = time.perf_counter()
    ckpt = train(
        [
            "experiment=online_darkroom_finetune",
            f"trainer.init_from={init.resolve()}",
            *(smoke[:4] if args.init is not None else smoke),  # --init: keep its architecture
            *steps,
            *args.overrides,
        ],
        out / "finetune",
    )
    tuned, _, _ = model_scores(ckpt, args, 10)
    minutes = (time.perf_counter() - t1) / 60
    print(
        f"[bench] distilled start: {init} ({minutes_distill:.1f} min); fine-tuning + eval {minutes:.1f} min"
    )
    for row, scores in rows:
        print(f"{row}: {_darkroom_line(scores)}")
    print(f"start: {_darkroom_line(start_scores)}")
    print(f"online: task=darkroom {_darkroom_line(tuned)} minutes={minutes:.1f}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    out = (
        args.out or Path("outputs/bench_online") / f"{args.task}_{datetime.now():%Y-%m-%d_%H-%M-%S}"
    ).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (bench_bandit if args.task == "bandit" else bench_darkroom)(args, out, start)


if __name__ == "__main__":
    main()
