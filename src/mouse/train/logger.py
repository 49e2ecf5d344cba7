"""One small logger interface for metrics: W&B (offline by default), TensorBoard, or none.

Every logger takes flat ``{name: float}`` dicts with one global step as the x-axis (names grouped by
prefix: ``train/``, ``eval/``, ``optim/``, ``perf/``) and must be closed with :meth:`Logger.finish`
(the trainer calls it in a ``finally`` so sweep jobs never share a run). The trainer additionally
writes every logged dict to ``<run_dir>/metrics.jsonl`` (:class:`JsonlWriter`) whatever the backend.
W&B and TensorBoard are imported lazily, only when selected.
"""

from __future__ import annotations

import json
import math
import os
from enum import StrEnum
from pathlib import Path
from typing import Any

from mouse.train.config import LoggerKind, WandbMode

__all__ = [
    "Logger",
    "NoneLogger",
    "WandbLogger",
    "TensorBoardLogger",
    "JsonlWriter",
    "make_logger",
    "truncate_metrics",
]


def _choice(enum: type[StrEnum], value: str, key: str) -> StrEnum:
    """``value`` as a member of ``enum`` (the config's own enum); ValueError naming ``key`` otherwise."""
    try:
        return enum(value)
    except ValueError:
        raise ValueError(f"{key}={str(value)!r} is unknown; use one of {[m.value for m in enum]}") from None


class Logger:
    """Base logger: a no-op. Subclasses override :meth:`log` and :meth:`finish`.

    ``run_id`` identifies the backend run (stored in checkpoints so a resumed run continues it) and
    ``run_dir`` is where the backend writes its files (None when it writes none).
    """

    kind = "none"
    run_id: str | None = None
    run_dir: Path | None = None

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Record ``metrics`` (flat name → float) at global ``step``."""

    def finish(self) -> None:
        """Flush and close the run; safe to call twice."""


class NoneLogger(Logger):
    """Logs nothing (``logger=none``); metrics still reach ``metrics.jsonl``."""


class WandbLogger(Logger):
    """Weights & Biases through the ``wandb`` library; ``mode="offline"`` keeps the run files in
    ``<dir>/wandb/offline-run-*`` for a later ``wandb sync``. ``resume_id`` continues an earlier run."""

    kind = "wandb"

    def __init__(
        self,
        *,
        dir: str | Path,
        config: dict[str, Any],
        project: str,
        entity: str | None = None,
        mode: WandbMode | str = WandbMode.offline,
        group: str | None = None,
        name: str | None = None,
        tags: list[str] | None = None,
        resume_id: str | None = None,
    ) -> None:
        mode = _choice(WandbMode, mode, "logger.mode").value
        import wandb

        Path(dir).mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(
            dir=str(dir),
            config=config,
            project=project,
            entity=entity,
            mode=mode,
            group=group,
            name=name,
            tags=list(tags or []),
            id=resume_id,
            resume="allow" if resume_id else None,
            reinit="create_new",
        )
        self.run_id = self._run.id
        self.run_dir = Path(self._run.dir).parent  # .../wandb/offline-run-<date>-<id>
        self._finished = False

    def log(self, metrics: dict[str, float], step: int) -> None:
        self._run.log(dict(metrics), step=step)

    def finish(self) -> None:
        if not self._finished:
            self._finished = True
            self._run.finish()


class TensorBoardLogger(Logger):
    """TensorBoard event files under ``<dir>`` (view with ``tensorboard --logdir <dir>``)."""

    kind = "tensorboard"

    def __init__(self, *, dir: str | Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = Path(dir)
        self._writer = SummaryWriter(log_dir=str(self.run_dir))
        self._finished = False

    def log(self, metrics: dict[str, float], step: int) -> None:
        for name, value in metrics.items():
            self._writer.add_scalar(name, value, global_step=step)

    def finish(self) -> None:
        if not self._finished:
            self._finished = True
            self._writer.close()


class JsonlWriter:
    """Appends one JSON line ``{"step": N, **metrics}`` per call to ``path`` (flushed at once).

    Non-finite floats are written as the strings ``"nan"``, ``"inf"``, ``"-inf"`` so every line stays
    valid JSON.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, metrics: dict[str, float], step: int) -> None:
        row = {"step": step, **{k: _json_float(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def truncate_metrics(path: str | Path, after_step: int) -> int:
    """Keep only the lines of ``metrics.jsonl`` with ``step <= after_step`` (a resumed run computes what
    came after its checkpoint again) and drop a last line cut by a kill. Returns the number of lines
    dropped. The rewrite is atomic (a temporary file, then a rename)."""
    path = Path(path)
    if not path.exists():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = []
    for line in lines:
        try:
            step = json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):  # a line cut by a kill: dropped
            continue
        if step <= after_step:
            kept.append(line if line.endswith("\n") else line + "\n")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    os.replace(tmp, path)
    return len(lines) - len(kept)


def _json_float(value: float) -> float | str:
    value = float(value)
    return value if math.isfinite(value) else str(value)


def make_logger(
    kind: LoggerKind | str,
    *,
    run_dir: str | Path,
    config: dict[str, Any],
    project: str = "mouse",
    entity: str | None = None,
    mode: WandbMode | str = WandbMode.offline,
    group: str | None = None,
    name: str | None = None,
    tags: list[str] | None = None,
    resume_id: str | None = None,
) -> Logger:
    """Build the logger named ``kind`` ("wandb" | "tensorboard" | "none") writing under ``run_dir``.

    W&B files go to ``<run_dir>/wandb/``, TensorBoard events to ``<run_dir>/tensorboard/``.
    """
    kind = _choice(LoggerKind, kind, "logger.kind")
    if kind is LoggerKind.wandb:
        return WandbLogger(
            dir=run_dir,
            config=config,
            project=project,
            entity=entity,
            mode=mode,
            group=group,
            name=name,
            tags=tags,
            resume_id=resume_id,
        )
    if kind is LoggerKind.tensorboard:
        return TensorBoardLogger(dir=Path(run_dir) / "tensorboard")
    return NoneLogger()
