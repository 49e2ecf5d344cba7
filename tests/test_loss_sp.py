"""Supervised policy and value losses: hand-computed cases, properties, targets, errors."""

import math

import pytest
import torch
from tensordict import TensorDict

from mouse.losses.sp import SP_LOSS_TYPES, SpLossConfig, sp_js_loss, sp_kl_loss, sp_loss, sp_soft_ce_loss
from mouse.losses.sv import SvLossConfig, sv_loss

INF = math.inf
LN2 = math.log(2.0)


def entropy(p):
    p = torch.as_tensor(p, dtype=torch.float64)
    p = p[p > 0]
    return float(-(p * p.log()).sum())


def test_hard_ce_and_label_smoothing_on_the_support():
    q = torch.tensor([[1.0, 3.0, -INF]])
    logits = torch.tensor([[0.0, LN2, 0.0]])  # student (1/4, 1/2, 1/4)
    s = TensorDict(q_star=q.unsqueeze(0), batch_size=[1, 1])
    loss, m = sp_loss(s, logits.unsqueeze(0), SpLossConfig())
    assert loss.item() == pytest.approx(LN2)
    assert m["sp_accuracy"] == 1.0 and m["sp_rows"] == 1
    # smoothing 0.3 over the two valid actions: teacher (0.15, 0.85, 0)
    loss, _ = sp_loss(s, logits.unsqueeze(0), SpLossConfig(label_smoothing=0.3))
    assert loss.item() == pytest.approx(0.15 * math.log(4) + 0.85 * LN2)


def test_soft_losses_hand_computed_with_temperature():
    # the temperature softens the teacher only; no T^2 factor except on js (the seed's formulas)
    t = 2.0
    q = torch.tensor([[0.0, 2 * math.log(3.0)]])  # teacher softmax(q / 2) = (1/4, 3/4)
    p = [0.25, 0.75]
    same = q / t  # student softmax(logits) == teacher
    assert sp_soft_ce_loss(q, same, t).item() == pytest.approx(entropy(p), rel=1e-5)
    assert sp_kl_loss(q, same, t).item() == pytest.approx(0.0, abs=1e-6)
    assert sp_kl_loss(q, same, t, direction="bwd").item() == pytest.approx(0.0, abs=1e-6)
    assert sp_js_loss(q, same, t).item() == pytest.approx(0.0, abs=1e-6)
    # uniform student: KL(P||U) = log 2 - H(P); KL(U||P) = -log 2 - mean log P
    uni = torch.zeros(1, 2)
    assert sp_kl_loss(q, uni, t).item() == pytest.approx(LN2 - entropy(p), rel=1e-5)
    kl_bwd = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert sp_kl_loss(q, uni, t, direction="bwd").item() == pytest.approx(kl_bwd, rel=1e-5)
    ce_bwd = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    assert sp_soft_ce_loss(q, uni, t, direction="bwd").item() == pytest.approx(ce_bwd, rel=1e-5)
    m = [0.375, 0.625]
    js = 0.5 * sum(a * math.log(a / b) for a, b in zip(p, m)) + 0.5 * sum(0.5 * math.log(0.5 / b) for b in m)
    assert sp_js_loss(q, uni, t).item() == pytest.approx(t * t * js, rel=1e-5)


def test_temperature_4_one_row_three_actions_by_hand():
    """T = 4, q = (0, 4 ln 2, 8 ln 2): teacher softmax(q / 4) = (1, 2, 4) / 7; the student
    logits (0, ln 2, 0) give softmax (1, 2, 1) / 4 at any temperature (it is not tempered)."""
    t = 4.0
    q = torch.tensor([[0.0, 4 * LN2, 8 * LN2]])
    logits = torch.tensor([[0.0, LN2, 0.0]])
    p = [1 / 7, 2 / 7, 4 / 7]
    s = [1 / 4, 2 / 4, 1 / 4]
    ce_fwd = -sum(pi * math.log(si) for pi, si in zip(p, s))
    ce_bwd = -sum(si * math.log(pi) for pi, si in zip(p, s))
    kl_fwd = sum(pi * math.log(pi / si) for pi, si in zip(p, s))
    kl_bwd = sum(si * math.log(si / pi) for pi, si in zip(p, s))
    mid = [(pi + si) / 2 for pi, si in zip(p, s)]
    js = 0.5 * sum(pi * math.log(pi / mi) for pi, mi in zip(p, mid)) + 0.5 * sum(
        si * math.log(si / mi) for si, mi in zip(s, mid)
    )
    expected = {
        "ce-soft-fwd": ce_fwd,  # 1.1883; MOUSE gave 17.76 (student tempered too, times T^2)
        "ce-soft-bwd": ce_bwd,
        "kl-fwd": kl_fwd,
        "kl-bwd": kl_bwd,
        "js": t * t * js,  # the seed's sp_js_loss keeps the T^2 factor
    }
    assert sp_soft_ce_loss(q, logits, t).item() == pytest.approx(ce_fwd, rel=1e-6)
    assert sp_soft_ce_loss(q, logits, t, direction="bwd").item() == pytest.approx(ce_bwd, rel=1e-6)
    assert sp_kl_loss(q, logits, t).item() == pytest.approx(kl_fwd, rel=1e-6)
    assert sp_kl_loss(q, logits, t, direction="bwd").item() == pytest.approx(kl_bwd, rel=1e-6)
    assert sp_js_loss(q, logits, t).item() == pytest.approx(t * t * js, rel=1e-6)
    # sp_loss follows the same rule for every loss_type (ce ignores the temperature)
    stream = TensorDict(q_star=q[None], batch_size=[1, 1])
    for loss_type, value in expected.items():
        loss, _ = sp_loss(stream, logits[None], SpLossConfig(loss_type=loss_type, temperature=t))
        assert loss.item() == pytest.approx(value, rel=1e-6), loss_type
    loss, _ = sp_loss(stream, logits[None], SpLossConfig(loss_type="ce", temperature=t))
    assert loss.item() == pytest.approx(-math.log(1 / 4), rel=1e-6)
    # label smoothing 0.3 mixes uniform mass into the teacher only
    p_eps = [0.7 * pi + 0.1 for pi in p]
    smoothed = -sum(pi * math.log(si) for pi, si in zip(p_eps, s))
    assert sp_soft_ce_loss(q, logits, t, 0.3).item() == pytest.approx(smoothed, rel=1e-6)


def test_sp_loss_calls_the_public_helpers():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, 3, 5, generator=g)
    q[0, 0, 1] = -INF
    q[1, 2] = -INF  # a skipped row
    logits = torch.randn(2, 3, 5, generator=g)
    stream = TensorDict(q_star=q, batch_size=[2, 3])
    rows, student = q.reshape(-1, 5), logits.reshape(-1, 5)
    for loss_type, helper in (
        ("ce-soft-fwd", lambda: sp_soft_ce_loss(rows, student, 3.0, 0.1)),
        ("ce-soft-bwd", lambda: sp_soft_ce_loss(rows, student, 3.0, 0.1, direction="bwd")),
        ("kl-fwd", lambda: sp_kl_loss(rows, student, 3.0, 0.1)),
        ("kl-bwd", lambda: sp_kl_loss(rows, student, 3.0, 0.1, direction="bwd")),
        ("js", lambda: sp_js_loss(rows, student, 3.0, 0.1)),
    ):
        loss, _ = sp_loss(
            stream, logits, SpLossConfig(loss_type=loss_type, temperature=3.0, label_smoothing=0.1)
        )
        assert torch.equal(loss, helper()), loss_type


@pytest.mark.parametrize("loss_type", ["kl-fwd", "kl-bwd", "js"])
def test_divergences_vanish_when_student_equals_teacher(loss_type):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(6, 5, generator=g)
    q[0, 1] = -INF  # invalid action: the student is free there for kl-bwd, masked in teacher
    s = TensorDict(q_star=q.view(2, 3, 5), batch_size=[2, 3])
    logits = (q / 0.7).clamp_min(-30.0).view(2, 3, 5)  # softmax(logits) = the teacher softmax(q / T)
    loss, _ = sp_loss(s, logits, SpLossConfig(loss_type=loss_type, temperature=0.7))
    assert loss.item() == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("loss_type", ["ce-soft-fwd", "kl-fwd"])
def test_label_smoothing_raises_the_floor(loss_type):
    q = torch.tensor([[0.0, 1.0, 3.0]])
    p = torch.softmax(q, -1)
    eps = 0.2
    p_eps = (1 - eps) * p + eps / 3
    floor = entropy(p_eps) if loss_type == "ce-soft-fwd" else 0.0
    at_teacher = sp_per_type(loss_type, q, q, 0.0)
    logits = p_eps.log().clone().requires_grad_(True)
    smoothed = sp_per_type(loss_type, q, logits, eps)
    assert smoothed.item() == pytest.approx(floor, abs=1e-6)  # the minimum sits at the smoothed teacher
    smoothed.backward()
    assert logits.grad.abs().max() < 1e-6
    assert (
        sp_per_type(loss_type, q, q, eps).item() > floor + 1e-4
    )  # the unsmoothed optimum is no longer optimal
    assert at_teacher.item() == pytest.approx(entropy(p) if loss_type == "ce-soft-fwd" else 0.0, abs=1e-6)
    assert floor >= (entropy(p) if loss_type == "ce-soft-fwd" else 0.0)


def sp_per_type(loss_type, q, logits, eps):
    if loss_type == "ce-soft-fwd":
        return sp_soft_ce_loss(q, logits, 1.0, eps)
    return sp_kl_loss(q, logits, 1.0, eps)


def test_rows_without_finite_teacher_are_skipped_and_counted():
    q = torch.tensor([[[0.0, 1.0], [-INF, -INF], [2.0, 0.0]]])
    logits = torch.randn(1, 3, 2, requires_grad=True)
    s = TensorDict(q_star=q, batch_size=[1, 3])
    for loss_type in SP_LOSS_TYPES:
        loss, m = sp_loss(s, logits, SpLossConfig(loss_type=loss_type, label_smoothing=0.1))
        assert torch.isfinite(loss) and m["sp_rows"] == 2 and m["sp_skipped_rows"] == 1
        (g,) = torch.autograd.grad(loss, logits)
        assert g[0, 1].abs().sum() == 0 and torch.isfinite(g).all()
        both = torch.cat([q[0, :1], q[0, 2:]])
        expected, _ = sp_loss(
            TensorDict(q_star=both[None], batch_size=[1, 2]),
            torch.cat([logits[0, :1], logits[0, 2:]])[None],
            SpLossConfig(loss_type=loss_type, label_smoothing=0.1),
        )
        assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="no row"):
        sp_loss(
            TensorDict(q_star=torch.full((1, 2, 2), -INF), batch_size=[1, 2]), logits[:, :2], SpLossConfig()
        )


def test_teacher_and_next_action_targets():
    q_star = torch.tensor([[[5.0, 0.0], [5.0, 0.0], [5.0, 0.0]]])
    teacher = torch.tensor([[[0.0, -INF], [-INF, 0.0], [0.0, 0.0]]])
    logits = torch.tensor([[[0.0, LN2], [0.0, LN2], [0.0, 0.0]]])  # student (1/3, 2/3) then uniform
    s = TensorDict(
        action=torch.tensor([[0, 1, 0]]),
        reward=torch.zeros(1, 3),
        done=torch.tensor([[0, 1, 0]]),
        q_star=q_star,
        teacher_logits=teacher,
        batch_size=[1, 3],
    )
    loss, m = sp_loss(s, logits, SpLossConfig(target="teacher", loss_type="kl-fwd"))
    exp = (math.log(3) + math.log(1.5) + 0.0) / 3
    assert loss.item() == pytest.approx(exp, rel=1e-6)
    assert m["sp_accuracy"] == pytest.approx(2 / 3)
    loss, m = sp_loss(s, logits, SpLossConfig(target="q_star"))
    assert loss.item() == pytest.approx((math.log(3) * 2 + LN2) / 3, rel=1e-6)
    # next action: record 0 imitates action[1] = 1; record 1 is terminal (masked); record 2 has no next
    loss, m = sp_loss(s, logits, SpLossConfig(target="next_action"))
    assert loss.item() == pytest.approx(math.log(1.5), rel=1e-6)
    assert m["sp_rows"] == 1 and m["sp_skipped_rows"] == 1
    # label smoothing in behaviour cloning spreads over every action
    loss, _ = sp_loss(s, logits, SpLossConfig(target="next_action", label_smoothing=0.5))
    assert loss.item() == pytest.approx(0.25 * math.log(3) + 0.75 * math.log(1.5), rel=1e-6)
    del s["teacher_logits"]
    with pytest.raises(KeyError, match="teacher_logits"):
        sp_loss(s, logits, SpLossConfig(target="teacher"))


def test_sp_config_and_shape_errors():
    for bad, field in (
        ({"loss_type": "mse"}, "loss_type"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"label_smoothing": 1.5}, "label_smoothing"),
        ({"target": "oracle"}, "target"),
        ({"target": "next_action", "loss_type": "js"}, "next_action"),
    ):
        with pytest.raises(ValueError, match=field):
            SpLossConfig(**bad)
    q = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="temperature"):
        sp_js_loss(q, q, 0.0)
    with pytest.raises(ValueError, match="direction"):
        sp_kl_loss(q, q, 1.0, direction="up")
    with pytest.raises(ValueError, match="aligned"):
        sp_kl_loss(q, torch.zeros(2, 4), 1.0)
    s = TensorDict(q_star=torch.zeros(1, 2, 3), batch_size=[1, 2])
    with pytest.raises(ValueError, match="q_star"):
        sp_loss(s, torch.zeros(1, 2, 4), SpLossConfig())
    with pytest.raises(ValueError, match=r"\[B, S, A\]"):
        sp_loss(s, torch.zeros(1, 2), SpLossConfig())


# ------------------------------------------------------------------------------------------------
# supervised value
# ------------------------------------------------------------------------------------------------
def test_sv_regresses_finite_entries_only():
    s = TensorDict(q_star=torch.tensor([[[1.0, -INF], [2.0, 4.0]]]), batch_size=[1, 2])
    logits = torch.tensor([[[3.0, 100.0], [2.0, 3.0]]], requires_grad=True)
    loss, m = sv_loss(s, logits, SvLossConfig())
    assert loss.item() == pytest.approx((4 + 0 + 1) / 3)
    assert m["sv_entries"] == 3 and m["sv_abs_error_max"] == 2.0
    loss.backward()
    assert logits.grad[0, 0, 1] == 0
    loss, _ = sv_loss(s, logits, SvLossConfig(loss_type="mae"))
    assert loss.item() == pytest.approx((2 + 0 + 1) / 3)


def test_sv_errors():
    with pytest.raises(ValueError, match="loss_type"):
        SvLossConfig(loss_type="huber")
    s = TensorDict(q_star=torch.full((1, 2, 2), -INF), batch_size=[1, 2])
    with pytest.raises(ValueError, match="no finite"):
        sv_loss(s, torch.zeros(1, 2, 2), SvLossConfig())
    with pytest.raises(ValueError, match="empty"):
        sv_loss(
            TensorDict(q_star=torch.zeros(0, 2, 2), batch_size=[0, 2]), torch.zeros(0, 2, 2), SvLossConfig()
        )
    with pytest.raises(KeyError, match="q_star"):
        sv_loss(TensorDict(batch_size=[1, 2]), torch.zeros(1, 2, 2), SvLossConfig())
    with pytest.raises(ValueError, match="q_star"):
        sv_loss(s, torch.zeros(1, 2, 3), SvLossConfig())
