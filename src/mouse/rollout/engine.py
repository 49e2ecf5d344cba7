"""The one stream engine: N reset-free streams of a `VecEnv` in lockstep, one record per stream per tick.

THE step-record contract (DESIGN.md), as the engine produces it:

- Record t holds the observation at t together with the ``action``, ``reward`` and ``done`` of the
  transition that ARRIVED at t, and ``time``, the step index within the episode. So the transition out
  of record t is stored at t + 1, and whatever describes the choice made out of obs_t (the actor's
  ``behavior_logits`` / ``teacher_logits``, the environment's ``q_star``) is recorded at t.
- A stream starts with a reset record (``action=0, reward=0, done=0, time=0``).
- After a record with ``done`` 0, the actor's action is applied and the resulting transition's record
  (next obs, that action, its reward, ``done`` in {0 alive, 1 terminal, 2 truncated}, time) follows.
- A terminal (1) or truncated (2) record takes no action: the actor still sees it (it is part of the
  stream) but its action there is ignored; the next record is the reset record of the next episode,
  so episode boundaries stay visible. An episode of H transitions takes H + 1 records.

Each tick the engine hands the actor the newest record of every stream (a TensorDict [N] with
``action, reward, done, time`` and the environment's observation fields), validates its actions, gives
every recorder the :class:`Tick`, and steps the environment. It stops after ``num_records`` records per
stream, or once every stream has completed ``episodes`` episodes (that last record is recorded but not
acted on), whichever comes first. Streams finish their episodes at different ticks (terminal states);
the batch keeps ticking until all have.
"""

from __future__ import annotations

import time as _time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict
from tqdm.auto import tqdm

from mouse.rollout.actors import Actor, ActorOutput
from mouse.rollout.env import VecEnv
from mouse.rollout.recorders import Recorder, RunStats, Tick


class StreamEngine:
    """The engine's state between ticks: streams that can be advanced a few ticks at a time.

    ``start()`` resets the actor, the recorders and the environment and builds record 0 of every
    stream; each ``tick()`` hands the newest records to the actor, validates its actions, gives the
    :class:`Tick` to every recorder and steps the environment (done streams reset). ``run_streams``
    drives one engine to a stop; online training advances one by a window of ticks per acting round.
    """

    def __init__(
        self,
        env: VecEnv,
        actor: Actor,
        recorders: Sequence[Recorder] = (),
        *,
        rng: np.random.Generator,
        num_actions: int | None = None,
        num_records: int | None = None,
    ) -> None:
        self.env, self.actor, self.recorders, self.rng = env, actor, list(recorders), rng
        self.num_actions = int(env.num_actions if num_actions is None else num_actions)
        self.num_records = num_records
        self.n = int(env.num_envs)

    def start(self) -> None:
        """Reset the actor, the recorders (told ``num_records``) and the environment: record 0 is next."""
        n = self.n
        self.actor.reset(self.env, self.num_actions, self.rng)
        for recorder in self.recorders:
            recorder.start(self.env, self.num_records)
        self.obs = self.env.reset()
        self.action, self.done, self.time = (
            np.zeros(n, np.int64),
            np.zeros(n, np.int64),
            np.zeros(n, np.int64),
        )
        self.reward = np.zeros(n, np.float32)
        self.stepped, self.episode = np.zeros(n, bool), np.zeros(n, np.int64)
        self.t = self.records = 0

    def tick(self, act: bool = True, step: bool = True) -> Tick:
        """Record ``t`` of every stream; with ``act`` the actor chooses out of it, with ``step`` (and
        ``act``) the environment then takes those actions, so record ``t + 1`` is next."""
        n = self.n
        fields = {
            "action": self.action, "reward": self.reward, "done": self.done, "time": self.time,
            **self.env.record_fields(self.obs),
        }  # fmt: skip
        record = TensorDict({k: torch.as_tensor(v) for k, v in fields.items()}, batch_size=[n])
        was_done = self.done != 0
        out = None
        if act:
            out = _as_output(self.actor.act(record), n)
            self.records += n
            alive = ~was_done
            bad = out.action[alive][(out.action[alive] < 0) | (out.action[alive] >= self.num_actions)]
            if bad.size:
                name = getattr(self.actor, "name", type(self.actor).__name__)
                raise ValueError(
                    f"actor {name!r} chose actions {bad.tolist()} outside [0, {self.num_actions})"
                )
        tick = Tick(self.t, self.obs, fields, record, self.stepped, self.episode, out)
        for recorder in self.recorders:
            recorder.record(tick)
        self.t += 1
        if out is not None and step:
            applied = np.where(
                alive, out.action, 0
            )  # the action stored in the next record (0 after a done one)
            obs, reward, done, time = self.env.step(applied, active=alive)  # done streams do not step
            if was_done.any():  # reset records for the streams whose newest record ended an episode
                obs = self.env.reset_where(was_done)
                time = np.where(was_done, 0, time)
            self.obs, self.reward, self.done, self.time = obs, reward, done, time
            self.action, self.stepped, self.episode = applied, alive, self.episode + was_done
        return tick

    def completed(self) -> np.ndarray:
        """Episodes every stream has completed, counting an episode whose end is the newest record."""
        return self.episode + (self.done != 0)


def run_streams(
    env: VecEnv,
    actor: Actor,
    recorders: Sequence[Recorder] = (),
    *,
    rng: np.random.Generator,
    num_records: int | None = None,
    episodes: int | None = None,
    num_actions: int | None = None,
    show_progress: bool = False,
    desc: str = "stream",
) -> RunStats:
    """Run ``actor`` in ``env``'s streams from a fresh reset, feeding every record to ``recorders``.

    ``actor.reset(env, num_actions, rng)`` is called first (``num_actions`` defaults to
    ``env.num_actions``; actions must lie in ``[0, num_actions)``), then each recorder's ``start``.
    Stops after ``num_records`` records per stream and/or once every stream completed ``episodes``
    episodes (at least one of the two must be given).
    """
    if num_records is None and episodes is None:
        raise ValueError("run_streams needs a stop: num_records and/or episodes")
    if num_records is not None and num_records < 1:
        raise ValueError(f"num_records must be >= 1, got {num_records}")
    if episodes is not None and episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    engine = StreamEngine(env, actor, recorders, rng=rng, num_actions=num_actions, num_records=num_records)
    engine.start()
    progress = tqdm(total=num_records, desc=desc, disable=not show_progress, unit="record")
    start = _time.perf_counter()
    while True:
        act = episodes is None or bool((engine.completed() < episodes).any())
        last = not act or (num_records is not None and engine.t + 1 >= num_records)
        engine.tick(act=act, step=not last)
        progress.update(1)
        if last:
            break
    seconds = _time.perf_counter() - start
    progress.close()
    return RunStats(ticks=engine.t, records=engine.records, seconds=seconds)


def _as_output(out: Any, n: int) -> ActorOutput:
    """An actor's answer as an ActorOutput with ``action`` int64 [N] numpy."""
    if not isinstance(out, ActorOutput):
        out = ActorOutput(out)
    action = np.asarray(out.action, dtype=np.int64).reshape(n)
    return ActorOutput(action, out.behavior_logits, out.teacher_logits)
