"""The shared loss helpers of mouse.losses.base: checks, TD pairs, reward transform, masked stats."""

import dataclasses
import math

import pytest
import torch
from tensordict import TensorDict

from mouse.losses.base import (
    DONE_ALIVE,
    DONE_TERMINAL,
    DONE_TRUNCATED,
    RewardTransformConfig,
    TransitionPairs,
    check_choice,
    check_finite,
    check_positive,
    check_range,
    check_reward_transform,
    check_shape,
    cut_masked_pairs,
    masked_mean,
    masked_stats,
    metrics_or_raise,
    require_key,
    transformed_reward_pairs,
    transition_pairs,
)
from mouse.losses.vtrace import action_log_probs


@dataclasses.dataclass
class _Cfg:
    x: object = 1.0
    name: str = "a"


def test_config_checks_name_the_field():
    assert check_finite(_Cfg(x=2), "x") == 2.0
    for bad in (math.inf, math.nan, True, "1"):
        with pytest.raises(ValueError, match=r"_Cfg\.x must be a finite number"):
            check_finite(_Cfg(x=bad), "x")
    check_range(_Cfg(x=0.5), "x", 0.0, 1.0)
    with pytest.raises(ValueError, match=r"_Cfg\.x must be in \[0.0, 1.0\]"):
        check_range(_Cfg(x=1.5), "x", 0.0, 1.0)
    check_positive(_Cfg(x=0.0), "x", strict=False)
    with pytest.raises(ValueError, match="> 0"):
        check_positive(_Cfg(x=0.0), "x")
    with pytest.raises(ValueError, match=">= 0"):
        check_positive(_Cfg(x=-1.0), "x", strict=False)
    check_choice(_Cfg(), "name", ("a", "b"))
    with pytest.raises(ValueError, match=r"must be one of \['b'\]"):
        check_choice(_Cfg(), "name", ("b",))


def test_check_reward_transform_and_the_protocol():
    @dataclasses.dataclass
    class Reward:
        use_xformed_reward: bool = False
        normalize_reward_mean: bool = False
        normalize_reward_std: bool = False
        normalize_reward_eps: float = 1e-8
        normalize_reward_std_target: float = 1.0
        reward_scale: float = 1.0
        reward_shift: float = 0.0

    cfg: RewardTransformConfig = Reward()
    check_reward_transform(cfg)
    for field, bad in (
        ("normalize_reward_eps", 0.0),
        ("normalize_reward_std_target", -1.0),
        ("reward_scale", math.nan),
    ):
        with pytest.raises(ValueError, match=field):
            check_reward_transform(dataclasses.replace(cfg, **{field: bad}))


def test_require_key_and_check_shape_messages():
    td = TensorDict(a=torch.zeros(2, 3), batch_size=[2, 3])
    assert require_key(td, "a", "x") is td["a"]
    with pytest.raises(KeyError, match=r"x loss needs 'b'.*present: \['a'\]\. add it"):
        require_key(td, "b", "x", "add it")
    check_shape(td["a"], (2, None), "a")
    with pytest.raises(ValueError, match=r"a must have shape \[2, \*, 1\], got \[2, 3\]"):
        check_shape(td["a"], (2, None, 1), "a")


def test_masked_mean_and_bessel_corrected_masked_stats():
    x = torch.tensor([2.0, 3.0, 100.0])
    mask = torch.tensor([True, True, False])
    assert masked_mean(x, mask).item() == 2.5
    assert masked_mean(x, torch.zeros(3, dtype=torch.bool)).item() == 0.0  # empty: 0, not NaN
    stats = masked_stats(x, mask)
    # two values (2, 3): mean 2.5, Bessel std sqrt(((0.5)^2 + (0.5)^2) / (2 - 1)) = sqrt(0.5)
    assert stats["std"].item() == pytest.approx(math.sqrt(0.5))
    assert stats["std"].item() == pytest.approx(torch.tensor([2.0, 3.0]).std().item())
    assert (stats["mean"].item(), stats["min"].item(), stats["max"].item()) == (2.5, 2.0, 3.0)
    one = masked_stats(x, torch.tensor([False, True, False]))
    assert (one["mean"].item(), one["std"].item()) == (3.0, 0.0)  # a single value: std 0, not NaN
    empty = masked_stats(x, torch.zeros(3, dtype=torch.bool))
    assert all(v.item() == 0.0 for v in empty.values())


def test_metrics_or_raise():
    assert metrics_or_raise({"n": torch.tensor(2), "v": 1.5}, "n", "empty") == {"n": 2.0, "v": 1.5}
    with pytest.raises(ValueError, match="nothing here"):
        metrics_or_raise({"n": torch.tensor(0)}, "n", "nothing here")


def test_transition_pairs_properties_and_cut_masked_pairs():
    assert (DONE_ALIVE, DONE_TERMINAL, DONE_TRUNCATED) == (0, 1, 2)
    td = TensorDict(
        action=torch.tensor([[0, 1, 0, 0, 1]]),
        reward=torch.tensor([[0.0, 1.0, 2.0, 0.0, 3.0]]),
        done=torch.tensor([[0, 0, 1, 0, 2]]),
        batch_size=[1, 5],
    )
    pairs = transition_pairs(td, "x")
    assert isinstance(pairs, TransitionPairs)
    assert pairs.terminal.tolist() == [[False, True, False, False]]
    assert pairs.truncated.tolist() == [[False, False, False, True]]
    values = torch.tensor([[10.0, 20.0, 30.0, 40.0]], requires_grad=True)
    discounts, rewards = cut_masked_pairs(pairs, 0.5, pairs.reward, values)
    # into a terminal record: discount 0; truncated: gamma; the pair from the terminal record is
    # masked: discount 0 and reward V(x_t) (detached)
    assert discounts.tolist() == [[0.5, 0.0, 0.0, 0.5]]
    assert rewards.tolist() == [[1.0, 2.0, 30.0, 3.0]] and not rewards.requires_grad


def test_transformed_reward_pairs():
    @dataclasses.dataclass
    class Reward:
        use_xformed_reward: bool = False
        normalize_reward_mean: bool = True
        normalize_reward_std: bool = False
        normalize_reward_eps: float = 1e-8
        normalize_reward_std_target: float = 1.0
        reward_scale: float = 2.0
        reward_shift: float = 1.0

    td = TensorDict(
        action=torch.zeros(1, 4, dtype=torch.long),
        reward=torch.tensor([[0.0, 1.0, 2.0, 6.0]]),
        xformed_reward=torch.tensor([[0.0, 5.0, 5.0, 5.0]]),
        done=torch.zeros(1, 4, dtype=torch.long),
        batch_size=[1, 4],
    )
    _, r = transformed_reward_pairs(td, "x", Reward(), torch.float32)
    assert r.tolist() == [[(1 - 3) * 2 + 1, (2 - 3) * 2 + 1, (6 - 3) * 2 + 1]]
    _, r = transformed_reward_pairs(td, "x", Reward(use_xformed_reward=True), torch.float32)
    assert r.tolist() == [[1.0, 1.0, 1.0]]
    del td["xformed_reward"]
    with pytest.raises(KeyError, match="xformed_reward"):
        transformed_reward_pairs(td, "x", Reward(use_xformed_reward=True), torch.float32)


def test_action_log_probs():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])
    out = action_log_probs(logits, torch.tensor([1, 0]))
    torch.testing.assert_close(out, torch.tensor([math.log(0.75), math.log(0.5)]))
