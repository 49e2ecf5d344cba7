"""StepEmbedder: shapes and token types for every modality in both modes, validation of bad input."""

import pytest
import torch
from tensordict import TensorDict

from mouse.models.embedding import EMBEDDING_DEFAULTS, StepEmbedder, TokenType, resolve_embedding_kwargs

A, N_OBS, C, P, D = 5, 7, 6, 20, 16


def make_stream(B=2, S=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDict(
        {
            "action": torch.randint(0, A, (B, S), generator=g),
            "reward": torch.randn(B, S, generator=g),
            "done": torch.randint(0, 3, (B, S), generator=g),
            "time": torch.randint(0, 10, (B, S), generator=g),
            "obs_discrete": torch.randint(0, N_OBS, (B, S), generator=g),
            "obs_continuous": torch.randn(B, S, C, generator=g),
            "obs_image": torch.randint(0, 256, (B, S, P), generator=g, dtype=torch.uint8),
            "q_star": torch.randn(B, S, A, generator=g),  # extra keys are ignored
        },
        batch_size=[B, S],
    )


ALL = dict(
    max_num_actions=A,
    include_obs_discrete=True,
    max_num_obs_discrete=N_OBS,
    include_obs_continuous=True,
    max_num_obs_continuous=C,
    include_obs_image=True,
    max_num_obs_image=P,
    token_data_len=8,
)


def test_defaults_are_action_reward_done_time_only():
    kw = resolve_embedding_kwargs({"max_num_actions": 3})
    assert kw["include_action_token"] and kw["include_reward_token"]
    assert kw["include_done_token"] and kw["include_time_token"]
    assert not (kw["include_obs_discrete"] or kw["include_obs_continuous"] or kw["include_obs_image"])
    assert set(kw) == set(EMBEDDING_DEFAULTS)
    emb = StepEmbedder(D, max_num_actions=3)
    assert emb.tokens_per_step == 1


@pytest.mark.parametrize("concat", [False, True])
@pytest.mark.parametrize("num_compute", [0, 2])
@pytest.mark.parametrize("encoder", ["fourier", "linear"])
def test_shapes_all_modalities(concat, num_compute, encoder):
    emb = StepEmbedder(
        D, **ALL, concat_modalities=concat, num_compute_tokens=num_compute, obs_continuous_encoder=encoder
    )
    # concat: action, reward, done, time, obs_discrete + ceil(6/8)=1 continuous + ceil(20/8)=3 image chunks
    T = (5 + 1 + 3 if concat else 1) + num_compute
    assert emb.tokens_per_step == T
    x, tt = emb(make_stream(2, 3))
    assert x.shape == (2, 3 * T, D) and x.dtype == torch.float32
    assert tt.shape == (2, 3 * T) and tt.dtype == torch.int64
    assert torch.isfinite(x).all()
    step_types = tt.view(2, 3, T)[0, 0].tolist()
    if concat:
        expected = [
            TokenType.ACTION,
            TokenType.REWARD,
            TokenType.DONE,
            TokenType.TIME,
            TokenType.OBS_DISCRETE,
        ]
        expected += [TokenType.OBS_CONTINUOUS] + [TokenType.OBS_IMAGE] * 3
    else:
        expected = [TokenType.STEP]
    assert step_types == [int(t) for t in expected] + [int(TokenType.COMPUTE)] * num_compute


@pytest.mark.parametrize(
    "key",
    ["action", "reward", "done", "time", "obs_discrete", "obs_continuous", "obs_image"],
)
@pytest.mark.parametrize("concat", [False, True])
def test_each_modality_changes_its_step_only(key, concat):
    """Changing one field of one step changes that step's tokens and no other step's."""
    emb = StepEmbedder(D, **ALL, concat_modalities=concat)
    td = make_stream(1, 3)
    x0, _ = emb(td)
    td2 = td.clone()
    val = td2.get(key)
    if key in ("reward", "obs_continuous"):
        val[0, 1] += 0.5
    elif key == "obs_image":
        val[0, 1] = 255 - val[0, 1]
    else:
        limit = {"action": A, "done": 3, "time": 10, "obs_discrete": N_OBS}[key]
        val[0, 1] = (val[0, 1] + 1) % limit
    x1, _ = emb(td2)
    T = emb.tokens_per_step
    diff = (x1 - x0).abs().view(1, 3, T, D).sum(dim=(2, 3))[0]
    assert diff[1] > 0 and diff[0] == 0 and diff[2] == 0


def test_only_selected_modalities_needed():
    emb = StepEmbedder(D, max_num_actions=A, include_reward_token=False, include_time_token=False)
    td = TensorDict(
        {"action": torch.zeros(2, 4, dtype=torch.long), "done": torch.zeros(2, 4, dtype=torch.long)}, [2, 4]
    )
    x, _ = emb(td)
    assert x.shape == (2, 4, D)


def test_pad_steps_are_marked():
    emb = StepEmbedder(D, **ALL, concat_modalities=True, num_compute_tokens=1)
    td = make_stream(2, 3)
    td["pad"] = torch.tensor([[True, False, False], [False, False, False]])
    _, tt = emb(td)
    tt = tt.view(2, 3, -1)
    assert (tt[0, 0] == int(TokenType.PAD)).all()
    assert (tt[0, 1:] != int(TokenType.PAD)).all() and (tt[1] != int(TokenType.PAD)).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "max_num_actions"),
        ({"max_num_actions": 0}, "max_num_actions"),
        ({"max_num_actions": 2, "include_obs_discrete": True}, "max_num_obs_discrete"),
        ({"max_num_actions": 2, "obs_continuous_encoder": "mlp"}, "obs_continuous_encoder"),
        ({"max_num_actions": 2, "include_obs_imgae": True}, "include_obs_imgae"),
        ({"max_num_actions": 2, "fourier_in_min": 1.0, "fourier_in_max": 1.0,
          "include_obs_continuous": True, "max_num_obs_continuous": 2}, "fourier_in_max"),
    ],
)  # fmt: skip
def test_bad_kwargs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StepEmbedder(D, **kwargs)


def _bad(key, value):
    td = make_stream(2, 3)
    td[key] = value
    return td


@pytest.mark.parametrize(
    "td, match",
    [
        (make_stream(2, 3).exclude("reward"), r"lacks field\(s\) \['reward'\]"),
        (_bad("action", torch.full((2, 3), A)), r"action.*holds 5, outside \[0, 5\)"),
        (_bad("action", torch.full((2, 3), -1)), r"action.*holds -1"),
        (_bad("action", torch.zeros(2, 3, dtype=torch.int32)), "action.*int64"),
        (_bad("done", torch.full((2, 3), 3)), r"done.*holds 3, outside \[0, 3\)"),
        (_bad("time", torch.full((2, 3), 1024)), r"time.*outside \[0, 1024\)"),
        (_bad("obs_discrete", torch.full((2, 3), N_OBS)), r"obs_discrete.*outside \[0, 7\)"),
        (_bad("reward", torch.tensor([[0.0, float("nan"), 0.0]] * 2)), "reward.*non-finite.*nan"),
        (_bad("reward", torch.tensor([[0.0, float("inf"), 0.0]] * 2)), "reward.*non-finite.*inf"),
        (_bad("reward", torch.zeros(2, 3, dtype=torch.long)), "reward.*floating"),
        (_bad("obs_continuous", torch.zeros(2, 3, C + 1)), r"obs_continuous.*shape \[2, 3, 7\].*\[2, 3, 6\]"),
        (_bad("obs_image", torch.zeros(2, 3, P)), "obs_image.*uint8"),
        (_bad("action", torch.zeros(2, 3, 1, dtype=torch.long)), r"action.*shape \[2, 3, 1\]"),
        (_bad("pad", torch.zeros(2, 3)), "pad.*bool"),
    ],
)
def test_bad_input_raises(td, match):
    emb = StepEmbedder(D, **ALL)
    with pytest.raises(ValueError, match=match):
        emb(td)


def test_bad_batch_dims():
    emb = StepEmbedder(D, **ALL)
    flat = make_stream(2, 3).reshape(-1)
    with pytest.raises(ValueError, match=r"batch_size \[B, S\], got \[6\]"):
        emb(flat)
