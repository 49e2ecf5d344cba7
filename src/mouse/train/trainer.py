"""The ``mouse-train`` recipe: ``setup`` → ``train`` (one ``train_step`` per batch) → ``cleanup``.

Run directory layout (``<run_dir>`` is ``hydra.run.dir``, or a multirun job folder)::

    train_config.yaml        the resolved config actually trained (heads enabled by losses included)
    metrics.jsonl            one JSON line per step (train/, optim/, perf/) and per evaluation (eval/)
    eval/step-N.json         evaluation results (EvalResult.to_dict())
    checkpoints/step-N/      config.json, model.safetensors, dataset_spec.json, train_config.yaml,
                             README.md (model card), trainer_state.{json,safetensors}
    checkpoints/last         -> the newest step-N
    wandb/ | tensorboard/    logger files

Only rank 0 (``mouse.train.dist``) writes any of it. Resuming (``trainer.resume=true``) restores the
model, optimizer, scheduler, RNG states, data loader position and W&B run id from ``checkpoints/last``:
the continued run computes the same losses as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from mouse.checkpoint_io import previous_valid_checkpoint, read_model_config, safetensors_is_complete
from mouse.data import WindowLoader
from mouse.data.augment import AugmentConfig, augment
from mouse.device import resolve_device
from mouse.hub import model_card, push_checkpoint
from mouse.losses import LOSSES
from mouse.train import config as C
from mouse.train.checkpoint import (
    capture_rng_state,
    find_last_checkpoint,
    load_state,
    restore_rng_state,
    save_checkpoint,
)
from mouse.train.checks import check_context, check_fits_data, check_loss_columns, check_same_model
from mouse.train.dist import (
    barrier,
    cleanup_distributed,
    get_rank,
    get_world_size,
    init_distributed,
    is_main_process,
    print0,
    reduce_metrics,
)
from mouse.train.logger import JsonlWriter, Logger, NoneLogger, make_logger, truncate_metrics
from mouse.train.optim import build_optimizer, build_scheduler
from mouse.train.parallel import freeze_unused_heads, wrap_model

__all__ = ["NonFiniteLossError", "Trainer", "TrainResult", "build_model", "run_training"]

log = logging.getLogger("mouse.train")


class NonFiniteLossError(RuntimeError):
    """A loss (or the gradient norm) became NaN/inf: the run stops before the optimizer step."""


@dataclass
class TrainResult:
    """What a finished run produced (printed at the end of ``mouse-train``)."""

    run_dir: Path
    step: int
    checkpoint: Path | None
    logger_dir: Path | None
    final_metrics: dict[str, float] = field(default_factory=dict)
    eval_metrics: dict[str, float] = field(default_factory=dict)
    hub_url: str | None = None


def _info(message: str) -> None:
    if is_main_process():
        log.info(message)


def build_model(cfg: C.TrainConfig, spec: Any) -> torch.nn.Module:
    """The model ``cfg`` describes, its ``embedding_kwargs`` filled in from the dataset ``spec``.

    ``model.embedding`` overrides are merged over ``spec.embedding_kwargs()``; image grids with a known
    ``[H, W, C]`` shape (MiniGrid's symbolic view) get the per-cell encoder unless
    ``model.embedding.obs_image_encoder`` says otherwise. The class follows the ``load_model`` rule
    (empty backbone → none, ``head_dim`` → Qwen3, else Llama).
    """
    data = spec.embedding_kwargs()
    if data.get("include_obs_image") and len(data.get("obs_image_shape") or ()) == 3:
        data["obs_image_encoder"] = "cells"
    kwargs: dict[str, Any] = {
        "hidden_dim": cfg.model.hidden_dim,
        "backbone_kwargs": C.backbone_kwargs(cfg),
        "embedding_kwargs": {**data, **C.embedding_overrides(cfg)},
        **{f"{head}_head_kwargs": C.head_kwargs(cfg, head) for head in C.HEAD_NAMES},
        "action_head": None if cfg.heads.action_head is None else cfg.heads.action_head.value,
    }
    from mouse.models.loading import model_class

    model = model_class(kwargs["backbone_kwargs"])(**kwargs)
    if cfg.model.gradient_checkpointing:  # a training switch, not part of the saved model config
        model.set_gradient_checkpointing(True)
    return model


def init_weights(model: torch.nn.Module, source: str) -> None:
    """Start ``model`` from the weights of checkpoint ``source`` (``trainer.init_from``: a folder or a Hub id).

    Every tensor both models have must match in shape (ValueError naming the first that does not);
    heads only this model has keep their fresh initialisation, heads only the checkpoint has are not
    used; both lists are logged.
    """
    from mouse.models import load_model

    try:
        src = load_model(source).state_dict()
    except (OSError, ValueError) as err:
        raise ValueError(f"trainer.init_from={source}: {err}") from err
    own = model.state_dict()
    for key, value in src.items():
        if key in own and own[key].shape != value.shape:
            raise ValueError(
                f"trainer.init_from={source}: {key} has shape {list(value.shape)} there but "
                f"{list(own[key].shape)} here; build the same model (backbone, model.hidden_dim, embedding)"
            )
    shared = {k: v for k, v in src.items() if k in own}
    if not shared:
        raise ValueError(
            f"trainer.init_from={source} shares no weights with this model; build the same model"
        )
    result = model.load_state_dict(shared, strict=False)
    new = sorted({k.split(".")[0] for k in result.missing_keys})
    dropped = sorted({k.split(".")[0] for k in src if k not in own})
    _info(
        f"trainer.init_from={source}: {len(shared)} tensors loaded; fresh: {new or 'none'}; unused: {dropped or 'none'}"
    )


def load_training_data(cfg: C.TrainConfig) -> Any:
    """The training ``StepDataset``: ``data.path`` (folder or Hub dataset id), else the dataset
    ``data.collect`` describes, collected once and cached by ``mouse.data.ensure_dataset``."""
    from mouse.data import load_dataset

    if cfg.data.path is not None:
        return load_dataset(cfg.data.path)
    from mouse.data import ensure_dataset

    if is_main_process():  # torchrun: rank 0 collects, the others wait and then find it in the cache
        ensure_dataset(cfg.data.collect, cache_dir=cfg.data.cache_dir)
    barrier()
    path = ensure_dataset(cfg.data.collect, cache_dir=cfg.data.cache_dir)
    return load_dataset(str(path))


class Trainer:
    """One training run. ``Trainer(cfg, run_dir).run()`` = setup + train + cleanup."""

    def __init__(self, cfg: C.TrainConfig, run_dir: str | Path, *, sweep_group: str | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.ckpt_root = self.run_dir / "checkpoints"
        self.sweep_group = sweep_group
        self.main = is_main_process()
        self.step = 0
        self.logger: Logger = NoneLogger()
        self.jsonl: JsonlWriter | None = None
        self.loader: Any = None
        self.last_checkpoint: Path | None = None
        self.eval_metrics: dict[str, float] = {}
        self.hub_url: str | None = None

    # ------------------------------------------------------------------------------------------ setup
    def setup(self) -> None:
        """Validate the config, then build data, model, optimizer, logger; restore a checkpoint."""
        cfg = self.cfg
        for note in C.enable_loss_heads(cfg):
            _info(note)
        C.validate_config(cfg)
        if cfg.data.path is None:  # the layout follows from the family (data.episodes); see resolve_layout
            cfg = self.cfg = C.resolve_layout(cfg)
        resume_from = None
        mode = cfg.trainer.resume_mode
        if mode != "false":
            resume_from = find_last_checkpoint(self.ckpt_root)
            if resume_from is None and mode == "true":
                raise FileNotFoundError(
                    f"trainer.resume=true but {self.ckpt_root} holds no checkpoint; point hydra.run.dir at the "
                    "run to resume (its folder holds checkpoints/last), use trainer.resume=auto, or drop it"
                )
            if resume_from is None:
                _info(f"trainer.resume=auto: no checkpoint in {self.ckpt_root}, starting fresh")
        self.loss_cfgs = C.loss_configs(cfg)
        self.needs_target = any(LOSSES[name].needs_target for name in self.loss_cfgs)
        self.device = resolve_device(cfg.trainer.device)
        self.distributed = init_distributed(self.device)  # torchrun: join the process group first
        self.precision = cfg.trainer.precision
        self.polyak_taus = C.polyak_taus(cfg)  # only the targets of active losses move
        seed = cfg.trainer.seed
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed)

        self.setup_data()  # self.spec (and, offline, self.dataset); may resolve the layout
        cfg = self.cfg
        self.model = build_model(cfg, self.spec)
        check_context(cfg, self.model)
        if cfg.trainer.init_from is not None and resume_from is None:
            init_weights(self.model, cfg.trainer.init_from)
        self.model = self.model.to(self.device)
        frozen = freeze_unused_heads(self.model, self.loss_cfgs)  # DDP: a gradient for every weight
        if frozen:
            _info(f"heads {frozen} feed no active loss: frozen (not trained)")
        # torchrun: DDP, or FSDP2 sharding self.model in place (mouse.train.parallel); else the model
        self.parallel = wrap_model(self.model, cfg.trainer.strategy.value, self.device)
        # The module of the training forward: the (wrapped) model, compiled with trainer.compile (it shares
        # the parameters; evaluation, Polyak updates and checkpoints use self.model).
        module = self.parallel.module
        self.train_model = torch.compile(module) if cfg.trainer.compile else module
        self.tokens_per_step = self.model.tokens_per_step
        o = cfg.optim
        self.optimizer = build_optimizer(
            self.model, lr=o.lr, weight_decay=o.weight_decay, beta1=o.beta1, beta2=o.beta2, eps=o.eps
        )
        self.scheduler = build_scheduler(
            self.optimizer,
            total_steps=cfg.trainer.steps,
            warmup_steps=o.warmup_steps,
            schedule=o.schedule.value,
            min_lr_ratio=o.min_lr_ratio,
        )
        self.augment_cfg = C.augment_config(cfg)
        self.augment_on = self.augment_cfg != AugmentConfig()
        self.aug_generator = torch.Generator().manual_seed(seed + 1)
        self.setup_batches()
        logger_run_id = None
        if resume_from is not None:
            logger_run_id = self._restore(resume_from)
        self.config_dict = C.to_plain_dict(cfg)
        self.config_yaml = OmegaConf.to_yaml(OmegaConf.create(self.config_dict))
        if self.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "train_config.yaml").write_text(self.config_yaml)
            metrics_path = self.run_dir / "metrics.jsonl"
            if resume_from is not None or cfg.trainer.resume_mode == "auto":  # those steps are done again
                dropped = truncate_metrics(metrics_path, after_step=self.step)
                if dropped:
                    _info(f"metrics.jsonl: dropped {dropped} line(s) past step {self.step} (they are redone)")
            self.jsonl = JsonlWriter(metrics_path)
            lg = cfg.logger
            self.logger = make_logger(
                lg.kind.value,
                run_dir=self.run_dir,
                config=self.config_dict,
                project=lg.project,
                entity=lg.entity,
                mode=lg.mode.value,
                group=lg.group if lg.group is not None else self.sweep_group,
                name=lg.name,
                tags=list(lg.tags),
                resume_id=logger_run_id,
            )
        n_params = sum(p.numel() for p in self.model.parameters())
        _info(
            f"model {self.parallel.model_cls.__name__}: {n_params:,} parameters, "
            f"{self.tokens_per_step} token(s)/step; "
            f"losses {list(self.loss_cfgs)}; data {self.data_summary()}; device {self.device}"
        )

    # ------------------------------------------------------------------------------------------ data
    def setup_data(self) -> None:
        """Offline: load (or collect once) the dataset; set ``self.dataset`` and ``self.spec``; check
        that the windows fit and that the losses find their columns. Online mode overrides it."""
        cfg = self.cfg
        if cfg.mode.kind is C.ModeKind.online:
            raise ValueError("mode=online trains with mouse.online.OnlineTrainer (mouse-train picks it)")
        self.dataset = load_training_data(cfg)
        self.spec = self.dataset.spec
        if cfg.data.path is not None:
            cfg = self.cfg = C.resolve_layout(cfg, spec=self.spec)
        check_fits_data(cfg, self.spec)
        check_loss_columns(cfg, self.dataset.columns, self.spec)

    def setup_batches(self) -> None:
        """Offline: the window loader over ``self.dataset`` (each rank its own seed)."""
        cfg = self.cfg
        self.loader = WindowLoader(
            self.dataset,
            batch_size=cfg.trainer.batch_size,
            seq_len=cfg.trainer.seq_len,
            sampling=cfg.data.sampling.value,
            seed=cfg.trainer.seed + get_rank(),  # each rank draws its own windows
            prefetch=cfg.data.prefetch,
            allow_short_streams=cfg.data.allow_short_streams,
            pin_memory=self.device.type == "cuda",
            device=self.device,
        )

    def data_summary(self) -> str:
        return f"{self.dataset.num_streams} streams"

    def batches(self) -> Any:
        """The iterator of training batches (TensorDict [B, S] on the device): the window loader."""
        return iter(self.loader)

    def step_metrics(self) -> dict[str, float]:
        """Metrics besides the learner's to log with a step (online mode: ``online/``)."""
        return {}

    def restore_extra(self, state: dict[str, Any]) -> None:
        """Restore what a subclass added to :meth:`trainer_state` (online mode: replay, actors)."""

    def _restore(self, folder: Path) -> str | None:
        """Load model + trainer state from checkpoint ``folder``; returns the stored logger run id."""
        check_same_model(self.model.config, read_model_config(folder), folder)
        weights = folder / "model.safetensors"
        if not safetensors_is_complete(weights):
            previous = previous_valid_checkpoint(folder)
            fix = (
                f"point checkpoints/last at {previous.name} (ln -sfn {previous.name} {folder.parent / 'last'})"
                if previous is not None
                else "start the run again without trainer.resume"
            )
            raise ValueError(f"{weights} is truncated or corrupt; {fix}")
        self.parallel.load_weights(weights, self.device)
        state = load_state(folder)
        self.parallel.load_optimizer_state(self.optimizer, state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.loader is not None:
            loader_state = dict(state["loader"])
            if self.distributed:  # rank 0 saved its position; every rank is at the same step, own seed
                loader_state["seed"] = self.loader.seed
            self.loader.load_state_dict(loader_state)
        self.aug_generator.set_state(state["augment_generator"])
        restore_rng_state(state["rng"])
        self.step = int(state["step"])
        self.eval_metrics = dict(state.get("eval_metrics") or {})
        self.last_checkpoint = folder
        self.restore_extra(state)
        _info(f"resumed from {folder} at step {self.step}")
        return state.get("logger_run_id")

    # ------------------------------------------------------------------------------------------ step
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision is C.Precision.bf16:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(self, batch: Any) -> dict[str, float]:
        """One optimizer step on ``batch`` (a TensorDict ``[B, S]``) or on a list of micro-batches whose
        gradients accumulate (``trainer.grad_accum_steps``; each loss is scaled by 1 / their number).

        Per micro-batch: augment → model → Σ weight·loss → backward (DDP all-reduces the gradients on
        the last one only); then the metrics of every micro-batch and rank are combined in one
        collective (:func:`~mouse.train.dist.reduce_metrics`: means, counts summed), clip →
        optimizer/scheduler → Polyak. Raises :class:`NonFiniteLossError` on every rank (before the
        optimizer step) when a loss on any rank, or the gradient norm, is not finite. Returns the
        step's metrics (``train/``, ``optim/``).
        """
        cfg = self.cfg
        micro = batch if isinstance(batch, list | tuple) else [batch]
        self.optimizer.zero_grad(set_to_none=True)
        names: list[str] = []
        rows = []
        for i, mb in enumerate(micro):
            with self.parallel.grad_sync(sync=i == len(micro) - 1):
                losses, metrics = self._forward_losses(mb)
                total = sum(self.loss_cfgs[name].weight * loss for name, loss in losses.items())
                (total / len(micro) if len(micro) > 1 else total).backward()
            names = [f"loss/{name}" for name in losses] + list(metrics)
            values = torch.tensor(list(metrics.values()), dtype=torch.float64, device=self.device)
            rows.append(torch.cat([torch.stack([v.detach().double() for v in losses.values()]), values]))
        reduced = reduce_metrics(names, torch.stack(rows))  # torchrun: every rank sees the same values
        for name in self.loss_cfgs:
            value = reduced[f"loss/{name}"]
            if not math.isfinite(value):
                raise NonFiniteLossError(f"loss.{name} is {value} at step {self.step + 1}")

        max_norm = cfg.trainer.grad_clip if cfg.trainer.grad_clip > 0 else math.inf
        grad_norm = self.parallel.clip_grad_norm(max_norm)
        if not math.isfinite(grad_norm):
            raise NonFiniteLossError(f"the gradient norm is {grad_norm} at step {self.step + 1}")
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.model.polyak_update(**self.polyak_taus)

        metrics = {k: v for k, v in reduced.items() if not k.startswith("loss/")}
        metrics["train/loss"] = sum(self.loss_cfgs[n].weight * reduced[f"loss/{n}"] for n in self.loss_cfgs)
        metrics["optim/lr"] = float(lr)
        metrics["optim/grad_norm"] = grad_norm
        return metrics

    def _forward_losses(self, batch: Any) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """augment → training forward → every active loss: ``({name: loss}, {"train/<metric>": value})``."""
        if self.augment_on:
            batch = augment(
                batch, self.augment_cfg, self.aug_generator, num_obs_discrete=self.spec.obs_discrete_size
            )
        with self._autocast():
            out, _ = self.train_model(batch, compute_targets=self.needs_target)
        out = out.float() if self.precision is C.Precision.bf16 else out
        losses: dict[str, torch.Tensor] = {}
        metrics: dict[str, float] = {}
        for name, loss_cfg in self.loss_cfgs.items():
            losses[name], loss_metrics = LOSSES[name].compute(batch, out, loss_cfg)
            metrics.update({f"train/{k}": float(v) for k, v in loss_metrics.items()})
        return losses, metrics

    # ------------------------------------------------------------------------------------------ loop
    def train(self) -> TrainResult:
        """Run steps until ``trainer.steps``, logging, evaluating and checkpointing on schedule."""
        from tqdm.auto import tqdm

        t = self.cfg.trainer
        total_steps = t.steps
        if self.step >= total_steps:
            _info(f"checkpoint {self.last_checkpoint} is at step {self.step} >= trainer.steps={total_steps}")
            return self._result({})
        tokens_per_batch = (
            t.batch_size * t.grad_accum_steps * t.seq_len * self.tokens_per_step * get_world_size()
        )
        batches = self.batches()
        bar = tqdm(total=total_steps, initial=self.step, desc="train", unit="step", disable=not self.main)
        window_start, window_step = time.perf_counter(), self.step
        metrics: dict[str, float] = {}
        try:
            while self.step < total_steps:
                accum = t.grad_accum_steps  # micro-batches of one optimizer step
                batch = next(batches) if accum == 1 else [next(batches) for _ in range(accum)]
                try:
                    metrics = self.train_step(batch)
                except NonFiniteLossError as err:
                    kept = self.last_checkpoint or "none (no checkpoint was written yet)"
                    raise NonFiniteLossError(
                        f"{err}; stopping. The last good checkpoint is kept: {kept} "
                        "(lower optim.lr or check the data, then resume with trainer.resume=true)"
                    ) from None
                self.step += 1
                metrics.update(self.step_metrics())
                last = self.step == total_steps
                if self.step % t.log_every == 0 or last:
                    elapsed = max(time.perf_counter() - window_start, 1e-9)
                    steps_per_s = (self.step - window_step) / elapsed
                    metrics["perf/steps_per_s"] = steps_per_s
                    metrics["perf/tokens_per_s"] = steps_per_s * tokens_per_batch
                    window_start, window_step = time.perf_counter(), self.step
                    self.logger.log(metrics, self.step)
                    bar.set_postfix(loss=f"{metrics['train/loss']:.4f}", steps_s=f"{steps_per_s:.2f}")
                if self.jsonl is not None:
                    self.jsonl.write(metrics, self.step)
                bar.update(1)
                paused = time.perf_counter()  # throughput counts training time only
                if not last and t.eval_every > 0 and self.step % t.eval_every == 0:
                    self.evaluate()
                if not last and t.checkpoint_every > 0 and self.step % t.checkpoint_every == 0:
                    self.save_checkpoint()
                window_start += time.perf_counter() - paused
        finally:
            bar.close()
        self.save_checkpoint(push=False)  # the trained weights are on disk before the final evaluation
        self.evaluate()
        if t.eval_num_tasks > 0:  # (every rank: under FSDP saving gathers the weights)
            self.save_checkpoint(push=False)  # again, with the evaluation in the model card and state
        self.push_to_hub(final=True)
        return self._result(metrics)

    def _result(self, metrics: dict[str, float]) -> TrainResult:
        return TrainResult(
            run_dir=self.run_dir,
            step=self.step,
            checkpoint=self.last_checkpoint,
            logger_dir=self.logger.run_dir,
            final_metrics=metrics,
            eval_metrics=dict(self.eval_metrics),
            hub_url=self.hub_url,
        )

    # ------------------------------------------------------------------------------------------ eval
    def evaluate(self) -> dict[str, float]:
        """In-context evaluation on held-out tasks (rank 0); logs ``eval/*`` and saves the result JSON.

        Runs with the training RNG states saved and restored, so evaluating never changes training.
        Every rank calls it (under FSDP, rank 0 evaluates a full copy the ranks gather together).
        """
        t = self.cfg.trainer
        if t.eval_num_tasks == 0:
            return {}
        model = self.parallel.full_model()
        if not self.main:
            return {}
        from mouse.eval import evaluate

        model = model.to(self.device)
        rng = capture_rng_state()
        model.eval()
        try:
            result = evaluate(
                model,
                self.spec,
                num_tasks=t.eval_num_tasks,
                episodes=t.eval_episodes,
                temperature=t.eval_temperature,
                seed=t.seed,
                split="test",
                device=self.device,
                context_steps=t.seq_len,
            )
        finally:
            model.train()
            restore_rng_state(rng)
        self.eval_metrics = {f"eval/{k}": float(v) for k, v in result.metrics().items()}
        self.logger.log(self.eval_metrics, self.step)
        if self.jsonl is not None:
            self.jsonl.write(self.eval_metrics, self.step)
        out = self.run_dir / "eval" / f"step-{self.step}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result.to_dict(), indent=1) + "\n")
        score = self.eval_metrics.get("eval/score_mean")
        _info(f"eval at step {self.step}: score_mean={score} ({out})")
        return self.eval_metrics

    # ------------------------------------------------------------------------------------------ save
    def trainer_state(self) -> dict[str, Any]:
        """Everything besides the weights that resuming needs (tensors go to safetensors)."""
        return {
            "step": self.step,
            "optimizer": self.parallel.optimizer_state(self.optimizer),
            "scheduler": self.scheduler.state_dict(),
            "loader": self.loader.state_dict() if self.loader is not None else None,
            "augment_generator": self.aug_generator.get_state(),
            "rng": capture_rng_state(),
            "logger_run_id": self.logger.run_id,
            "eval_metrics": dict(self.eval_metrics),
        }

    def save_checkpoint(self, push: bool = True) -> Path | None:
        """Write ``checkpoints/step-N`` atomically (rank 0); push it when ``hub.push_every_checkpoint``
        (and ``push``). Every rank calls it: under FSDP the ranks gather the weights and optimizer state."""
        state = self.trainer_state() if self.main or self.parallel.fsdp else None
        model = self.parallel.full_model()  # the consolidated weights (FSDP: a plain copy on rank 0)
        if not self.main:
            return None
        spec_dict = self.spec.to_dict()
        card = model_card(
            model.config,
            self.config_dict,
            spec_dict,
            self.eval_metrics or None,
            num_parameters=sum(p.numel() for p in model.parameters()),
            step=self.step,
            model_class=type(model).__name__,
        )
        self.last_checkpoint = save_checkpoint(
            self.ckpt_root,
            self.step,
            write_model=model.save_pretrained,
            state=state,
            extra_files={
                "dataset_spec.json": json.dumps(spec_dict, indent=1) + "\n",
                "train_config.yaml": self.config_yaml,
                "README.md": card,
            },
            keep_last=self.cfg.trainer.keep_last,
        )
        if push:
            self.push_to_hub(final=False)
        return self.last_checkpoint

    def push_to_hub(self, final: bool) -> None:
        """Push the newest checkpoint to ``hub.repo_id`` (rank 0): at the end, or at every checkpoint
        with ``hub.push_every_checkpoint``."""
        hub = self.cfg.hub
        if not self.main or hub.repo_id is None or self.last_checkpoint is None:
            return
        if not (final or hub.push_every_checkpoint):
            return
        self.hub_url = push_checkpoint(
            self.last_checkpoint,
            hub.repo_id,
            private=hub.private,
            revision=hub.revision,
            commit_message=f"{hub.commit_message} (step {self.step})",
        )
        _info(f"pushed step {self.step} to the Hub: {self.hub_url}")

    # ------------------------------------------------------------------------------------------ run
    def cleanup(self) -> None:
        """Close the logger (always), the metrics file and the data loader's thread."""
        try:
            self.logger.finish()
        finally:
            if self.jsonl is not None:
                self.jsonl.close()
            if self.loader is not None:
                self.loader.close()
            cleanup_distributed()

    def run(self) -> TrainResult:
        try:
            self.setup()
            return self.train()
        finally:
            self.cleanup()


def run_training(
    cfg: C.TrainConfig,
    run_dir: str | Path,
    *,
    sweep_group: str | None = None,
    trainer_cls: type | None = None,
) -> TrainResult:
    """Train with the typed ``cfg`` into ``run_dir`` (with ``trainer_cls``, default :class:`Trainer`) and
    print where everything went (rank 0)."""
    if get_world_size() > 1:
        _info(
            f"data parallel over {get_world_size()} ranks (trainer.strategy={cfg.trainer.strategy.value}): "
            f"effective batch {get_world_size()} x trainer.grad_accum_steps x trainer.batch_size; only rank 0 "
            "writes, logs, evaluates and pushes"
        )
    result = (trainer_cls or Trainer)(cfg, run_dir, sweep_group=sweep_group).run()
    print0(f"run dir:    {result.run_dir}")
    print0(f"checkpoint: {result.checkpoint}")
    if result.logger_dir is not None:
        hint = (
            "  (upload: wandb sync <dir>)"
            if cfg.logger.kind == "wandb" and cfg.logger.mode == "offline"
            else ""
        )
        print0(f"{cfg.logger.kind} run: {result.logger_dir}{hint}")
    if result.hub_url:
        print0(f"hub:        {result.hub_url}")
    return result
