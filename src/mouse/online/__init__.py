"""Online in-context RL (``mouse-train mode=online``): actors feed a bounded replay, the learner runs
the same ``train_step`` as offline training.

- :class:`ExploringActor` — the current model acting from its KV cache, one batched forward per env
  tick for every stream (central inference, as in SEED RL), sampling with a temperature / ε schedule
  and recording the ``behavior_logits`` of the distribution it sampled from.
- :class:`WindowRecorder` — the stream engine's recorder that turns one acting round into windows.
- :class:`WindowReplay` — a bounded FIFO of windows (torchrl ``TensorDictReplayBuffer``).
- :class:`OnlineTrainer` — the actor–learner loop (``mouse.online.trainer``).
"""

from mouse.online.actor import ExploringActor, mixture_logits
from mouse.online.replay import WindowRecorder, WindowReplay
from mouse.online.schedule import LinearSchedule

__all__ = ["ExploringActor", "LinearSchedule", "WindowRecorder", "WindowReplay", "mixture_logits"]
