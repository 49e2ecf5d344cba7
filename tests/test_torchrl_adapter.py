"""mouse.losses.torchrl: each MOUSE loss as a torchrl LossModule, and the value loss against torchrl's
own DreamerV3ValueLoss; plus the value loss's raw-space two-hot (torchrl's encoding)."""

import dataclasses
import importlib.util
import math
import subprocess
import sys

import pytest
import torch
from tensordict import TensorDict

from mouse.losses import LOSSES, ValueLossConfig
from mouse.losses.value import two_hot_bins, two_hot_cross_entropy, two_hot_decode, two_hot_encode, value_loss

needs_torchrl = pytest.mark.skipif(
    importlib.util.find_spec("torchrl") is None, reason="torchrl extra not installed"
)

NAMES = ["dqn", "vec_dqn", "sp", "sv", "vtrace", "value"]


def make_batch(b=3, s=6, a=3, d=4, seed=0, num_bins=0):
    """A step stream [B, S] (one terminal record and its reset) and every model output."""
    g = torch.Generator().manual_seed(seed)
    done = torch.zeros(b, s, dtype=torch.long)
    done[0, 2] = 1
    done[1, 4] = 2
    action = torch.randint(0, a, (b, s), generator=g)
    action[0, 3] = action[1, 5] = 0
    reward = torch.randn(b, s, generator=g)
    reward[0, 3] = reward[1, 5] = 0.0
    q_star = torch.randn(b, s, a, generator=g)
    q_star[0, 2] = q_star[1, 4] = -torch.inf
    stream = TensorDict(
        action=action,
        reward=reward,
        done=done,
        time=torch.zeros(b, s, dtype=torch.long),
        q_star=q_star,
        behavior_logits=torch.randn(b, s, a, generator=g),
        teacher_logits=torch.randn(b, s, a, generator=g),
        xformed_reward=torch.randn(b, s, generator=g),
        batch_size=[b, s],
    )
    value = torch.randn(b, s, num_bins, generator=g) if num_bins else torch.randn(b, s, generator=g) * 3
    out = TensorDict(
        sp=torch.randn(b, s, a, generator=g),
        dqn=torch.randn(b, s, a, generator=g),
        dqn_target=torch.randn(b, s, a, generator=g),
        vec_dqn=torch.randn(b, s, a, d, generator=g),
        vec_dqn_target=torch.randn(b, s, a, d, generator=g),
        sv=torch.randn(b, s, a, generator=g),
        value=value,
        batch_size=[b, s],
    )
    return stream, out


def _leaves(out):
    return out.apply(lambda x: x.clone().requires_grad_(x.is_floating_point()))


# --------------------------------------------------------------------------------------------------
# value loss: the raw-space two-hot (no torchrl needed)
# --------------------------------------------------------------------------------------------------
def test_raw_two_hot_bins_encode_decode():
    for n in (255, 256, 11, 2):
        bins = two_hot_bins(n, dtype=torch.float64, space="raw")
        assert torch.equal(bins, -bins.flip(0))  # exactly antisymmetric
        grid = two_hot_bins(n, dtype=torch.float64)
        assert torch.allclose(bins, torch.sign(grid) * torch.expm1(grid.abs()), rtol=1e-12)
    assert two_hot_bins(255, space="raw")[127] == 0.0
    x = torch.tensor([-1e4, -3.3, -1.0, 0.0, 0.05, 0.25, 2.0, 17.0, 1e5, 4e8], dtype=torch.float64)
    probs = two_hot_encode(x, space="raw")
    assert torch.allclose(probs.sum(-1), torch.ones_like(x))
    assert ((probs > 0).sum(-1) <= 2).all()
    # linear in raw space: the raw expectation is x itself
    bins = two_hot_bins(255, dtype=torch.float64, space="raw")
    assert torch.allclose((probs * bins).sum(-1), x, rtol=1e-12, atol=1e-12)
    assert torch.allclose(two_hot_decode(probs, logits=False, space="raw"), x, rtol=1e-12, atol=1e-12)
    # halfway between two raw bins gets 1/2 each; symlog space puts less on the lower bin there
    # (symexp is convex above 0, so the raw midpoint lies past the symlog-space midpoint)
    mid = (bins[140] + bins[141]) / 2
    assert two_hot_encode(mid, space="raw")[[140, 141]].tolist() == pytest.approx([0.5, 0.5])
    assert 0.4 < two_hot_encode(mid)[140] < 0.49
    # beyond the support: the edge bin; a uniform critic decodes to exactly 0
    assert two_hot_encode(torch.tensor([-1e12]), space="raw")[0, 0] == 1.0
    assert two_hot_decode(torch.zeros(3, 255), space="raw").tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="space"):
        two_hot_encode(x, space="linear")
    with pytest.raises(ValueError, match="two_hot_space"):
        ValueLossConfig(two_hot_space="linear")


def test_raw_two_hot_cross_entropy_matches_the_dense_formula_and_its_gradient():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 7, 31, generator=g, dtype=torch.float64, requires_grad=True)
    x = torch.randn(4, 7, generator=g, dtype=torch.float64) * 50
    dense = -(two_hot_encode(x, 31, space="raw") * torch.log_softmax(logits, -1)).sum(-1)
    fast = two_hot_cross_entropy(logits, x, space="raw")
    assert torch.allclose(fast, dense, rtol=1e-12)
    (g_dense,) = torch.autograd.grad(dense.sum(), logits)
    (g_fast,) = torch.autograd.grad(fast.sum(), logits)
    assert torch.allclose(g_fast, g_dense, rtol=1e-10, atol=1e-12)


def test_value_loss_raw_space_uses_raw_targets_and_raw_decoding():
    stream, out = make_batch(num_bins=41)
    cfg = ValueLossConfig(
        weight=1.0, loss_type="two_hot", num_bins=41, two_hot_space="raw", discount_loss=False
    )
    loss, m = value_loss(stream, out, cfg)
    default, _ = value_loss(stream, out, dataclasses.replace(cfg, two_hot_space="symlog"))
    assert loss.item() != pytest.approx(default.item())
    pred = two_hot_decode(out["value"], space="raw")
    keep = stream["done"][:, :-1] == 0
    assert m["value_mean"] == pytest.approx(pred[:, :-1][keep].mean().item(), rel=1e-5)


# --------------------------------------------------------------------------------------------------
# the adapters
# --------------------------------------------------------------------------------------------------
CASES = [
    ("dqn", {}),
    ("dqn", {"gamma": 0.9, "use_xformed_reward": True}),
    ("vec_dqn", {}),
    ("sp", {}),
    ("sp", {"target": "teacher", "loss_type": "kl-fwd"}),
    ("sp", {"target": "next_action"}),
    ("sv", {}),
    ("vtrace", {}),
    ("value", {}),
    ("value", {"loss_type": "two_hot", "num_bins": 41}),
    ("value", {"loss_type": "two_hot", "num_bins": 41, "two_hot_space": "raw", "discount_loss": False}),
]


@needs_torchrl
@pytest.mark.parametrize(("name", "fields"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_adapter_equals_the_registry_loss(name, fields):
    from torchrl.objectives import LossModule

    from mouse.losses.torchrl import TORCHRL_LOSSES, make_loss_module

    stream, out = make_batch(num_bins=fields.get("num_bins", 0))
    spec = LOSSES[name]
    cfg = spec.config_cls(weight=1.0, **fields)
    out_a, out_b = _leaves(out), _leaves(out)
    ref, ref_metrics = spec.compute(stream, out_a, cfg)

    module = make_loss_module(name, **fields)
    assert isinstance(module, LossModule) and type(module) is TORCHRL_LOSSES[name]
    assert module.cfg == cfg and list(module.parameters()) == []
    loss_td = module(stream.copy().update(out_b))
    assert loss_td.batch_size == torch.Size([])
    assert [k for k in loss_td.keys() if k.startswith("loss_")] == [f"loss_{name}"]
    assert torch.equal(loss_td[f"loss_{name}"], ref)
    assert set(loss_td.keys()) == {f"loss_{name}", *ref_metrics}
    for key, value in ref_metrics.items():
        assert loss_td[key].shape == () and not loss_td[key].requires_grad
        assert loss_td[key].item() == pytest.approx(value, rel=1e-6, abs=1e-6), key
    # same gradients into the model outputs
    ref.backward()
    loss_td[f"loss_{name}"].backward()
    for head in spec.heads:
        ga, gb = out_a[head].grad, out_b[head].grad
        assert (ga is None) == (gb is None), head
        if ga is not None:
            assert torch.equal(ga, gb), head
    # a config object works too, and fields override it
    assert make_loss_module(name, cfg).cfg == cfg
    assert TORCHRL_LOSSES[name](cfg, weight=0.5).cfg == dataclasses.replace(cfg, weight=0.5)


@needs_torchrl
def test_set_keys_renames_fields_nested_and_torchrl_shaped():
    from mouse.losses.torchrl import MouseDqnLoss, MouseValueLoss

    stream, out = make_batch()
    ref = MouseDqnLoss(gamma=0.8)(stream.copy().update(out))
    module = MouseDqnLoss(gamma=0.8)
    assert MouseDqnLoss.default_keys().reward == "reward"
    module.set_keys(dqn="q", dqn_target=("target", "q"), reward=("next", "reward"), done="is_done")
    assert module.tensor_keys.reward == ("next", "reward") and ("next", "reward") in module.in_keys
    renamed = TensorDict(
        {
            "q": out["dqn"],
            "target": {"q": out["dqn_target"]},
            "next": {"reward": stream["reward"].unsqueeze(-1)},  # torchrl's trailing singleton
            "is_done": stream["done"].unsqueeze(-1),
            "action": stream["action"],
        },
        batch_size=[],  # [B, S] is read from the entries
    )
    got = module(renamed)
    assert torch.equal(got["loss_dqn"], ref["loss_dqn"])
    assert got["dqn_pairs"] == ref["dqn_pairs"]
    # the old names are no longer read
    with pytest.raises(KeyError, match="'dqn' under key 'q'"):
        module(stream.copy().update(out))
    module.set_keys(dqn=None)  # back to the default key
    assert module.tensor_keys.dqn == "dqn"
    with pytest.raises(ValueError, match="not an accepted tensordict key"):
        module.set_keys(qvalue="x")
    value = MouseValueLoss()
    value.set_keys(value="state_value")
    td = stream.copy().update({"state_value": out["value"].unsqueeze(-1)})
    assert torch.equal(value(td)["loss_value"], MouseValueLoss()(stream.copy().update(out))["loss_value"])


@needs_torchrl
def test_missing_keys_raise_a_clear_error():
    from mouse.losses.torchrl import MouseDqnLoss, MouseSpLoss, MouseValueLoss

    stream, out = make_batch()
    td = stream.copy().update(out)
    with pytest.raises(
        KeyError, match=r"'dqn_target' under key 'dqn_target' \(the target head.*compute_targets"
    ):
        MouseDqnLoss()(td.exclude("dqn_target"))
    with pytest.raises(KeyError, match=r"'xformed_reward'.*use_xformed_reward"):
        MouseDqnLoss(use_xformed_reward=True)(td.exclude("xformed_reward"))
    with pytest.raises(
        KeyError, match=r"'teacher_logits'.*target='teacher'.*set_keys\(teacher_logits=<key>\)"
    ):
        MouseSpLoss(target="teacher")(td.exclude("teacher_logits"))
    with pytest.raises(
        KeyError, match=r"'reward' under key 'reward' \(or give lambda-returns under 'lambda_target'"
    ):
        MouseValueLoss()(td.exclude("reward"))
    # with lambda_target the value loss needs neither action nor reward
    td2 = td.exclude("reward", "action").update({"lambda_target": torch.zeros(td.batch_size)})
    assert MouseValueLoss()(td2)["value_positions"] > 0
    with pytest.raises(TypeError, match="DqnLossConfig"):
        MouseDqnLoss(ValueLossConfig())
    with pytest.raises(TypeError, match="not both"):
        MouseValueLoss(value_loss="two_hot", loss_type="two_hot")
    with pytest.raises(ValueError, match="loss_type"):
        MouseValueLoss(value_loss="mse")
    with pytest.raises(ValueError, match=r"batch_size \[B, S\]"):
        MouseDqnLoss()(td.unsqueeze(0))


# --------------------------------------------------------------------------------------------------
# the value adapter against torchrl's DreamerV3ValueLoss
# --------------------------------------------------------------------------------------------------
def _torchrl_value_loss(kind, **options):
    from tensordict.nn import TensorDictModule
    from torchrl.objectives import DreamerV3ValueLoss

    out_key = "state_value_logits" if kind == "two_hot" else "state_value"
    # the "value network" hands through fixed predictions, so both losses see the same tensors
    model = TensorDictModule(torch.nn.Identity(), in_keys=["pred"], out_keys=[out_key])
    return DreamerV3ValueLoss(model, value_loss=kind, **options)


@needs_torchrl
@pytest.mark.parametrize("kind", ["symlog_mse", "two_hot"])
@pytest.mark.parametrize("discount_loss", [True, False])
@pytest.mark.parametrize(("gamma", "num_bins"), [(0.99, 255), (0.7, 41), (0.95, 256)])
def test_value_adapter_matches_torchrl_dreamer_v3_value_loss(kind, discount_loss, gamma, num_bins):
    from mouse.losses.torchrl import MouseValueLoss

    b, s = 4, 9
    g = torch.Generator().manual_seed(3)
    # targets over many magnitudes: near 0, between bins, large, beyond the +-symexp(20) support
    scale = torch.logspace(-3, 6, b * s).reshape(b, s)
    target = torch.randn(b, s, generator=g) * scale
    target[0, 0], target[1, 1], target[2, 2], target[3, 3] = 0.0, 1e10, -1e10, 1.0
    if kind == "two_hot":
        pred = torch.randn(b, s, num_bins, generator=g) * 2
    else:
        pred = torch.randn(b, s, 1, generator=g) * scale.unsqueeze(-1)
    options = {"discount_loss": discount_loss, "gamma": gamma, "num_value_bins": num_bins}

    p_ref = pred.clone().requires_grad_(True)
    td_ref = TensorDict(pred=p_ref, lambda_target=target.unsqueeze(-1), batch_size=[b, s])
    ref_td, _ = _torchrl_value_loss(kind, **options)(td_ref)
    ref = ref_td["loss_value"]

    module = MouseValueLoss(value_loss=kind, two_hot_space="raw", **options)
    module.set_keys(value="pred")
    p = pred.clone().requires_grad_(True)
    td = TensorDict(
        pred=p,
        lambda_target=target.unsqueeze(-1),
        done=torch.zeros(b, s, dtype=torch.long),
        batch_size=[b, s],
    )
    got = module(td)["loss_value"]
    # symlog_mse: bit for bit; two_hot: within a few float32 ulps (MOUSE reads the two bins only)
    assert torch.allclose(got, ref, rtol=1e-6, atol=0), (got.item(), ref.item())
    if kind == "symlog_mse":
        assert torch.equal(got, ref)
    ref.backward()
    got.backward()
    # the gradients agree to ~1e-5 of their largest entry: torchrl builds the raw bins in float32
    # (even sizes accumulate ~1.6e-5 relative round-off), MOUSE in float64
    assert torch.allclose(p.grad, p_ref.grad, rtol=1e-5, atol=1e-5 * p_ref.grad.abs().max().item())

    if kind == "two_hot":
        # MOUSE's default (symlog-space interpolation, DreamerV3's reference code) differs from torchrl
        symlog_space = MouseValueLoss(value_loss=kind, **options)
        symlog_space.set_keys(value="pred")
        other = symlog_space(td)["loss_value"]
        assert not torch.allclose(other, ref, rtol=1e-4)


@needs_torchrl
def test_value_adapter_drops_records_where_no_action_is_taken():
    """The one intended difference from torchrl: a record with done != 0 has no target in MOUSE."""
    from mouse.losses.torchrl import MouseValueLoss

    b, s = 2, 5
    g = torch.Generator().manual_seed(4)
    pred, target = torch.randn(b, s, 1, generator=g), torch.randn(b, s, 1, generator=g)
    done = torch.zeros(b, s, dtype=torch.long)
    done[0, 1] = 1
    td = TensorDict(state_value=pred, lambda_target=target, done=done, batch_size=[b, s])
    module = MouseValueLoss(discount_loss=False)
    module.set_keys(value="state_value")
    got = module(td)["loss_value"]
    per = (torch.sign(pred) * torch.log1p(pred.abs()) - torch.sign(target) * torch.log1p(target.abs())) ** 2
    keep = (done == 0).unsqueeze(-1)
    assert got.item() == pytest.approx(per[keep].mean().item(), rel=1e-6)
    assert not math.isclose(got.item(), per.mean().item(), rel_tol=1e-4)


def test_import_mouse_losses_does_not_import_torchrl():
    code = "import sys, mouse.losses; assert 'torchrl' not in sys.modules, 'torchrl imported'"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]


def test_the_adapter_without_torchrl_says_how_to_install_it():
    code = (
        "import sys; sys.modules['torchrl'] = None\n"
        "try:\n    import mouse.losses.torchrl\nexcept ImportError as e:\n    print(e)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0 and "pip install 'mouse[torchrl]'" in run.stdout, (
        run.stdout + run.stderr[-2000:]
    )
