"""Model: forward shapes, KV-cache decoding, PAD masking, save/load, get_action, Polyak, bad input."""

import json

import pytest
import torch
from tensordict import TensorDict

from mouse.models import Model, ModelLlama, ModelNone, ModelQwen3, load_model

A, N_OBS, D = 4, 9, 32
LLAMA = {"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 48}
QWEN3 = {**LLAMA, "head_dim": 8}
EMB = {"max_num_actions": A, "include_obs_discrete": True, "max_num_obs_discrete": N_OBS}
HEADS = {
    "sp_head_kwargs": {"num_layers": 1},
    "dqn_head_kwargs": {"num_layers": 1},
    "sv_head_kwargs": {"num_layers": 1},
    "vec_dqn_head_kwargs": {"num_layers": 1, "vec_dim": 4},
    "value_head_kwargs": {"num_layers": 1, "num_bins": 5},
}
BACKBONES = [(ModelLlama, LLAMA), (ModelQwen3, QWEN3), (ModelNone, {})]


def make_model(cls=ModelLlama, backbone=LLAMA, emb=None, **kw):
    torch.manual_seed(0)
    return cls(hidden_dim=D, backbone_kwargs=backbone, embedding_kwargs=emb or EMB, **{**HEADS, **kw}).eval()


def make_stream(B=3, S=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDict(
        {
            "action": torch.randint(0, A, (B, S), generator=g),
            "reward": torch.randn(B, S, generator=g),
            "done": torch.randint(0, 3, (B, S), generator=g),
            "time": torch.randint(0, 30, (B, S), generator=g),
            "obs_discrete": torch.randint(0, N_OBS, (B, S), generator=g),
            "obs_continuous": torch.randn(B, S, 3, generator=g),
        },
        batch_size=[B, S],
    )


@pytest.mark.parametrize("cls, backbone", BACKBONES)
def test_forward_shapes(cls, backbone):
    model = make_model(cls, backbone)
    out, cache = model(make_stream(3, 8))
    assert cache is None
    expected = {
        "sp": (3, 8, A), "dqn": (3, 8, A), "dqn_target": (3, 8, A), "sv": (3, 8, A),
        "vec_dqn": (3, 8, A, 4), "vec_dqn_target": (3, 8, A, 4), "value": (3, 8, 5),
    }  # fmt: skip
    assert {k: tuple(v.shape) for k, v in out.items()} == expected
    assert all(v.dtype == torch.float32 for v in out.values())
    assert tuple(out.batch_size) == (3, 8)
    out, _ = model(make_stream(3, 8), compute_targets=False)
    assert "dqn_target" not in out.keys() and "vec_dqn_target" not in out.keys()
    assert set(out.keys()) == {"sp", "dqn", "sv", "vec_dqn", "value"}
    only, _ = model(make_stream(3, 8), compute_targets=False, heads=(model.action_head,))
    assert set(only.keys()) == {"vec_dqn"}
    torch.testing.assert_close(only["vec_dqn"], out["vec_dqn"])
    with pytest.raises(ValueError, match="heads must name enabled heads"):
        model(make_stream(3, 8), heads=("policy",))


def test_only_enabled_heads_and_scalar_value():
    model = ModelNone(
        hidden_dim=D, backbone_kwargs={}, embedding_kwargs=EMB, sp_head_kwargs={"num_layers": 1},
        dqn_head_kwargs={"num_layers": 0}, sv_head_kwargs={}, vec_dqn_head_kwargs={},
        value_head_kwargs={"num_layers": 1},
    )  # fmt: skip
    out, _ = model(make_stream(2, 5))
    assert set(out.keys()) == {"sp", "value"} and out["value"].shape == (2, 5)
    assert model.action_head == "sp"


@pytest.mark.parametrize("cls, backbone", BACKBONES[:2])
@pytest.mark.parametrize(
    "emb",
    [EMB, {**EMB, "concat_modalities": True, "num_compute_tokens": 2}, {**EMB, "num_compute_tokens": 1}],
    ids=["sum", "concat+compute", "sum+compute"],
)
def test_kv_cache_decode_matches_full_forward(cls, backbone, emb):
    model = make_model(cls, backbone, emb=emb)
    td = make_stream(3, 10)
    full, _ = model(td)
    out, cache = model(td[:, :4], use_cache=True)
    pieces = [out]
    for t in range(4, 10, 2):  # chunks of one and two steps
        out, cache = model(td[:, t : t + 1], cache=cache, use_cache=True)
        pieces.append(out)
        out, cache = model(td[:, t + 1 : t + 2], cache=cache, use_cache=True)
        pieces.append(out)
    decoded = torch.cat(pieces, dim=1)
    for key in full.keys():
        assert (decoded[key] - full[key]).abs().max() <= 1e-5, key
    assert cache["num_tokens"] == 10 * model.tokens_per_step
    # cache=None starts over at position 0
    again, _ = model(td[:, :4], use_cache=True)
    torch.testing.assert_close(again["sp"], full["sp"][:, :4], atol=1e-5, rtol=0)


def test_cache_position_and_context_limit():
    model = make_model(backbone={**LLAMA, "max_position_embeddings": 12})
    assert model.max_context_steps == 12
    td = make_stream(2, 12)
    _, cache = model(td[:, :5], use_cache=True)
    _, cache = model(td[:, 5:6], cache=cache, use_cache=True, cache_position=torch.tensor([5]))
    with pytest.raises(ValueError, match="cache_position must be"):
        model(td[:, 6:7], cache=cache, use_cache=True, cache_position=torch.tensor([3]))
    with pytest.raises(ValueError, match="max_position_embeddings=12"):
        model(make_stream(2, 13))
    with pytest.raises(ValueError, match="use_cache=False"):
        model(td[:, 6:7], cache=cache)
    concat = make_model(emb={**EMB, "concat_modalities": True})  # 5 tokens per step
    assert concat.tokens_per_step == 5 and concat.max_context_steps == 4096 // 5


@pytest.mark.parametrize("cls, backbone", BACKBONES[:2])
def test_pad_steps_are_not_attended(cls, backbone):
    model = make_model(cls, backbone, emb={**EMB, "concat_modalities": True})
    td = make_stream(2, 6)
    td["pad"] = torch.zeros(2, 6, dtype=torch.bool)
    td["pad"][0, 2] = True
    out1, _ = model(td)
    td2 = td.clone()
    td2["action"][0, 2] = (td2["action"][0, 2] + 1) % A
    td2["reward"][0, 2] += 3.0
    out2, _ = model(td2)
    assert torch.isfinite(out1["sp"]).all()
    # later steps of sequence 0 do not see the PAD step; sequence 1 is untouched
    torch.testing.assert_close(out1["sp"][:, 3:], out2["sp"][:, 3:], atol=1e-6, rtol=0)
    # without the pad flag the same change is visible downstream
    out3, _ = model(td2.exclude("pad"))
    assert (out3["sp"][0, 3:] - out1["sp"][0, 3:]).abs().max() > 1e-4
    # decoding with a cache matches the full forward, PAD included
    out, cache = model(td[:, :3], use_cache=True)
    steps = [out]
    for t in range(3, 6):
        out, cache = model(td[:, t : t + 1], cache=cache, use_cache=True)
        steps.append(out)
    torch.testing.assert_close(torch.cat(steps, dim=1)["sp"], out1["sp"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("cls, backbone", BACKBONES)
def test_save_load_roundtrip(tmp_path, cls, backbone):
    model = make_model(cls, backbone, action_head="sv")
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config == model.config and config["action_head"] == "sv"
    loaded = load_model(tmp_path)
    assert type(loaded) is cls and loaded.action_head == "sv"
    td = make_stream()
    ref, got = model(td)[0], loaded.eval()(td)[0]
    for key in ref.keys():
        assert torch.equal(ref[key], got[key]), key
    assert type(cls.from_pretrained(tmp_path)) is cls
    assert type(Model.from_pretrained(tmp_path)) is cls
    # the config alone rebuilds the same architecture
    assert type(cls(**model.config)) is cls


def test_detection_rule(tmp_path):
    for cls, backbone in BACKBONES:
        model = make_model(cls, backbone)
        model.save_pretrained(tmp_path / cls.__name__)
        config = json.loads((tmp_path / cls.__name__ / "config.json").read_text())
        assert ("head_dim" in config["backbone_kwargs"]) == (cls is ModelQwen3)
        assert bool(config["backbone_kwargs"]) == (cls is not ModelNone)
        assert type(load_model(tmp_path / cls.__name__)) is cls
    # a Llama config with defaults only still saves non-empty backbone_kwargs (so it is not read as none)
    llama = ModelLlama(hidden_dim=D, backbone_kwargs={}, embedding_kwargs=EMB, **HEADS)
    assert llama.config["backbone_kwargs"]["num_hidden_layers"] == 3
    with pytest.raises(ValueError, match="head_dim"):
        ModelLlama(hidden_dim=D, backbone_kwargs=QWEN3, embedding_kwargs=EMB, **HEADS)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['num_layers'\]"):
        ModelLlama(hidden_dim=D, backbone_kwargs={"num_layers": 2}, embedding_kwargs=EMB, **HEADS)
    with pytest.raises(ValueError, match="ModelNone takes no backbone_kwargs"):
        ModelNone(hidden_dim=D, backbone_kwargs=LLAMA, embedding_kwargs=EMB, **HEADS)


def test_strict_loading(tmp_path):
    from safetensors.torch import load_file, save_file

    model = make_model()
    model.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    missing = dict(state)
    missing.pop("sp_head.out.bias")
    save_file(missing, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"missing \['sp_head.out.bias'\]"):
        load_model(tmp_path)
    save_file({**state, "extra.weight": torch.zeros(1)}, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"unexpected \['extra.weight'\]"):
        load_model(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="corrupt or unreadable"):
        load_model(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_model(tmp_path)


def test_get_action_greedy_trim_and_head_choice():
    model = make_model(ModelNone, {})
    assert model.action_head == "vec_dqn"  # auto: vec_dqn > dqn > sp > sv
    sp = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [1.0, 3.0, 2.0, 5.0]]])  # [B=1, S=2, A]
    out = TensorDict({"sp": sp}, batch_size=[1, 2])
    sp_model = make_model(ModelNone, {}, action_head="sp")
    assert sp_model.get_action(out, temperature=0.0).tolist() == [3]
    assert sp_model.get_action(out, temperature=0.0, num_actions=3).tolist() == [1]
    with pytest.raises(ValueError, match="num_actions"):
        sp_model.get_action(out, num_actions=5)
    with pytest.raises(ValueError, match="temperature"):
        sp_model.get_action(out, temperature=-1.0)
    with pytest.raises(KeyError, match="'dqn'"):
        make_model(ModelNone, {}, action_head="dqn").get_action(out)
    with pytest.raises(ValueError, match="action_head must name an enabled head"):
        make_model(ModelNone, {}, action_head="policy")
    with pytest.raises(ValueError, match="action_head must name an enabled head"):
        make_model(ModelNone, {}, action_head="dqn", dqn_head_kwargs={})
    # vec_dqn: the score is the summed angular lead, so the action with the largest angle wins
    # (planes are consecutive pairs (2k, 2k+1): both planes of each vector carry the action's angle)
    angles = torch.tensor([0.1, 0.9, -0.5, 0.3])
    vecs = torch.stack((torch.cos(angles), torch.sin(angles), torch.cos(angles), torch.sin(angles)), dim=-1)
    out = TensorDict({"vec_dqn": vecs.expand(2, 1, 4, 4)}, batch_size=[2, 1])
    assert model.get_action(out, temperature=0.0).tolist() == [1, 1]


def test_get_action_sampling_frequencies():
    model = make_model(ModelNone, {}, action_head="sp")
    logits = torch.tensor([0.0, 1.0, 2.0, -1.0])
    n = 40000
    out = TensorDict({"sp": logits.expand(n, 1, 4).clone()}, batch_size=[n, 1])
    torch.manual_seed(0)
    for temperature in (1.0, 0.5):
        freq = torch.bincount(model.get_action(out, temperature=temperature), minlength=4).float() / n
        expected = torch.softmax(logits / temperature, dim=-1)
        assert (freq - expected).abs().max() < 0.015, (temperature, freq, expected)
    freq = torch.bincount(model.get_action(out, temperature=1.0, num_actions=2), minlength=4).float() / n
    assert freq[2:].sum() == 0 and abs(freq[1] - torch.sigmoid(torch.tensor(1.0))) < 0.015


def test_model_polyak_and_target_gets_no_gradient():
    model = make_model().train()
    out, _ = model(make_stream())
    loss = sum(v.sum() for v in out.values())
    loss.backward()
    for head in (model.dqn_head, model.vec_dqn_head):
        assert all(p.grad is None for p in head.target.parameters())
        assert all(p.grad is not None for p in head.online.parameters())
    with torch.no_grad():
        for p in model.dqn_head.online.parameters():
            p.add_(1.0)
    before = [p.clone() for p in model.dqn_head.target.parameters()]
    online = list(model.dqn_head.online.parameters())
    vec_before = [p.clone() for p in model.vec_dqn_head.target.parameters()]
    model.polyak_update(dqn_tau=0.1, vec_dqn_tau=0.0)
    for p, b, o in zip(model.dqn_head.target.parameters(), before, online):
        torch.testing.assert_close(p, 0.1 * o + 0.9 * b)
    for p, b in zip(model.vec_dqn_head.target.parameters(), vec_before):
        assert torch.equal(p, b)


@pytest.mark.parametrize("cls, backbone", BACKBONES)
def test_bf16_autocast(cls, backbone):
    model = make_model(cls, backbone)
    td = make_stream()
    ref, _ = model(td)  # the fp32 reference (no autocast)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = model(td)
        _, cache = model(td[:, :5], use_cache=True)
        step, _ = model(td[:, 5:6], cache=cache, use_cache=True)
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in out.values())
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in step.values())
    assert not torch.equal(out["sp"], ref["sp"]), "autocast had no effect: nothing ran in bf16"
    # bf16 keeps 8 significant bits (7 stored + 1 implicit): each rounding is off by up to 2^-8 relative
    # to the activations' scale. An output goes through about 8 bf16 matmul stages here (embedding, 2
    # layers x attention + MLP, head layers); worst-case linear accumulation bounds the error by
    # 8 * 2^-8 * scale (~3% of max |fp32 output|). Observed: ~0.4% (0.007 on outputs of scale ~2).
    # A wrong result (e.g. a mis-cast weight, a cache position off by one) is off by O(scale).
    for key in ref.keys():
        atol = 8 * 2**-8 * max(ref[key].abs().max().item(), 1.0)
        torch.testing.assert_close(out[key], ref[key], atol=atol, rtol=0, msg=f"{key}: bf16 vs fp32")
        torch.testing.assert_close(
            step[key][:, 0], ref[key][:, 5], atol=atol, rtol=0, msg=f"{key}: cached step"
        )


def test_bad_input_through_model():
    model = make_model()
    td = make_stream()
    td["action"][0, 0] = A
    with pytest.raises(ValueError, match=r"step_stream\['action'\] holds 4, outside \[0, 4\)"):
        model(td)
    with pytest.raises(ValueError, match="obs_discrete"):
        model(make_stream().exclude("obs_discrete"))


def test_config_is_plain_json_and_validated():
    model = make_model()
    config = model.config
    assert json.loads(json.dumps(config)) == config
    assert config["embedding_kwargs"]["include_time_token"] is True  # defaults are stored
    with pytest.raises(ValueError, match="No action head"):
        ModelNone(hidden_dim=D, backbone_kwargs={}, embedding_kwargs=EMB, sp_head_kwargs={},
                  dqn_head_kwargs={}, sv_head_kwargs={}, vec_dqn_head_kwargs={})  # fmt: skip
    with pytest.raises(TypeError, match="abstract"):
        Model(hidden_dim=D, backbone_kwargs={}, embedding_kwargs=EMB, **HEADS)


@pytest.mark.parametrize("cls, backbone", BACKBONES[:2])
@pytest.mark.parametrize("pad", [False, True])
def test_fast_path_matches_transformers_forward(cls, backbone, pad):
    """The fused fast path computes what the wrapped transformers model computes."""
    model = make_model(cls, backbone, emb={**EMB, "concat_modalities": True, "num_compute_tokens": 1})
    td = make_stream(2, 7)
    if pad:
        td["pad"] = torch.zeros(2, 7, dtype=torch.bool)
        td["pad"][1, :2] = True
    fast, _ = model(td)
    fast_prefix, fast_cache = model(td[:, :5], use_cache=True)
    fast_next, _ = model(td[:, 5:], cache=fast_cache, use_cache=True)
    model.use_fast_path = False
    ref, _ = model(td)
    ref_prefix, ref_cache = model(td[:, :5], use_cache=True)
    ref_next, _ = model(td[:, 5:], cache=ref_cache, use_cache=True)
    with pytest.raises(ValueError, match="other forward path"):
        model(td[:, 5:6], cache=fast_cache, use_cache=True)
    for key in ref.keys():
        assert (fast[key] - ref[key]).abs().max() <= 1e-5, key
        assert (fast_next[key] - ref_next[key]).abs().max() <= 1e-5, key
        assert (fast_prefix[key] - ref_prefix[key]).abs().max() <= 1e-5, key


def test_fast_cache_grows_past_its_first_capacity():
    model = make_model(emb={**EMB, "concat_modalities": True})  # 5 tokens per step: capacity 64 overflows
    td = make_stream(2, 20)
    full, _ = model(td)
    out, cache = model(td[:, :1], use_cache=True)
    pieces = [out]
    for t in range(1, 20):
        out, cache = model(td[:, t : t + 1], cache=cache, use_cache=True)
        pieces.append(out)
    assert cache["layers"][0].shape[2] >= 100
    torch.testing.assert_close(torch.cat(pieces, dim=1)["dqn"], full["dqn"], atol=1e-5, rtol=0)


def test_inference_weight_cache_follows_weight_updates():
    """Fused weights cached for inference are rebuilt after an optimizer step or a load."""
    model = make_model()
    td = make_stream(2, 5)
    with torch.inference_mode():
        before, _ = model(td)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out, _ = model(td)
    out["sp"].square().sum().backward()
    opt.step()
    with torch.no_grad():
        after, _ = model(td)
    model.use_fast_path = False
    with torch.no_grad():
        reference, _ = model(td)
    assert (after["sp"] - before["sp"]).abs().max() > 1e-4
    torch.testing.assert_close(after["sp"], reference["sp"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("cls, backbone", BACKBONES[:2])
def test_fast_path_gradients_match_transformers(cls, backbone):
    model = make_model(cls, backbone).train()
    td = make_stream(2, 6)
    grads = []
    for fast in (True, False):
        model.use_fast_path = fast
        model.zero_grad()
        out, _ = model(td)
        (out["sp"].square().sum() + out["dqn"].sum() + out["vec_dqn"].sum()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and any(n.startswith("transformer.") for n in grads[0])
    for name, g in grads[0].items():
        torch.testing.assert_close(g, grads[1][name], atol=1e-5, rtol=1e-4, msg=name)


def test_unknown_hub_repo_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a local directory nor a loadable Hub model repo"):
        load_model("mouse-test-org/does-not-exist", local_dir=tmp_path / "dl")


def test_model_class_lives_above_base_and_the_backbones():
    """base never imports the backbones; mouse.models.loading (above both) holds load_model/model_class."""
    import ast
    import inspect

    from mouse.models import base
    from mouse.models.loading import model_class

    tree = ast.parse(inspect.getsource(base))
    imported = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {m for m in imported if m.startswith(("mouse.models.backbone", "mouse.models.loading"))}
    assert model_class({}) is ModelNone and Model.class_for({}) is ModelNone
    assert model_class(QWEN3) is ModelQwen3 and model_class(LLAMA) is ModelLlama
