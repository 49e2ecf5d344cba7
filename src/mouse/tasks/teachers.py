"""Exploring teachers: grid explorers (Dark Room, FrozenLake) and bandit UCB1 / Thompson sampling.

Each keeps per-stream memory across episodes (reset-free learning) and draws a per-stream ε that is
mixed into the EXECUTED action only; `teacher_logits` stay the clean distribution.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mouse.tasks.checks import check_float, check_int
from mouse.tasks.core import TabularTask, TaskFamily
from mouse.tasks.grid import path_lengths_from, shortest_path_lengths
from mouse.tasks.policies import ActOutput, EpsilonNoise, Policy, act_from, argmax_set, uniform_over


class GridExplorer(Policy):
    """Walk to the nearest unvisited cell until the goal has been rewarded, then go straight to it and stay.

    Each stream commits to one target: drawn uniformly among the nearest open cells (unvisited, not a
    hole; path lengths avoid known holes) and kept while it is still among the nearest (without noise
    it always is, until reached; after a slip, an ε-move or the episode reset to the start it is redrawn).
    A cell is visited once a transition has entered it: in Dark Room the start cell is the nearest target
    (0 moves, the goal may be there), so the first action tests it by staying; with `start_known`
    (FrozenLake, whose start tile never pays) the current cell counts as visited. Cells entered with
    done=1 and no reward are holes: never entered again. The clean distribution is uniform over the actions
    whose intended next cell is on a shortest path to the target (the goal once found); with no reachable
    target, uniform over the moves that do not enter a known hole.
    """

    name = "explorer"

    def __init__(
        self,
        family: TaskFamily,
        epsilon_min: float = 0.0,
        epsilon_max: float = 0.3,
        start_known: bool = False,
    ) -> None:
        super().__init__(family)
        if not hasattr(family, "next_cells"):
            raise ValueError(
                f"the grid explorer needs a grid family (darkroom, frozenlake), got {family.name!r}"
            )
        self.noise = EpsilonNoise(f"{family.name} explorer", epsilon_min, epsilon_max)
        self.start_known = start_known
        self.next_cells = np.asarray(family.next_cells)  # [nS, A] intended moves
        self._dist = shortest_path_lengths(self.next_cells)  # [nS, nS] with no holes

    def reset(
        self, tasks: Sequence[TabularTask], rng: np.random.Generator, num_steps: int | None = None
    ) -> None:
        super().reset(tasks, rng, num_steps)
        n, nS = len(tasks), self.next_cells.shape[0]
        self.visited = np.zeros((n, nS), dtype=bool)
        self.hole = np.zeros((n, nS), dtype=bool)
        self.goal = np.full(n, -1, dtype=np.int64)
        self.target = np.full(n, -1, dtype=np.int64)  # committed target cell, -1: none
        self.noise.draw(n, rng)

    def _scores(self, obs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """[N, A] moves from each action's intended next cell to the nearest target (inf: hole/none)."""
        n = len(obs)
        nxt = self.next_cells[obs]  # [N, A]
        score = np.where(targets[:, None, :], self._dist[nxt], np.inf).min(-1)  # open grid
        rows = np.flatnonzero(self.hole.any(-1))
        if len(rows):  # streams that know holes: BFS layers from the targets (Bellman-Ford), holes blocked
            sub, blocked, nb = np.where(targets[rows], 0.0, np.inf), self.hole[rows], nxt[rows]
            r = np.arange(len(rows))[:, None]
            for _ in range(self.next_cells.shape[0]):
                # after i sweeps every cell within i moves is exact, so the argmin over the next cells is
                # settled as soon as one of them is finite in every row
                if np.isfinite(sub[r, nb]).any(-1).all():
                    break
                new = np.where(blocked, np.inf, np.minimum(sub, 1.0 + sub[:, self.next_cells].min(-1)))
                if np.array_equal(new, sub):
                    break
                sub = new
            score[rows] = sub[r, nb]
        return np.where(self.hole[np.arange(n)[:, None], nxt], np.inf, score)

    def update_targets(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Commit each stream at cells `obs` [N] to its target [N] int64 (the goal once found; -1: none)."""
        rows, found = np.arange(len(obs)), self.goal >= 0
        is_open = ~self.visited & ~self.hole
        dist = self._dist[obs]  # [N, nS] moves from obs (open grid)
        holey = np.flatnonzero(self.hole.any(-1) & ~found)
        if len(holey):  # around known holes, up to the nearest open cell
            dist[holey] = path_lengths_from(self.next_cells, obs[holey], self.hole[holey], is_open[holey])
        dist = np.where(is_open, dist, np.inf)  # to the open cells
        nearest = dist.min(-1)
        reachable = np.isfinite(nearest)
        keep = (self.target >= 0) & (dist[rows, self.target] == nearest)  # still a nearest open cell
        draw = np.flatnonzero(reachable & ~keep & ~found)
        if len(draw):  # uniform among the nearest open cells
            ties = np.cumsum(dist[draw] == nearest[draw, None], axis=-1)
            u = rng.random(len(draw)) * ties[:, -1]
            self.target[draw] = (u[:, None] >= ties).sum(-1)
        self.target[~reachable] = -1
        self.target[found] = self.goal[found]
        return self.target

    def clean_distribution(self, obs: np.ndarray) -> np.ndarray:
        """The explorer's clean action distribution [N, A] at cells `obs` [N] toward its committed targets."""
        rows = np.flatnonzero(self.target >= 0)
        targets = np.zeros_like(self.visited)
        targets[rows, self.target[rows]] = True
        score = self._scores(obs, targets)
        safe = ~self.hole[np.arange(len(obs))[:, None], self.next_cells[obs]]
        best = np.where(np.isfinite(score).any(-1, keepdims=True), argmax_set(-score), safe)
        return uniform_over(best)

    def act(self, obs: np.ndarray, time: np.ndarray, rng: np.random.Generator) -> ActOutput:
        obs = np.asarray(obs)
        if self.start_known:
            self.visited[np.arange(len(obs)), obs] = True
        self.update_targets(obs, rng)
        return act_from(self.clean_distribution(obs), self.noise.epsilon, rng)

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
        nxt, rew, dn = np.asarray(next_obs)[rows], np.asarray(reward)[rows], np.asarray(done)[rows]
        self.visited[rows, nxt] = True
        self.hole[rows, nxt] |= (dn == 1) & (rew <= 0)
        paid = rew > 0
        self.goal[rows[paid]] = nxt[paid]


class _ArmStatsPolicy(Policy):
    """Bandit teachers: per-stream pull counts and reward sums [N, K] over the whole stream, and ε."""

    def reset(
        self, tasks: Sequence[TabularTask], rng: np.random.Generator, num_steps: int | None = None
    ) -> None:
        super().reset(tasks, rng, num_steps)
        self.counts = np.zeros((len(tasks), self.num_actions))
        self.sums = np.zeros((len(tasks), self.num_actions))
        self.noise.draw(len(tasks), rng)

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
        a = np.asarray(action)[rows]
        self.counts[rows, a] += 1.0
        self.sums[rows, a] += np.asarray(reward, dtype=np.float64)[rows]


class UCBPolicy(_ArmStatsPolicy):
    """UCB1 (Auer, Cesa-Bianchi & Fischer 2002): pull each arm once, then argmax of
    mean_a + c * sqrt(2 ln n / n_a). Clean distribution: uniform over the untried arms, else over the
    argmax of the index. Memory spans the whole stream (all episodes)."""

    name = "ucb"

    def __init__(
        self, family: TaskFamily, c: float = 1.0, epsilon_min: float = 0.0, epsilon_max: float = 0.3
    ) -> None:
        super().__init__(family)
        self.c = check_float("ucb policy", "c", c, 0.0, float("inf"))
        self.noise = EpsilonNoise("ucb policy", epsilon_min, epsilon_max)

    def clean_distribution(self) -> np.ndarray:
        untried = self.counts == 0
        n = np.maximum(self.counts.sum(-1, keepdims=True), 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            index = self.sums / self.counts + self.c * np.sqrt(2.0 * np.log(n) / self.counts)
        return uniform_over(np.where(untried.any(-1, keepdims=True), untried, argmax_set(index)))

    def act(self, obs: np.ndarray, time: np.ndarray, rng: np.random.Generator) -> ActOutput:
        return act_from(self.clean_distribution(), self.noise.epsilon, rng)


class ThompsonPolicy(_ArmStatsPolicy):
    """Thompson sampling (Thompson 1933; Chapelle & Li 2011) with conjugate posteriors: Beta(1 + wins,
    1 + losses) for Bernoulli arms, N(prior 0.5, var 1) with the task's known noise std for Gaussian.

    Clean distribution: P(arm is best) estimated from `num_samples` posterior draws (-inf for arms never
    best; num_samples=1 is exact Thompson sampling, one-hot on the sampled arm). The executed action is
    drawn from that estimate mixed with the per-stream ε.
    """

    name = "thompson"

    def __init__(
        self, family: TaskFamily, num_samples: int = 16, epsilon_min: float = 0.0, epsilon_max: float = 0.3
    ) -> None:
        super().__init__(family)
        self.num_samples = check_int("thompson policy", "num_samples", num_samples, 1)
        self.noise = EpsilonNoise("thompson policy", epsilon_min, epsilon_max)

    def reset(
        self, tasks: Sequence[TabularTask], rng: np.random.Generator, num_steps: int | None = None
    ) -> None:
        super().reset(tasks, rng, num_steps)
        self.bernoulli = np.array([t.reward_noise == "bernoulli" for t in tasks])
        self.noise_var = np.array([max(t.reward_std, 1e-3) ** 2 for t in tasks])[:, None]

    def clean_distribution(self, rng: np.random.Generator) -> np.ndarray:
        n, k, m = len(self.counts), self.num_actions, self.num_samples
        bern = self.bernoulli[:, None]  # Gaussian rows get a dummy Beta(1, 1) so parameters stay valid
        a, b = np.where(bern, 1.0 + self.sums, 1.0), np.where(bern, 1.0 + self.counts - self.sums, 1.0)
        beta = rng.beta(a, b, size=(m, n, k))
        post_var = 1.0 / (1.0 + self.counts / self.noise_var)
        post_mean = post_var * (0.5 + self.sums / self.noise_var)
        gauss = post_mean + np.sqrt(post_var) * rng.standard_normal((m, n, k))
        draws = np.where(self.bernoulli[None, :, None], beta, gauss)
        best = np.eye(k)[draws.argmax(-1)]  # [m, N, K] one-hot
        return best.mean(0)

    def act(self, obs: np.ndarray, time: np.ndarray, rng: np.random.Generator) -> ActOutput:
        return act_from(self.clean_distribution(rng), self.noise.epsilon, rng)
