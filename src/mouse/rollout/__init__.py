"""The one stream engine: a vectorised env (`VecEnv`) x an actor x recorders, reset-free.

`run_streams(env, actor, recorders, rng=..., num_records=... | episodes=...)` steps N streams in
lockstep following the step-record contract (see `mouse.rollout.engine`). Actors: `RandomActor`,
`OracleActor`, `PolicyActor` (a `mouse.tasks` policy or teacher, with its logits),
`StreamPolicyActor`, `ModelActor` (a model acting from its KV cache). Recorders: `ColumnRecorder`
(dataset columns), `ReturnRecorder` (per-episode returns). `collect_streams` (datasets) and
`rollout_returns` (teacher curves) run any task family (`family.make_vec_env`) through it.
"""

from mouse.rollout.actors import (
    Actor,
    ActorOutput,
    ModelActor,
    OracleActor,
    PolicyActor,
    RandomActor,
    StreamPolicyActor,
)
from mouse.rollout.engine import run_streams
from mouse.rollout.env import VecEnv, close_env
from mouse.rollout.recorders import ColumnRecorder, Recorder, ReturnRecorder, RolloutResult, RunStats, Tick
from mouse.rollout.streams import collect_streams, rollout_returns

__all__ = [
    "Actor",
    "ActorOutput",
    "ColumnRecorder",
    "ModelActor",
    "OracleActor",
    "PolicyActor",
    "RandomActor",
    "Recorder",
    "ReturnRecorder",
    "RolloutResult",
    "RunStats",
    "StreamPolicyActor",
    "Tick",
    "VecEnv",
    "close_env",
    "collect_streams",
    "rollout_returns",
    "run_streams",
]
