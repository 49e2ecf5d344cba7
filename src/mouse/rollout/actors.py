"""Actors: whatever chooses actions in the stream engine (a scripted policy, a teacher, a model + KV cache).

An actor sees the stream one record per environment per tick (the step-record contract of
`mouse.rollout.engine`) and answers with one action per environment. The engine ignores the action for
environments whose newest record is terminal/truncated (no action is taken from such a record), but the
actor still receives the record because it is part of the stream. An actor may also report the logits
of the choice (`ActorOutput`): `behavior_logits` of the distribution the action was drawn from and
`teacher_logits` of a clean target distribution, which a column recorder stores.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from tensordict import TensorDict

from mouse.rollout.env import OBS_FIELDS


@dataclass
class ActorOutput:
    """An actor's choice at one tick: ``action [N]`` int64 and, optionally, ``behavior_logits`` and
    ``teacher_logits`` ``[N, A]`` float32 at the records it acted on (rows of done records are ignored)."""

    action: np.ndarray | torch.Tensor
    behavior_logits: np.ndarray | None = None
    teacher_logits: np.ndarray | None = None


@runtime_checkable
class Actor(Protocol):
    """Chooses actions from the stream. ``act`` is called once per tick with the newest records."""

    name: str

    def reset(self, env: Any, num_actions: int, rng: np.random.Generator) -> None:
        """Start new streams for the ``env.num_envs`` environments of ``env`` (a ``VecEnv``)."""

    def act(self, record: TensorDict) -> torch.Tensor | np.ndarray | ActorOutput:
        """Consume ``record`` (TensorDict [N], one new record per env); return actions ``[N]`` int64,
        or an :class:`ActorOutput` that also carries the choice's logits."""


class RandomActor:
    """Uniformly random actions over the family's ``num_actions`` (the random baseline)."""

    name = "random"

    def reset(self, env: Any, num_actions: int, rng: np.random.Generator) -> None:
        self._num_actions, self._rng = num_actions, rng

    def act(self, record: TensorDict) -> torch.Tensor:
        n = int(record.batch_size[0])
        return torch.from_numpy(self._rng.integers(0, self._num_actions, size=n).astype(np.int64))


class OracleActor:
    """Greedy on the exact finite-horizon ``Q*(obs, time)`` of each task (the oracle baseline).

    Ties go to the lowest action index (``argmax``); it knows the hidden task, so it never explores.
    """

    name = "oracle"

    def reset(self, env: Any, num_actions: int, rng: np.random.Generator) -> None:
        self._env, self._num_actions = env, num_actions

    def act(self, record: TensorDict) -> torch.Tensor:
        obs, time = record["obs_discrete"].numpy(), record["time"].numpy()
        alive = record["done"].numpy() == 0  # no action is taken from a terminal/truncated record
        actions = np.zeros(obs.shape[0], dtype=np.int64)
        if alive.any():
            # Q* is defined for times 0..horizon-1; done rows (possibly at time == horizon) ask for time 0.
            q = np.asarray(self._env.q_star(obs, np.where(alive, time, 0)))[:, : self._num_actions]
            actions[alive] = q[alive].argmax(axis=-1)
        return torch.from_numpy(actions)


class StreamPolicyActor:
    """Wraps a scripted ``policy(stream: TensorDict[N, S]) -> actions [N]`` that reads the whole stream.

    The stream holds every record so far (``S`` grows by one per tick), exactly as a model would see it;
    this is how the engine is tested against scripted policies (e.g. an oracle that looks up Q* from
    the stream's own ``obs_discrete`` and ``time``).
    """

    def __init__(self, policy: Callable[[TensorDict], Any], name: str = "policy"):
        self.policy, self.name = policy, name
        self._records: list[TensorDict] = []

    def reset(self, env: Any, num_actions: int, rng: np.random.Generator) -> None:
        self._records = []

    def act(self, record: TensorDict) -> torch.Tensor:
        self._records.append(record)
        stream = torch.stack(self._records, dim=1)
        return torch.as_tensor(np.asarray(self.policy(stream)), dtype=torch.int64)


class PolicyActor:
    """Wraps a ``mouse.tasks`` behaviour ``Policy`` (``make_policy("explorer", family)``, ...) as an actor.

    ``reset`` calls ``policy.reset(env.tasks, rng, num_steps)`` (``num_steps``: records per stream, when
    known, e.g. for the annealed schedule); ``act`` first feeds the transition that arrived at the new
    record (``observe`` on the streams that took one, ``on_episode_end`` where a stream reset), then asks
    ``policy.act(obs, time, rng)`` (``obs``: the record field ``policy.obs_key``, default ``obs_discrete``;
    None = the first observation field the environment records) and returns the action with its behaviour and teacher logits. This is
    how datasets are collected, and how a teacher's reference curve is run through the same engine,
    tasks and seeds as a model.
    """

    def __init__(self, policy: Any, name: str | None = None, num_steps: int | None = None):
        self.policy, self.num_steps = policy, num_steps
        self.name = name or str(getattr(policy, "name", "policy"))

    def reset(self, env: Any, num_actions: int, rng: np.random.Generator) -> None:
        self.policy.reset(env.tasks, rng, num_steps=self.num_steps)
        self._rng, self._prev = rng, None

    def _obs_key(self, record: TensorDict) -> str:
        """The record field the policy reads (``policy.obs_key``; None: the first observation field)."""
        key = getattr(self.policy, "obs_key", "obs_discrete")
        if key is None:
            key = next((k for k in OBS_FIELDS if k in record.keys()), None)
        if key is None or key not in record.keys():
            raise ValueError(
                f"policy {self.name!r} reads {key or 'an observation field'} but the environment records "
                f"{sorted(k for k in record.keys() if k in OBS_FIELDS)}; choose a policy for this family"
            )
        return key

    def act(self, record: TensorDict) -> ActorOutput:
        obs, time = record[self._obs_key(record)].numpy(), record["time"].numpy()
        if self._prev is not None:
            prev_obs, prev_done = self._prev
            active = prev_done == 0
            action, reward, done = (record[k].numpy() for k in ("action", "reward", "done"))
            self.policy.observe(prev_obs, action, reward, obs, done, active=active)
            if not active.all():
                self.policy.on_episode_end(~active)
        self._prev = (obs, record["done"].numpy())
        action, behavior, teacher = self.policy.act(obs, time, self._rng)
        return ActorOutput(np.asarray(action, dtype=np.int64), behavior, teacher)


class ModelActor:
    """A MOUSE model acting from its own growing stream, one step of compute per record (KV cache).

    The first record is a prefill (``forward(record[N,1], use_cache=True)``); every later record is
    ``forward(record[N,1], cache=cache, use_cache=True)``, so each tick costs one record of compute.

    Context overflow (sliding-window re-prefill): the model never attends to more than ``context_steps``
    records (W). When a new record would make the context W + 1 records long, the cache is dropped and
    the most recent ``keep_steps`` records (K, default W // 2, the new record included) are re-prefilled in
    one forward from position 0; decoding then continues with the cache. The context length therefore
    saw-tooths between K and W, every stream position is computed with at least K - 1 records of history,
    and a re-prefill costs one K-record forward every W - K + 1 ticks. ``context_steps=None`` = unbounded.

    With ``use_cache=False`` the same window is re-run in full for every record (the reference the cached
    path is tested against).
    """

    name = "model"

    def __init__(
        self,
        model: torch.nn.Module,
        temperature: float = 0.0,
        context_steps: int | None = None,
        keep_steps: int | None = None,
        use_cache: bool = True,
        device: str | torch.device = "cpu",
    ):
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
        if context_steps is not None and context_steps < 1:
            raise ValueError(f"context_steps must be >= 1 or None (unbounded), got {context_steps}")
        if keep_steps is None and context_steps is not None:
            keep_steps = max(context_steps // 2, 1)
        if context_steps is not None and not 1 <= keep_steps <= context_steps:
            raise ValueError(f"keep_steps must be in [1, context_steps={context_steps}], got {keep_steps}")
        self.model, self.temperature = model, float(temperature)
        self.context_steps, self.keep_steps = context_steps, keep_steps
        self.use_cache, self.device = use_cache, torch.device(device)
        emb = dict(getattr(model, "config", {}).get("embedding_kwargs", {}))
        self._keys = ["action", "reward", "done", "time"]
        if emb.get("include_obs_discrete", True):
            self._keys.append("obs_discrete")
        if emb.get("include_obs_continuous", False):
            self._keys.append("obs_continuous")
        if emb.get("include_obs_image", False):
            self._keys.append("obs_image")
        params = inspect.signature(model.forward).parameters
        self._has_compute_targets = "compute_targets" in params
        self._has_heads = "heads" in params and isinstance(getattr(model, "action_head", None), str)
        self.reprefills = 0
        self.records_seen = 0

    def reset(self, env: Any, num_actions: int, rng: np.random.Generator) -> None:
        self._num_actions = num_actions
        self._cache: Any = None
        self._window: deque[TensorDict] = deque(maxlen=self.context_steps)
        self._len = 0  # records in the current context

    @torch.inference_mode()
    def act(self, record: TensorDict) -> torch.Tensor:
        out = self.advance(record)
        return self.model.get_action(out, self.temperature, num_actions=self._num_actions).cpu()

    @torch.inference_mode()
    def advance(self, record: TensorDict) -> TensorDict:
        """Feed ``record`` [N] into the context; return the model's outputs at it (``[N, 1 or K, ...]``,
        the new record last)."""
        rec = record.select(*self._keys).to(self.device).unsqueeze(1)  # [N, 1]
        self.records_seen += 1
        overflow = self.context_steps is not None and self._len == self.context_steps
        self._window.append(rec)
        if overflow:  # sliding window: keep the most recent K records, re-prefill from position 0
            self.reprefills += 1
            recent = list(self._window)[-self.keep_steps :]
            self._window = deque(recent, maxlen=self.context_steps)
            self._len = len(recent)
            out, self._cache = self._forward(torch.cat(recent, dim=1), cache=None)
        elif self.use_cache:
            out, self._cache = self._forward(rec, cache=self._cache)
            self._len += 1
        else:
            self._len += 1
            out, _ = self._forward(torch.cat(list(self._window), dim=1), cache=None)
        return out

    def _forward(self, stream: TensorDict, cache: Any) -> tuple[TensorDict, Any]:
        kwargs: dict[str, Any] = {"cache": cache, "use_cache": self.use_cache}
        if self._has_compute_targets:  # skip the target heads' forward: acting never reads them
            kwargs["compute_targets"] = False
        if self._has_heads:  # and every head but the acting one
            kwargs["heads"] = (self.model.action_head,)
        return self.model(stream, **kwargs)
