"""DQN and vector-DQN losses: hand-computed cases, masking, detached targets, errors."""

import math

import pytest
import torch
from tensordict import TensorDict

from mouse.losses.dqn import DqnLossConfig, dqn_loss
from mouse.losses.vec_dqn import VecDqnLossConfig, vec_dqn_loss, zero_angle_vectors
from mouse.models.heads.vec_dqn import rope_rotate, vec_dqn_scores


def stream(action, reward, done, **extra):
    t = lambda x, d: torch.tensor([x], dtype=d)  # noqa: E731
    s = len(action)
    td = TensorDict(
        action=t(action, torch.long),
        reward=t(reward, torch.float32),
        done=t(done, torch.long),
        batch_size=[1, s],
    )
    for k, v in extra.items():
        td[k] = torch.tensor([v], dtype=torch.float32)
    return td


Q = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
QT = [[0.0, 0.0], [1.0, 3.0], [2.0, 7.0]]


def out(q=Q, qt=QT):
    return TensorDict(
        dqn=torch.tensor([q], requires_grad=True),
        dqn_target=torch.tensor([qt], requires_grad=True),
        batch_size=[1, len(q)],
    )


def test_dqn_hand_computed():
    # pair 0: a=1, r=1, alive -> 1 + 0.5*3 = 2.5 vs Q=2 ; pair 1: a=0, r=2, into terminal -> 2 vs Q=3
    s = stream([0, 1, 0], [0.0, 1.0, 2.0], [0, 0, 1])
    loss, m = dqn_loss(s, out(), DqnLossConfig(gamma=0.5))
    assert loss.item() == pytest.approx((0.25 + 1.0) / 2)
    assert m["dqn_q_values_target"] == pytest.approx(2.25)
    assert m["dqn_q_values_mean"] == pytest.approx(2.5) and m["dqn_q_values_min"] == 2.0
    # Bessel-corrected std of the taken values (2, 3), as torch.std: sqrt(0.5) (population: 0.5)
    assert m["dqn_q_values_max"] == 3.0 and m["dqn_q_values_std"] == pytest.approx(math.sqrt(0.5))
    assert m["dqn_q_values_std"] == pytest.approx(torch.tensor([2.0, 3.0]).std().item())
    assert m["dqn_pairs"] == 2 and m["dqn_masked_pairs"] == 0
    # gamma_terminal bootstraps the terminal transition: 2 + 0.25*7 = 3.75 vs 3
    loss, _ = dqn_loss(s, out(), DqnLossConfig(gamma=0.5, gamma_terminal=0.25))
    assert loss.item() == pytest.approx((0.25 + 0.75**2) / 2)
    # a truncated transition uses gamma_truncated
    s2 = stream([0, 1, 0], [0.0, 1.0, 2.0], [0, 0, 2])
    loss, _ = dqn_loss(s2, out(), DqnLossConfig(gamma=0.5, gamma_terminal=0.25, gamma_truncated=0.5))
    assert loss.item() == pytest.approx((0.25 + 2.5**2) / 2)


def test_dqn_reward_scale_shift_and_xformed_reward():
    s = stream([0, 1, 0], [0.0, 1.0, 2.0], [0, 0, 1], xformed_reward=[0.0, 3.0, -1.0])
    loss, _ = dqn_loss(s, out(), DqnLossConfig(gamma=0.5, reward_scale=2.0, reward_shift=1.0))
    # targets: 3 + 1.5 = 4.5 (vs 2), 5 (vs 3)
    assert loss.item() == pytest.approx((2.5**2 + 2.0**2) / 2)
    loss, _ = dqn_loss(s, out(), DqnLossConfig(gamma=0.5, use_xformed_reward=True))
    # targets: 3 + 1.5 = 4.5 (vs 2), -1 (vs 3)
    assert loss.item() == pytest.approx((2.5**2 + 4.0**2) / 2)
    del s["xformed_reward"]
    with pytest.raises(KeyError, match="xformed_reward"):
        dqn_loss(s, out(), DqnLossConfig(use_xformed_reward=True))


def test_dqn_reward_normalisation_per_row():
    s = stream([0, 1, 0], [0.0, 1.0, 3.0], [0, 0, 1])
    cfg = DqnLossConfig(
        gamma=0.0,
        normalize_reward_mean=True,
        normalize_reward_std=True,
        normalize_reward_std_target=2.0,
        normalize_reward_eps=1e-12,
    )
    # rewards of the pairs (1, 3): mean 2, Bessel std sqrt(2) (as torch.std; population std 1)
    # -> (-1, 1) / sqrt(2) * 2 = (-sqrt 2, sqrt 2); gamma 0: targets are rewards
    _, m = dqn_loss(s, out(), cfg)
    assert m["dqn_q_values_target"] == pytest.approx(0.0, abs=1e-6)
    loss, _ = dqn_loss(s, out(), cfg)
    r2 = math.sqrt(2.0)
    assert loss.item() == pytest.approx(((2 + r2) ** 2 + (3 - r2) ** 2) / 2, rel=1e-5)


def test_dqn_cql_penalty():
    s = stream([0, 1, 0], [0.0, 1.0, 2.0], [0, 0, 1])
    base, _ = dqn_loss(s, out(), DqnLossConfig(gamma=0.5))
    loss, m = dqn_loss(s, out(), DqnLossConfig(gamma=0.5, cql_weight=0.1, cql_scale_q_eps=1.0))
    pen0 = math.log(math.exp(1) + math.exp(2)) - 2  # logsumexp Q(s0) - Q(s0, 1), scale |2.5|+1
    pen1 = math.log(math.exp(3) + math.exp(4)) - 3  # scale |2|+1
    assert loss.item() == pytest.approx(base.item() + 0.1 * (3.5 * pen0 + 3.0 * pen1) / 2, rel=1e-6)
    assert m["dqn_cql_penalty"] == pytest.approx((pen0 + pen1) / 2, rel=1e-6)


def test_dqn_masks_pairs_from_terminal_records_and_detaches_target():
    # record 1 is terminal: the pair (1, 2) (into the reset record) is masked
    s = stream([0, 1, 0], [0.0, 1.0, 0.0], [0, 1, 0])
    o = out()
    loss, m = dqn_loss(s, o, DqnLossConfig(gamma=0.5))
    assert loss.item() == pytest.approx((2 - 1) ** 2)  # pair 0: a=1, r=1, into terminal -> 1 vs 2
    assert m["dqn_pairs"] == 1 and m["dqn_masked_pairs"] == 1
    loss.backward()
    assert o["dqn_target"].grad is None
    assert o["dqn"].grad[0, 1].abs().sum() == 0  # masked record gets no gradient
    assert o["dqn"].grad[0, 0, 1] != 0


def test_dqn_errors():
    s = stream([0, 1, 0], [0.0, 1.0, 2.0], [0, 0, 1])
    with pytest.raises(ValueError, match="S >= 2"):
        dqn_loss(s[:, :1], out(Q[:1], QT[:1]), DqnLossConfig())
    with pytest.raises(ValueError, match="dqn_target"):
        dqn_loss(s, out(qt=[[0.0] * 3] * 3), DqnLossConfig())
    with pytest.raises(ValueError, match=r"\[B, S, A\]"):
        dqn_loss(
            s,
            TensorDict(dqn=torch.zeros(1, 3), dqn_target=torch.zeros(1, 3), batch_size=[1, 3]),
            DqnLossConfig(),
        )
    with pytest.raises(KeyError, match="dqn_target"):
        dqn_loss(s, TensorDict(dqn=torch.zeros(1, 3, 2), batch_size=[1, 3]), DqnLossConfig())
    with pytest.raises(ValueError, match="terminal/truncated"):
        dqn_loss(stream([0, 0], [0.0, 0.0], [1, 0]), out(Q[:2], QT[:2]), DqnLossConfig())
    for bad in (
        {"gamma": 1.5},
        {"tau": -0.1},
        {"normalize_reward_eps": 0.0},
        {"cql_weight": -1.0},
        {"reward_scale": float("nan")},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            DqnLossConfig(**bad)


# ------------------------------------------------------------------------------------------------
# vector DQN
# ------------------------------------------------------------------------------------------------
def vecs(online_first, target_next, a=2):
    """[1, 2, A=2, D=2] online/target vectors with the given vectors at the relevant slots."""
    on = torch.ones(1, 2, a, 2)
    on[0, 0, 1] = torch.tensor(online_first)
    tg = torch.ones(1, 2, a, 2)
    tg[0, 1] = torch.tensor(target_next)
    return on.requires_grad_(True), tg.requires_grad_(True)


def test_vec_dqn_hand_computed_rotation():
    # target at t+1: scores 0 and pi/2 -> greedy action 1, angle pi/2; reward pi/2 rotates it to pi
    target_next = [[1.0, 0.0], [0.0, 1.0]]
    s = stream([0, 1], [0.0, math.pi / 2], [0, 0])
    on, tg = vecs([-2.0, 0.0], target_next)
    loss, m = vec_dqn_loss(s, on, tg, VecDqnLossConfig())
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    on, tg = vecs([0.0, 3.0], target_next)
    loss, _ = vec_dqn_loss(s, on, tg, VecDqnLossConfig())
    assert loss.item() == pytest.approx(1.0, abs=1e-6)
    loss.backward()
    assert tg.grad is None and on.grad[0, 0, 1].abs().sum() > 0
    # reward_scale/shift: theta = 0.5*pi/2*2 + pi/2 = pi -> angle 3pi/2 = (0, -1): opposite of (0, 3)
    on, tg = vecs([0.0, 3.0], target_next)
    loss, _ = vec_dqn_loss(s, on, tg, VecDqnLossConfig(reward_scale=1.0, reward_shift=math.pi / 2))
    assert loss.item() == pytest.approx(2.0, abs=1e-6)
    # metrics: |score| / pi of the online vectors at the last position; a score is an action's
    # angular lead over the others, so identical vectors (all ones) score 0
    assert m["vec_dqn_score_abs_mean"] == pytest.approx(0.0, abs=1e-7)
    on, tg = vecs([-2.0, 0.0], target_next)
    with torch.no_grad():
        on[0, 1] = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # angles 0 and pi/2: scores -pi/2, +pi/2
    _, m = vec_dqn_loss(s, on, tg, VecDqnLossConfig())
    assert m["vec_dqn_score_abs_min"] == pytest.approx(0.5) and m["vec_dqn_score_abs_max"] == pytest.approx(
        0.5
    )


def test_vec_dqn_episode_end_uses_zero_angle_reference():
    s = stream([0, 1], [0.0, math.pi / 2], [0, 1])  # the transition ends the episode
    on, tg = vecs([0.0, 5.0], [[1.0, 0.0], [-1.0, 0.0]])  # next vectors ignored
    loss, _ = vec_dqn_loss(s, on, tg, VecDqnLossConfig())
    assert loss.item() == pytest.approx(0.0, abs=1e-6)  # reference (1, 0) rotated by pi/2 = (0, 1)


def test_vec_dqn_masking_and_errors():
    s = stream([0, 1, 0], [0.0, 1.0, 0.0], [0, 1, 0])
    on = torch.randn(1, 3, 2, 4, requires_grad=True)
    tg = torch.randn(1, 3, 2, 4)
    loss, m = vec_dqn_loss(s, on, tg, VecDqnLossConfig())
    assert m["vec_dqn_pairs"] == 1 and m["vec_dqn_masked_pairs"] == 1
    loss.backward()
    assert on.grad[0, 1].abs().sum() == 0
    assert vec_dqn_scores(tg).shape == (1, 3, 2)
    with pytest.raises(ValueError, match="even"):
        vec_dqn_loss(s, torch.zeros(1, 3, 2, 3), torch.zeros(1, 3, 2, 3), VecDqnLossConfig())
    with pytest.raises(ValueError, match="target"):
        vec_dqn_loss(s, on, torch.zeros(1, 3, 2, 2), VecDqnLossConfig())
    with pytest.raises(ValueError, match=r"\[B, S, A, D\]"):
        vec_dqn_loss(s, torch.zeros(1, 3, 4), torch.zeros(1, 3, 4), VecDqnLossConfig())
    with pytest.raises(KeyError, match="xformed_reward"):
        vec_dqn_loss(s, on, tg, VecDqnLossConfig(use_xformed_reward=True))
    with pytest.raises(ValueError, match="S >= 2"):
        vec_dqn_loss(s[:, :1], on[:, :1], tg[:, :1], VecDqnLossConfig())
    with pytest.raises(ValueError, match="tau"):
        VecDqnLossConfig(tau=2.0)


def _rope_by_hand(x, theta):
    """Rotate each consecutive pair (2k, 2k+1) of x [..., D] by theta [...]."""
    c, s = torch.cos(theta)[..., None], torch.sin(theta)[..., None]
    out = torch.empty_like(x)
    out[..., 0::2] = x[..., 0::2] * c - x[..., 1::2] * s
    out[..., 1::2] = x[..., 0::2] * s + x[..., 1::2] * c
    return out


def _scores_by_hand(vecs):
    v = torch.nn.functional.normalize(vecs, dim=-1)
    rot = _rope_by_hand(v, torch.full(v.shape[:-1], math.pi / 2))
    sin = torch.einsum("...id,...ad->...ia", rot, v)
    return torch.atan2(sin, torch.einsum("...id,...ad->...ia", v, v)).sum(dim=-2)


def _random_window(b, s, a, seed):
    g = torch.Generator().manual_seed(seed)
    return (
        TensorDict(
            action=torch.randint(0, a, (b, s), generator=g),
            reward=torch.randn(b, s, generator=g),
            done=torch.zeros(b, s, dtype=torch.long),  # no terminal/truncated record
            batch_size=[b, s],
        ),
        g,
    )


def test_dqn_without_terminal_records_is_the_seeds_formula():
    st, g = _random_window(3, 7, 4, 0)
    q, qt = torch.randn(3, 7, 4, generator=g), torch.randn(3, 7, 4, generator=g)
    cfg = DqnLossConfig(gamma=0.9, normalize_reward_mean=True, normalize_reward_std=True, reward_scale=0.5)
    loss, m = dqn_loss(st, TensorDict(dqn=q, dqn_target=qt, batch_size=[3, 7]), cfg)
    r = st["reward"][:, 1:]
    r = r - r.mean(dim=1, keepdim=True)
    r = r / (r.std(dim=1, keepdim=True) + cfg.normalize_reward_eps) * 0.5  # torch.std: Bessel
    taken = q[:, :-1].gather(-1, st["action"][:, 1:, None]).squeeze(-1)
    target = r + 0.9 * qt[:, 1:].amax(-1)
    assert loss.item() == pytest.approx(((taken - target) ** 2).mean().item(), rel=1e-6)
    assert m["dqn_q_values_std"] == pytest.approx(taken.std().item(), rel=1e-6)
    assert m["dqn_masked_pairs"] == 0


def test_vec_dqn_without_terminal_records_is_the_seeds_formula():
    b, s, a, d = 3, 6, 5, 8
    st, g = _random_window(b, s, a, 1)
    on = torch.randn(b, s, a, d, generator=g, requires_grad=True)
    tg = torch.randn(b, s, a, d, generator=g)
    cfg = VecDqnLossConfig(normalize_reward_std=True, reward_scale=2.0, reward_shift=0.1)
    loss, m = vec_dqn_loss(st, on, tg, cfg)
    r = st["reward"][:, 1:]
    theta = r / (r.std(dim=1, keepdim=True) + cfg.normalize_reward_eps) * 2.0 + 0.1
    greedy = _scores_by_hand(tg[:, 1:]).argmax(-1)
    nxt = tg[:, 1:].gather(2, greedy[..., None, None].expand(b, s - 1, 1, d)).squeeze(2)
    cur = on[:, :-1].gather(2, st["action"][:, 1:, None, None].expand(b, s - 1, 1, d)).squeeze(2)
    expected = (1 - torch.nn.functional.cosine_similarity(cur, _rope_by_hand(nxt, theta), dim=-1)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    (grad,) = torch.autograd.grad(loss, on)
    (expected_grad,) = torch.autograd.grad(expected, on)
    torch.testing.assert_close(grad, expected_grad)
    score = _scores_by_hand(on[:, -1].detach()).abs() / math.pi
    assert m["vec_dqn_score_abs_max"] == pytest.approx(score.max().item(), rel=1e-5)
    assert m["vec_dqn_score_abs_mean"] == pytest.approx(score.mean().item(), rel=1e-5)


def test_zero_angle_vectors_use_the_consecutive_pair_layout():
    ref = zero_angle_vectors(torch.randn(2, 3, 6))
    assert ref.shape == (2, 3, 6)
    torch.testing.assert_close(ref[0, 0], torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0]) / math.sqrt(3))
    torch.testing.assert_close(ref.norm(dim=-1), torch.ones(2, 3))
    # rotating the reference by theta puts every pair at angle theta
    rot = rope_rotate(ref, torch.tensor(0.7))
    torch.testing.assert_close(torch.atan2(rot[..., 1::2], rot[..., 0::2]), torch.full((2, 3, 3), 0.7))


def test_vec_dqn_rejects_actions_outside_the_head():
    s = stream([0, 2], [0.0, 1.0], [0, 0])
    on, tg = torch.randn(1, 2, 2, 4), torch.randn(1, 2, 2, 4)
    with pytest.raises(ValueError, match=r"action 2 is outside \[0, A=2\)"):
        vec_dqn_loss(s, on, tg, VecDqnLossConfig())
