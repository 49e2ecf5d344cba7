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


def test_rope_rotate_rotates_consecutive_pairs():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 6)
    theta = torch.tensor([0.1, -0.2, 0.3])[:, None]
    y = rope_rotate(x, theta)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    # a rotation by theta adds theta to the angle of every pair (2k, 2k+1), modulo 2 pi
    ang = lambda v: torch.atan2(v[..., 1::2], v[..., 0::2])  # noqa: E731
    delta = torch.remainder(ang(y) - ang(x) - theta[..., None] + math.pi, 2 * math.pi) - math.pi
    assert delta.abs().max() < 1e-5
    # by hand, D = 4: (1, 0, 0, 2) rotated by pi/2 is (0, 1, -2, 0)
    out = rope_rotate(torch.tensor([1.0, 0.0, 0.0, 2.0]), math.pi / 2)
    torch.testing.assert_close(out, torch.tensor([0.0, 1.0, -2.0, 0.0]), atol=1e-6, rtol=0)


def _scores_by_definition(vecs):
    """The seed's definition, literally: normalise, rot90 = rope_rotate by pi/2, sum over i."""
    v = torch.nn.functional.normalize(vecs.double(), dim=-1)
    rot = rope_rotate(v, math.pi / 2)
    sin = torch.einsum("...id,...ad->...ia", rot, v)
    cos = torch.einsum("...id,...ad->...ia", v, v)
    return torch.atan2(sin, cos).sum(dim=-2)


def test_vec_dqn_scores_hand_computed_d4():
    # D = 4, A = 2: v_0 = (1, 0, 0, 1) and v_1 = (0, 1, 1, 0) (norm sqrt 2 each)
    #   <v_0, v_1> = 0;  rot90(v_0) = (0, 1, -1, 0): <rot90(v_0), v_1> = 1 - 1 = 0 -> atan2(0, 0) = 0
    v = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]])
    torch.testing.assert_close(vec_dqn_scores(v), torch.zeros(2))
    # v_1 = (0, 1, 0, 3) instead: v^_0 = (1, 0, 0, 1)/sqrt 2, v^_1 = (0, 1, 0, 3)/sqrt 10
    #   cos = <v^_0, v^_1> = 3/sqrt 20;  rot90(v^_0) = (0, 1, -1, 0)/sqrt 2: sin = 1/sqrt 20
    #   score_1 = atan2(1, 3) (lead of 1 over 0), score_0 = -atan2(1, 3); self terms are 0
    v = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 3.0]])
    lead = math.atan2(1.0, 3.0)
    torch.testing.assert_close(vec_dqn_scores(v), torch.tensor([-lead, lead]))
    # the half-split pairing (k, k + D/2) of earlier MOUSE gave a different score for this vector
    half = torch.atan2(v[:, 2:], v[:, :2]).sum(-1)
    assert not torch.allclose(half, vec_dqn_scores(v))
    # A = 3, D = 2: a_i at angles 0, pi/2, pi - 0.1: score_a = sum_i wrap(phi_a - phi_i)
    phi = [0.0, math.pi / 2, math.pi - 0.1]
    v = torch.tensor([[math.cos(p), math.sin(p)] for p in phi])
    wrap = lambda a: (a + math.pi) % (2 * math.pi) - math.pi  # noqa: E731
    expected = [sum(wrap(pa - pi) for pi in phi) for pa in phi]
    torch.testing.assert_close(vec_dqn_scores(v), torch.tensor(expected), atol=1e-6, rtol=0)


def test_vec_dqn_scores_match_the_definition():
    g = torch.Generator().manual_seed(0)
    for shape in [(5, 2), (3, 4, 6), (2, 3, 7, 8), (1, 1, 4)]:
        v = torch.randn(*shape, generator=g) * 3
        torch.testing.assert_close(vec_dqn_scores(v).double(), _scores_by_definition(v), atol=2e-5, rtol=0)
    v = torch.randn(3000, 5, 4, generator=g)  # more positions than one CPU chunk
    torch.testing.assert_close(vec_dqn_scores(v).double(), _scores_by_definition(v), atol=2e-5, rtol=0)
    # scale invariance, zero vectors and gradients
    v = torch.randn(4, 3, 6, generator=g)
    torch.testing.assert_close(vec_dqn_scores(v * torch.rand(4, 3, 1, generator=g)), vec_dqn_scores(v))
    z = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(vec_dqn_scores(z), torch.tensor([0.0, -math.pi / 2, math.pi / 2]))
    x = torch.randn(2, 3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(vec_dqn_scores, (x,))
    assert vec_dqn_scores(torch.randn(2, 3, 4).bfloat16()).dtype == torch.float32
    with pytest.raises(ValueError, match="even"):
        vec_dqn_scores(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"\[\.\.\., A, D\]"):
        vec_dqn_scores(torch.zeros(4))
