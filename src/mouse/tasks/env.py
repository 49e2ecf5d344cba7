"""`TabularEnv`: one TabularTask as a gymnasium environment, and the `mouse/*-v0` registrations."""

from __future__ import annotations

from typing import Any

import gymnasium
from gymnasium import spaces

from mouse.tasks.core import TabularTask
from mouse.tasks.families import make_family


class TabularEnv(gymnasium.Env):
    """Discrete observations (state id) and actions; terminated on entering a terminal state,
    truncated after `task.horizon` transitions. `info` carries `obs_continuous` [C] and `time`."""

    metadata = {"render_modes": []}

    def __init__(self, task: TabularTask) -> None:
        self.task = task
        self.observation_space = spaces.Discrete(task.num_states)
        self.action_space = spaces.Discrete(task.num_actions)
        self._state, self._time = 0, 0

    def _info(self) -> dict[str, Any]:
        return {"obs_continuous": self.task.obs_continuous[self._state].copy(), "time": self._time}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[int, dict]:
        super().reset(seed=seed)
        self._state = int(self.np_random.choice(self.task.num_states, p=self.task.start))
        self._time = 0
        return self._state, self._info()

    def step(self, action: int) -> tuple[int, float, bool, bool, dict]:
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is outside [0, {self.task.num_actions - 1}]")
        s, a, task = self._state, int(action), self.task
        s2 = int(self.np_random.choice(task.num_states, p=task.P[s, a]))
        mean = task.R[s, a] if task.R_transition is None else task.R_transition[s, a, s2]
        if task.reward_noise == "bernoulli":
            reward = float(self.np_random.random() < mean)
        elif task.reward_noise == "gaussian":
            reward = float(mean + task.reward_std * self.np_random.standard_normal())
        else:
            reward = float(mean)
        self._state, self._time = s2, self._time + 1
        terminated = bool(task.terminal[s2])
        truncated = not terminated and self._time >= task.horizon
        return s2, reward, terminated, truncated, self._info()


def _family_env(name: str, task_key: str):
    def make(**kwargs: Any) -> TabularEnv:
        task_id = kwargs.pop(task_key, None)
        family = make_family(name, **kwargs)
        if task_id is None:
            raise ValueError(f"mouse/{name}: pass {task_key}=<int> (one of the family's task ids)")
        return TabularEnv(family.make_task(int(task_id)))

    make.__doc__ = (
        f"A {name} task as a gymnasium env: `{task_key}` selects the task, other kwargs are family params."
    )
    return make


make_darkroom_env = _family_env("darkroom", "goal")
make_frozenlake_env = _family_env("frozenlake", "task_id")
make_bandit_env = _family_env("bandit", "task_id")
make_keydoor_env = _family_env("keydoor", "task_id")

GYM_IDS = {
    "mouse/DarkRoom-v0": "mouse.tasks.env:make_darkroom_env",
    "mouse/FrozenLake-v0": "mouse.tasks.env:make_frozenlake_env",
    "mouse/Bandit-v0": "mouse.tasks.env:make_bandit_env",
    "mouse/KeyDoor-v0": "mouse.tasks.env:make_keydoor_env",
}


def register_envs() -> None:
    """Register the families with gymnasium (idempotent); done on `import mouse.tasks`."""
    for env_id, entry_point in GYM_IDS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=entry_point)
