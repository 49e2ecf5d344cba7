"""Output heads: SwiGLU MLPs, online/target twin heads (DQN, vector DQN) and the state-value head."""

from mouse.models.heads.swiglu import SwiGLUBlock, SwiGLUHead
from mouse.models.heads.twin import DQNHead, TwinHead, VecDQNHead
from mouse.models.heads.value import ValueHead
from mouse.models.heads.vec_dqn import rope_rotate, vec_dqn_scores

__all__ = [
    "DQNHead",
    "SwiGLUBlock",
    "SwiGLUHead",
    "TwinHead",
    "ValueHead",
    "VecDQNHead",
    "rope_rotate",
    "vec_dqn_scores",
]
