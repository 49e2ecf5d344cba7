"""The trainer-facing loss registry, the config contract and the metric transfer helper."""

import dataclasses

import pytest
import torch
from omegaconf import OmegaConf
from tensordict import TensorDict

from mouse.losses import LOSSES, LossConfig, LossSpec
from mouse.losses.base import metrics_to_host, normalize_rewards, transition_pairs

NAMES = ["dqn", "vec_dqn", "sp", "sv", "vtrace", "value"]


def make_batch(b=2, s=5, a=3, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    done = torch.zeros(b, s, dtype=torch.long)
    done[0, 2] = 1  # record 2 of row 0 is terminal, record 3 its reset record
    action = torch.randint(0, a, (b, s), generator=g)
    action[0, 3] = 0
    reward = torch.randn(b, s, generator=g)
    reward[0, 3] = 0.0
    q_star = torch.randn(b, s, a, generator=g)
    q_star[0, 2] = -torch.inf
    stream = TensorDict(
        action=action,
        reward=reward,
        done=done,
        time=torch.zeros(b, s, dtype=torch.long),
        q_star=q_star,
        behavior_logits=torch.randn(b, s, a, generator=g),
        teacher_logits=torch.randn(b, s, a, generator=g),
        batch_size=[b, s],
    )
    out = TensorDict(
        sp=torch.randn(b, s, a, generator=g),
        dqn=torch.randn(b, s, a, generator=g),
        dqn_target=torch.randn(b, s, a, generator=g),
        vec_dqn=torch.randn(b, s, a, d, generator=g),
        vec_dqn_target=torch.randn(b, s, a, d, generator=g),
        sv=torch.randn(b, s, a, generator=g),
        value=torch.randn(b, s, generator=g),
        batch_size=[b, s],
    )
    return stream, out


def test_registry_names_and_fields():
    assert sorted(LOSSES) == sorted(NAMES)
    for name, spec in LOSSES.items():
        assert isinstance(spec, LossSpec) and spec.name == name
        assert spec.needs_target == any(h.endswith("_target") for h in spec.heads)
        with pytest.raises(dataclasses.FrozenInstanceError):
            spec.name = "x"


@pytest.mark.parametrize("name", NAMES)
def test_config_contract(name):
    cls = LOSSES[name].config_cls
    assert issubclass(cls, LossConfig)
    fields = dataclasses.fields(cls)
    assert fields[0].name == "weight" and fields[0].default == 0.0
    assert all(f.type in ("float", "int", "bool", "str", float, int, bool, str) for f in fields), fields
    cfg = cls()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.weight = 1.0
    # a Hydra structured config can use the dataclass directly, and builds it back
    assert OmegaConf.to_object(OmegaConf.structured(cls)) == cls()
    with pytest.raises(ValueError, match="weight"):
        cls(weight=-1.0)
    with pytest.raises(KeyError, match="wieght"):
        cls.from_mapping({"wieght": 1.0})
    assert cls.from_mapping({"weight": 0.5}).weight == 0.5


@pytest.mark.parametrize("name", NAMES)
def test_compute_runs_every_loss_with_gradients_to_online_heads_only(name):
    stream, out = make_batch()
    for key in out.keys():
        out[key] = out[key].clone().requires_grad_(True)
    spec = LOSSES[name]
    loss, metrics = spec.compute(stream, out, spec.config_cls(weight=1.0))
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert metrics and all(isinstance(v, float) for v in metrics.values())
    assert all(k.startswith(name + "_") for k in metrics), metrics
    loss.backward()
    for key in out.keys():
        grad = out.get(key).grad
        if key in spec.heads and not key.endswith("_target"):
            assert grad is not None and grad.abs().sum() > 0, key
        else:
            assert grad is None or grad.abs().sum() == 0, key


def test_compute_errors():
    stream, out = make_batch()
    with pytest.raises(TypeError, match="DqnLossConfig"):
        LOSSES["dqn"].compute(stream, out, LOSSES["sp"].config_cls())
    del out["dqn_target"]
    with pytest.raises(KeyError, match="dqn_target"):
        LOSSES["dqn"].compute(stream, out, LOSSES["dqn"].config_cls())


def test_transition_pairs_alignment_and_mask():
    stream, _ = make_batch()
    pairs = transition_pairs(stream, "x")
    assert torch.equal(pairs.action, stream["action"][:, 1:])
    assert torch.equal(pairs.reward, stream["reward"][:, 1:])
    assert torch.equal(pairs.done, stream["done"][:, 1:])
    assert pairs.valid.tolist() == [[True, True, False, True], [True] * 4]
    with pytest.raises(ValueError, match="S >= 2"):
        transition_pairs(stream[:, :1], "x")
    del stream["done"]
    with pytest.raises(KeyError, match="'done'"):
        transition_pairs(stream, "x")


def test_normalize_rewards_uses_valid_pairs_only():
    r = torch.tensor([[1.0, 3.0, 100.0]])
    valid = torch.tensor([[True, True, False]])
    out = normalize_rewards(r, valid, mean=True, std=True, eps=0.0, std_target=2.0)
    # mean 2, Bessel-corrected std sqrt(2) as torch.std (the population std would be 1)
    assert torch.allclose(out[0, :2], torch.tensor([-1.0, 1.0]) / torch.tensor([1.0, 3.0]).std() * 2.0)
    assert torch.allclose(out[0, :2], torch.tensor([-2.0, 2.0]) / 2**0.5)
    # std only (no mean subtraction): r / std(r) over the valid pairs
    out = normalize_rewards(r, valid, mean=False, std=True, eps=0.0, std_target=1.0)
    assert torch.allclose(out[0, :2], torch.tensor([1.0, 3.0]) / 2**0.5)
    # a single valid pair has std 0 (torch.std would give NaN): r / eps
    one = normalize_rewards(
        r, torch.tensor([[True, False, False]]), mean=True, std=True, eps=0.5, std_target=1.0
    )
    assert one[0, 0] == 0.0 and torch.isfinite(one).all()
    assert torch.equal(normalize_rewards(r, valid, False, False, 1e-8, 1.0), r)


def test_metrics_to_host_one_transfer_of_plain_floats():
    m = metrics_to_host({"a": torch.tensor(1.5, requires_grad=True) * 2, "b": torch.tensor(3), "c": 4})
    assert m == {"a": 3.0, "b": 3.0, "c": 4.0}
    assert metrics_to_host({}) == {}
