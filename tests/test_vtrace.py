"""V-trace (IMPALA) functional API and the MOUSE vtrace loss."""

import math

import pytest
import torch
from tensordict import TensorDict

from mouse.losses.vtrace import (
    VtraceLossConfig,
    entropy,
    from_importance_weights,
    from_logits,
    policy_gradient,
    vtrace_loss,
)


def reference_vs(log_rhos, discounts, rewards, values, bootstrap, rho_bar, pg_rho_bar):
    """IMPALA eq. 1 written as the explicit sum (not the recursion), for one batch column."""
    T = len(rewards)
    rhos = [math.exp(x) for x in log_rhos]
    v = values + [bootstrap]
    vs = []
    for s in range(T):
        total, prod = v[s], 1.0
        for t in range(s, T):
            delta = min(rho_bar, rhos[t]) * (rewards[t] + discounts[t] * v[t + 1] - v[t])
            total += prod * delta
            prod *= discounts[t] * min(1.0, rhos[t])
        vs.append(total)
    vs_next = vs[1:] + [bootstrap]
    adv = [min(pg_rho_bar, rhos[t]) * (rewards[t] + discounts[t] * vs_next[t] - v[t]) for t in range(T)]
    return vs, adv


def test_from_importance_weights_matches_the_paper_sum():
    g = torch.Generator().manual_seed(0)
    T, B = 6, 3
    log_rhos = torch.randn(T, B, generator=g)
    discounts = torch.rand(T, B, generator=g)
    rewards, values = torch.randn(T, B, generator=g), torch.randn(T, B, generator=g)
    bootstrap = torch.randn(B, generator=g)
    ret = from_importance_weights(log_rhos, discounts, rewards, values, bootstrap, 0.8, 1.3)
    for b in range(B):
        cols = [x[:, b].tolist() for x in (log_rhos, discounts, rewards, values)]
        vs, adv = reference_vs(*cols, bootstrap[b].item(), 0.8, 1.3)
        assert ret.vs[:, b].tolist() == pytest.approx(vs, rel=1e-5, abs=1e-5)
        assert ret.pg_advantages[:, b].tolist() == pytest.approx(adv, rel=1e-5, abs=1e-5)


def test_on_policy_with_large_clips_is_the_n_step_bootstrapped_return():
    g = torch.Generator().manual_seed(1)
    T, B, A = 5, 2, 3
    logits = torch.randn(T, B, A, generator=g)
    actions = torch.randint(0, A, (T, B), generator=g)
    rewards, values = torch.randn(T, B, generator=g), torch.randn(T, B, generator=g)
    discounts = torch.full((T, B), 0.9)
    discounts[2, 0] = 0.0  # an episode end inside the window
    bootstrap = torch.randn(B, generator=g)
    ret = from_logits(logits, logits, values, bootstrap, actions, discounts, rewards, 1e9, 1e9)
    assert torch.allclose(ret.log_rhos, torch.zeros(T, B))
    for b in range(B):
        ret_next = bootstrap[b].item()
        for t in range(T - 1, -1, -1):
            ret_next = rewards[t, b].item() + discounts[t, b].item() * ret_next
            assert ret.vs[t, b].item() == pytest.approx(ret_next, rel=1e-5, abs=1e-5)


def test_from_logits_gradients_and_fields():
    g = torch.Generator().manual_seed(2)
    T, B, A = 4, 2, 3
    target = torch.randn(T, B, A, generator=g, requires_grad=True)
    behavior = torch.randn(T, B, A, generator=g)
    values = torch.randn(T, B, generator=g, requires_grad=True)
    bootstrap = torch.randn(B, generator=g, requires_grad=True)
    actions = torch.randint(0, A, (T, B), generator=g)
    ret = from_logits(
        behavior, target, values, bootstrap, actions, torch.full((T, B), 0.9), torch.randn(T, B)
    )
    assert not ret.vs.requires_grad and not ret.pg_advantages.requires_grad
    assert ret.target_action_log_probs.requires_grad
    exp_t = torch.log_softmax(target, -1).gather(-1, actions[..., None]).squeeze(-1)
    exp_b = torch.log_softmax(behavior, -1).gather(-1, actions[..., None]).squeeze(-1)
    assert torch.allclose(ret.log_rhos, exp_t - exp_b)
    assert torch.allclose(ret.behavior_action_log_probs, exp_b)
    with pytest.raises(ValueError, match="bootstrap_value"):
        from_importance_weights(
            torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3)
        )
    with pytest.raises(ValueError, match="actions"):
        from_logits(behavior, target, values, bootstrap, actions[:, :1], torch.zeros(T, B), torch.zeros(T, B))


def test_entropy_and_policy_gradient():
    T, B, A = 3, 2, 4
    assert entropy(torch.zeros(T, B, A)).item() == pytest.approx(-T * B * math.log(A))
    assert entropy(torch.tensor([[0.0, -math.inf]])).item() == pytest.approx(0.0)  # p log p = 0 at p = 0
    logits = torch.zeros(1, 1, 2, requires_grad=True)
    adv = torch.tensor([[2.0]], requires_grad=True)
    pg = policy_gradient(logits, torch.tensor([[0]]), adv)
    assert pg.item() == pytest.approx(2 * math.log(2))
    pg.backward()
    assert adv.grad is None
    assert logits.grad.flatten().tolist() == pytest.approx([-1.0, 1.0])  # 2 * (softmax - onehot)


def make_stream(done, s=5, b=1, a=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    stream = TensorDict(
        action=torch.randint(0, a, (b, s), generator=g),
        reward=torch.randn(b, s, generator=g),
        done=torch.tensor([done] * b),
        behavior_logits=torch.randn(b, s, a, generator=g),
        batch_size=[b, s],
    )
    out = TensorDict(
        sp=torch.randn(b, s, a, generator=g).requires_grad_(True),
        value=torch.randn(b, s, generator=g).requires_grad_(True),
        batch_size=[b, s],
    )
    return stream, out


def test_vtrace_loss_alignment_matches_the_functional_api():
    stream, out = make_stream([0, 0, 0, 0, 0])
    cfg = VtraceLossConfig(gamma=0.9, baseline_weight=0.5, entropy_weight=0.1, reward_scale=2.0)
    loss, m = vtrace_loss(stream, out, cfg)
    tm = lambda x: x.transpose(0, 1)  # noqa: E731
    ret = from_logits(
        tm(stream["behavior_logits"][:, :-1]),
        tm(out["sp"][:, :-1]),
        tm(out["value"][:, :-1]),
        out["value"][:, -1],
        tm(stream["action"][:, 1:]),
        torch.full((4, 1), 0.9),
        tm(stream["reward"][:, 1:] * 2.0),
    )
    n = 4
    pg = policy_gradient(tm(out["sp"][:, :-1]), tm(stream["action"][:, 1:]), ret.pg_advantages) / n
    base = 0.5 * ((ret.vs - tm(out["value"][:, :-1])) ** 2).sum() / n
    ent = entropy(out["sp"][:, :-1]) / n
    assert loss.item() == pytest.approx((pg + 0.5 * base + 0.1 * ent).item(), rel=1e-5)
    assert m["vtrace_pg_loss"] == pytest.approx(pg.item(), rel=1e-5)
    assert m["vtrace_entropy"] == pytest.approx(-ent.item(), rel=1e-5)
    loss.backward()
    assert out["value"].grad[0, -1] == 0  # the bootstrap is detached
    assert out["sp"].grad[0, -1].abs().sum() == 0


def test_vtrace_loss_masks_terminal_records_and_cuts_the_trace():
    stream, out = make_stream([0, 1, 0, 2, 0], a=2)
    stream["behavior_logits"][0, 1] = -math.inf  # no action is taken at a terminal record
    with torch.no_grad():
        out["sp"][0, 3] = -math.inf
    loss, m = vtrace_loss(
        stream, out, VtraceLossConfig(gamma=0.9, clip_rho_threshold=1e9, clip_pg_rho_threshold=1e9)
    )
    assert torch.isfinite(loss) and m["vtrace_pairs"] == 2 and m["vtrace_masked_pairs"] == 2
    loss.backward()
    assert torch.isfinite(out["sp"].grad).all() and out["sp"].grad[0, 1].abs().sum() == 0
    # pair 0 enters a terminal record: vs_0 = r_1; pair 2 enters a truncated record: bootstraps V(x_3)
    v, r = out["value"].detach()[0], stream["reward"][0]
    rho0 = torch.softmax(out["sp"].detach()[0, 0], -1) / torch.softmax(stream["behavior_logits"][0, 0], -1)
    rho2 = torch.softmax(out["sp"].detach()[0, 2], -1) / torch.softmax(stream["behavior_logits"][0, 2], -1)
    vs0 = v[0] + rho0[stream["action"][0, 1]] * (r[1] - v[0])
    vs2 = v[2] + rho2[stream["action"][0, 3]] * (r[3] + 0.9 * v[3] - v[2])
    assert m["vtrace_vs_mean"] == pytest.approx(((vs0 + vs2) / 2).item(), rel=1e-5)


def test_vtrace_errors():
    stream, out = make_stream([0, 0, 0, 0, 0])
    for bad, field in (
        ({"gamma": 1.1}, "gamma"),
        ({"clip_rho_threshold": 0.0}, "clip_rho_threshold"),
        ({"entropy_weight": -1.0}, "entropy_weight"),
    ):
        with pytest.raises(ValueError, match=field):
            VtraceLossConfig(**bad)
    with pytest.raises(ValueError, match="scalar critic"):
        vtrace_loss(
            stream,
            TensorDict(sp=out["sp"], value=torch.zeros(1, 5, 7), batch_size=[1, 5]),
            VtraceLossConfig(),
        )
    with pytest.raises(KeyError, match="value"):
        vtrace_loss(stream, TensorDict(sp=out["sp"], batch_size=[1, 5]), VtraceLossConfig())
    del stream["behavior_logits"]
    with pytest.raises(KeyError, match="behavior_logits"):
        vtrace_loss(stream, out, VtraceLossConfig())
    stream, out = make_stream([0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="S >= 2"):
        vtrace_loss(stream[:, :1], out[:, :1], VtraceLossConfig())
