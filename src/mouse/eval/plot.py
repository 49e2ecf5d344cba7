"""The in-context learning-curve plot: mean return per episode index for model, teacher, oracle, random."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window (also safe on headless machines and in tests)
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {
    "model": ("tab:blue", "model"),
    "teacher": ("tab:orange", "teacher"),
    "oracle": ("tab:green", "oracle"),
    "random": ("tab:gray", "random"),
}
ORACLE_LABELS = {"q_star": "oracle (greedy on Q*)", "reference": "oracle (reference return)"}


def plot_curves(result: Any, path: str | Path) -> Path:
    """Write a PNG of the mean-return curves (model, teacher, oracle, random: those present) with 95% CI bands to ``path``; returns the path.

    ``result`` is an :class:`mouse.eval.EvalResult`; the title carries the family, split, run count and
    the mean normalised score over all episodes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    episodes = list(range(1, result.episodes + 1))
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    try:
        for who in result.who:
            color, label = STYLE[who]
            if who == "oracle":
                label = ORACLE_LABELS.get(result.oracle, label)
            elif who == "teacher" and result.teacher:
                label = f"teacher ({result.teacher})"
            c = result.curve(who)
            ax.plot(episodes, c.mean, marker="o", ms=3, color=color, label=label)
            ax.fill_between(episodes, c.lower, c.upper, color=color, alpha=0.2, linewidth=0)
        ax.set_xlabel("episode in context")
        ax.set_ylabel("return (mean, 95% CI)")
        ax.set_xticks(episodes)
        n = len(result.runs)
        ax.set_title(
            f"{result.family} {result.split} tasks: {len(result.task_ids)} tasks x {result.seeds} seeds ({n} runs), "
            f"score {result.score_mean:.2f}"
            if result.normalized
            else "raw returns (no oracle reference)",
            fontsize=9,
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path
