"""Image encoders for symbolic grids ("cells", "conv"): kwargs and spec, shapes, sensitivity, decoding, save/load."""

import json

import pytest
import torch
from tensordict import TensorDict

from mouse.data.spec import DatasetSpec
from mouse.models import ModelLlama, ModelNone, load_model
from mouse.models.embedding import StepEmbedder, TokenType
from mouse.models.embedding.image import GridCellEncoder, GridConvEncoder

A, D = 4, 16
GRID = [7, 7, 3]
P = 147
VOCAB = 16
IMG = dict(
    max_num_actions=A,
    include_obs_image=True,
    max_num_obs_image=P,
    obs_image_shape=GRID,
    obs_image_vocab=VOCAB,
    obs_image_cell_dim=8,
)
GRID_ENCODERS = ["cells", "conv"]


def grids(n, seed=0):
    """``[n, 147]`` uint8 MiniGrid-like grids: object 0..10, colour 0..5, state 0..2 per cell."""
    g = torch.Generator().manual_seed(seed)
    highs = torch.tensor([11, 6, 3])
    return (torch.rand(n, 49, 3, generator=g) * highs).long().reshape(n, P).to(torch.uint8)


def make_stream(B=2, S=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDict(
        {
            "action": torch.randint(0, A, (B, S), generator=g),
            "reward": torch.randn(B, S, generator=g),
            "done": torch.randint(0, 3, (B, S), generator=g),
            "time": torch.randint(0, 10, (B, S), generator=g),
            "obs_image": grids(B * S, seed).view(B, S, P),
        },
        batch_size=[B, S],
    )


def image_only(encoder, **kw):
    """An embedder that embeds only the image, so its token is the encoder output + a constant."""
    torch.manual_seed(0)
    off = dict(include_action_token=False, include_reward_token=False)
    off.update(include_done_token=False, include_time_token=False)
    return StepEmbedder(D, **{**IMG, **off, "obs_image_encoder": encoder, **kw}).eval()


def embed_grids(emb, pix):
    """``pix [n, P]`` -> ``[n, D]`` tokens (one step per grid)."""
    with torch.no_grad():
        x, _ = emb(TensorDict({"obs_image": pix.unsqueeze(1)}, batch_size=[pix.shape[0], 1]))
    return x[:, 0]


# ------------------------------------------------------------------------------------ dataset spec
def test_spec_image_shape_round_trip_and_embedding_kwargs():
    spec = DatasetSpec(num_actions=3, horizon=10, obs_image_size=P, obs_image_shape=[7, 7, 3])
    assert spec.obs_image_shape == (7, 7, 3)  # a tuple in Python
    assert json.loads(spec.to_json())["obs_image_shape"] == [7, 7, 3]  # a list in JSON
    back = DatasetSpec.from_json(spec.to_json())
    assert back == spec and back.obs_image_shape == (7, 7, 3)
    kw = spec.embedding_kwargs()
    assert kw["obs_image_shape"] == [7, 7, 3] and kw["max_num_obs_image"] == P
    emb = StepEmbedder(D, **kw, obs_image_encoder="cells", obs_image_vocab=VOCAB)
    assert emb.obs_image_enc.shape == (7, 7, 3) and emb.tokens_per_step == 1
    # no image: the key is not passed
    assert "obs_image_shape" not in DatasetSpec(num_actions=3, horizon=10).embedding_kwargs()


def test_spec_without_obs_image_shape_still_loads():
    old = DatasetSpec(num_actions=3, horizon=10, obs_image_size=12).to_dict()
    del old["obs_image_shape"]  # a spec.json written before the field existed
    spec = DatasetSpec.from_json(json.dumps(old))
    assert spec.obs_image_shape == ()
    kw = spec.embedding_kwargs()
    assert kw["obs_image_shape"] == []
    StepEmbedder(D, **kw)  # the linear encoder needs no shape


@pytest.mark.parametrize(
    "shape, match",
    [
        ([7, 7, 2], r"obs_image_shape=\[7, 7, 2\] holds 98 pixels but obs_image_size=147"),
        ([7, 0, 21], r"obs_image_shape must hold integers >= 1, got \[7, 0, 21\]"),
        ("7x7x3", "obs_image_shape must be a list of integers"),
        ([7, 7.5, 3], r"obs_image_shape\[1\] must be an integer"),
    ],
)
def test_spec_bad_image_shape(shape, match):
    with pytest.raises(ValueError, match=match):
        DatasetSpec(num_actions=3, horizon=10, obs_image_size=P, obs_image_shape=shape)


# ------------------------------------------------------------------------------------------ kwargs
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"obs_image_encoder": "resnet"}, r"'obs_image_encoder'\] must be one of \['linear', 'cells', 'conv'\]"),
        ({"obs_image_shape": [7, 7, 2]},
         r"\['obs_image_shape'\]=\[7, 7, 2\] holds 98 pixels but 'max_num_obs_image' is 147"),
        ({"obs_image_shape": [7, 7, 2], "obs_image_encoder": "linear"}, r"'obs_image_shape'\]=\[7, 7, 2\]"),
        ({"obs_image_shape": [7, 0, 3]}, r"'obs_image_shape'\] must hold integers >= 1"),
        ({"obs_image_shape": []}, r"'obs_image_encoder'\]='cells' needs 'obs_image_shape' = \[H, W, C\]"),
        ({"obs_image_shape": [49, 3]}, r"needs 'obs_image_shape' = \[H, W, C\].*got \[49, 3\]"),
        ({"obs_image_vocab": 0}, r"'obs_image_vocab'\] must be an integer in \[1, 256\]"),
        ({"obs_image_vocab": 257}, r"'obs_image_vocab'\] must be an integer in \[1, 256\], got 257"),
        ({"obs_image_cell_dim": 0}, r"'obs_image_cell_dim'\] must be an integer >= 1, got 0"),
    ],
)  # fmt: skip
def test_bad_kwargs_name_the_key(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StepEmbedder(D, **{**IMG, "obs_image_encoder": "cells", **kwargs})


def test_linear_encoder_is_unchanged():
    """The default stays the linear, chunked encoder with the same weights (old checkpoints load)."""
    torch.manual_seed(0)
    plain = StepEmbedder(D, max_num_actions=A, include_obs_image=True, max_num_obs_image=P)
    torch.manual_seed(0)
    shaped = StepEmbedder(
        D, max_num_actions=A, include_obs_image=True, max_num_obs_image=P, obs_image_shape=GRID
    )
    assert plain.kwargs["obs_image_encoder"] == "linear" and plain.obs_image_enc is None
    assert {k for k in plain.state_dict() if "image" in k} == {"obs_image_proj.weight", "obs_image_proj.bias"}
    td = make_stream()
    assert torch.equal(plain(td)[0], shaped(td)[0])


# ----------------------------------------------------------------------------------- shapes, modes
@pytest.mark.parametrize("encoder", GRID_ENCODERS)
@pytest.mark.parametrize("concat", [False, True])
@pytest.mark.parametrize("num_compute", [0, 2])
def test_shapes_and_token_types(encoder, concat, num_compute):
    emb = StepEmbedder(
        D, **IMG, obs_image_encoder=encoder, concat_modalities=concat, num_compute_tokens=num_compute,
        token_data_len=8,
    )  # fmt: skip
    # concat: action, reward, done, time + ONE image token (not ceil(147 / 8) = 19 chunks)
    T = (5 if concat else 1) + num_compute
    assert emb.tokens_per_step == T
    x, tt = emb(make_stream(2, 3))
    assert x.shape == (2, 3 * T, D) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert tt.shape == (2, 3 * T) and tt.dtype == torch.int64
    if concat:
        types = [TokenType.ACTION, TokenType.REWARD, TokenType.DONE, TokenType.TIME, TokenType.OBS_IMAGE]
    else:
        types = [TokenType.STEP]
    assert tt.view(2, 3, T)[1, 2].tolist() == [int(t) for t in types] + [int(TokenType.COMPUTE)] * num_compute


@pytest.mark.parametrize("encoder", GRID_ENCODERS)
def test_encoder_module_shapes(encoder):
    cls = {"cells": GridCellEncoder, "conv": GridConvEncoder}[encoder]
    enc = cls(GRID, VOCAB, 8, D)
    enc.reset_parameters(0.02)
    out = enc(grids(6).view(2, 3, P))
    assert out.shape == (2, 3, D) and out.dtype == torch.float32


@pytest.mark.parametrize("encoder", GRID_ENCODERS)
@pytest.mark.parametrize("concat", [False, True])
def test_image_changes_its_step_only(encoder, concat):
    emb = StepEmbedder(D, **IMG, obs_image_encoder=encoder, concat_modalities=concat)
    td = make_stream(1, 3)
    x0, _ = emb(td)
    td2 = td.clone()
    td2["obs_image"][0, 1, 40] = (td2["obs_image"][0, 1, 40] + 1) % 3
    x1, _ = emb(td2)
    T = emb.tokens_per_step
    diff = (x1 - x0).abs().view(1, 3, T, D).sum(dim=-1)[0]  # [S, T]
    assert diff[1].sum() > 0 and diff[0].sum() == 0 and diff[2].sum() == 0
    if concat:  # only the image token of step 1 moves
        assert (diff[1, :-1] == 0).all() and diff[1, -1] > 0


# ------------------------------------------------------------------------------------- validation
def test_uint8_enforced():
    emb = image_only("cells")
    td = TensorDict({"obs_image": grids(2).long().view(2, 1, P)}, batch_size=[2, 1])
    with pytest.raises(ValueError, match=r"'obs_image'\] must be uint8, got torch.int64"):
        emb(td)


@pytest.mark.parametrize("encoder", GRID_ENCODERS)
def test_pixels_outside_vocab_raise(encoder):
    emb = image_only(encoder)
    pix = grids(2)
    pix[1, 3 * 10 + 1] = VOCAB  # cell 10, channel 1 (colour)
    td = TensorDict({"obs_image": pix.view(2, 1, P)}, batch_size=[2, 1])
    with pytest.raises(
        ValueError, match=r"holds 16 \(channel 1 of .*\), outside \[0, 16\) \(obs_image_vocab\)"
    ):
        emb(td)
    # vocab 256 accepts every uint8 value
    full = image_only(encoder, obs_image_vocab=256)
    pix[1, 31] = 255
    assert torch.isfinite(embed_grids(full, pix)).all()


# ------------------------------------------------------------------------------------- sensitivity
def test_cells_layout_is_channels_last():
    """Cell ``r * W + c`` sums the vectors of pixels ``3 * (r * W + c) + k`` (value v -> row k * vocab + v)."""
    enc = image_only("cells").obs_image_enc
    pix = grids(1)
    got = enc.cell_values(pix)[0]  # [49, E]
    table = enc.value_emb.weight
    for cell in (0, 10, 48):
        want = sum(table[k * VOCAB + int(pix[0, 3 * cell + k])] for k in range(3))
        torch.testing.assert_close(got[cell], want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("encoder", GRID_ENCODERS)
def test_every_pixel_matters(encoder):
    """Changing any one pixel (any cell, any channel) changes the token: the encoder ignores nothing."""
    emb = image_only(encoder)
    base = grids(1)
    variants = base.repeat(P, 1)
    idx = torch.arange(P)
    variants[idx, idx] = ((variants[idx, idx].long() + 1) % 3).to(torch.uint8)
    out = embed_grids(emb, torch.cat([base, variants]))
    diff = (out[1:] - out[:1]).abs().amax(dim=1)
    assert (diff > 1e-6).all(), f"pixels with no effect: {(diff <= 1e-6).nonzero().flatten().tolist()}"
    # every value of a channel gets its own vector: 16 object ids at one cell -> 16 distinct tokens
    ids = base.repeat(VOCAB, 1)
    ids[:, 3 * 24] = torch.arange(VOCAB, dtype=torch.uint8)
    tokens = embed_grids(emb, ids)
    assert torch.cdist(tokens, tokens).add(torch.eye(VOCAB)).min() > 1e-6


@pytest.mark.parametrize("encoder", GRID_ENCODERS)
def test_swapping_two_cells_changes_the_token(encoder):
    emb = image_only(encoder)
    pix = grids(1)
    cells = pix.view(49, 3).clone()
    assert not torch.equal(cells[5], cells[30])
    cells[[5, 30]] = cells[[30, 5]]
    out = embed_grids(emb, torch.cat([pix, cells.view(1, P)]))
    assert (out[0] - out[1]).abs().max() > 1e-6


def test_cells_position_embedding_is_used():
    emb = image_only("cells")
    pix = grids(3)
    before = embed_grids(emb, pix)
    with torch.no_grad():
        emb.obs_image_enc.pos_emb.zero_()
    assert (embed_grids(emb, pix) - before).abs().max() > 1e-6


@pytest.mark.parametrize("encoder", GRID_ENCODERS)
def test_every_parameter_gets_a_gradient(encoder):
    emb = image_only(encoder).train()
    td = TensorDict({"obs_image": grids(4).view(2, 2, P)}, batch_size=[2, 2])
    emb(td)[0].pow(2).sum().backward()
    for name, p in emb.obs_image_enc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# ------------------------------------------------------------------------------ the model around it
LLAMA = {"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 32}
HEADS = {"sp_head_kwargs": {"num_layers": 1}, "dqn_head_kwargs": {"num_layers": 1}}


def make_model(cls=ModelLlama, backbone=LLAMA, **emb):
    torch.manual_seed(0)
    kw = {**IMG, "obs_image_encoder": "cells", **emb}
    return cls(hidden_dim=D, backbone_kwargs=backbone, embedding_kwargs=kw, **HEADS).eval()


@pytest.mark.parametrize(
    "emb",
    [{}, {"concat_modalities": True, "num_compute_tokens": 1}, {"obs_image_encoder": "conv"}],
    ids=["cells-sum", "cells-concat+compute", "conv-sum"],
)
def test_kv_cache_decode_matches_full_forward(emb):
    model = make_model(**emb)
    td = make_stream(2, 6)
    full, _ = model(td)
    out, cache = model(td[:, :2], use_cache=True)
    pieces = [out]
    for t in range(2, 6):
        out, cache = model(td[:, t : t + 1], cache=cache, use_cache=True)
        pieces.append(out)
    decoded = torch.cat(pieces, dim=1)
    for key in full.keys():
        assert (decoded[key] - full[key]).abs().max() <= 1e-5, key
    assert cache["num_tokens"] == 6 * model.tokens_per_step


@pytest.mark.parametrize("encoder", GRID_ENCODERS)
def test_save_load_round_trip(tmp_path, encoder):
    model = make_model(ModelNone, {}, obs_image_encoder=encoder)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())["embedding_kwargs"]
    assert saved["obs_image_encoder"] == encoder and saved["obs_image_shape"] == GRID
    assert saved["obs_image_vocab"] == VOCAB and saved["obs_image_cell_dim"] == 8
    loaded = load_model(tmp_path).eval()
    assert isinstance(loaded.embedder.obs_image_enc, type(model.embedder.obs_image_enc))
    td = make_stream()
    ref, got = model(td)[0], loaded(td)[0]
    for key in ref.keys():
        assert torch.equal(ref[key], got[key]), key


def test_config_without_the_image_encoder_keys_loads_as_linear(tmp_path):
    """A config.json saved before these keys existed loads with the linear encoder and its weights."""
    model = make_model(ModelNone, {}, obs_image_encoder="linear", obs_image_shape=[])
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for key in ("obs_image_encoder", "obs_image_shape", "obs_image_vocab", "obs_image_cell_dim"):
        del config["embedding_kwargs"][key]
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = load_model(tmp_path).eval()
    assert loaded.embedder.kwargs["obs_image_encoder"] == "linear"
    td = make_stream()
    assert torch.equal(model(td)[0]["sp"], loaded(td)[0]["sp"])
