"""The learner's model acting in the stream engine with exploration, recording what it sampled from."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tensordict import TensorDict

from mouse.models.heads.vec_dqn import vec_dqn_scores
from mouse.rollout.actors import ActorOutput, ModelActor


def mixture_logits(scores: torch.Tensor, temperature: float, epsilon: float) -> torch.Tensor:
    """Log-probabilities ``[N, A]`` of ``(1 - ε) softmax(scores / T) + ε / A`` (``T = 0``: argmax, ties to
    the lowest index). Valid logits: sampling ``softmax`` of them is sampling the mixture."""
    n_act = scores.shape[-1]
    scores = scores.float()
    if temperature > 0:
        probs = F.softmax((scores - scores.max(-1, keepdim=True).values) / temperature, dim=-1)
    else:
        probs = F.one_hot(scores.argmax(-1), n_act).float()
    if epsilon > 0:
        probs = (1.0 - epsilon) * probs + epsilon / n_act
    return probs.log()


class ExploringActor(ModelActor):
    """A :class:`ModelActor` (KV cache, one batched forward per tick) that samples from
    ``(1 - ε) softmax(head / T) + ε / A`` over the model's ``action_head`` scores and returns those
    mixture log-probabilities as ``behavior_logits`` (what V-trace's importance ratios divide by).

    ``set_exploration(T, ε)`` changes the schedule point between rounds; ``generator`` (a
    ``torch.Generator``) makes the draws reproducible. The context holds the records since ``reset``
    (no sliding window: an online round is one window, ``context_steps`` records at most).
    """

    name = "online"

    def __init__(self, model: torch.nn.Module, context_steps: int, device: str | torch.device = "cpu"):
        super().__init__(model, temperature=1.0, context_steps=None, use_cache=True, device=device)
        self.max_records = int(context_steps)
        self.epsilon = 0.0
        self.generator = torch.Generator().manual_seed(0)

    def set_exploration(self, temperature: float, epsilon: float) -> None:
        if not temperature >= 0 or not 0 <= epsilon <= 1:
            raise ValueError(
                f"exploration needs temperature >= 0 and epsilon in [0, 1], got {temperature}, {epsilon}"
            )
        self.temperature, self.epsilon = float(temperature), float(epsilon)

    def reset(self, env: Any, num_actions: int, rng: np.random.Generator) -> None:
        super().reset(env, num_actions, rng)
        self._count = 0

    @torch.inference_mode()
    def act(self, record: TensorDict) -> ActorOutput:
        self._count += 1
        if self._count > self.max_records:
            raise RuntimeError(
                f"an online round holds {self.max_records} records; the actor was asked for more"
            )
        out = self.advance(record)
        head = self.model.action_head
        raw = out.get(head)[:, -1]
        scores = (vec_dqn_scores(raw) if head == "vec_dqn" else raw)[:, : self._num_actions]
        logits = mixture_logits(scores, self.temperature, self.epsilon).cpu()
        action = torch.multinomial(logits.exp(), 1, generator=self.generator).squeeze(-1)
        return ActorOutput(action.numpy(), behavior_logits=logits.numpy())


__all__ = ["ExploringActor", "mixture_logits"]
