"""DreamerV3-style value loss: symlog, two-hot grid, lambda-returns, masking, errors."""

import math

import pytest
import torch
from tensordict import TensorDict

from mouse.losses.value import (
    ValueLossConfig,
    lambda_returns,
    symexp,
    symlog,
    two_hot_bins,
    two_hot_cross_entropy,
    two_hot_decode,
    two_hot_encode,
    value_loss,
    value_prediction,
)


def test_symexp_inverts_symlog():
    x = torch.tensor([-1e6, -123.4, -1.0, -1e-3, 0.0, 1e-3, 0.5, 7.0, 1e6], dtype=torch.float64)
    assert torch.allclose(symexp(symlog(x)), x, rtol=1e-12, atol=1e-12)
    assert symlog(torch.tensor(math.e - 1)).item() == pytest.approx(1.0)


def test_two_hot_grid_encode_decode():
    bins = two_hot_bins(255)
    assert bins.shape == (255,) and bins[0] == -20 and bins[-1] == 20
    x = torch.tensor([-1e4, -3.3, -1.0, 0.0, 0.25, 2.0, 17.0, 1e5, 4e8], dtype=torch.float64)
    probs = two_hot_encode(x)
    assert probs.shape == (9, 255) and torch.allclose(probs.sum(-1), torch.ones(9, dtype=torch.float64))
    assert ((probs > 0).sum(-1) <= 2).all()
    nz = [torch.nonzero(p).flatten().tolist() for p in probs]
    assert all(len(i) == 1 or i[1] - i[0] == 1 for i in nz)  # two adjacent bins
    assert torch.allclose(two_hot_decode(probs, logits=False), x, rtol=1e-9)
    assert torch.allclose(two_hot_decode(probs.log()), x, rtol=1e-9)  # from logits
    # interpolation is linear in symlog space: halfway between two bins gets 1/2 each
    b64 = two_hot_bins(255, dtype=torch.float64)
    mid = symexp((b64[100] + b64[101]) / 2)
    assert two_hot_encode(mid)[[100, 101]].tolist() == pytest.approx([0.5, 0.5])
    # beyond the grid the value lands on the edge bin
    assert two_hot_encode(torch.tensor([1e12]))[0, -1] == 1.0
    with pytest.raises(ValueError, match="num_bins"):
        two_hot_bins(1)


def test_lambda_returns_hand_computed():
    r = torch.tensor([[1.0, 2.0]])
    d = torch.tensor([[0.5, 0.5]])
    v_next = torch.tensor([[1.0, 2.0]])  # v_1, v_2 (bootstrap)
    assert lambda_returns(r, d, v_next, 1.0).tolist() == [[2.5, 3.0]]  # Monte Carlo + bootstrap
    assert lambda_returns(r, d, v_next, 0.0).tolist() == [[1.5, 3.0]]  # one-step TD
    assert lambda_returns(r, d, v_next, 0.5).tolist() == [[1.0 + 0.5 * (0.5 * 1.0 + 0.5 * 3.0), 3.0]]


def stream(reward, done, **extra):
    s = len(reward)
    td = TensorDict(
        action=torch.zeros(1, s, dtype=torch.long),
        reward=torch.tensor([reward]),
        done=torch.tensor([done]),
        batch_size=[1, s],
    )
    td.update({k: torch.tensor([v]) for k, v in extra.items()})
    return td


def out(values):
    return TensorDict(value=torch.tensor([values], requires_grad=True), batch_size=[1, len(values)])


def test_symlog_mse_hand_computed_and_discount_weighting():
    s = stream([0.0, 1.0, 2.0], [0, 0, 0])
    o = out([0.5, 1.0, 2.0])
    per = [(math.log1p(0.5) - math.log1p(2.5)) ** 2, (math.log1p(1.0) - math.log1p(3.0)) ** 2]
    loss, m = value_loss(s, o, ValueLossConfig(gamma=0.5, lambda_=1.0, discount_loss=False))
    assert loss.item() == pytest.approx(sum(per) / 2, rel=1e-6)
    assert m["value_target_mean"] == pytest.approx(2.75) and m["value_positions"] == 2
    loss, _ = value_loss(s, o, ValueLossConfig(gamma=0.5, lambda_=1.0, discount_loss=True))
    assert loss.item() == pytest.approx((per[0] + 0.5 * per[1]) / 2, rel=1e-6)
    loss.backward()
    assert o["value"].grad[0, 2] == 0  # the bootstrap only feeds the (detached) target


def test_terminal_truncated_and_masked_records():
    o = out([0.5, 1.0, 2.0])
    cfg = ValueLossConfig(gamma=0.5, lambda_=1.0, discount_loss=False)
    # record 1 terminal: R_0 = r_1 = 1; pair (1, 2) is masked (no action taken from record 1)
    _, m = value_loss(stream([0.0, 1.0, 0.0], [0, 1, 0]), o, cfg)
    assert m["value_target_mean"] == pytest.approx(1.0) and m["value_masked"] == 1
    # record 1 truncated: R_0 = r_1 + gamma V(x_1) = 1.5
    _, m = value_loss(stream([0.0, 1.0, 0.0], [0, 2, 0]), o, cfg)
    assert m["value_target_mean"] == pytest.approx(1.5) and m["value_positions"] == 1


def test_given_lambda_target_and_two_hot():
    s = stream([0.0, 1.0, 2.0], [0, 1, 0], lambda_target=[3.0, 9.0, -2.0])
    o = out([0.5, 1.0, 2.0])
    loss, m = value_loss(s, o, ValueLossConfig(discount_loss=False))
    exp = ((math.log1p(0.5) - math.log1p(3.0)) ** 2 + (math.log1p(2.0) + math.log1p(2.0)) ** 2) / 2
    assert loss.item() == pytest.approx(exp, rel=1e-6) and m["value_positions"] == 2
    k = 11
    logits = torch.randn(1, 3, k, requires_grad=True)
    o2 = TensorDict(value=logits, batch_size=[1, 3])
    loss, m = value_loss(s, o2, ValueLossConfig(loss_type="two_hot", num_bins=k, discount_loss=False))
    target = two_hot_encode(torch.tensor([3.0, -2.0]), k)
    ce = -(target * torch.log_softmax(logits[0, [0, 2]], -1)).sum(-1).mean()
    assert loss.item() == pytest.approx(ce.item(), rel=1e-6)
    assert m["value_mean"] == pytest.approx(two_hot_decode(logits[0, [0, 2]]).mean().item(), rel=1e-5)
    # the two-hot loss is minimal (gradient 0) at the two-hot target itself
    at_target = (
        torch.log(two_hot_encode(torch.tensor([[3.0, 0.0, -2.0]]), k)).clamp_min(-50).requires_grad_(True)
    )
    loss, _ = value_loss(
        s,
        TensorDict(value=at_target, batch_size=[1, 3]),
        ValueLossConfig(loss_type="two_hot", num_bins=k, discount_loss=False),
    )
    loss.backward()
    assert at_target.grad.abs().max() < 1e-6


def test_two_hot_bootstraps_from_the_decoded_critic():
    k = 21
    v = torch.tensor([0.5, 1.0, 2.0])
    logits = torch.log(two_hot_encode(v, k)).clamp_min(-80)[None]
    s = stream([0.0, 1.0, 2.0], [0, 0, 0])
    _, m = value_loss(
        s,
        TensorDict(value=logits, batch_size=[1, 3]),
        ValueLossConfig(loss_type="two_hot", num_bins=k, gamma=0.5, lambda_=1.0),
    )
    assert m["value_target_mean"] == pytest.approx(2.75, rel=1e-4)


def test_value_errors():
    s = stream([0.0, 1.0, 2.0], [0, 0, 0])
    for bad, field in (
        ({"loss_type": "mse"}, "loss_type"),
        ({"num_bins": 1}, "num_bins"),
        ({"gamma": -0.1}, "gamma"),
        ({"lambda_": 2.0}, "lambda_"),
    ):
        with pytest.raises(ValueError, match=field):
            ValueLossConfig(**bad)
    with pytest.raises(ValueError, match="num_bins=255"):
        value_loss(
            s, TensorDict(value=torch.zeros(1, 3, 7), batch_size=[1, 3]), ValueLossConfig(loss_type="two_hot")
        )
    with pytest.raises(ValueError, match="two_hot"):
        value_loss(s, TensorDict(value=torch.zeros(1, 3, 7), batch_size=[1, 3]), ValueLossConfig())
    with pytest.raises(KeyError, match="value"):
        value_loss(s, TensorDict(batch_size=[1, 3]), ValueLossConfig())
    with pytest.raises(ValueError, match="S >= 2"):
        value_loss(s[:, :1], out([0.0]), ValueLossConfig())


def test_two_hot_cross_entropy_reads_two_bins_and_matches_the_dense_formula():
    g = torch.Generator().manual_seed(0)
    for k in (2, 11, 255):
        logits = (torch.randn(4, 6, k, generator=g) * 4).requires_grad_(True)
        x = torch.randn(4, 6, generator=g) * 50
        x[0, 0], x[0, 1] = 1e12, -1e12  # outside the grid: the edge bins
        dense = -(two_hot_encode(x, k) * torch.log_softmax(logits, -1)).sum(-1)
        (g_dense,) = torch.autograd.grad(dense.sum(), logits)
        ce = two_hot_cross_entropy(logits, x)
        (g_ce,) = torch.autograd.grad(ce.sum(), logits)
        torch.testing.assert_close(ce, dense, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(g_ce, g_dense, rtol=1e-6, atol=1e-7)
        with torch.no_grad():
            probs = torch.softmax(logits, -1)
        torch.testing.assert_close(two_hot_cross_entropy(logits, x, probs), ce)
    x64 = torch.randn(3, 11, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda z: two_hot_cross_entropy(z, torch.tensor([0.3, -4.0, 9.0])), (x64,)
    )


def test_value_prediction_decodes_two_hot_critics_only():
    k = 11
    v = torch.tensor([[0.5, -3.0]])
    logits = torch.log(two_hot_encode(v, k)).clamp_min(-80)
    two_hot = value_prediction(logits, ValueLossConfig(loss_type="two_hot", num_bins=k))
    torch.testing.assert_close(two_hot, v, rtol=1e-5, atol=1e-6)
    assert value_prediction(v, ValueLossConfig()) is v  # a scalar critic is its own prediction


def test_two_hot_value_loss_equals_the_dense_cross_entropy_over_the_window():
    g = torch.Generator().manual_seed(3)
    b, s, k = 3, 9, 21
    done = torch.zeros(b, s, dtype=torch.long)
    done[:, 4] = 1
    stream_ = TensorDict(
        action=torch.zeros(b, s, dtype=torch.long),
        reward=torch.randn(b, s, generator=g) * 5,
        done=done,
        batch_size=[b, s],
    )
    logits = (torch.randn(b, s, k, generator=g) * 2).requires_grad_(True)
    cfg = ValueLossConfig(loss_type="two_hot", num_bins=k, gamma=0.9, lambda_=0.8)
    loss, m = value_loss(stream_, TensorDict(value=logits, batch_size=[b, s]), cfg)
    (grad,) = torch.autograd.grad(loss, logits)
    # the same formula written densely: decoded critic -> lambda-returns -> two-hot CE, gamma^t weights
    with torch.no_grad():
        v = two_hot_decode(logits)
        valid = done[:, :-1] == 0
        disc = torch.where(valid, 0.9 * (done[:, 1:] != 1).float(), torch.zeros(b, s - 1))
        rew = torch.where(valid, stream_["reward"][:, 1:], v[:, :-1])
        target = lambda_returns(rew, disc, v[:, 1:], 0.8)
    per = -(two_hot_encode(target, k) * torch.log_softmax(logits[:, :-1], -1)).sum(-1) * 0.9 ** torch.arange(
        s - 1
    )
    dense = (per * valid).sum() / valid.sum()
    (dense_grad,) = torch.autograd.grad(dense, logits)
    assert loss.item() == pytest.approx(dense.item(), rel=1e-6)
    torch.testing.assert_close(grad, dense_grad, rtol=1e-5, atol=1e-8)
    assert m["value_target_mean"] == pytest.approx(target[valid].mean().item(), rel=1e-6)
