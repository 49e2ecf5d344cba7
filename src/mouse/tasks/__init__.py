"""Task families (tabular with exact Q*, gymnasium envs), behaviour policies, exploring teachers, learners.

`make_family(name, **params)` builds a `TaskFamily` ("darkroom", "frozenlake", "bandit", "keydoor", "gym",
"minigrid"); `make_policy(name, family, **params)` a batched `Policy` ("learner": Algorithm Distillation's
per-stream Q-learning / DQN learners, `mouse.tasks.learners`). Streams are run by the stream engine above
this package: `mouse.rollout.collect_streams` (datasets) and `mouse.rollout.rollout_returns` (curves).
Importing this package registers `mouse/DarkRoom-v0`, `mouse/FrozenLake-v0`, `mouse/Bandit-v0`,
`mouse/KeyDoor-v0`.
"""

from mouse.tasks.core import TabularTask, TaskFamily, value_iteration
from mouse.tasks.env import TabularEnv, register_envs
from mouse.tasks.families import FAMILIES, family_parameters, make_family
from mouse.tasks.gym import GymFamily, GymVecEnv
from mouse.tasks.minigrid import MiniGridFamily
from mouse.tasks.policies import Policy
from mouse.tasks.registry import POLICIES, STREAM_POLICIES, make_policy, policy_parameters
from mouse.tasks.streams import episode_returns, oracle_returns, random_returns
from mouse.tasks.tabular import TabularFamily
from mouse.tasks.vec_env import TabularVecEnv

register_envs()

__all__ = [
    "FAMILIES",
    "POLICIES",
    "STREAM_POLICIES",
    "GymFamily",
    "GymVecEnv",
    "MiniGridFamily",
    "Policy",
    "TabularEnv",
    "TabularFamily",
    "TabularTask",
    "TabularVecEnv",
    "TaskFamily",
    "episode_returns",
    "family_parameters",
    "make_family",
    "make_policy",
    "oracle_returns",
    "policy_parameters",
    "random_returns",
    "value_iteration",
]
