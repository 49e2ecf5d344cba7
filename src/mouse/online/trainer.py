"""``mouse-train mode=online``: the actor–learner loop (central batched inference, bounded replay).

Each acting round ``r`` draws ``mode.num_envs`` training task ids (with replacement, from a generator
seeded by ``(trainer.seed, r)``), builds the family's batched environment for them and runs every
stream for ``S = trainer.seq_len`` ticks from a reset with the actors' copy of the model: one batched
forward per tick through the KV cache (:class:`ExploringActor`, as in SEED RL), sampling from the
temperature / ε mixture of the schedules at the round's first env step and recording its
log-probabilities as ``behavior_logits``. Each stream's round is one window (an RL² trial of the task),
laid out exactly like an offline window from a stream's start; the windows enter a FIFO replay of
``mode.replay_capacity`` windows. The learner runs the offline :meth:`Trainer.train_step` on batches
drawn uniformly from the replay: ``mode.steps_per_round`` learner steps per round, once the replay
holds ``mode.min_replay`` windows. A round starts with fresh actor weights when
``mode.actor_sync_every`` or more learner steps passed since the last sync; the policy lag of a
sampled window is the learner step minus the step of the weights that acted it.

``mode.overlap=true`` acts round ``r + 1`` in a thread while the learner trains on rounds ``<= r``
(torch releases the GIL in its kernels); the windows of a round enter the replay at the same learner
step either way, so an overlapped run is as deterministic as a plain one (its windows are one round
staler).

Checkpoints add the replay (every window, in the ``trainer_state.safetensors``), the round counter,
the actors' weights and sync step and the replay sampler's generator: a resumed run computes the same
losses as an uninterrupted one (a round in flight is re-run: rounds are functions of their index and
the actors' weights).
"""

from __future__ import annotations

import copy
import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from mouse.online.actor import ExploringActor
from mouse.online.replay import WindowRecorder, WindowReplay
from mouse.online.schedule import LinearSchedule
from mouse.rollout.engine import StreamEngine
from mouse.rollout.env import close_env
from mouse.train import config as C
from mouse.train.checks import check_loss_columns
from mouse.train.dist import get_rank
from mouse.train.trainer import Trainer

__all__ = ["OnlineTrainer", "RoundResult", "episode_returns", "online_spec"]


def continuous_range(family: Any, train_ids: Any, seed: int, num_tasks: int = 16) -> dict[str, float]:
    """``obs_continuous_min/max`` for the embedding's Fourier features: the range the random policy sees
    in ``num_tasks`` training tasks over ``4 x (horizon + 1)`` records (offline, the dataset records its
    own range; online there is no dataset yet)."""
    from mouse.rollout import collect_streams
    from mouse.tasks import make_policy

    ids = [int(i) for i in np.resize(np.asarray(train_ids), min(num_tasks, len(train_ids)))]
    cols = collect_streams(family, ids, make_policy("random", family), 4 * (family.horizon + 1), seed=seed)
    values = cols["obs_continuous"]
    return {"obs_continuous_min": float(values.min()), "obs_continuous_max": float(values.max())}


def online_spec(
    family: Any, cfg: C.TrainConfig, train_ids: Any, test_ids: Any, fields: set[str], **extra: Any
) -> Any:
    """The ``DatasetSpec`` describing the windows online actors produce (what ``build_model``, the
    evaluation and the checkpoint's ``dataset_spec.json`` read); ``fields``: the record fields;
    ``extra``: more spec fields (the continuous observation range)."""
    from mouse.data.collect import observation_sizes
    from mouse.data.spec import DatasetSpec

    sizes = observation_sizes(family, fields)
    task = cfg.data.collect.task
    return DatasetSpec(
        num_actions=int(family.num_actions),
        horizon=int(family.horizon),
        gamma=float(family.gamma),
        **sizes,
        task_family=family.name,
        task_params=dict(family.params),
        policy="online",
        policy_params={},
        split="train",
        split_seed=int(task.split_seed),
        train_task_ids=tuple(int(i) for i in train_ids),
        test_task_ids=tuple(int(i) for i in test_ids),
        seed=int(cfg.trainer.seed),
        steps_per_task=int(cfg.trainer.seq_len),
        **extra,
    )


def episode_returns(reward: np.ndarray, done: np.ndarray) -> dict[str, float]:
    """Undiscounted returns of the episodes completed inside windows ``reward, done [N, S]``.

    Record ``t``'s reward belongs to the episode numbered by the done records strictly before ``t``.
    Returns ``return_mean`` (all completed episodes), ``return_ep1`` (each window's first episode) and
    ``return_last`` (each window's last completed one) over the windows that completed any, and
    ``episodes`` (the count); empty when no window completed an episode.
    """
    ended = done != 0
    episode = np.cumsum(ended, axis=1) - ended  # episode index of each record
    n_done = ended.sum(axis=1)  # completed episodes per window
    if n_done.sum() == 0:
        return {}
    counted = episode < n_done[:, None]
    has = n_done > 0
    first = (reward * (episode == 0) * counted).sum(axis=1)[has]
    last = (reward * (episode == (n_done - 1)[:, None]) * counted).sum(axis=1)[has]
    return {
        "return_mean": float((reward * counted).sum() / n_done.sum()),
        "return_ep1": float(first.mean()),
        "return_last": float(last.mean()),
        "episodes": float(n_done.sum()),
    }


class RoundResult:
    """One acting round: its windows (TensorDict [N]) and how long acting took."""

    def __init__(self, index: int, windows: Any, seconds: float, records: int) -> None:
        self.index, self.windows, self.seconds, self.records = index, windows, seconds, records


class OnlineTrainer(Trainer):
    """The ``Trainer`` with actors instead of a dataset: same ``train_step``, logging, evaluation,
    checkpoints, Hub push; ``online/`` metrics beside ``train/``."""

    # ------------------------------------------------------------------------------------------ setup
    def setup_data(self) -> None:
        from mouse.data.config import task_kwargs
        from mouse.tasks import make_family

        cfg = self.cfg
        task = cfg.data.collect.task
        try:
            family = make_family(task.name, **task_kwargs(task))
        except ValueError as err:
            raise ValueError(f"data.collect.task: {err}") from err
        train_ids, test_ids = family.split(task.split_seed, task.test_fraction)
        if len(train_ids) == 0:
            raise ValueError(
                f"data.collect.task: {task.name} has no training tasks (task.test_fraction too high)"
            )
        try:
            probe = family.make_vec_env([int(train_ids[0])], seed=0)
        except NotImplementedError as err:
            raise ValueError(
                f"mode=online needs a batched environment, but the {family.name} family has none "
                f"(data.collect.task.name={task.name}: {err}); choose a family with make_vec_env"
            ) from None
        try:
            fields = set(probe.record_fields(probe.reset()))
        finally:
            close_env(probe)
        self.family, self.train_ids = family, np.asarray(train_ids, dtype=np.int64)
        value_range = (
            continuous_range(family, train_ids, cfg.trainer.seed) if "obs_continuous" in fields else {}
        )
        self.spec = online_spec(family, cfg, train_ids, test_ids, fields, **value_range)
        columns = {"action", "reward", "done", "time", "behavior_logits", *fields}
        if family.has_q_star:
            columns.add("q_star")
        check_loss_columns(cfg, columns, self.spec)

    def setup_batches(self) -> None:
        cfg, m = self.cfg, self.cfg.mode
        self.seq_len = int(cfg.trainer.seq_len)
        self.replay = WindowReplay(m.replay_capacity)
        self.sample_generator = torch.Generator().manual_seed(cfg.trainer.seed + 2 + 1000 * get_rank())
        self.actor_model = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.actor = ExploringActor(self.actor_model, context_steps=self.seq_len, device=self.device)
        self.temperature = LinearSchedule(m.temperature.start, m.temperature.end, m.temperature.steps)
        self.epsilon = LinearSchedule(m.epsilon.start, m.epsilon.end, m.epsilon.steps)
        self.min_replay = m.min_replay if m.min_replay is not None else cfg.trainer.batch_size
        self.warm_rounds = math.ceil(self.min_replay / m.num_envs)
        self.rounds = 0  # rounds whose windows are in the replay
        self.actor_step = -1  # learner step of the actors' weights (-1: never synced)
        self.pending: Future | RoundResult | None = None
        self.pending_index = -1
        self.executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="mouse-actor") if m.overlap else None
        )
        self.acting_seconds = self.acting_records = 0.0
        self.wait_seconds = 0.0
        self.round_metrics: dict[str, float] = {}
        self.batch_meta: dict[str, torch.Tensor] = {}
        self.resume_inflight = False

    def data_summary(self) -> str:
        m = self.cfg.mode
        return (
            f"online {self.family.name}: {m.num_envs} streams x {self.seq_len} records per round, "
            f"replay {m.replay_capacity} windows{' (overlapped acting)' if m.overlap else ''}"
        )

    # ------------------------------------------------------------------------------------------ acting
    def env_steps(self, rounds: int | None = None) -> int:
        """Records the actors acted on in the first ``rounds`` rounds (default: those in the replay)."""
        return int(self.rounds if rounds is None else rounds) * self.cfg.mode.num_envs * self.seq_len

    def _act_round(self, index: int, weights_step: int) -> RoundResult:
        """Run round ``index`` (a function of the index and the actors' weights only)."""
        cfg, m = self.cfg, self.cfg.mode
        start = time.perf_counter()
        rng = np.random.default_rng([cfg.trainer.seed, index, 0x0A11, get_rank()])  # each rank its own tasks
        task_ids = rng.choice(self.train_ids, size=m.num_envs, replace=True)
        env = self.family.make_vec_env(task_ids.tolist(), seed=int(rng.integers(2**63)))
        steps = self.env_steps(index)
        self.actor.set_exploration(self.temperature(steps), self.epsilon(steps))
        self.actor.generator.manual_seed(int(rng.integers(2**63)))
        recorder = WindowRecorder(q_star=self.family.has_q_star)
        engine = StreamEngine(
            env,
            self.actor,
            [recorder],
            rng=rng,
            num_actions=self.family.num_actions,
            num_records=self.seq_len,
        )
        try:
            engine.start()
            for t in range(self.seq_len):
                engine.tick(step=t < self.seq_len - 1)
        finally:
            close_env(env)
        windows = recorder.windows(weights_step, index, task_ids)
        return RoundResult(index, windows, time.perf_counter() - start, engine.records)

    def _launch(self, sync: bool = True) -> None:
        """Start round ``self.rounds`` (in the actor thread with overlap), syncing the actors' weights first
        when ``mode.actor_sync_every`` learner steps have passed."""
        if sync and (self.actor_step < 0 or self.step - self.actor_step >= self.cfg.mode.actor_sync_every):
            self.actor_model.load_state_dict(self.model.state_dict())
            self.actor_step = self.step
        self.pending_index = self.rounds
        if self.executor is not None:
            self.pending = self.executor.submit(self._act_round, self.rounds, self.actor_step)
        else:
            self.pending = self._act_round(self.rounds, self.actor_step)

    def _join(self) -> None:
        """Wait for the round in flight and put its windows in the replay."""
        pending, waited = self.pending, time.perf_counter()
        result = pending.result() if isinstance(pending, Future) else pending
        self.wait_seconds += time.perf_counter() - waited
        self.pending = None
        self.replay.extend(result.windows)
        self.rounds += 1
        self.acting_seconds += result.seconds
        self.acting_records += result.records
        w = result.windows
        returns = episode_returns(w.get("reward").numpy(), w.get("done").numpy())
        self.round_metrics = {f"online/{k}": v for k, v in returns.items()}
        self.round_metrics["online/round"] = float(self.rounds)

    def _rounds_needed(self, step: int) -> int:
        """Rounds that must be in the replay before learner step ``step + 1``."""
        m = self.cfg.mode
        needed = self.warm_rounds + step // m.steps_per_round
        return max(self.warm_rounds, needed - 1) if m.overlap else needed

    def batches(self) -> Any:
        cfg = self.cfg
        while True:
            if (
                self.resume_inflight
            ):  # a round was acting when the checkpoint was written: re-run it as it was
                self.resume_inflight = False
                self._launch(sync=False)
            needed = self._rounds_needed(self.step)
            while self.rounds < needed:
                if self.pending is None:
                    self._launch()
                self._join()
            if cfg.mode.overlap and self.pending is None:
                self._launch()  # the next round acts while the learner trains
            batch, self.batch_meta = self.replay.sample(cfg.trainer.batch_size, self.sample_generator)
            yield batch.to(self.device, non_blocking=True)

    def step_metrics(self) -> dict[str, float]:
        lag = self.step - 1 - self.batch_meta["weights_step"]  # the update just made was at step - 1
        out = dict(self.round_metrics)
        out.update(
            {
                "online/env_steps": float(self.env_steps()),
                "online/env_steps_per_s": self.acting_records / max(self.acting_seconds, 1e-9),
                "online/policy_lag_mean": float(lag.float().mean()),
                "online/policy_lag_max": float(lag.max()),
                "online/replay_fill": len(self.replay) / self.replay.capacity,
                "online/replay_windows": float(len(self.replay)),
                "online/temperature": self.actor.temperature,
                "online/epsilon": self.actor.epsilon,
                "online/acting_wait_s": self.wait_seconds,
            }
        )
        return out

    # ------------------------------------------------------------------------------------------ state
    def trainer_state(self) -> dict[str, Any]:
        state = super().trainer_state()
        state["online"] = {
            "rounds": self.rounds,
            "actor_step": self.actor_step,
            "inflight": self.pending is not None,
            "replay": self.replay.state_dict(),
            "sample_generator": self.sample_generator.get_state(),
            "actor_weights": {k: v.detach().cpu().clone() for k, v in self.actor_model.state_dict().items()},
            "acting_seconds": self.acting_seconds,
            "acting_records": self.acting_records,
        }
        return state

    def restore_extra(self, state: dict[str, Any]) -> None:
        online = state.get("online")
        if online is None:
            raise ValueError(
                "this checkpoint was written by an offline run; it cannot resume with mode=online"
            )
        self.rounds = int(online["rounds"])
        self.actor_step = int(online["actor_step"])
        self.replay.load_state_dict(online["replay"])
        self.sample_generator.set_state(online["sample_generator"])
        self.actor_model.load_state_dict(online["actor_weights"])
        self.acting_seconds = float(online["acting_seconds"])
        self.acting_records = float(online["acting_records"])
        self.resume_inflight = bool(online["inflight"])

    def cleanup(self) -> None:
        try:
            if isinstance(getattr(self, "pending", None), Future):
                self.pending.cancel()
                try:
                    self.pending.result()
                except Exception:  # noqa: BLE001 (the training error, if any, is the one to report)
                    pass
            if getattr(self, "executor", None) is not None:
                self.executor.shutdown(wait=True)
        finally:
            super().cleanup()
