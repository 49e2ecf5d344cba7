"""Augmentation: action/q_star consistency under permutation, obs permutation, reward affine, masking."""

import dataclasses

import pytest
import torch

from mouse.data import AugmentConfig, StepDataset, WindowLoader, augment, synthetic_columns


def _batch(num_actions=4, obs=9, seed=0):
    cols, spec = synthetic_columns(
        num_streams=4, steps_per_stream=40, num_actions=num_actions, obs_discrete_size=obs, seed=seed
    )
    ds = StepDataset.from_columns(cols, spec)
    with WindowLoader(ds, batch_size=8, seq_len=24, prefetch=0) as loader:
        return next(iter(loader))


@pytest.fixture(scope="module")
def expert_batch():
    """Dark Room expert windows: the action stored at t+1 is greedy on q_star at t."""
    from mouse.data.collect import collect_columns  # MOUSE's own module: missing must fail, not skip

    cols, spec = collect_columns(
        {
            "task": {"name": "darkroom", "size": 5, "horizon": 8},
            "policy": {"name": "expert", "epsilon": 0.0},
            "num_tasks": 6,
            "steps_per_task": 40,
            "show_progress": False,
        }
    )
    ds = StepDataset.from_columns(cols, spec)
    with WindowLoader(ds, batch_size=6, seq_len=40, sampling="last", prefetch=0) as loader:
        return next(iter(loader))


def _greedy_consistent(batch):
    """On every acting transition t -> t+1, action[t+1] attains max q_star[t]."""
    q, a = batch["q_star"][:, :-1], batch["action"][:, 1:]
    acting = batch["time"][:, 1:] > 0
    chosen = torch.gather(q, -1, a[..., None])[..., 0]
    return bool((chosen[acting] == q.max(-1).values[acting]).all())


def test_off_is_an_unchanged_copy():
    batch = _batch()
    out = augment(batch, AugmentConfig(), torch.Generator().manual_seed(0))
    assert out is not batch
    for key in batch.keys():
        assert torch.equal(out[key], batch[key])


def test_action_permutation_keeps_expert_actions_greedy(expert_batch):
    assert _greedy_consistent(expert_batch)
    cfg = AugmentConfig(permute_actions=True)
    out = augment(expert_batch, cfg, torch.Generator().manual_seed(1))
    assert _greedy_consistent(out)
    assert not torch.equal(out["action"], expert_batch["action"])
    # reset records stay recognisable: action 0 where time == 0
    reset = expert_batch["time"] == 0
    assert (out["action"][reset] == 0).all()


def test_action_permutation_is_one_bijection_per_sequence():
    batch = _batch(num_actions=5)
    out = augment(batch, AugmentConfig(permute_actions=True), torch.Generator().manual_seed(2))
    acting = batch["time"] > 0
    for b in range(batch.batch_size[0]):
        old, new = batch["action"][b][acting[b]], out["action"][b][acting[b]]
        mapping = {}
        for o, n in zip(old.tolist(), new.tolist()):
            assert mapping.setdefault(o, n) == n
        assert len(set(mapping.values())) == len(mapping)
        # every action-indexed column moves with the action: value at the taken action is unchanged
        for key in ("q_star", "behavior_logits", "teacher_logits"):
            before = torch.gather(batch[key][b][acting[b]], -1, old[:, None])
            after = torch.gather(out[key][b][acting[b]], -1, new[:, None])
            assert torch.equal(before, after)
            assert torch.equal(out[key][b].sort(-1).values, batch[key][b].sort(-1).values)


def test_obs_permutation_is_a_bijection_per_sequence():
    batch = _batch(obs=9)
    out = augment(
        batch, AugmentConfig(permute_obs_discrete=True), torch.Generator().manual_seed(3), num_obs_discrete=9
    )
    assert not torch.equal(out["obs_discrete"], batch["obs_discrete"])
    for b in range(batch.batch_size[0]):
        mapping = {}
        for o, n in zip(batch["obs_discrete"][b].tolist(), out["obs_discrete"][b].tolist()):
            assert mapping.setdefault(o, n) == n
        assert len(set(mapping.values())) == len(mapping)
    with pytest.raises(ValueError, match="needs num_obs_discrete"):
        augment(batch, AugmentConfig(permute_obs_discrete=True), torch.Generator())
    with pytest.raises(ValueError, match=r"'obs_discrete'\] holds ids in \[0, 8\], expected \[0, 4\]"):
        augment(batch, AugmentConfig(permute_obs_discrete=True), torch.Generator(), num_obs_discrete=5)


def test_reward_affine_per_sequence_and_q_star_scaled():
    batch = _batch()
    cfg = AugmentConfig(
        reward_scale_min=0.5, reward_scale_max=2.0, reward_shift_min=-1.0, reward_shift_max=1.0
    )
    out = augment(batch, cfg, torch.Generator().manual_seed(4))
    acting = batch["time"] > 0
    assert torch.equal(out["reward"][~acting], batch["reward"][~acting])  # reset records keep reward 0
    for b in range(batch.batch_size[0]):
        r, r2 = batch["reward"][b][acting[b]], out["reward"][b][acting[b]]
        # fit r2 = s * r + c from two records with different rewards, check all records
        i, j = 0, int(torch.argmax((r - r[0]).abs()))
        s = (r2[j] - r2[i]) / (r[j] - r[i])
        c = r2[i] - s * r[i]
        assert 0.5 - 1e-4 <= s <= 2.0 + 1e-4 and -1.0 - 1e-4 <= c <= 1.0 + 1e-4
        torch.testing.assert_close(r2, s * r + c, rtol=1e-4, atol=1e-4)
        finite = torch.isfinite(batch["q_star"][b])
        torch.testing.assert_close(
            out["q_star"][b][finite], s * batch["q_star"][b][finite], rtol=1e-4, atol=1e-4
        )
        assert torch.isneginf(out["q_star"][b][~finite]).all()


def test_masking_sets_neutral_values_and_keeps_structure():
    batch = _batch()
    cfg = AugmentConfig(mask_action_prob=1.0, mask_reward_prob=0.5, mask_obs_discrete_prob=0.0)
    out = augment(batch, cfg, torch.Generator().manual_seed(5))
    assert (out["action"] == 0).all()
    changed = out["reward"] != batch["reward"]
    assert (out["reward"][changed] == 0).all()
    frac = (out["reward"] == 0).float().mean()
    assert 0.3 < frac < 0.8
    assert torch.equal(out["obs_discrete"], batch["obs_discrete"])
    assert torch.equal(out["done"], batch["done"]) and torch.equal(out["time"], batch["time"])


def test_seeded_and_input_untouched():
    batch = _batch()
    snapshot = batch.clone()
    cfg = AugmentConfig(
        permute_actions=True, reward_scale_min=0.5, reward_scale_max=2.0, mask_reward_prob=0.2
    )
    a = augment(batch, cfg, torch.Generator().manual_seed(6))
    b = augment(batch, cfg, torch.Generator().manual_seed(6))
    c = augment(batch, cfg, torch.Generator().manual_seed(7))
    for key in batch.keys():
        assert torch.equal(a[key], b[key])
        assert torch.equal(batch[key], snapshot[key])
    assert not torch.equal(a["action"], c["action"])


def test_bad_configs():
    with pytest.raises(ValueError, match="0 < reward_scale_min <= reward_scale_max"):
        AugmentConfig(reward_scale_min=0.0)
    with pytest.raises(ValueError, match="reward_shift_min=1.0 > reward_shift_max=0.0"):
        AugmentConfig(reward_shift_min=1.0)
    with pytest.raises(ValueError, match=r"mask_reward_prob must be in \[0, 1\], got 1.5"):
        AugmentConfig(mask_reward_prob=1.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        AugmentConfig().permute_actions = True
    batch = _batch(num_actions=4)
    with pytest.raises(ValueError, match=r"action columns have widths \[4\] but num_actions=5"):
        augment(batch, AugmentConfig(permute_actions=True), torch.Generator(), num_actions=5)
