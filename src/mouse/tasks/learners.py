"""Algorithm-Distillation learners (Laskin et al. 2022): one single-task RL learner per stream, whose whole
learning history (reset-free, across episodes) is the stream.

- `QLearner`: tabular one-step Q-learning (Watkins 1989) with ε-greedy exploration, for tabular
  families (observation = the discrete state id, as in AD; no time feature). ε decays linearly per
  EPISODE from `epsilon_start` to `epsilon_end` over `decay_episodes` episodes.
- `DQNLearner`: DQN (Mnih et al. 2015) with one small MLP, replay ring and target network per stream,
  for continuous or image observations. All N networks are one batched tensor per layer ([N, in, out],
  `torch.baddbmm`), updated by a batched Adam whose per-stream slices are independent optimisers.
  ε decays linearly per STEP from `epsilon_start` to `epsilon_end` over `decay_steps` transitions
  (episode lengths vary in such families, so a per-episode schedule is not known in advance).

Both learners imitate themselves: `behavior_logits` = `teacher_logits` = log of the ε-greedy
distribution the action was drawn from (ties of the greedy set uniform). AD distils the improving
learning history itself, exploration included (as `AnnealedPolicy` does).

Discount and truncation (done 2): the learner's state is the observation only (no time feature, as in
AD), so it learns the discounted continuing problem: `gamma` None = the family's gamma if below 1, else
0.99 (`DEFAULT_GAMMA`), and truncation bootstraps (a time limit is not a terminal: Pardo et al. 2018).
The tabular families' horizons are part of their tasks, but the greedy policy of that discounted problem
(shortest path to the goal, then stay; the best arm) is the finite-horizon optimum there, and it is a
stationary target: treating truncation as terminal with gamma = 1 makes the same (s, a) get targets
that depend on the unseen time left (measured: bandit learners then fall below random; Dark Room is
slower). `bootstrap_truncation=False` treats truncation as terminal; gamma = 1 while bootstrapping
through truncation has no fixed point in tasks without terminals and is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mouse.tasks.checks import check_choice, check_float, check_int
from mouse.tasks.core import TaskFamily
from mouse.tasks.policies import ActOutput, Policy, act_from, argmax_set, mix_epsilon, uniform_over
from mouse.tasks.tabular import TabularFamily

DQN_OBS_KEYS = ("obs_continuous", "obs_image")
DEFAULT_GAMMA = 0.99  # the learners' discount when the family's gamma is 1


def linear_epsilon(start: float, end: float, progress: np.ndarray, span: int) -> np.ndarray:
    """ε [N] = start + (end - start) * min(progress / span, 1) (progress: episodes or steps so far)."""
    frac = np.minimum(np.asarray(progress, dtype=np.float64) / max(span, 1), 1.0)
    return start + (end - start) * frac


def epsilon_greedy(values: np.ndarray, epsilon: np.ndarray) -> np.ndarray:
    """The ε-greedy distribution [N, A] on `values` [N, A]: greedy ties uniform, then mixed with ε uniform."""
    return mix_epsilon(uniform_over(argmax_set(values)), epsilon)


class _Learner(Policy):
    """Shared by both learners: the ε range, discount and truncation choice, and acting ε-greedily."""

    name = "learner"

    def __init__(
        self,
        family: TaskFamily,
        epsilon_start: float,
        epsilon_end: float,
        gamma: float | None,
        bootstrap_truncation: bool,
    ) -> None:
        super().__init__(family)
        owner = f"{family.name} learner"
        self.epsilon_start = check_float(owner, "epsilon_start", epsilon_start, 0.0, 1.0)
        self.epsilon_end = check_float(owner, "epsilon_end", epsilon_end, 0.0, 1.0)
        if gamma is None:
            gamma = family.gamma if family.gamma < 1.0 else DEFAULT_GAMMA
        self.gamma = check_float(owner, "gamma", gamma, 0.0, 1.0)
        if not isinstance(bootstrap_truncation, bool):
            raise ValueError(
                f"{owner}: bootstrap_truncation must be true or false, got {bootstrap_truncation!r}"
            )
        if self.gamma == 1.0 and bootstrap_truncation:
            raise ValueError(
                f"{owner}: gamma=1 with bootstrap_truncation has no fixed point without terminals; "
                "set gamma < 1 or bootstrap_truncation=false"
            )
        self.bootstrap_truncation = bootstrap_truncation

    def stops(self, done: np.ndarray) -> np.ndarray:
        """[N] bool: transitions whose target does not bootstrap (terminal; truncated unless bootstrapped)."""
        done = np.asarray(done)
        return (done == 1) | ((done == 2) & (not self.bootstrap_truncation))

    def current_epsilon(self) -> np.ndarray:
        """ε [N] each stream acts with now."""
        raise NotImplementedError

    def values(self, obs: np.ndarray) -> np.ndarray:
        """The learner's action values [N, A] at `obs`."""
        raise NotImplementedError

    def act(self, obs: np.ndarray, time: np.ndarray, rng: np.random.Generator) -> ActOutput:
        behavior = epsilon_greedy(self.values(obs), self.current_epsilon())
        return act_from(behavior, np.zeros(len(behavior)), rng)


class QLearner(_Learner):
    """Tabular Q-learning per stream: Q [N, nS, A] (float64, init `q_init`), ε-greedy per episode.

    Update on each transition (s, a, r, s', done): Q[s, a] += alpha * (r + gamma * (1 - stop) *
    max_a' Q[s', a'] - Q[s, a]), stop = terminal (and truncated when not `bootstrap_truncation`).
    ε in episode k = epsilon_start + (epsilon_end - epsilon_start) * min(k / (D - 1), 1), D =
    `decay_episodes` (default num_steps // (horizon + 1) from `reset`: the stream's episodes).
    """

    obs_key = "obs_discrete"

    def __init__(
        self,
        family: TaskFamily,
        alpha: float = 0.1,
        epsilon_start: float = 1.0,
        epsilon_end: float = 0.0,
        decay_episodes: int | None = None,
        gamma: float | None = None,
        q_init: float = 0.0,
        bootstrap_truncation: bool = True,
    ) -> None:
        super().__init__(family, epsilon_start, epsilon_end, gamma, bootstrap_truncation)
        owner = f"{family.name} learner"
        if family.obs_discrete_size < 1:
            raise ValueError(f"{owner}: tabular Q-learning needs discrete observations (obs_discrete)")
        self.alpha = check_float(owner, "alpha", alpha, 0.0, 1.0)
        self.decay_episodes = (
            None if decay_episodes is None else check_int(owner, "decay_episodes", decay_episodes, 1)
        )
        self.q_init = check_float(owner, "q_init", q_init, -1e9, 1e9)
        self.num_states = int(family.obs_discrete_size)

    def reset(self, tasks: Sequence[object], rng: np.random.Generator, num_steps: int | None = None) -> None:
        super().reset(tasks, rng, num_steps)  # type: ignore[arg-type]
        if self.decay_episodes is None and num_steps is None:
            raise ValueError(
                f"{self.family.name} learner: set `decay_episodes` or pass num_steps to reset() to derive it"
            )
        self._span = self.decay_episodes or max(1, num_steps // (self.family.horizon + 1))
        n = len(tasks)
        self.q = np.full((n, self.num_states, self.num_actions), self.q_init, dtype=np.float64)
        self.episode = np.zeros(n, dtype=np.int64)

    def current_epsilon(self) -> np.ndarray:
        if self._span == 1:  # a single decay episode: epsilon_end from the start (as AnnealedPolicy)
            return np.full(len(self.episode), self.epsilon_end)
        return linear_epsilon(self.epsilon_start, self.epsilon_end, self.episode, self._span - 1)

    def values(self, obs: np.ndarray) -> np.ndarray:
        return self.q[np.arange(len(obs)), np.asarray(obs)]

    def observe(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        done: np.ndarray,
        active: np.ndarray | None = None,
    ) -> None:
        rows = self._active_rows(active, len(obs))
        s, a, s2 = np.asarray(obs)[rows], np.asarray(action)[rows], np.asarray(next_obs)[rows]
        r = np.asarray(reward, dtype=np.float64)[rows]
        bootstrap = np.where(self.stops(np.asarray(done)[rows]), 0.0, self.q[rows, s2].max(-1))
        target = r + self.gamma * bootstrap
        self.q[rows, s, a] += self.alpha * (target - self.q[rows, s, a])

    def on_episode_end(self, mask: np.ndarray) -> None:
        self.episode += np.asarray(mask, dtype=np.int64)


# ----------------------------------------------------------------------------- DQN
Layers = list[tuple[torch.Tensor, torch.Tensor]]


def batched_mlp(layers: Layers, x: torch.Tensor) -> torch.Tensor:
    """N independent MLPs at once: `x` [N, B, in] through layers (W [N, in, out], b [N, out]), ReLU
    between layers, none after the last; returns [N, B, out]."""
    for i, (w, b) in enumerate(layers):
        x = torch.baddbmm(b.unsqueeze(1), x, w)
        if i < len(layers) - 1:
            x = torch.relu(x)
    return x


def init_batched_mlp(sizes: Sequence[int], n: int, generator: torch.Generator) -> Layers:
    """Layers for `batched_mlp` with torch.nn.Linear's default init: W, b ~ U(-1/sqrt(in), 1/sqrt(in))."""
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / fan_in**0.5
        w = (torch.rand(n, fan_in, fan_out, generator=generator) * 2 - 1) * bound
        b = (torch.rand(n, fan_out, generator=generator) * 2 - 1) * bound
        layers.append((w, b))
    return layers


class BatchedAdam:
    """Adam (Kingma & Ba 2015) over tensors whose first dim is the stream: `step(grads, mask [N])` updates
    only the masked streams, each with its own step count, so every stream is an independent optimiser."""

    def __init__(self, params: list[torch.Tensor], lr: float, betas=(0.9, 0.999), eps: float = 1e-8) -> None:
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = torch.zeros(params[0].shape[0], dtype=torch.float64)

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor], mask: torch.Tensor) -> None:
        b1, b2 = self.betas
        self.t += mask.double()
        on = mask.float()
        a1, a2 = 1 - (1 - b1) * on, 1 - (1 - b2) * on  # decay per stream: b1 / b2 where masked, else 1
        c1, c2 = (1 - b1 ** self.t.clamp(min=1)).float(), (1 - b2 ** self.t.clamp(min=1)).float()
        step_size, root_c2 = self.lr * on / c1, c2.sqrt()  # zero step where not masked
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            shape = (-1,) + (1,) * (p.dim() - 1)
            m.mul_(a1.view(shape)).addcmul_(g, (1 - a1).view(shape))
            v.mul_(a2.view(shape)).addcmul_(g * (1 - a2).view(shape), g)
            denom = v.sqrt().div_(root_c2.view(shape)).add_(self.eps)
            p.addcdiv_(m * step_size.view(shape), denom, value=-1.0)


class DQNLearner(_Learner):
    """DQN per stream for continuous or image observations; all N streams batched in single torch ops.

    Per stream: an MLP obs -> `hidden_dim` x `num_layers` (ReLU) -> A, its target copy, a replay ring of
    `buffer_size` transitions and an Adam optimiser (lr `lr`). After each of its transitions a stream
    stores it; once it has taken `learning_starts` transitions it does one update every `train_every`
    records of its stream (records, not transitions: every stream has the same record count, so all N
    updates fall on the same ticks and batch into one; a done record takes no transition and no
    update): Huber loss of Q(s, a) against r + gamma * (1 - stop) * max_a' Q_target(s', a') on
    `batch_size` uniformly sampled transitions of its own ring; its target net is synced every
    `target_every` of its updates. ε per step: linear from epsilon_start to epsilon_end over
    `decay_steps` transitions (default: num_steps from `reset`, the stream's length).

    `obs_key` None: "obs_continuous" when the family has it, else "obs_image". Inputs are obs *
    `obs_scale` (None: 1 for continuous, 1 / `family.obs_image_max` for images: 1/255 for pixels, 0.1
    for MiniGrid's symbolic ids). Randomness (init, sampling) comes from a torch.Generator seeded from the
    rng given to `reset`, so equal seeds give equal streams. CPU, float32.
    """

    def __init__(
        self,
        family: TaskFamily,
        lr: float = 1e-3,
        hidden_dim: int = 64,
        num_layers: int = 2,
        buffer_size: int = 10_000,
        batch_size: int = 32,
        learning_starts: int = 500,
        train_every: int = 1,
        target_every: int = 250,
        epsilon_start: float = 1.0,
        epsilon_end: float = 0.05,
        decay_steps: int | None = None,
        gamma: float | None = None,
        bootstrap_truncation: bool = True,
        obs_key: str | None = None,
        obs_scale: float | None = None,
    ) -> None:
        super().__init__(family, epsilon_start, epsilon_end, gamma, bootstrap_truncation)
        owner = f"{family.name} learner"
        sizes = {"obs_continuous": family.obs_continuous_dim, "obs_image": family.obs_image_size}
        if obs_key is None:
            obs_key = next((k for k in DQN_OBS_KEYS if sizes[k] > 0), None)
            if obs_key is None:
                raise ValueError(
                    f"{owner}: DQN needs continuous or image observations; {family.name!r} has neither "
                    "(tabular families use the Q-learning learner)"
                )
        self.obs_key = check_choice(owner, "obs_key", obs_key, DQN_OBS_KEYS)
        if sizes[self.obs_key] < 1:
            raise ValueError(f"{owner}: obs_key={obs_key!r} but the family has no {obs_key} observations")
        self.obs_dim = int(sizes[self.obs_key])
        self.lr = check_float(owner, "lr", lr, 0.0, 1.0)
        self.hidden_dim = check_int(owner, "hidden_dim", hidden_dim, 1)
        self.num_layers = check_int(owner, "num_layers", num_layers, 1)
        self.buffer_size = check_int(owner, "buffer_size", buffer_size, 1)
        self.batch_size = check_int(owner, "batch_size", batch_size, 1)
        self.learning_starts = check_int(owner, "learning_starts", learning_starts, 1)
        self.train_every = check_int(owner, "train_every", train_every, 1)
        self.target_every = check_int(owner, "target_every", target_every, 1)
        self.decay_steps = None if decay_steps is None else check_int(owner, "decay_steps", decay_steps, 1)
        default_scale = 1.0 if self.obs_key == "obs_continuous" else 1.0 / family.obs_image_max
        self.obs_scale = (
            default_scale if obs_scale is None else check_float(owner, "obs_scale", obs_scale, 0.0, 1e9)
        )

    def reset(self, tasks: Sequence[object], rng: np.random.Generator, num_steps: int | None = None) -> None:
        super().reset(tasks, rng, num_steps)  # type: ignore[arg-type]
        if self.decay_steps is None and num_steps is None:
            raise ValueError(f"{self.family.name} learner: set `decay_steps` or pass num_steps to reset()")
        self._span = self.decay_steps or num_steps
        n, cap = len(tasks), self.buffer_size
        self.generator = torch.Generator().manual_seed(int(rng.integers(2**63)))
        sizes = [self.obs_dim] + [self.hidden_dim] * self.num_layers + [self.num_actions]
        self.online = init_batched_mlp(sizes, n, self.generator)
        self.target = [(w.clone(), b.clone()) for w, b in self.online]
        self.params = [p.requires_grad_() for layer in self.online for p in layer]
        self.optimizer = BatchedAdam(self.params, self.lr)
        obs_dtype = torch.uint8 if self.obs_key == "obs_image" else torch.float32
        self.buf_obs = torch.zeros(n, cap, self.obs_dim, dtype=obs_dtype)
        self.buf_next = torch.zeros(n, cap, self.obs_dim, dtype=obs_dtype)
        self.buf_action = torch.zeros(n, cap, dtype=torch.int64)
        self.buf_reward = torch.zeros(n, cap)
        self.buf_discount = torch.zeros(n, cap)  # gamma * (1 - stop)
        self.steps = np.zeros(n, dtype=np.int64)  # transitions taken per stream
        self.updates = np.zeros(n, dtype=np.int64)
        self.records = 0  # transitions offered so far (one per record after the first, as in every stream)

    def current_epsilon(self) -> np.ndarray:
        return linear_epsilon(self.epsilon_start, self.epsilon_end, self.steps, self._span)

    def _inputs(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.float() * self.obs_scale

    @torch.no_grad()
    def values(self, obs: np.ndarray) -> np.ndarray:
        x = self._inputs(torch.as_tensor(np.asarray(obs)).reshape(len(obs), 1, self.obs_dim))
        return batched_mlp(self.online, x)[:, 0].double().numpy()

    def observe(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        done: np.ndarray,
        active: np.ndarray | None = None,
    ) -> None:
        self.records += 1
        rows = self._active_rows(active, len(obs))
        if len(rows) == 0:
            return
        slot = torch.as_tensor(self.steps[rows] % self.buffer_size)
        r = torch.as_tensor(rows)
        n = len(obs)
        self.buf_obs[r, slot] = torch.as_tensor(np.asarray(obs).reshape(n, -1)[rows]).to(self.buf_obs.dtype)
        self.buf_next[r, slot] = torch.as_tensor(np.asarray(next_obs).reshape(n, -1)[rows]).to(
            self.buf_obs.dtype
        )
        self.buf_action[r, slot] = torch.as_tensor(np.asarray(action, dtype=np.int64)[rows])
        self.buf_reward[r, slot] = torch.as_tensor(np.asarray(reward, dtype=np.float32)[rows])
        stop = self.stops(np.asarray(done)[rows])
        self.buf_discount[r, slot] = torch.as_tensor(np.where(stop, 0.0, self.gamma), dtype=torch.float32)
        self.steps[rows] += 1
        due = np.zeros(n, dtype=bool)
        due[rows] = self.steps[rows] >= self.learning_starts
        if self.records % self.train_every == 0 and due.any():
            self.update(due)

    def update(self, due: np.ndarray) -> None:
        """One DQN step on the streams where `due` [N] is true (the others' weights stay untouched)."""
        n, bs = len(due), self.batch_size
        filled = torch.as_tensor(np.minimum(self.steps, self.buffer_size).clip(min=1))
        idx = (torch.rand(n, bs, generator=self.generator) * filled[:, None]).long()
        rows = torch.arange(n)[:, None]
        obs, nxt = self._inputs(self.buf_obs[rows, idx]), self._inputs(self.buf_next[rows, idx])
        action, reward, discount = (
            self.buf_action[rows, idx],
            self.buf_reward[rows, idx],
            self.buf_discount[rows, idx],
        )
        with torch.no_grad():
            y = reward + discount * batched_mlp(self.target, nxt).max(-1).values
        q = batched_mlp(self.online, obs).gather(-1, action[..., None])[..., 0]
        mask = torch.as_tensor(due)
        per_stream = torch.nn.functional.huber_loss(q, y, reduction="none", delta=1.0).mean(-1)
        loss = (per_stream * mask).sum()  # a sum: each stream's gradient is that of its own mean loss
        grads = torch.autograd.grad(loss, self.params)
        self.optimizer.step(list(grads), mask)
        self.updates += due
        sync = torch.as_tensor(due & (self.updates % self.target_every == 0))
        if sync.any():
            with torch.no_grad():
                for (w, b), (tw, tb) in zip(self.online, self.target):
                    tw[sync] = w[sync]
                    tb[sync] = b[sync]


def learner_class(family: TaskFamily) -> type[_Learner]:
    """The "learner" policy of `family`: `QLearner` for tabular families (or any family whose only
    observation is discrete), else `DQNLearner` (which needs continuous or image observations)."""
    only_discrete = family.obs_discrete_size > 0 and not (family.obs_continuous_dim or family.obs_image_size)
    return QLearner if isinstance(family, TabularFamily) or only_discrete else DQNLearner
