"""GPU-ready training switches on CPU: ``model.gradient_checkpointing`` and ``trainer.compile``.

Gradient checkpointing recomputes each decoder layer in the backward: the loss and every gradient are
the same as without it (on the fast path and on the transformers path, Llama and Qwen3), fewer tensors
are kept for the backward, and evaluation / KV-cache decoding are untouched. ``trainer.compile=true``
trains with the same losses as eager mode (slow: compiling takes about a minute on one CPU core).
"""

from __future__ import annotations

import json

import pytest
import torch
from tensordict import TensorDict

from mouse.models import ModelLlama, ModelQwen3
from test_train import TINY, compose_cfg, env, in_process, losses  # noqa: F401  (fixtures)

QUIET = ["logger=none", "trainer.eval_num_tasks=0"]
B, S, A = 3, 12, 4


def _model(cls: type, checkpointing: bool, fast: bool, **backbone) -> torch.nn.Module:
    torch.manual_seed(0)
    model = cls(
        hidden_dim=32,
        backbone_kwargs={
            "num_hidden_layers": 3,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "intermediate_size": 64,
            **backbone,
        },
        embedding_kwargs={
            "max_num_actions": A,
            "include_obs_discrete": True,
            "max_num_obs_discrete": 9,
            "max_num_time_steps": 64,
        },
        sp_head_kwargs={"num_layers": 1},
        dqn_head_kwargs={"num_layers": 1},
    )
    model.use_fast_path = fast
    model.set_gradient_checkpointing(checkpointing)
    return model


def _stream() -> TensorDict:
    g = torch.Generator().manual_seed(1)
    done = torch.zeros(B, S, dtype=torch.long)
    done[:, 5] = 1
    return TensorDict(
        {
            "action": torch.randint(0, A, (B, S), generator=g),
            "reward": torch.rand(B, S, generator=g),
            "done": done,
            "time": torch.arange(S).expand(B, S).clone(),
            "obs_discrete": torch.randint(0, 9, (B, S), generator=g),
        },
        batch_size=[B, S],
    )


def _loss_grads_saved(model: torch.nn.Module, td: TensorDict) -> tuple[torch.Tensor, dict, int]:
    """(loss, {name: grad}, number of tensors autograd saved for the backward) of one training step."""
    saved = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[0] += 1
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out, _ = model(td)
        loss = out["sp"].square().mean() + out["dqn"].square().mean()
    loss.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, saved[0]


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "transformers-path"])
@pytest.mark.parametrize("cls", [ModelLlama, ModelQwen3])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(cls, fast):
    extra = {"head_dim": 8} if cls is ModelQwen3 else {}
    td = _stream()
    plain_loss, plain_grads, plain_saved = _loss_grads_saved(_model(cls, False, fast, **extra), td)
    ckpt_loss, ckpt_grads, ckpt_saved = _loss_grads_saved(_model(cls, True, fast, **extra), td)
    torch.testing.assert_close(ckpt_loss, plain_loss, rtol=0, atol=1e-7)
    assert ckpt_grads.keys() == plain_grads.keys() and len(plain_grads) > 20
    for name, grad in plain_grads.items():
        torch.testing.assert_close(ckpt_grads[name], grad, rtol=1e-6, atol=1e-7, msg=name)
    # the layers' activations are not kept: well under half the saved tensors (3 layers recomputed)
    assert ckpt_saved < plain_saved / 2, (ckpt_saved, plain_saved)


def test_gradient_checkpointing_leaves_evaluation_and_kv_cache_decoding_alone():
    """A checkpointing model still decodes with its KV cache (no autograd: nothing to recompute), in
    train mode too, with the same outputs as the full forward and as a model without checkpointing."""
    td = _stream()
    ckpt, plain = _model(ModelLlama, True, True), _model(ModelLlama, False, True)
    assert ckpt.gradient_checkpointing and not plain.gradient_checkpointing
    for mode in ("eval", "train"):
        getattr(ckpt, mode)()
        getattr(plain, mode)()
        with torch.no_grad():
            full, _ = ckpt(td)
            reference, _ = plain(td)
            cache, steps = None, []
            for t in range(S):
                out, cache = ckpt(td[:, t : t + 1], cache=cache, use_cache=True)
                steps.append(out["sp"])
        assert cache is not None and int(cache["num_tokens"]) == S
        torch.testing.assert_close(full["sp"], reference["sp"], rtol=0, atol=0)
        torch.testing.assert_close(torch.cat(steps, dim=1), full["sp"], rtol=1e-5, atol=1e-5)
    ckpt.set_gradient_checkpointing(False)
    assert not ckpt.gradient_checkpointing


@pytest.mark.usefixtures("in_process")
def test_trainer_gradient_checkpointing_same_losses_and_plain_checkpoint(tmp_path):
    from mouse.models import load_model
    from mouse.train.trainer import run_training

    overrides = [*TINY, *QUIET, "trainer.steps=3", "backbone.num_hidden_layers=2"]
    run_training(compose_cfg(overrides), tmp_path / "plain")
    run_training(compose_cfg([*overrides, "model.gradient_checkpointing=true"]), tmp_path / "ckpt")
    plain, ckpt = losses(tmp_path / "plain"), losses(tmp_path / "ckpt")
    assert sorted(ckpt) == [1, 2, 3]
    assert ckpt == pytest.approx(plain, rel=1e-6, abs=1e-7)
    # a training switch, not part of the model: config.json is the same and the model loads as usual
    last = tmp_path / "ckpt" / "checkpoints" / "last"
    config = json.loads((last / "config.json").read_text())
    assert config == json.loads((tmp_path / "plain" / "checkpoints" / "last" / "config.json").read_text())
    assert "gradient_checkpointing" not in json.dumps(config)
    assert not load_model(last).gradient_checkpointing
    assert "gradient_checkpointing: true" in (tmp_path / "ckpt" / "train_config.yaml").read_text()


def test_gradient_checkpointing_needs_a_backbone():
    from mouse.train.config import validate_config

    no_backbone = [o for o in TINY if not o.startswith("backbone.")]
    with pytest.raises(ValueError, match=r"model.gradient_checkpointing=true needs a backbone"):
        validate_config(compose_cfg([*no_backbone, "backbone=none", "model.gradient_checkpointing=true"]))


@pytest.mark.slow
@pytest.mark.usefixtures("in_process")
def test_trainer_compile_trains_with_the_eager_losses(tmp_path):
    """``trainer.compile=true``: the training forward runs through ``torch.compile`` (about a minute of
    compiling on one CPU core, hence slow), sharing the model's parameters; the losses match eager mode."""
    from mouse.train.trainer import Trainer

    overrides = [*TINY, *QUIET, "trainer.steps=3"]
    eager = Trainer(compose_cfg(overrides), tmp_path / "eager")
    eager.run()
    assert eager.train_model is eager.model
    compiled = Trainer(compose_cfg([*overrides, "trainer.compile=true"]), tmp_path / "compiled")
    compiled.run()
    assert compiled.train_model is not compiled.model
    assert isinstance(compiled.train_model, torch.nn.Module)
    assert {id(p) for p in compiled.train_model.parameters()} == {id(p) for p in compiled.model.parameters()}
    got, want = losses(tmp_path / "compiled"), losses(tmp_path / "eager")
    assert sorted(got) == [1, 2, 3]
    assert got == pytest.approx(want, rel=1e-5)
