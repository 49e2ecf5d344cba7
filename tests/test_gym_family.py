"""The `gym` task family and `GymVecEnv`: spaces -> record fields, done codes, holding streams, the
step-record contract through the engine, determinism, sync == async, and `mouse-collect task=gym`."""

import os
import subprocess
import sys
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces

from mouse.data import load_dataset
from mouse.data.config import GymTaskConfig, task_config, task_kwargs
from mouse.rollout import collect_streams
from mouse.tasks import GymFamily, make_family, make_policy

SCRIPT = Path(sys.executable).parent / "mouse-collect"


class TinyImageEnv(gymnasium.Env):
    """A 4 x 5 x 3 uint8 image whose pixels all equal the step count; action 1 terminates (reward 2),
    action 0 continues (reward 0.5)."""

    observation_space = spaces.Box(0, 255, (4, 5, 3), np.uint8)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.count = 0
        return np.zeros((4, 5, 3), np.uint8), {}

    def step(self, action):
        self.count += 1
        obs = np.full((4, 5, 3), self.count, np.uint8)
        return obs, (2.0 if action == 1 else 0.5), bool(action == 1), False, {}


class DictObsEnv(TinyImageEnv):
    observation_space = spaces.Dict(
        {"pos": spaces.Box(-1.0, 1.0, (2,)), "img": TinyImageEnv.observation_space}
    )

    def reset(self, *, seed=None, options=None):
        img, info = super().reset(seed=seed)
        return {"pos": np.zeros(2, np.float32), "img": img}, info

    def step(self, action):
        img, *rest = super().step(action)
        return {"pos": np.full(2, 0.1 * self.count, np.float32), "img": img}, *rest


gymnasium.register("mouse-test/TinyImage-v0", entry_point=TinyImageEnv, max_episode_steps=50)
gymnasium.register("mouse-test/TinyImageNoLimit-v0", entry_point=TinyImageEnv)
gymnasium.register("mouse-test/DictObs-v0", entry_point=DictObsEnv, max_episode_steps=50)


def test_spaces_map_to_record_fields():
    cart = make_family("gym", env_id="CartPole-v1")
    assert (cart.obs_continuous_dim, cart.obs_discrete_size, cart.obs_image_size) == (4, 0, 0)
    assert (cart.num_actions, cart.horizon, cart.gamma, cart.has_q_star) == (2, 500, 1.0, False)
    lake = make_family("gym", env_id="FrozenLake-v1", env_kwargs={"is_slippery": False})
    assert (lake.obs_discrete_size, lake.obs_continuous_dim, lake.num_actions, lake.horizon) == (
        16,
        0,
        4,
        100,
    )
    img = make_family("gym", env_id="mouse-test/TinyImage-v0")
    assert (img.obs_image_size, img.obs_image_shape, img.obs_continuous_dim) == (60, (4, 5, 3), 0)
    cols = collect_streams(lake, [0, 1], make_policy("random", lake), 20, seed=0)
    assert cols["obs_discrete"].dtype == np.int64 and cols["obs_discrete"][0] == 0  # FrozenLake starts at 0
    assert "obs_continuous" not in cols and "obs_image" not in cols
    env = img.make_vec_env([0, 1], seed=0)
    fields = env.record_fields(env.reset())
    assert list(fields) == ["obs_image"] and fields["obs_image"].shape == (2, 60)
    assert fields["obs_image"].dtype == np.uint8


def test_unsupported_spaces_and_bad_parameters_fail_with_one_line():
    with pytest.raises(ValueError, match=r"Pendulum-v1 has action space Box\(.*Discrete\(n\)") as exc:
        make_family("gym", env_id="Pendulum-v1")
    assert "\n" not in str(exc.value)
    with pytest.raises(ValueError, match=r"Dict observation space with keys \['img', 'pos'\]; set obs_key"):
        make_family("gym", env_id="mouse-test/DictObs-v0")
    assert make_family("gym", env_id="mouse-test/DictObs-v0", obs_key="pos").obs_continuous_dim == 2
    assert make_family("gym", env_id="mouse-test/DictObs-v0", obs_key="img").obs_image_size == 60
    with pytest.raises(ValueError, match=r"obs_key 'nope' is not a key .*\['img', 'pos'\]"):
        make_family("gym", env_id="mouse-test/DictObs-v0", obs_key="nope")
    with pytest.raises(ValueError, match=r"CartPole-v1 has no attribute\(s\) \['no_such'\] on env.unwrapped"):
        make_family("gym", env_id="CartPole-v1", attr_ranges={"no_such": [0, 1]})
    with pytest.raises(ValueError, match=r"attr_ranges\['force_mag'\] must be \[lo, hi\]"):
        make_family("gym", env_id="CartPole-v1", attr_ranges={"force_mag": [3, 1]})
    with pytest.raises(ValueError, match="no max_episode_steps in its spec; set horizon"):
        make_family("gym", env_id="mouse-test/TinyImageNoLimit-v0")
    assert make_family("gym", env_id="mouse-test/TinyImageNoLimit-v0", horizon=7).horizon == 7
    with pytest.raises(ValueError, match="cannot make 'NoSuchEnv-v9'"):
        make_family("gym", env_id="NoSuchEnv-v9")
    with pytest.raises(ValueError, match="vectorization='threads' is not valid; allowed: sync, async"):
        make_family("gym", vectorization="threads")


def test_done_codes_holding_and_reset_where():
    fam = make_family("gym", env_id="mouse-test/TinyImage-v0", horizon=3)
    env = fam.make_vec_env([0, 1], seed=0)
    env.reset()
    both = np.ones(2, bool)
    obs, reward, done, time = env.step(np.array([1, 0]), both)  # stream 0 terminates
    np.testing.assert_array_equal(done, [1, 0])
    np.testing.assert_array_equal(reward, [2.0, 0.5])
    np.testing.assert_array_equal(time, [1, 1])
    held = np.array([False, True])
    obs, reward, done, time = env.step(np.array([0, 0]), held)  # stream 0 sits out, its final obs stays
    np.testing.assert_array_equal(env.record_fields(obs)["obs_image"][:, 0], [1, 2])
    np.testing.assert_array_equal(reward, [0.0, 0.5])
    np.testing.assert_array_equal(done, [0, 0])
    obs, reward, done, time = env.step(np.array([0, 0]), held)
    np.testing.assert_array_equal(done, [0, 2])  # truncated at the horizon
    np.testing.assert_array_equal(time, [1, 3])
    np.testing.assert_array_equal(env.record_fields(obs)["obs_image"][:, 0], [1, 3])
    with pytest.raises(ValueError, match="stream 0 has finished its episode; call reset_where"):
        env.step(np.array([0, 0]), both)
    obs = env.reset_where(np.array([True, False]))
    np.testing.assert_array_equal(env.record_fields(obs)["obs_image"][:, 0], [0, 3])
    obs = env.reset_where(np.array([False, True]))
    assert env.record_fields(obs)["obs_image"].max() == 0 and env.time.tolist() == [0, 0]
    obs, _, _, time = env.step(np.array([0, 0]), both)  # one step from each start: the held
    np.testing.assert_array_equal(env.record_fields(obs)["obs_image"][:, 0], [1, 1])  # stream never moved
    np.testing.assert_array_equal(time, [1, 1])
    with pytest.raises(ValueError, match=r"action 2 of stream 1 is outside \[0, 2\)"):
        env.step(np.array([0, 2]), both)
    env.close()


def _check_contract(cols, n, T, reward_per_step):
    done, action, reward, time = (cols[k].reshape(n, T) for k in ("done", "action", "reward", "time"))
    assert (done[:, 0] == 0).all() and (time[:, 0] == 0).all() and (action[:, 0] == 0).all()
    after_done = np.zeros_like(done, dtype=bool)
    after_done[:, 1:] = done[:, :-1] != 0
    assert after_done.any()  # episodes ended inside the streams
    for k, v in ((done, 0), (action, 0), (reward, 0.0), (time, 0)):
        assert (k[after_done] == v).all()  # reset records
    stepped = ~after_done
    stepped[:, 0] = False
    np.testing.assert_array_equal(time[:, 1:][stepped[:, 1:]], time[:, :-1][stepped[:, 1:]] + 1)
    assert (reward[stepped] == reward_per_step).all()
    assert set(np.unique(done)) <= {0, 1, 2}


def test_step_record_contract_and_determinism_through_collect_streams():
    fam = make_family("gym", env_id="CartPole-v1", horizon=15)
    ids, T = [0, 1, 2], 60
    cols = collect_streams(fam, ids, make_policy("random", fam), T, seed=4)
    _check_contract(cols, len(ids), T, 1.0)  # CartPole pays 1 per transition
    done = cols["done"].reshape(3, T)
    assert (done == 2).any()  # truncated at horizon 15 when the pole survives
    assert (cols["time"] <= 15).all() and cols["obs_continuous"].shape == (3 * T, 4)
    again = collect_streams(fam, ids, make_policy("random", fam), T, seed=4)
    assert all(np.array_equal(cols[k], again[k]) for k in cols)
    other = collect_streams(fam, ids, make_policy("random", fam), T, seed=5)
    assert not np.array_equal(cols["obs_continuous"], other["obs_continuous"])


def test_attr_ranges_change_the_dynamics_per_task():
    base = make_family("gym", env_id="CartPole-v1", seed=3)
    varied = make_family("gym", env_id="CartPole-v1", seed=3, attr_ranges={"force_mag": [2.0, 30.0]})
    fixed = make_family("gym", env_id="CartPole-v1", seed=3, attr_choices={"force_mag": [10.0]})
    forces = [varied.make_task(i).attrs["force_mag"] for i in range(4)]
    assert len(set(forces)) == 4 and all(2.0 <= f <= 30.0 for f in forces)
    assert forces == [varied.make_task(i).attrs["force_mag"] for i in range(4)]  # deterministic
    env = varied.make_vec_env([0, 1], seed=0)
    assert [e.unwrapped.force_mag for e in env.vec.envs] == forces[:2]
    run = {name: collect_streams(f, [0, 1], make_policy("random", f), 5, seed=1) for name, f in
           [("base", base), ("varied", varied), ("fixed", fixed)]}  # fmt: skip
    obs = {k: v["obs_continuous"].reshape(2, 5, 4) for k, v in run.items()}
    np.testing.assert_array_equal(obs["base"][:, 0], obs["varied"][:, 0])  # same task seeds, same starts
    assert not np.allclose(obs["base"][:, 1], obs["varied"][:, 1])  # a different push force
    np.testing.assert_array_equal(obs["base"], obs["fixed"])  # force_mag 10 is CartPole's default
    ranged = make_family("gym", env_id="MountainCar-v0", kwargs_ranges={"goal_velocity": [0.0, 0.05]})
    task = ranged.make_task(5)
    env = ranged.make_vec_env([5], seed=0)
    assert env.vec.envs[0].unwrapped.goal_velocity == task.kwargs["goal_velocity"]
    assert 0.0 <= task.kwargs["goal_velocity"] <= 0.05 and env.tasks == [task]


def test_async_gives_the_same_streams_as_sync():
    sync = make_family("gym", env_id="CartPole-v1", horizon=20, attr_ranges={"force_mag": [5.0, 15.0]})
    asyn = make_family(
        "gym", env_id="CartPole-v1", horizon=20, attr_ranges={"force_mag": [5.0, 15.0]}, vectorization="async"
    )
    a = collect_streams(sync, [0, 1, 2], make_policy("random", sync), 50, seed=2)
    b = collect_streams(asyn, [0, 1, 2], make_policy("random", asyn), 50, seed=2)
    assert (b["done"] != 0).sum() >= 3
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_reference_return_and_config_schema():
    fam = make_family("gym", env_id="CartPole-v1", reference_return=500)
    np.testing.assert_array_equal(fam.oracle_returns([0, 3, 7]), [500.0, 500.0, 500.0])
    assert make_family("gym").oracle_returns([0]) is None and fam.random_returns([0]) is None
    cfg = task_config({"name": "gym", "attr_ranges": {"force_mag": [5, 15]}, "reference_return": 500})
    assert isinstance(cfg, GymTaskConfig) and cfg.attr_ranges == {"force_mag": [5, 15]}
    built = make_family("gym", **task_kwargs(cfg))
    assert isinstance(built, GymFamily) and built.params["attr_ranges"] == {"force_mag": [5.0, 15.0]}
    bad = task_config({"name": "gym", "attr_ranges": {"force_mag": "big"}})
    with pytest.raises(ValueError, match=r"attr_ranges\['force_mag'\] must be \[lo, hi\]"):
        make_family("gym", **task_kwargs(bad))
    with pytest.raises(ValueError, match="env_idd"):
        task_config({"name": "gym", "env_idd": "CartPole-v1"})


@pytest.mark.skipif(not SCRIPT.exists(), reason="mouse-collect is not installed (pip install -e .)")
def test_mouse_collect_task_gym(tmp_path):
    args = ["task=gym", "task.env_id=CartPole-v1", "+task.attr_ranges.force_mag=[5,15]", "policy=random"]
    args += ["num_tasks=4", "steps_per_task=50", "output=ds", "show_progress=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    ds = load_dataset(tmp_path / "ds")
    assert ds.num_streams == 4 and ds.num_records == 200
    spec = ds.spec
    assert (spec.task_family, spec.num_actions, spec.obs_continuous_dim, spec.horizon) == ("gym", 2, 4, 500)
    assert spec.task_params["attr_ranges"] == {"force_mag": [5.0, 15.0]}
    assert ds.columns["obs_continuous"].shape == (200, 4)
