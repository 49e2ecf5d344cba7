"""Heads: SwiGLU head, twin (online/target) heads, Polyak arithmetic, value head, vec-DQN helpers."""

import math

import pytest
import torch

from mouse.models.heads import DQNHead, SwiGLUHead, ValueHead, VecDQNHead, rope_rotate, vec_dqn_scores


def test_swiglu_head_shape_and_float32_under_autocast():
    head = SwiGLUHead(16, 5, num_layers=2, hidden_mult=1.5)
    h = torch.randn(2, 3, 16)
    assert head(h).shape == (2, 3, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = head(h)
    assert y.dtype == torch.float32


def test_swiglu_head_out_scale_and_zero_init():
    torch.manual_seed(0)
    a = SwiGLUHead(8, 3, num_layers=1)
    torch.manual_seed(0)
    b = SwiGLUHead(8, 3, num_layers=1, out_scale=0.1)
    h = torch.randn(4, 8)
    torch.testing.assert_close(b(h), 0.1 * a(h))
    assert (SwiGLUHead(8, 3, num_layers=1, zero_init=True)(h) == 0).all()


@pytest.mark.parametrize("kwargs", [{"num_layers": 0}, {"num_layers": 1, "hidden_mult": 0}])
def test_swiglu_head_bad_kwargs(kwargs):
    with pytest.raises(ValueError, match="num_layers|hidden_mult"):
        SwiGLUHead(8, 3, **kwargs)


def test_twin_head_unknown_key():
    with pytest.raises(ValueError, match=r"dqn_head_kwargs: unknown key\(s\) \['num_layer'\]"):
        DQNHead(8, 3, num_layer=1)


def test_target_starts_equal_and_gets_no_gradient():
    head = DQNHead(8, 3, num_layers=1)
    h = torch.randn(4, 8, requires_grad=True)
    torch.testing.assert_close(head(h), head.target_forward(h))
    assert not head.target_forward(h).requires_grad
    (head(h).sum() + head.target_forward(h).sum()).backward()
    assert all(p.grad is None for p in head.target.parameters())
    assert all(p.grad is not None for p in head.online.parameters())


def test_polyak_arithmetic():
    head = DQNHead(4, 2, num_layers=1)
    with torch.no_grad():
        for p in head.online.parameters():
            p.fill_(1.0)
        for p in head.target.parameters():
            p.fill_(3.0)
    head.polyak_update(0.25)  # 0.25 * 1 + 0.75 * 3 = 2.5
    assert all(torch.allclose(p, torch.full_like(p, 2.5)) for p in head.target.parameters())
    head.polyak_update(0.0)
    assert all(torch.allclose(p, torch.full_like(p, 2.5)) for p in head.target.parameters())
    head.polyak_update(1.0)
    assert all(torch.allclose(p, torch.ones_like(p)) for p in head.target.parameters())
    with pytest.raises(ValueError, match="tau must be in"):
        head.polyak_update(1.5)


def test_vec_dqn_head_shape_and_bad_vec_dim():
    head = VecDQNHead(8, 3, num_layers=1, vec_dim=6)
    assert head(torch.randn(2, 5, 8)).shape == (2, 5, 3, 6)
    assert head.target_forward(torch.randn(2, 5, 8)).shape == (2, 5, 3, 6)
    with pytest.raises(ValueError, match="vec_dim must be an even"):
        VecDQNHead(8, 3, num_layers=1, vec_dim=5)


def test_value_head_scalar_and_bins():
    h = torch.randn(2, 5, 8)
    assert ValueHead(8, num_layers=1)(h).shape == (2, 5)
    two_hot = ValueHead(8, num_bins=11, num_layers=1)
    y = two_hot(h)
    assert y.shape == (2, 5, 11) and (y == 0).all()  # DreamerV3-style zero-initialised output
    with pytest.raises(ValueError, match="num_bins"):
        ValueHead(8, num_bins=1, num_layers=1)


def test_rope_rotate_and_scores():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 6)
    theta = torch.tensor([0.1, -0.2, 0.3])[:, None]
    y = rope_rotate(x, theta)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    # a rotation by theta adds theta to every pair's angle (modulo 2 pi)
    half = 3
    ang = lambda v: torch.atan2(v[..., half:], v[..., :half])  # noqa: E731
    delta = torch.remainder(ang(y) - ang(x) - theta[..., None] + math.pi, 2 * math.pi) - math.pi
    assert delta.abs().max() < 1e-5
    # score of a vector built from known angles is their sum
    angles = torch.tensor([0.5, -1.0, 2.0])
    vec = torch.cat((torch.cos(angles), torch.sin(angles)))
    torch.testing.assert_close(vec_dqn_scores(vec[None]), angles.sum()[None])
    with pytest.raises(ValueError, match="even"):
        vec_dqn_scores(torch.zeros(2, 3))
